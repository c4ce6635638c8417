//! DingTalk's ISO-8601 times (`2022-08-31T11:52Z` and kin, as §5.9 writes them) as unix
//! milliseconds, without a date crate.

use crate::clock::days_from_civil;

/// Unix milliseconds of a time as DingTalk writes it: `2022-08-31T11:52Z`, optionally with
/// seconds and a fraction (`11:52:07.5Z`), and `Z` or an offset (`+08:00`, `+0800`, `+08`).
/// A space may stand for the `T`. `None` for anything else, including a time without a zone:
/// guessing one would silently shift it by hours.
pub(crate) fn parse_time_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    let (date, rest) = (text.get(..10)?, text.get(10..)?);
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let year = number(date.get(..4)?)?;
    let month = number(date.get(5..7)?)?;
    let day = number(date.get(8..10)?)?;
    if date.as_bytes()[4] != b'-' || date.as_bytes()[7] != b'-' {
        return None;
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }

    // The clock part ends where the zone starts.
    let zone_at = rest.find(['Z', 'z', '+', '-'])?;
    let (clock, zone) = rest.split_at(zone_at);
    let mut fields = clock.splitn(3, ':');
    let hour = number(fields.next()?)?;
    let minute = number(fields.next()?)?;
    let (second, millis) = match fields.next() {
        None => (0, 0),
        Some(seconds) => {
            let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
            (number(whole)?, fraction_millis(fraction)?)
        }
    };
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let offset_minutes = zone_offset_minutes(zone)?;

    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

/// All ASCII digits, 1 to 4 of them (no sign, no spaces).
fn number(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > 4 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Milliseconds of a fraction of a second given as digits after the dot; `""` is none.
fn fraction_millis(fraction: &str) -> Option<i64> {
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = fraction.chars().chain("000".chars()).take(3).collect();
    digits.parse().ok()
}

/// `Z`, `+08:00`, `+0800` or `+08` (and `-`) as minutes east of UTC.
fn zone_offset_minutes(zone: &str) -> Option<i64> {
    if zone.eq_ignore_ascii_case("z") {
        return Some(0);
    }
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits = zone.get(1..)?.replace(':', "");
    let (hours, minutes) = match digits.len() {
        2 => (number(&digits)?, 0),
        4 => (number(digits.get(..2)?)?, number(digits.get(2..)?)?),
        _ => return None,
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some(sign * (hours * 60 + minutes))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2022-08-31T11:52Z.
    const AUG_31_1152_UTC: i64 = 1_661_946_720_000;

    #[test]
    fn dingtalk_minute_times_read_as_unix_milliseconds() {
        assert_eq!(parse_time_ms("2022-08-31T11:52Z"), Some(AUG_31_1152_UTC));
        assert_eq!(parse_time_ms(" 2022-08-31T11:52z "), Some(AUG_31_1152_UTC));
        assert_eq!(
            parse_time_ms("2022-08-31T11:52:07Z"),
            Some(AUG_31_1152_UTC + 7000)
        );
        assert_eq!(
            parse_time_ms("2022-08-31T11:52:07.25Z"),
            Some(AUG_31_1152_UTC + 7250)
        );
        assert_eq!(parse_time_ms("1970-01-01T00:00Z"), Some(0));
        assert_eq!(parse_time_ms("2024-02-29T00:00Z"), Some(1_709_164_800_000));
    }

    #[test]
    fn offsets_in_every_spelling_shift_to_utc() {
        for text in [
            "2022-08-31T19:52+08:00",
            "2022-08-31T19:52+0800",
            "2022-08-31T19:52+08",
            "2022-08-31 19:52:00+08:00",
            "2022-08-31T06:52-05:00",
        ] {
            assert_eq!(parse_time_ms(text), Some(AUG_31_1152_UTC), "{text}");
        }
    }

    #[test]
    fn times_without_zone_or_with_impossible_fields_do_not_parse() {
        for text in [
            "",
            "2022-08-31",
            "2022-08-31T11:52",
            "2022-08-31T11Z",
            "2022-02-29T11:52Z",
            "2022-13-01T11:52Z",
            "2022-08-31T24:00Z",
            "2022-08-31T11:60Z",
            "2022-08-31T11:52+24:00",
            "2022/08/31T11:52Z",
            "2022-08-31T11:5aZ",
            "2022-08-31T11:52:07.x5Z",
            "1661946720000",
        ] {
            assert_eq!(parse_time_ms(text), None, "{text:?}");
        }
    }
}

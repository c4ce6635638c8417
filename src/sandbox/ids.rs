//! Random identifiers and wall-clock formatting in the shapes DingTalk and OSS use.

use std::time::{SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};
use rand::Rng;

/// `n` random bytes as lowercase hex.
pub(super) fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill(bytes.as_mut_slice());
    hex::encode(bytes)
}

/// Lowercase 8-4-4-4-12 hex, the shape of DingTalk instance ids and dentry uuids.
pub(super) fn uuid_like() -> String {
    let h = random_hex(16);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Uppercase uuid-shaped id, as DingTalk puts in `requestid` / `x-acs-request-id`.
pub(super) fn request_id() -> String {
    uuid_like().to_uppercase()
}

/// 24 uppercase hex digits, the shape of an OSS `RequestId`.
pub(super) fn oss_request_id() -> String {
    random_hex(12).to_uppercase()
}

/// Lowercase hex MD5.
pub(super) fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// The unionId the sandbox reports for a userId: stable, so clients may cache it.
pub(super) fn union_id(user_id: &str) -> String {
    format!("union-{}", &md5_hex(user_id.as_bytes())[..16])
}

/// Now as unix milliseconds.
pub(super) fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// Broken-down UTC time.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    weekday: usize,
}

fn civil(ms: i64) -> Civil {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days-from-civil inverse; avoids pulling a date crate for three formats.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        minute: (rem % 3600 / 60) as u32,
        second: (rem % 60) as u32,
        // 1970-01-01 was a Thursday.
        weekday: (days + 4).rem_euclid(7) as usize,
    }
}

/// RFC 1123 date as OSS wants in `x-oss-date`, e.g. `Sun, 29 Nov 2026 12:00:00 GMT`.
pub(super) fn rfc1123(ms: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let c = civil(ms);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[c.weekday],
        c.day,
        MONTHS[(c.month - 1) as usize],
        c.year,
        c.hour,
        c.minute,
        c.second
    )
}

/// ISO 8601 with minute precision, as DingTalk returns times, e.g. `2026-11-29T12:00Z`.
pub(super) fn iso_minute(ms: i64) -> String {
    let c = civil(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute
    )
}

/// A 审批编号-style business id: creation minute plus a sequence number.
pub(super) fn business_id(ms: i64, seq: u64) -> String {
    let c = civil(ms);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:06}",
        c.year, c.month, c.day, c.hour, c.minute, seq
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_render_in_the_formats_dingtalk_and_oss_use() {
        // 2026-11-29T12:00:00Z, a Sunday.
        let ms = 1_795_953_600_000;
        assert_eq!(rfc1123(ms), "Sun, 29 Nov 2026 12:00:00 GMT");
        assert_eq!(iso_minute(ms), "2026-11-29T12:00Z");
        assert_eq!(business_id(ms, 7), "202611291200000007");
        assert_eq!(rfc1123(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    }

    #[test]
    fn union_ids_are_stable_per_user() {
        assert_eq!(union_id("manager4220"), union_id("manager4220"));
        assert_ne!(union_id("a"), union_id("b"));
        assert_eq!(union_id("a").len(), "union-".len() + 16);
    }
}

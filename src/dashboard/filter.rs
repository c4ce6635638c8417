//! The jobs filter as the query parameters of `/jobs`, `/api/jobs` and the bulk actions:
//! `status`, `queue`, `step`, `outcome`, `since` (an age such as `2h`), `from` (unix ms,
//! what a bulk confirmation fixes `since` to), `key` (idempotency key), `instance` (approval
//! instance id) and `before` (the keyset of the next page). An empty parameter is no filter,
//! as an HTML form sends one for every field.

use serde::{Deserialize, Serialize};

use super::failure::Failure;
use crate::cli::duration::{ms_before, parse_duration};
use crate::queue::{JobFilter, JobId, JobStatus, Verdict};

/// Longest text accepted in a free-text field (queue, step, key, instance).
const MAX_TEXT_CHARS: usize = 200;

/// The filter as sent, every field text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub(crate) struct FilterForm {
    pub(crate) status: String,
    pub(crate) queue: String,
    pub(crate) step: String,
    pub(crate) outcome: String,
    pub(crate) since: String,
    pub(crate) from: String,
    pub(crate) key: String,
    pub(crate) instance: String,
    pub(crate) before: String,
}

impl FilterForm {
    /// The queue's filter at `now_ms`, listing at most `limit`.
    pub(crate) fn filter(&self, now_ms: i64, limit: i64) -> Result<JobFilter, Failure> {
        let bad = |field: &str, why: String| Failure::BadRequest(format!("{field}: {why}"));
        let text = |field: &str, value: &str| -> Result<Option<String>, Failure> {
            let value = value.trim();
            if value.chars().count() > MAX_TEXT_CHARS {
                return Err(bad(
                    field,
                    format!("longer than {MAX_TEXT_CHARS} characters"),
                ));
            }
            Ok((!value.is_empty()).then(|| value.to_owned()))
        };
        let status = match self.status.trim() {
            "" => None,
            status => Some(status.parse::<JobStatus>().map_err(|e| bad("status", e))?),
        };
        let outcome = match self.outcome.trim() {
            "" => None,
            outcome => Some(outcome.parse::<Verdict>().map_err(|e| bad("outcome", e))?),
        };
        let since_ms = match (self.from.trim(), self.since.trim()) {
            ("", "") => None,
            ("", since) => Some(ms_before(
                now_ms,
                parse_duration(since).map_err(|e| bad("since", e))?,
            )),
            (from, _) => Some(
                from.parse::<i64>()
                    .map_err(|_| bad("from", format!("{from:?} is not a unix time in ms")))?,
            ),
        };
        let before_id = match self.before.trim() {
            "" => None,
            before => Some(
                before
                    .parse::<JobId>()
                    .ok()
                    .filter(|id| *id > 0)
                    .ok_or_else(|| bad("before", format!("{before:?} is not a job id")))?,
            ),
        };
        Ok(JobFilter {
            status,
            queue: text("queue", &self.queue)?,
            step: text("step", &self.step)?,
            since_ms,
            outcome,
            idempotency_key: text("key", &self.key)?,
            instance_id: text("instance", &self.instance)?,
            before_id,
            limit,
        })
    }

    /// The same filter with `since` fixed to the time it means at `now_ms` (`from`), so that
    /// a confirmed bulk action takes the jobs that were counted, not those of a later hour.
    pub(crate) fn fixed_at(&self, now_ms: i64) -> Result<FilterForm, Failure> {
        let mut fixed = self.clone();
        if let Some(since) = self.filter(now_ms, 0)?.since_ms {
            fixed.from = since.to_string();
        }
        fixed.since.clear();
        fixed.before.clear();
        Ok(fixed)
    }

    /// The fields set, but the page, as `(name, value)` pairs.
    pub(crate) fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("status", &self.status),
            ("queue", &self.queue),
            ("step", &self.step),
            ("outcome", &self.outcome),
            ("since", &self.since),
            ("from", &self.from),
            ("key", &self.key),
            ("instance", &self.instance),
        ]
        .into_iter()
        .map(|(name, value)| (name, value.trim()))
        .filter(|(_, value)| !value.is_empty())
        .collect()
    }

    /// The fields set, but the page, as a query string (no `?`).
    pub(crate) fn query(&self) -> String {
        self.pairs()
            .iter()
            .map(|(name, value)| format!("{name}={}", percent_encode(value)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// `query` with `extra` (already encoded) appended.
    pub(crate) fn query_and(&self, extra: &str) -> String {
        match self.query() {
            query if query.is_empty() => extra.to_owned(),
            query => format!("{query}&{extra}"),
        }
    }

    /// The filter in words, for headings and confirmations.
    pub(crate) fn describe(&self) -> String {
        let words: Vec<String> = self
            .pairs()
            .iter()
            .map(|(name, value)| match *name {
                "since" => format!("created in the last {value}"),
                "from" => format!(
                    "created since {}",
                    value
                        .parse::<i64>()
                        .map(super::pages::utc)
                        .unwrap_or_else(|_| value.to_string())
                ),
                "key" => format!("idempotency key {value}"),
                "instance" => format!("instance {value}"),
                name => format!("{name} {value}"),
            })
            .collect();
        if words.is_empty() {
            "all jobs".to_owned()
        } else {
            words.join(", ")
        }
    }
}

/// `text` percent-encoded for a URL query: everything but unreserved characters.
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_fields_filter_nothing_and_set_ones_become_the_queue_s_filter() {
        let form = FilterForm::default();
        assert_eq!(
            form.filter(1_000, 50).unwrap(),
            JobFilter {
                limit: 50,
                ..JobFilter::default()
            }
        );
        let form = FilterForm {
            status: "failed".into(),
            queue: " bulk ".into(),
            since: "2h".into(),
            before: "42".into(),
            ..FilterForm::default()
        };
        let filter = form.filter(10_000_000, 50).unwrap();
        assert_eq!(filter.status, Some(JobStatus::Failed));
        assert_eq!(filter.queue.as_deref(), Some("bulk"));
        assert_eq!(filter.since_ms, Some(10_000_000 - 7_200_000));
        assert_eq!(filter.before_id, Some(42));
    }

    #[test]
    fn a_bad_field_is_named_in_the_refusal() {
        for (form, field) in [
            (
                FilterForm {
                    status: "lost".into(),
                    ..FilterForm::default()
                },
                "status",
            ),
            (
                FilterForm {
                    since: "2 hours".into(),
                    ..FilterForm::default()
                },
                "since",
            ),
            (
                FilterForm {
                    before: "-1".into(),
                    ..FilterForm::default()
                },
                "before",
            ),
            (
                FilterForm {
                    key: "k".repeat(201),
                    ..FilterForm::default()
                },
                "key",
            ),
        ] {
            let err = form.filter(0, 1).unwrap_err().to_string();
            assert!(err.starts_with(field), "{err}");
        }
    }

    #[test]
    fn a_fixed_filter_keeps_the_time_it_was_counted_at_and_drops_the_page() {
        let form = FilterForm {
            since: "1h".into(),
            before: "9".into(),
            queue: "a b&c".into(),
            ..FilterForm::default()
        };
        let fixed = form.fixed_at(5_000_000).unwrap();
        assert_eq!(fixed.from, "1400000");
        assert!(fixed.since.is_empty() && fixed.before.is_empty());
        assert_eq!(fixed.query(), "queue=a%20b%26c&from=1400000");
        assert_eq!(
            fixed.filter(99_999_999, 1).unwrap().since_ms,
            Some(1_400_000)
        );
    }
}

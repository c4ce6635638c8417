//! Counts of DingTalk calls per endpoint and result, for metrics and the monthly call quota.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

use super::error::{DingTalkError, ErrorClass, TOKEN_ENDPOINT};

/// Endpoints DingTalk exempts from the organisation's monthly quota (dingtalk-api.md §4: the
/// token call and the identity/directory APIs).
const QUOTA_EXEMPT_ENDPOINTS: [&str; 2] = [TOKEN_ENDPOINT, "topapi/v2/user/get"];

/// The result label of a call DingTalk answered successfully.
const RESULT_OK: &str = "ok";

/// Calls with one outcome on one endpoint since the client was built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct CallCount {
    /// The call, e.g. `storage/files/commit`.
    pub(crate) endpoint: &'static str,
    /// `ok`, DingTalk's error code, or `transport` / `decode` when no readable answer came.
    pub(crate) result: String,
    /// DingTalk asked us to slow down.
    pub(crate) throttled: bool,
    /// The request may have reached DingTalk (so it may count against the monthly quota).
    pub(crate) sent: bool,
    pub(crate) calls: u64,
}

impl CallCount {
    /// Whether these calls count against the organisation's monthly quota.
    pub(crate) fn counts_against_quota(&self) -> bool {
        self.sent && counts_against_quota(self.endpoint)
    }
}

/// Whether DingTalk counts calls of `endpoint` against the monthly quota.
fn counts_against_quota(endpoint: &str) -> bool {
    !QUOTA_EXEMPT_ENDPOINTS.contains(&endpoint)
}

/// The tallies, shared by all clones of one client.
#[derive(Default)]
pub(super) struct CallCounter {
    counts: Mutex<BTreeMap<(&'static str, String), CallCount>>,
}

impl CallCounter {
    /// Tallies one HTTP exchange.
    pub(super) fn record<T>(&self, endpoint: &'static str, result: &Result<T, DingTalkError>) {
        let (label, throttled, sent) = match result {
            Ok(_) => (RESULT_OK.to_owned(), false, true),
            Err(DingTalkError::Api { code, class, .. }) => (
                code.clone(),
                matches!(class, ErrorClass::Throttled { .. }),
                true,
            ),
            Err(DingTalkError::Transport { sent, .. }) => ("transport".to_owned(), false, *sent),
            Err(DingTalkError::Decode { .. }) => ("decode".to_owned(), false, true),
            Err(DingTalkError::Paused { .. } | DingTalkError::Config(_)) => return,
        };
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts
            .entry((endpoint, label.clone()))
            .or_insert(CallCount {
                endpoint,
                result: label,
                throttled,
                sent,
                calls: 0,
            })
            .calls += 1;
    }

    /// Every tally so far, ordered by endpoint and result.
    pub(super) fn snapshot(&self) -> Vec<CallCount> {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.values().cloned().collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_tallied_per_endpoint_and_result() {
        let counter = CallCounter::default();
        counter.record::<()>("storage/files/commit", &Ok(()));
        counter.record::<()>("storage/files/commit", &Ok(()));
        counter.record::<()>(
            "storage/files/commit",
            &Err(DingTalkError::Api {
                endpoint: "storage/files/commit",
                status: 403,
                code: "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi".into(),
                message: "too fast".into(),
                request_id: None,
                class: ErrorClass::Throttled {
                    retry_after: std::time::Duration::from_secs(1),
                },
            }),
        );
        counter.record::<()>(
            "oauth2/accessToken",
            &Err(DingTalkError::Transport {
                endpoint: "oauth2/accessToken",
                sent: false,
                detail: "refused".into(),
            }),
        );
        let snapshot = counter.snapshot();
        assert_eq!(snapshot.len(), 3);
        let throttled = snapshot.iter().find(|c| c.throttled).unwrap();
        assert_eq!(throttled.calls, 1);
        let ok = snapshot.iter().find(|c| c.result == RESULT_OK).unwrap();
        assert_eq!(ok.calls, 2);
        assert!(ok.counts_against_quota());
        let unsent = snapshot.iter().find(|c| c.result == "transport").unwrap();
        assert!(!unsent.counts_against_quota());
    }

    #[test]
    fn token_and_directory_calls_are_exempt_from_the_monthly_quota() {
        assert!(!counts_against_quota("oauth2/accessToken"));
        assert!(!counts_against_quota("topapi/v2/user/get"));
        assert!(counts_against_quota("workflow/processInstances/create"));
    }
}

//! What one unit of work (a job's run) asked of the rate limiter: the calls it made per API
//! and how long it waited for their turns. A caller wraps the work in [`measured`]; calls
//! made outside any such scope are not counted.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

/// The limiter's part in one unit of work.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Pacing {
    /// Calls per API (retries included).
    pub(crate) calls: BTreeMap<&'static str, u32>,
    /// Time spent waiting for the limiter (its pace and any throttle pause).
    pub(crate) waited: Duration,
}

tokio::task_local! {
    static PACING: RefCell<Pacing>;
}

/// Runs `work`, counting what its calls asked of the limiter.
pub(crate) async fn measured<F: Future>(work: F) -> (F::Output, Pacing) {
    PACING
        .scope(RefCell::new(Pacing::default()), async move {
            let output = work.await;
            let pacing = PACING.with(|pacing| pacing.take());
            (output, pacing)
        })
        .await
}

/// Counts one call to `endpoint` that waited `waited` for its turn.
pub(super) fn record(endpoint: &'static str, waited: Duration) {
    // Outside a scope (outcome reads, the token refresh of another task) nothing is counted.
    let _ = PACING.try_with(|pacing| {
        let mut pacing = pacing.borrow_mut();
        *pacing.calls.entry(endpoint).or_default() += 1;
        pacing.waited += waited;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_in_a_scope_are_counted_per_api_with_their_waits_and_others_are_not() {
        record("ignored", Duration::from_secs(9));
        let ((), pacing) = measured(async {
            record("storage/files/commit", Duration::from_millis(30));
            record("storage/files/commit", Duration::from_millis(20));
            record("workflow/processInstances", Duration::ZERO);
        })
        .await;
        assert_eq!(
            pacing.calls.into_iter().collect::<Vec<_>>(),
            [
                ("storage/files/commit", 2),
                ("workflow/processInstances", 1)
            ]
        );
        assert_eq!(pacing.waited, Duration::from_millis(50));
    }
}

//! Client-wide pacing: the calls-per-second limiter and the pause DingTalk's throttling imposes.

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

use super::error::{DingTalkError, MAX_IN_CALL_WAIT};

/// Call slots shared with other processes that call DingTalk as the same app (several hosts):
/// DingTalk's limit is per app and API, so each call waits for a slot no other process holds.
pub trait SharedPace: Send + Sync {
    /// Waits until a call to `endpoint` may be sent. `Err` (a reason) when no shared slot can
    /// be had; the limiter then paces this process on its own.
    fn until_slot(
        &self,
        endpoint: &'static str,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;
}

/// Spacing of calls over the limit's (see [`Limiter::new`]).
const SPACING_MARGIN: f64 = 1.02;

/// Shared by all clones of one client, hence by all workers of one app.
pub(super) struct Limiter {
    /// One pace per API, as DingTalk counts its limit per app and API.
    rate: Option<DefaultKeyedRateLimiter<&'static str>>,
    /// Slots shared with other processes, when set; the per-process pace is then only the
    /// fallback for when they cannot be had.
    shared: OnceLock<Arc<dyn SharedPace>>,
    /// Set when DingTalk answers "too fast"; every call waits for it, so one throttle answer
    /// slows all workers instead of each finding out on its own.
    paused_until: Mutex<Option<Instant>>,
}

impl Limiter {
    /// `per_sec` calls per second per API, evenly spaced; 0 means unlimited. No burst: after
    /// an idle spell a burst would send up to twice the rate within one second, which is
    /// exactly what DingTalk's per-second counter punishes.
    ///
    /// Calls are spaced [`SPACING_MARGIN`] wider than the limit: a call reaches DingTalk a few
    /// milliseconds after its turn, by an amount that varies from call to call, and DingTalk
    /// counts calls in one-second windows; spaced exactly at the limit, a window that opens
    /// with a late call can close after an early 21st, and one throttle answer pauses every
    /// call for a second. Twenty calls 2 % wider leave 20 ms of slack.
    pub(super) fn new(per_sec: u32) -> Self {
        Self {
            rate: NonZeroU32::new(per_sec).and_then(|n| {
                let period = Duration::from_secs_f64(SPACING_MARGIN / f64::from(n.get()));
                Quota::with_period(period)
                    .map(|quota| RateLimiter::keyed(quota.allow_burst(NonZeroU32::MIN)))
            }),
            shared: OnceLock::new(),
            paused_until: Mutex::new(None),
        }
    }

    /// Paces calls through `pace` from now on (once; a second pace is ignored). Only with a
    /// rate limit: an unlimited client has nothing to share.
    pub(super) fn share(&self, pace: Arc<dyn SharedPace>) {
        if self.rate.is_some() {
            let _ = self.shared.set(pace);
        }
    }

    /// Waits until a call may be sent. A pause longer than an in-call retry may wait fails
    /// at once with [`DingTalkError::Paused`], so the queue reschedules instead of a worker
    /// sleeping for minutes.
    pub(super) async fn ready(&self, endpoint: &'static str) -> Result<(), DingTalkError> {
        let started = Instant::now();
        let ready = self.turn(endpoint).await;
        super::pacing::record(endpoint, started.elapsed());
        ready
    }

    async fn turn(&self, endpoint: &'static str) -> Result<(), DingTalkError> {
        if let Some(remaining) = self.pause_remaining() {
            if remaining > MAX_IN_CALL_WAIT {
                return Err(DingTalkError::Paused {
                    endpoint,
                    retry_after: remaining,
                });
            }
            tokio::time::sleep(remaining).await;
        }
        if let Some(shared) = self.shared.get() {
            match shared.until_slot(endpoint).await {
                Ok(()) => return Ok(()),
                Err(reason) => {
                    tracing::warn!(endpoint, %reason, "no shared call slot; pacing this process alone");
                }
            }
        }
        if let Some(rate) = &self.rate {
            rate.until_key_ready(&endpoint).await;
        }
        Ok(())
    }

    /// Holds back every call for `retry_after` (extends, never shortens, a running pause).
    pub(super) fn pause(&self, retry_after: Duration) {
        let until = Instant::now() + retry_after;
        let mut paused = self
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if paused.is_none_or(|current| current < until) {
            *paused = Some(until);
        }
    }

    fn pause_remaining(&self) -> Option<Duration> {
        let paused = self
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        paused
            .map(|until| until.saturating_duration_since(Instant::now()))
            .filter(|remaining| !remaining.is_zero())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    #[tokio::test]
    async fn short_pause_is_awaited_long_pause_fails_fast() {
        let limiter = Limiter::new(0);
        limiter.pause(Duration::from_millis(300));
        let start = Instant::now();
        limiter.ready("e").await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(300));

        limiter.pause(Duration::from_secs(30));
        limiter.pause(Duration::from_secs(5)); // must not shorten the running pause
        let err = limiter.ready("e").await.unwrap_err();
        let DingTalkError::Paused { retry_after, .. } = err else {
            panic!("{err:?}")
        };
        assert!(retry_after > Duration::from_secs(29));
    }

    #[tokio::test]
    async fn rate_limit_spaces_calls_evenly_per_api() {
        let limiter = Limiter::new(10);
        let start = std::time::Instant::now();
        for _ in 0..6 {
            limiter.ready("e").await.unwrap();
        }
        // No burst: the first call at once, then one every 100 ms.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
        // Another API has its own pace: its first call is ready at the first poll.
        assert!(limiter.ready("f").now_or_never().is_some_and(|r| r.is_ok()));
    }
}

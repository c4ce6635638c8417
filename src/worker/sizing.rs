//! How many jobs run at once when `[worker] concurrency` is not set: as many as the DingTalk
//! rate limiter can feed, by Little's law. The busiest API a job calls sets the rate jobs can
//! finish at (`rate_limit_per_sec` / its calls per job); each job spends some time doing its
//! own work (calls answered, uploads, the database) beside the time it waits for the
//! limiter's turn; keeping rate × that time jobs in flight, with headroom, leaves the limiter
//! a queue to draw from and never idle. Uploads spend no API budget, so a slow one only makes
//! the time longer and the pool larger: it cannot hold the budget hostage.

use std::collections::BTreeMap;
use std::sync::PoisonError;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::MissedTickBehavior;

use super::Worker;
use crate::dingtalk::Pacing;

/// In-flight jobs over what Little's law gives: the queue at the limiter.
const HEADROOM: f64 = 2.0;
/// Weight of the newest job in the running means.
const SMOOTHING: f64 = 0.1;
/// Fewest jobs in flight (below the maximum).
const MIN_SLOTS: u32 = 2;
/// How often the pool is resized.
const RESIZE_EVERY: Duration = Duration::from_secs(1);
/// Jobs in flight before the first run was measured (at most the maximum): enough for a
/// backlog against DingTalk's usual latencies, so its first seconds are not lost.
pub(super) const START_SLOTS: u32 = 32;

/// Running means over finished runs of jobs.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Sizing {
    runs: u64,
    /// Seconds a run spends on its own work (not waiting for the limiter).
    busy_secs: f64,
    /// Calls per run, by API.
    calls: BTreeMap<&'static str, f64>,
}

impl Sizing {
    /// Adds a run that took `elapsed` and asked `pacing` of the limiter.
    pub(super) fn record(&mut self, elapsed: Duration, pacing: &Pacing) {
        let busy = elapsed.saturating_sub(pacing.waited).as_secs_f64();
        let weight = if self.runs == 0 { 1.0 } else { SMOOTHING };
        self.runs += 1;
        self.busy_secs += weight * (busy - self.busy_secs);
        for calls in self.calls.values_mut() {
            *calls *= 1.0 - weight;
        }
        for (&api, &count) in &pacing.calls {
            *self.calls.entry(api).or_default() += weight * f64::from(count);
        }
    }

    /// Jobs to keep in flight for `rate_per_api` calls/s per API (0: unlimited), between
    /// [`MIN_SLOTS`] and `max`; `None` until a run was measured.
    pub(super) fn slots(&self, rate_per_api: u32, max: u32) -> Option<u32> {
        if self.runs == 0 {
            return None;
        }
        let busiest = self.calls.values().copied().fold(0.0, f64::max);
        if rate_per_api == 0 || busiest <= 0.0 {
            // Nothing paces the jobs: the limit is the pool's own.
            return Some(max);
        }
        let jobs_per_sec = f64::from(rate_per_api) / busiest;
        let wanted = (jobs_per_sec * self.busy_secs * HEADROOM).ceil() as u32;
        // With fast answers Little's law asks for a handful of jobs, whose calls then arrive
        // in step; a second's worth of one API's calls keeps the limiter's queue from
        // running dry between them.
        let floor = rate_per_api.max(MIN_SLOTS);
        Some(wanted.max(floor).min(max))
    }
}

/// The pool's slots: a semaphore resized towards the wanted size. Shrinking takes back only
/// free permits; the rest come back as jobs finish, at later ticks.
pub(super) struct Slots {
    /// Permits the semaphore hands out in all (free and held).
    total: u32,
}

impl Slots {
    pub(super) fn new(total: u32) -> Self {
        Self { total }
    }

    /// Moves `semaphore` towards `wanted` permits; returns the total now.
    pub(super) fn resize(&mut self, semaphore: &Semaphore, wanted: u32) -> u32 {
        if wanted > self.total {
            semaphore.add_permits((wanted - self.total) as usize);
            self.total = wanted;
        } else if wanted < self.total {
            let taken = semaphore.forget_permits((self.total - wanted) as usize);
            self.total -= u32::try_from(taken).unwrap_or(0);
        }
        self.total
    }
}

impl Worker {
    /// Counts a finished run of a job for the pool's size.
    pub(super) fn record_run(&self, elapsed: Duration, pacing: &Pacing) {
        self.inner
            .sizing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(elapsed, pacing);
    }

    /// Resizes the pool once a second while it runs (aborted by the pool).
    pub(super) async fn adapt(self, semaphore: std::sync::Arc<Semaphore>, max: u32) {
        let inner = &self.inner;
        let mut slots = Slots::new(inner.slots.load(std::sync::atomic::Ordering::Acquire));
        let mut tick = tokio::time::interval(RESIZE_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let wanted = inner
                .sizing
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .slots(inner.rate_per_api, max);
            if let Some(wanted) = wanted {
                let before = slots.total;
                let now = slots.resize(&semaphore, wanted);
                inner.slots.store(now, std::sync::atomic::Ordering::Release);
                if now != before {
                    tracing::debug!(from = before, to = now, wanted, "concurrency resized");
                    inner.wake.notify_one();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(busy_ms: u64, waited_ms: u64, calls: &[(&'static str, u32)]) -> (Duration, Pacing) {
        (
            Duration::from_millis(busy_ms + waited_ms),
            Pacing {
                calls: calls.iter().copied().collect(),
                waited: Duration::from_millis(waited_ms),
            },
        )
    }

    #[test]
    fn the_pool_is_the_binding_rate_times_the_busy_time_with_headroom() {
        let mut sizing = Sizing::default();
        assert_eq!(sizing.slots(20, 64), None, "nothing measured yet");
        // Two files per job: uploadInfos and commit twice, the create once; 2 s of calls
        // answered, whatever it waited on top.
        let (elapsed, pacing) = run(2_000, 3_000, &[("upload", 2), ("commit", 2), ("create", 1)]);
        sizing.record(elapsed, &pacing);
        // 20 / 2 = 10 jobs/s × 2 s × 2 = 40.
        assert_eq!(sizing.slots(20, 64), Some(40));
        assert_eq!(sizing.slots(20, 16), Some(16), "never above the maximum");
        assert_eq!(sizing.slots(0, 64), Some(64), "no rate limit: the maximum");
    }

    #[test]
    fn waiting_for_the_limiter_does_not_grow_the_pool() {
        let mut quiet = Sizing::default();
        let mut queued = Sizing::default();
        let (elapsed, pacing) = run(1_500, 0, &[("create", 1)]);
        quiet.record(elapsed, &pacing);
        let (elapsed, pacing) = run(1_500, 9_500, &[("create", 1)]);
        queued.record(elapsed, &pacing);
        assert_eq!(quiet.slots(20, 1024), queued.slots(20, 1024));
        // 20 jobs/s × 1.5 s × 2.
        assert_eq!(quiet.slots(20, 1024), Some(60));
    }

    #[test]
    fn fast_answers_still_keep_a_seconds_worth_of_calls_in_flight() {
        let mut sizing = Sizing::default();
        let (elapsed, pacing) = run(100, 0, &[("upload", 2), ("create", 1)]);
        sizing.record(elapsed, &pacing);
        // Little's law: 10 jobs/s × 0.1 s × 2 = 2; the floor is the API's 20 calls.
        assert_eq!(sizing.slots(20, 64), Some(20));
        assert_eq!(sizing.slots(20, 8), Some(8), "the maximum still wins");
    }

    #[test]
    fn the_means_follow_newer_runs_gradually() {
        let mut sizing = Sizing::default();
        let (elapsed, pacing) = run(1_000, 0, &[("create", 1)]);
        sizing.record(elapsed, &pacing);
        let (elapsed, pacing) = run(3_000, 0, &[("create", 1), ("commit", 3)]);
        sizing.record(elapsed, &pacing);
        // busy 1 + 0.1 × (3 − 1) = 1.2 s; commit 0.3, create 1.0 calls per run.
        assert!((sizing.busy_secs - 1.2).abs() < 1e-9);
        assert!((sizing.calls["commit"] - 0.3).abs() < 1e-9);
        assert!((sizing.calls["create"] - 1.0).abs() < 1e-9);
        // 20 / 1.0 × 1.2 × 2 = 48.
        assert_eq!(sizing.slots(20, 64), Some(48));
    }

    #[tokio::test]
    async fn resizing_adds_permits_at_once_and_takes_back_only_free_ones() {
        let semaphore = std::sync::Arc::new(Semaphore::new(4));
        let mut slots = Slots::new(4);
        assert_eq!(slots.resize(&semaphore, 10), 10);
        assert_eq!(semaphore.available_permits(), 10);
        let held = semaphore.clone().acquire_many_owned(8).await.unwrap();
        assert_eq!(
            slots.resize(&semaphore, 3),
            8,
            "two free permits taken back"
        );
        drop(held);
        assert_eq!(
            slots.resize(&semaphore, 3),
            3,
            "the rest once the jobs finished"
        );
        assert_eq!(semaphore.available_permits(), 3);
    }
}

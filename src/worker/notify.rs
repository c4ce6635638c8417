//! sd_notify: tells systemd (when it set `NOTIFY_SOCKET`) that the pool is ready, alive,
//! what it is doing, and that it is stopping.

use std::time::Duration;

use sd_notify::NotifyState;

use crate::queue::Depth;

/// How often the claim loop reports its status when systemd's watchdog does not ask for more.
const STATUS_INTERVAL: Duration = Duration::from_secs(5);
/// Shortest status interval, however short the watchdog.
const MIN_STATUS_INTERVAL: Duration = Duration::from_millis(50);
/// Extra stop time asked for beyond the drain's own deadline, for releasing leases and exiting.
pub(crate) const STOP_MARGIN: Duration = Duration::from_secs(5);

/// Sends notifications, or nothing when not started by systemd (or not asked to).
#[derive(Debug, Clone, Default)]
pub(crate) struct Notifier {
    enabled: bool,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Speaks sd_notify if `NOTIFY_SOCKET` is set; pings the watchdog if `WATCHDOG_USEC` asks.
    pub(crate) fn from_env() -> Notifier {
        Notifier {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
            watchdog: sd_notify::watchdog_enabled(),
        }
    }

    /// Sends nothing.
    pub(crate) fn disabled() -> Notifier {
        Notifier::default()
    }

    /// How often the claim loop should report: half the watchdog period (systemd's advice),
    /// and at least every `STATUS_INTERVAL` (5 s).
    pub(crate) fn status_interval(&self) -> Duration {
        self.watchdog
            .filter(|_| self.enabled)
            .map_or(STATUS_INTERVAL, |period| (period / 2).min(STATUS_INTERVAL))
            .max(MIN_STATUS_INTERVAL)
    }

    /// Migrations and lease recovery are done: the pool claims from now on.
    pub(crate) fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// A status line, with a watchdog ping when the database just answered.
    pub(crate) fn status(&self, status: &str, alive: bool) {
        if alive && self.watchdog.is_some() {
            self.send(&[NotifyState::Watchdog, NotifyState::Status(status)]);
        } else {
            self.send(&[NotifyState::Status(status)]);
        }
    }

    /// Shutdown began; `extend` asks for that much more stop time while a drain progresses.
    pub(crate) fn stopping(&self, status: &str, extend: Option<Duration>) {
        match extend {
            Some(extend) => self.send(&[
                NotifyState::Stopping,
                NotifyState::Status(status),
                NotifyState::ExtendTimeoutUsec(usec(extend)),
            ]),
            None => self.send(&[NotifyState::Stopping, NotifyState::Status(status)]),
        }
    }

    /// The drain made progress and needs up to `extend` more.
    pub(crate) fn extend(&self, status: &str, extend: Duration) {
        self.send(&[
            NotifyState::Status(status),
            NotifyState::ExtendTimeoutUsec(usec(extend)),
        ]);
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            tracing::debug!(error = %e, "sd_notify failed");
        }
    }
}

fn usec(duration: Duration) -> u32 {
    u32::try_from(duration.as_micros()).unwrap_or(u32::MAX)
}

/// The one-line status systemd shows: what runs, what waits, and the quota.
pub(crate) fn status_line(
    in_flight: usize,
    concurrency: u32,
    depth: &Depth,
    quota: Option<(u64, u64)>,
) -> String {
    let mut line = format!(
        "running {in_flight}/{concurrency} jobs; {} queued ({} due)",
        depth.queued, depth.due
    );
    if let Some((used, budget)) = quota {
        line.push_str(&format!("; DingTalk calls this month {used}/{budget}"));
        if used >= budget {
            line.push_str(": budget reached, not claiming");
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_names_running_queued_and_a_reached_budget() {
        let depth = Depth {
            queued: 12,
            due: 5,
            oldest_due_at: None,
            running: 3,
        };
        assert_eq!(
            status_line(3, 8, &depth, None),
            "running 3/8 jobs; 12 queued (5 due)"
        );
        assert_eq!(
            status_line(0, 8, &depth, Some((5000, 5000))),
            "running 0/8 jobs; 12 queued (5 due); DingTalk calls this month 5000/5000: budget reached, not claiming"
        );
    }

    #[test]
    fn the_status_interval_is_half_the_watchdog_and_at_most_five_seconds() {
        let notifier = Notifier {
            enabled: true,
            watchdog: Some(Duration::from_secs(3)),
        };
        assert_eq!(notifier.status_interval(), Duration::from_millis(1500));
        let slow = Notifier {
            enabled: true,
            watchdog: Some(Duration::from_secs(60)),
        };
        assert_eq!(slow.status_interval(), STATUS_INTERVAL);
        assert_eq!(Notifier::disabled().status_interval(), STATUS_INTERVAL);
    }
}

//! The reconnect loop: a fresh ticket and socket after every ended connection, jittered
//! exponential backoff after failures, until shutdown or rejected credentials.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::session::{End, Session, connect, tls_config};
use super::{Delivery, StreamError, StreamStatus, StreamTiming};
use crate::dingtalk::{DingTalk, DingTalkError, ErrorClass};

/// A Stream mode client for one app; see the module documentation for the caller's part.
pub(crate) struct Stream {
    client: DingTalk,
    timing: StreamTiming,
    status: Arc<StreamStatus>,
}

impl Stream {
    /// Uses `client`'s API base, app key, secret and timeouts.
    pub(crate) fn new(client: DingTalk) -> Self {
        Self {
            client,
            timing: StreamTiming::default(),
            status: Arc::default(),
        }
    }

    /// Replaces the default backoff and liveness timings.
    #[cfg(test)]
    pub(crate) fn with_timing(mut self, timing: StreamTiming) -> Self {
        self.timing = timing;
        self
    }

    /// The live state of this stream, also after [`Stream::run`] took it.
    pub(crate) fn status(&self) -> Arc<StreamStatus> {
        Arc::clone(&self.status)
    }

    /// Connects and keeps reconnecting, handing every instance change to `deliveries`.
    /// Returns `Ok` once `shutdown` is cancelled (promptly: no wait outlasts it) or the
    /// receiver of `deliveries` is dropped, and an error only when DingTalk rejects the app's
    /// credentials. A full `deliveries` channel does not block the socket: the change is
    /// acked `LATER` and comes again.
    pub(crate) async fn run(
        self,
        deliveries: mpsc::Sender<Delivery>,
        shutdown: CancellationToken,
    ) -> Result<(), StreamError> {
        let tls = tls_config().map_err(StreamError::Tls)?;
        let timing = &self.timing;
        let connect_limit = self.client.inner.settings.request_timeout;
        let mut failures: u32 = 0;
        let mut wait_at_least = Duration::ZERO;
        loop {
            if failures > 0 {
                let delay = backoff(timing, failures, rand::rng().random()).max(wait_at_least);
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(delay) => {}
                }
            }
            wait_at_least = Duration::ZERO;

            let opened = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                opened = self.client.open_stream() => opened,
            };
            let ticket = match opened {
                Ok(ticket) => ticket,
                Err(e) if e.is_credentials_rejected() => {
                    let app_key = self.client.inner.settings.app_key.clone();
                    error!(%app_key, error = %e, "DingTalk refused the app's credentials for Stream mode; not retrying");
                    return Err(StreamError::CredentialsRejected { app_key, source: e });
                }
                Err(e) => {
                    log_open_failure(&e, failures);
                    if let ErrorClass::Throttled { retry_after } = e.class() {
                        wait_at_least = retry_after;
                    }
                    failures = failures.saturating_add(1);
                    continue;
                }
            };

            let connected = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                connected = tokio::time::timeout(connect_limit, connect(&ticket, &tls)) => connected,
            };
            let socket = match connected {
                Ok(Ok(socket)) => socket,
                Ok(Err(reason)) => {
                    warn!(endpoint = %ticket.endpoint, %reason, "cannot connect to DingTalk's Stream endpoint");
                    failures = failures.saturating_add(1);
                    continue;
                }
                Err(_) => {
                    warn!(endpoint = %ticket.endpoint, limit_ms = connect_limit.as_millis(), "connecting to DingTalk's Stream endpoint timed out");
                    failures = failures.saturating_add(1);
                    continue;
                }
            };

            self.status.set_connected(true);
            info!(endpoint = %ticket.endpoint, reconnects = self.status.reconnects(), "DingTalk Stream connected");
            let since = Instant::now();
            let session = Session {
                deliveries: &deliveries,
                shutdown: &shutdown,
                status: &self.status,
                timing,
            };
            let end = session.run(socket).await;
            self.status.set_connected(false);
            match end {
                End::Shutdown | End::ReceiverGone => {
                    info!(reason = %end, "DingTalk Stream stopped");
                    return Ok(());
                }
                _ => info!(reason = %end, "DingTalk Stream disconnected; reconnecting"),
            }
            // A connection that held resets the backoff; one that keeps dropping at once
            // must not turn into a tight loop.
            failures = if since.elapsed() >= timing.stable_after {
                0
            } else {
                failures.saturating_add(1)
            };
        }
    }
}

/// Permanent-looking failures (permission, IP whitelist) are errors an operator must see;
/// they are retried all the same, as the console can fix them without a restart.
fn log_open_failure(error: &DingTalkError, failures: u32) {
    if error.class() == ErrorClass::Permanent {
        error!(error = %error, failures, "cannot open a DingTalk Stream connection; retrying");
    } else {
        warn!(error = %error, failures, "cannot open a DingTalk Stream connection; retrying");
    }
}

/// The wait before attempt `failures + 1`: `first_retry` doubling per failure up to
/// `max_retry`, then scaled by `jitter` (0..1) into its upper half, so many workers that lost
/// the gateway together do not come back together.
fn backoff(timing: &StreamTiming, failures: u32, jitter: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    let full = timing
        .first_retry
        .saturating_mul(1 << doublings)
        .min(timing.max_retry);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_first_retry_up_to_the_cap_with_jitter_in_the_upper_half() {
        let timing = StreamTiming::default();
        let full = |failures| backoff(&timing, failures, 1.0);
        assert_eq!(full(1), Duration::from_secs(1));
        assert_eq!(full(2), Duration::from_secs(2));
        assert_eq!(full(6), Duration::from_secs(32));
        assert_eq!(full(7), Duration::from_secs(60));
        assert_eq!(full(u32::MAX), Duration::from_secs(60));
        assert_eq!(backoff(&timing, 3, 0.0), Duration::from_secs(2));
        assert_eq!(backoff(&timing, 3, 0.5), Duration::from_secs(3));
    }
}

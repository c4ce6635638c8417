//! Sending decisions from the outbox (`outcome_deliveries`) to producers, signed, until each
//! is accepted with a 2xx or is too old. A send is claimed before it starts, past its own
//! timeout, so a process killed mid-send leaves it to be sent again: at least once, with
//! the delivery id for the receiver to dedupe.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream;
use tokio_util::sync::CancellationToken;

use super::Following;
use super::policy::redeliver_at;
use crate::queue::now_ms;
use crate::queue::outcome::{DueDelivery, Sent};
use crate::webhook::Webhook;

/// Sends claimed at once.
const BATCH: i64 = 32;
/// Sends in flight at once.
const PARALLEL: usize = 8;
/// How long connecting may take (within the send's whole limit).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A claim outlasts its send by this much, so no other process sends it meanwhile.
const CLAIM_MARGIN: Duration = Duration::from_secs(5);
/// Between looks at the outbox while it has nothing due.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// Sends due notifications until `shutdown`. Without a signing secret nothing is sent: the
/// notifications wait in the outbox, and a warning says why.
pub(super) async fn deliver(following: Following, shutdown: CancellationToken) {
    let Some(secret) = following.settings.webhook_secret.clone() else {
        warn_if_waiting(&following).await;
        return;
    };
    let timeout = following.settings.webhook_timeout;
    let claim_lease_ms = i64::try_from((timeout + CLAIM_MARGIN).as_millis()).unwrap_or(i64::MAX);
    let webhook = match Webhook::new(CONNECT_TIMEOUT.min(timeout), timeout) {
        Ok(webhook) => webhook,
        Err(e) => {
            tracing::error!(error = %e, "outcome notifications: cannot build the HTTP client");
            return;
        }
    };
    loop {
        let due = match following
            .queue
            .claim_deliveries(BATCH, claim_lease_ms, now_ms())
            .await
        {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "outcome notifications: could not claim");
                Vec::new()
            }
        };
        if due.is_empty() {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(IDLE_TICK) => continue,
            }
        }
        let sends = stream::iter(due)
            .map(|delivery| send(&following, &webhook, &secret, delivery))
            .buffer_unordered(PARALLEL)
            .collect::<Vec<()>>();
        tokio::select! {
            // A send cut short is sent again once its claim lapses.
            () = shutdown.cancelled() => return,
            _ = sends => {}
        }
    }
}

/// One send and the write of how it ended.
async fn send(
    following: &Following,
    webhook: &Webhook,
    secret: &crate::secret::Secret,
    delivery: DueDelivery,
) {
    let answer = webhook
        .deliver(
            &delivery.url,
            &delivery.delivery_id,
            delivery.body.as_bytes(),
            secret,
            now_ms(),
        )
        .await;
    let now = now_ms();
    let sent = match answer {
        Ok(delivered) => {
            tracing::info!(job_id = delivery.job_id, delivery_id = %delivery.delivery_id, status = delivered.status, "outcome notification delivered");
            Sent::Delivered {
                status: delivered.status,
            }
        }
        Err(e) => {
            let status = e.status();
            let error = e.to_string();
            let retry = e.retryable().then(|| {
                redeliver_at(
                    delivery.created_at,
                    delivery.attempts,
                    &following.settings.webhook_retry(),
                    now,
                    rand::random::<f64>(),
                )
            });
            match retry.flatten() {
                Some(at) => {
                    tracing::warn!(job_id = delivery.job_id, delivery_id = %delivery.delivery_id, error = %error, "outcome notification not accepted; will send again");
                    Sent::Retry { status, error, at }
                }
                None => {
                    tracing::error!(job_id = delivery.job_id, delivery_id = %delivery.delivery_id, error = %error, "outcome notification given up");
                    Sent::GiveUp { status, error }
                }
            }
        }
    };
    if let Err(e) = following.queue.finish_delivery(&delivery, &sent, now).await {
        tracing::warn!(delivery_id = %delivery.delivery_id, error = %e, "outcome notifications: could not record a send");
    }
}

/// Says so once at start when notifications are waiting that cannot be signed.
async fn warn_if_waiting(following: &Following) {
    let waiting = following
        .queue
        .outcome_stats()
        .await
        .ok()
        .and_then(|stats| {
            stats
                .deliveries
                .into_iter()
                .find(|(status, _)| status == "pending")
        })
        .map_or(0, |(_, count)| count);
    if waiting > 0 || following.settings.follow_up.default_url.is_some() {
        tracing::warn!(
            waiting,
            "outcome notifications are not sent: no signing secret ([outcome] \
             webhook_secret_file, or the webhook_secret_env variable); they wait in the outbox"
        );
    }
}

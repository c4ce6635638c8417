//! Decisions as they happen, from DingTalk's Stream (`bpms_instance_change` events): the
//! events waiting when a batch starts are recorded in one transaction, and each is acked
//! only after that commit (`LATER` when it failed, so DingTalk sends it again).
//!
//! DingTalk redelivers events, sometimes after a correct ack: a decision changes its row
//! only while the row is pending, so an event seen twice records one outcome, and events
//! for instances that are not ours change nothing. Both are acked and forgotten.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Following;
use super::policy::verdict_of_event;
use crate::dingtalk::{Ack, Delivery, Stream};
use crate::queue::outcome::{Decision, LearnedFrom};

/// Events waiting between the socket and the recorder; the socket reader never waits on the
/// database, only on this buffer filling.
const BUFFER: usize = 1024;
/// Events recorded in one transaction at most.
const BATCH: usize = 256;

/// Listens until `shutdown`, reconnecting as the client sees fit.
pub(super) async fn listen(following: Following, shutdown: CancellationToken) {
    let (events, mut received) = mpsc::channel::<Delivery>(BUFFER);
    let stream = Stream::new(following.dingtalk.clone());
    following.worker.watch_stream(stream.status());
    let client = tokio::spawn(stream.run(events, shutdown.clone()));
    loop {
        let first = tokio::select! {
            delivery = received.recv() => delivery,
            () = shutdown.cancelled() => None,
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match received.try_recv() {
                Ok(delivery) => batch.push(delivery),
                Err(_) => break,
            }
        }
        record(&following, batch).await;
    }
    // Events still buffered are dropped unacked: DingTalk sends them again.
    drop(received);
    match client.await {
        Ok(Err(e)) => {
            tracing::error!(error = %e, "DingTalk Stream stopped; outcomes are learned by reading instances only")
        }
        Err(e) if e.is_panic() => tracing::error!(
            "DingTalk Stream client panicked; outcomes are learned by reading instances only"
        ),
        _ => {}
    }
}

/// Records the decisions among `batch` and acks every event.
async fn record(following: &Following, batch: Vec<Delivery>) {
    let mut deciding = Vec::new();
    let mut decisions = Vec::new();
    for delivery in batch {
        let change = &delivery.change;
        match verdict_of_event(change.kind.as_str(), change.result.as_deref()) {
            Some(verdict) => {
                decisions.push(Decision {
                    instance_id: change.instance_id.clone(),
                    verdict,
                    decided_at_ms: change.finish_time_ms,
                    learned_from: LearnedFrom::Stream,
                    records: None,
                });
                deciding.push(delivery);
            }
            // A start or an event type that decides nothing.
            None => delivery.ack(Ack::Success),
        }
    }
    let ack = match following.record(decisions).await {
        Ok(()) => Ack::Success,
        Err(_) => Ack::Later,
    };
    for delivery in deciding {
        delivery.ack(ack);
    }
}

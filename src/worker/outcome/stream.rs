//! Decisions as they happen, from DingTalk's Stream (`bpms_instance_change` events): the
//! events waiting when a batch starts are recorded in one transaction, and each is acked
//! only after that commit (`LATER` when it failed, so DingTalk sends it again).
//!
//! DingTalk redelivers events, sometimes after a correct ack: a decision changes its row
//! only while the row is pending, so an event seen twice records one outcome, and events
//! for instances that are not ours change nothing. Both are acked.
//!
//! A decision can also arrive before the outcome row it is about: an approval decided at
//! once (an automatic flow, an approver deciding within milliseconds) may be announced
//! before the worker has committed the create that made it. So a decision that matched
//! nothing is kept in memory and recorded again for a while; if the process stops
//! meanwhile, reading the instance finds it.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
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
/// How long a decision that matched no pending instance is tried again, and how often.
const HOLD_FOR: Duration = Duration::from_secs(60);
const HOLD_RETRY: Duration = Duration::from_secs(1);
/// Decisions held at most; the oldest go first (instances that are not ours, mostly).
const HOLD_MAX: usize = 10_000;

/// Listens until `shutdown`, reconnecting as the client sees fit.
pub(super) async fn listen(following: Following, shutdown: CancellationToken) {
    let (events, mut received) = mpsc::channel::<Delivery>(BUFFER);
    let stream = Stream::new(following.dingtalk.clone());
    following.worker.watch_stream(stream.status());
    let client = tokio::spawn(stream.run(events, shutdown.clone()));
    let mut held = Held::default();
    loop {
        let first = tokio::select! {
            delivery = received.recv() => match delivery {
                Some(delivery) => delivery,
                None => break,
            },
            () = tokio::time::sleep(HOLD_RETRY), if !held.is_empty() => {
                held.retry(&following).await;
                continue;
            }
            () = shutdown.cancelled() => break,
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match received.try_recv() {
                Ok(delivery) => batch.push(delivery),
                Err(_) => break,
            }
        }
        let unmatched = record(&following, batch).await;
        held.add(unmatched);
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

/// Records the decisions among `batch`, acks every event, and returns the decisions that
/// matched no pending instance.
async fn record(following: &Following, batch: Vec<Delivery>) -> Vec<Decision> {
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
    let (ack, unmatched) = match following.record(decisions).await {
        Ok(unmatched) => (Ack::Success, unmatched),
        Err(_) => (Ack::Later, Vec::new()),
    };
    for delivery in deciding {
        delivery.ack(ack);
    }
    unmatched
}

/// Decisions that matched no pending instance yet, oldest first.
#[derive(Default)]
struct Held(VecDeque<(Instant, Decision)>);

impl Held {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn add(&mut self, decisions: Vec<Decision>) {
        let now = Instant::now();
        for decision in decisions {
            if self.0.len() == HOLD_MAX {
                self.0.pop_front();
            }
            self.0.push_back((now, decision));
        }
    }

    /// Records the held decisions again; keeps those that still match nothing until
    /// [`HOLD_FOR`] has passed since they arrived.
    async fn retry(&mut self, following: &Following) {
        let now = Instant::now();
        self.0.retain(|(at, _)| now.duration_since(*at) < HOLD_FOR);
        if self.0.is_empty() {
            return;
        }
        let (arrived, decisions): (Vec<Instant>, Vec<Decision>) = self.0.drain(..).unzip();
        let Ok(unmatched) = following.record(decisions.clone()).await else {
            // The database is away: keep them all for the next try.
            self.0 = arrived.into_iter().zip(decisions).collect();
            return;
        };
        // `record` keeps the order of what it was given.
        let mut unmatched = unmatched.into_iter().peekable();
        for (at, decision) in arrived.into_iter().zip(decisions) {
            if unmatched.peek() == Some(&decision) {
                unmatched.next();
                self.0.push_back((at, decision));
            }
        }
    }
}

//! Reading pending instances (§5.9) on their schedule: the safety net under the Stream, and
//! the only source of decisions when the Stream is off. Reads go through the DingTalk
//! client's limiter and call counts like every other call, and claim at most the configured
//! share of the read API's rate per second.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream;
use tokio_util::sync::CancellationToken;

use super::Following;
use super::policy::{NextCheck, verdict_of_instance};
use crate::dingtalk::{DingTalkError, InstanceInfo};
use crate::queue::outcome::{CheckDone, Decision, DueCheck, LearnedFrom};
use crate::queue::{Verdict, now_ms};

/// How long a claimed read may take before another process may read the instance again.
const CHECK_LEASE_MS: i64 = 120_000;
/// Between claims while reads are due.
const BUSY_TICK: Duration = Duration::from_secs(1);
/// Between claims while none were due: a pending instance is read a minute after creation
/// at the earliest, so a few seconds late costs nothing and idles the database.
const IDLE_TICK: Duration = Duration::from_secs(5);

/// What one read found.
enum Found {
    Decided(Decision),
    NotDecided(CheckDone),
}

/// Reads due instances until `shutdown`.
pub(super) async fn poll(following: Following, shutdown: CancellationToken) {
    let per_tick = following.reads_per_tick();
    loop {
        let claimed = match following
            .queue
            .claim_checks(per_tick, CHECK_LEASE_MS, now_ms())
            .await
        {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "outcome reads: could not claim due instances");
                Vec::new()
            }
        };
        let tick = if claimed.is_empty() {
            IDLE_TICK
        } else {
            BUSY_TICK
        };
        let started = tokio::time::Instant::now();
        if !claimed.is_empty() {
            read_and_record(&following, claimed).await;
        }
        // The share is per second: a decision wanting its records cuts an idle wait short,
        // but the next claim still comes a busy tick after this one at the earliest.
        let records_wanted = async {
            following.records_wanted.notified().await;
            tokio::time::sleep_until(started + BUSY_TICK).await;
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep_until(started + tick) => {}
            () = records_wanted => {}
        }
    }
}

/// Reads `claimed` (a few at once; the limiter paces them) and records what they found:
/// decisions in one transaction, the rest one fenced write each.
async fn read_and_record(following: &Following, claimed: Vec<DueCheck>) {
    let found: Vec<Found> = stream::iter(claimed)
        .map(|due| read(following, due))
        .buffer_unordered(8)
        .collect()
        .await;
    let mut decisions = Vec::new();
    for found in found {
        match found {
            Found::Decided(decision) => decisions.push(decision),
            Found::NotDecided(done) => {
                if let Err(e) = following.queue.finish_check(&done, now_ms()).await {
                    tracing::warn!(job_id = done.job_id, error = %e, "outcome reads: could not record a read");
                }
            }
        }
    }
    // A failure is logged; the reads' claims lapse and the instances are read again.
    let _ = following.record(decisions).await;
}

/// One read of one instance, and what it means.
async fn read(following: &Following, due: DueCheck) -> Found {
    let now = now_ms();
    let answer = following.dingtalk.get_instance(&due.instance_id).await;
    let pending = due.outcome == Verdict::Pending.as_str();
    match answer {
        Ok(info) => {
            let records = Some(records_json(&info));
            match verdict_of_instance(info.outcome()) {
                Some(verdict) if pending => Found::Decided(Decision {
                    instance_id: due.instance_id,
                    verdict,
                    decided_at_ms: info.finish_time_ms(),
                    learned_from: LearnedFrom::Poll,
                    records,
                }),
                // Decided already (by the Stream): this read was for the records.
                _ if !pending => Found::NotDecided(CheckDone {
                    job_id: due.job_id,
                    checks: due.checks,
                    next_check_at: None,
                    records,
                    error: None,
                }),
                _ => match following
                    .schedule
                    .after_pending(due.submitted_at, due.checks, now)
                {
                    NextCheck::At(at) => Found::NotDecided(CheckDone {
                        job_id: due.job_id,
                        checks: due.checks,
                        next_check_at: Some(at),
                        records,
                        error: None,
                    }),
                    NextCheck::GiveUp => Found::Decided(Decision {
                        instance_id: due.instance_id,
                        verdict: Verdict::Unknown,
                        decided_at_ms: None,
                        learned_from: LearnedFrom::Age,
                        records,
                    }),
                },
            }
        }
        Err(e) if e.instance_not_found() && pending => Found::Decided(Decision {
            instance_id: due.instance_id,
            verdict: Verdict::Deleted,
            decided_at_ms: None,
            learned_from: LearnedFrom::Poll,
            records: None,
        }),
        Err(e) => {
            tracing::warn!(instance_id = %due.instance_id, error = %e, "outcome reads: reading the instance failed");
            let next_check_at = if pending {
                Some(
                    following
                        .schedule
                        .after_error(due.submitted_at, due.checks, now),
                )
            } else {
                // Only the records were missing: tried again on the pending schedule, and
                // no more once it would have given up.
                match following
                    .schedule
                    .after_pending(due.submitted_at, due.checks, now)
                {
                    NextCheck::At(at) => Some(at),
                    NextCheck::GiveUp => None,
                }
            };
            Found::NotDecided(CheckDone {
                job_id: due.job_id,
                checks: due.checks,
                next_check_at,
                records: None,
                error: Some(error_text(&e)),
            })
        }
    }
}

/// The approvers' tasks and operation records, as stored in `outcomes.records`.
fn records_json(info: &InstanceInfo) -> String {
    serde_json::json!({
        "status": info.status(),
        "result": info.result(),
        "finish_time": info.finish_time(),
        "tasks": info.tasks(),
        "operation_records": info.operation_records(),
    })
    .to_string()
}

fn error_text(error: &DingTalkError) -> String {
    let text = error.to_string();
    if text.chars().count() > 500 {
        text.chars().take(500).collect()
    } else {
        text
    }
}

//! `retry` and `cancel`: steering jobs by id, or every job a filter matches (the recovery
//! after an outage), each saying what it will touch first and offering a dry run.

use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::duration::{ms_before, parse_duration};
use super::{CliError, open_existing_queue};
use crate::approval::CREATE_STEP;
use crate::config::Config;
use crate::queue::{BulkAction, BulkDone, JobFilter, JobId, JobStatus, Queue, now_ms};

/// Jobs one bulk call takes: one transaction holds the write lock for a bounded time.
const BULK_CAP: i64 = 500;
/// Ids a dry run lists.
const DRY_RUN_SHOWN: i64 = 20;

/// Examples shown by `retry --help`.
pub(crate) const RETRY_EXAMPLES: &str = "Examples:
  approval-worker retry 42      # a failed or cancelled job, from its checkpoint
  approval-worker retry 42 43 57
  approval-worker retry --status failed --since 2h --dry-run    # what it would take
  approval-worker retry --status failed --since 2h --queue invoices --step put

A job whose create may have been sent reconciles before creating, so a retry never makes a
second approval. By filter, only failed and cancelled jobs are taken (--status narrows).";
/// Examples shown by `cancel --help`.
pub(crate) const CANCEL_EXAMPLES: &str = "Examples:
  approval-worker cancel 42     # queued: at once; running: at its next checkpoint
  approval-worker cancel 42 43 57
  approval-worker cancel --queue nightly --status queued --dry-run
  approval-worker cancel --queue nightly --since 30m

By filter, only queued and running jobs are taken (--status narrows).";

/// Which jobs a bulk `retry` or `cancel` takes.
#[derive(Debug, Args)]
pub(crate) struct FilterArgs {
    /// Only jobs with this status.
    #[arg(long)]
    status: Option<JobStatus>,
    /// Only jobs of this queue.
    #[arg(long)]
    queue: Option<String>,
    /// Only jobs at this step (space, upload_info, put, commit, submit).
    #[arg(long)]
    step: Option<String>,
    /// Only jobs created within this long before now, e.g. 90s, 15m, 2h, 7d.
    #[arg(long, value_name = "AGE", value_parser = parse_duration)]
    since: Option<Duration>,
}

impl FilterArgs {
    fn is_empty(&self) -> bool {
        self.status.is_none() && self.queue.is_none() && self.step.is_none() && self.since.is_none()
    }

    fn filter(&self, now_ms: i64) -> JobFilter {
        JobFilter {
            status: self.status,
            queue: self.queue.clone(),
            step: self.step.clone(),
            since_ms: self.since.map(|since| ms_before(now_ms, since)),
            ..JobFilter::default()
        }
    }

    /// The filter in words, as the command line gave it.
    fn describe(&self) -> String {
        let mut terms = Vec::new();
        if let Some(status) = self.status {
            terms.push(format!("status {}", status.as_str()));
        }
        if let Some(queue) = &self.queue {
            terms.push(format!("queue {queue}"));
        }
        if let Some(step) = &self.step {
            terms.push(format!("step {step}"));
        }
        if let Some(since) = self.since {
            terms.push(format!(
                "created in the last {}",
                super::duration::human(since)
            ));
        }
        terms.join(", ")
    }
}

/// Arguments of `retry` and `cancel`.
#[derive(Debug, Args)]
pub(crate) struct SteerArgs {
    /// The job ids; or none, and a filter.
    ids: Vec<JobId>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Say what would be done, and do nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON: an object per job by id, or one summary by filter.
    #[arg(long)]
    json: bool,
}

impl SteerArgs {
    /// Ids or a filter, never both nor neither: a filter is explicit, so a bare `retry`
    /// cannot touch every job.
    fn check(&self, command: &str) -> Result<(), CliError> {
        match (self.ids.is_empty(), self.filter.is_empty()) {
            (true, true) => Err(CliError::Usage(format!(
                "{command}: give job ids, or a filter (--status, --queue, --step, --since)"
            ))),
            (false, false) => Err(CliError::Usage(format!(
                "{command}: give job ids or a filter, not both"
            ))),
            _ => Ok(()),
        }
    }
}

pub(crate) async fn retry(config: &Config, args: SteerArgs) -> Result<(), CliError> {
    args.check("retry")?;
    if let Some(status) = args.filter.status
        && !matches!(status, JobStatus::Failed | JobStatus::Cancelled)
    {
        return Err(CliError::Usage(format!(
            "retry --status {}: only failed and cancelled jobs can be retried",
            status.as_str()
        )));
    }
    let queue = open_existing_queue(config).await?;
    let done = if args.ids.is_empty() {
        by_filter(&queue, BulkAction::Retry, &args).await
    } else if args.dry_run {
        dry_run_ids(&queue, BulkAction::Retry, &args).await
    } else {
        retry_ids(&queue, &args).await
    };
    queue.close().await;
    done
}

pub(crate) async fn cancel(config: &Config, args: SteerArgs) -> Result<(), CliError> {
    args.check("cancel")?;
    if let Some(status) = args.filter.status
        && !matches!(status, JobStatus::Queued | JobStatus::Running)
    {
        return Err(CliError::Usage(format!(
            "cancel --status {}: only queued and running jobs can be cancelled",
            status.as_str()
        )));
    }
    let queue = open_existing_queue(config).await?;
    let done = if args.ids.is_empty() {
        by_filter(&queue, BulkAction::Cancel, &args).await
    } else if args.dry_run {
        dry_run_ids(&queue, BulkAction::Cancel, &args).await
    } else {
        cancel_ids(&queue, &args).await
    };
    queue.close().await;
    done
}

async fn retry_ids(queue: &Queue, args: &SteerArgs) -> Result<(), CliError> {
    let mut refused = Vec::new();
    for &id in &args.ids {
        match queue.retry(id, now_ms()).await {
            Ok(()) if args.json => println!("{}", json!({"id": id, "status": JobStatus::Queued})),
            Ok(()) => println!("job {id} queued again at its checkpoint"),
            Err(e) => refused.push((id, CliError::from(e))),
        }
    }
    each_refusal("retried", args.ids.len(), refused)
}

async fn cancel_ids(queue: &Queue, args: &SteerArgs) -> Result<(), CliError> {
    let mut refused = Vec::new();
    for &id in &args.ids {
        match queue.cancel(id, CREATE_STEP, now_ms()).await {
            Ok(status) => print_cancelled(id, status, args.json),
            Err(e) => refused.push((id, CliError::from(e))),
        }
    }
    each_refusal("cancelled", args.ids.len(), refused)
}

/// What `action` would do to each id: the same status rules as the action itself.
async fn dry_run_ids(queue: &Queue, action: BulkAction, args: &SteerArgs) -> Result<(), CliError> {
    let mut refused = Vec::new();
    for &id in &args.ids {
        let job = match queue.get(id).await {
            Ok(job) => job,
            Err(e) => {
                refused.push((id, CliError::from(e)));
                continue;
            }
        };
        let takes = match action {
            BulkAction::Retry => matches!(job.status.as_str(), "failed" | "cancelled"),
            BulkAction::Cancel => matches!(job.status.as_str(), "queued" | "running"),
        };
        if args.json {
            println!(
                "{}",
                json!({"id": id, "status": job.status, "would": if takes { action.as_str() } else { "refuse" }, "dry_run": true})
            );
        } else if takes {
            println!("job {id} ({}) would be {}", job.status, done_word(action));
        } else {
            println!(
                "job {id} is {}: it would be refused (only {} jobs can be {})",
                job.status,
                takes_what(action),
                done_word(action)
            );
        }
    }
    each_refusal("found", args.ids.len(), refused)
}

/// Counts what `action` takes under the filter, says so, then (unless a dry run) acts in
/// calls of [`BULK_CAP`] jobs until none is left or as many as were counted are done: jobs
/// that start matching meanwhile (new failures) are left for another run rather than chased.
async fn by_filter(queue: &Queue, action: BulkAction, args: &SteerArgs) -> Result<(), CliError> {
    let now = now_ms();
    let filter = args.filter.filter(now);
    let matched = queue.count_for(action, &filter, i64::MAX).await?;
    let described = args.filter.describe();
    let sample = queue
        .list(&JobFilter {
            limit: DRY_RUN_SHOWN,
            ..bulk_listing(action, &filter)
        })
        .await?;
    let ids: Vec<JobId> = sample.iter().map(|job| job.id).collect();
    if args.dry_run || matched == 0 {
        if args.json {
            println!(
                "{}",
                json!({"action": action.as_str(), "filter": described, "matched": matched, "ids": ids, "dry_run": args.dry_run})
            );
        } else {
            println!("{matched} {} jobs match: {described}", takes_what(action));
            if !ids.is_empty() {
                let more = if matched > ids.len() as u64 {
                    ", …"
                } else {
                    ""
                };
                let list: Vec<String> = ids.iter().map(ToString::to_string).collect();
                println!("ids (newest first): {}{more}", list.join(", "));
            }
            if args.dry_run && matched > 0 {
                println!("dry run: nothing was {}", done_word(action));
            }
        }
        return Ok(());
    }
    if !args.json {
        println!(
            "{matched} {} jobs match: {described}; {}",
            takes_what(action),
            acting_word(action)
        );
    }
    let mut total = BulkDone::default();
    loop {
        let now = now_ms();
        let done = match action {
            BulkAction::Retry => queue.bulk_retry(&filter, BULK_CAP, now).await?,
            BulkAction::Cancel => {
                queue
                    .bulk_cancel(&filter, CREATE_STEP, BULK_CAP, now)
                    .await?
            }
        };
        total.acted += done.acted;
        total.flagged += done.flagged;
        total.more = done.more;
        let progressed = done.acted + done.flagged > 0;
        if !done.more || !progressed || total.acted + total.flagged >= matched {
            break;
        }
    }
    if args.json {
        println!(
            "{}",
            json!({"action": action.as_str(), "filter": described, "matched": matched, "acted": total.acted, "flagged": total.flagged, "more": total.more})
        );
    } else {
        match action {
            BulkAction::Retry => println!("{} jobs queued again at their checkpoints", total.acted),
            BulkAction::Cancel => {
                println!("{} jobs cancelled", total.acted);
                if total.flagged > 0 {
                    println!(
                        "{} jobs running (or that may have sent their create) stop at their next \
                         checkpoint",
                        total.flagged
                    );
                }
            }
        }
        if total.more {
            println!("more jobs match now (they arrived meanwhile): run the command again");
        }
    }
    Ok(())
}

/// The listing of jobs the action takes under `filter`: a filter without a status lists
/// every status, so the sample shows the statuses the action applies to first.
fn bulk_listing(action: BulkAction, filter: &JobFilter) -> JobFilter {
    let mut listing = filter.clone();
    if listing.status.is_none() {
        listing.status = Some(match action {
            BulkAction::Retry => JobStatus::Failed,
            BulkAction::Cancel => JobStatus::Queued,
        });
    }
    listing
}

fn takes_what(action: BulkAction) -> &'static str {
    match action {
        BulkAction::Retry => "failed or cancelled",
        BulkAction::Cancel => "queued or running",
    }
}

fn done_word(action: BulkAction) -> &'static str {
    match action {
        BulkAction::Retry => "retried",
        BulkAction::Cancel => "cancelled",
    }
}

fn acting_word(action: BulkAction) -> &'static str {
    match action {
        BulkAction::Retry => "retrying",
        BulkAction::Cancel => "cancelling",
    }
}

fn print_cancelled(id: JobId, status: JobStatus, json: bool) {
    if json {
        let stopping = matches!(status, JobStatus::Running | JobStatus::Queued);
        println!(
            "{}",
            json!({"id": id, "status": status, "cancel_requested": stopping})
        );
        return;
    }
    match status {
        JobStatus::Running => println!(
            "job {id} is running: it stops at its next checkpoint (always before its create)"
        ),
        JobStatus::Queued => println!(
            "job {id} may already have sent its create: the worker reconciles first, then \
             adopts the approval instance if it exists or cancels the job"
        ),
        _ => println!("job {id} cancelled"),
    }
}

/// Reports the jobs an action refused, each with its reason, after acting on the others: the
/// command's error is the only refusal's, or a count naming the worst exit code.
fn each_refusal(
    done: &str,
    asked: usize,
    mut refused: Vec<(JobId, CliError)>,
) -> Result<(), CliError> {
    match refused.len() {
        0 => Ok(()),
        1 if asked == 1 => Err(refused.remove(0).1),
        count => {
            let runtime = refused
                .iter()
                .any(|(_, e)| matches!(e, CliError::Runtime(_) | CliError::Config(_)));
            for (id, e) in &refused {
                eprintln!("job {id}: {e}");
            }
            let message = format!("{count} of {asked} jobs were not {done}");
            Err(if runtime {
                CliError::Runtime(anyhow::anyhow!(message))
            } else {
                CliError::Usage(message)
            })
        }
    }
}

//! `stats`, `prune` and `backup`: the queue as a whole.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

use super::duration::{human, ms_before, parse_duration};
use super::table::{render, time};
use super::{CliError, open_existing_queue};
use crate::config::Config;
use crate::queue::{JobStatus, MonthlyCalls, now_ms, quota_month};

/// Examples shown by `stats --help`.
pub(crate) const STATS_EXAMPLES: &str = "Examples:
  approval-worker stats
  approval-worker stats --json | jq .dingtalk_calls.counted";
/// Examples shown by `prune --help`.
pub(crate) const PRUNE_EXAMPLES: &str = "Examples:
  approval-worker prune --older-than 30d
  approval-worker prune --older-than 7d --status succeeded --dry-run
  approval-worker prune --older-than 2w --json

The job with the highest id is always kept, so new jobs never reuse an id.";
/// Examples shown by `backup --help`.
pub(crate) const BACKUP_EXAMPLES: &str = "Examples:
  approval-worker backup /var/backups/approval-worker-$(date +%F).db

The copy is consistent and taken while workers keep running (SQLite's VACUUM INTO).";

/// `stats` arguments.
#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `prune` arguments.
#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// Delete jobs that finished (succeeded, failed, cancelled) longer ago than this, e.g. 30d.
    #[arg(long, value_name = "AGE", value_parser = parse_duration)]
    older_than: Duration,
    /// Only jobs that ended so (comma-separated: succeeded, failed, cancelled) [default: all
    /// three].
    #[arg(long, value_delimiter = ',', value_parser = finished_status)]
    status: Vec<JobStatus>,
    /// Count what would be deleted, deleting nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// A status a job ends in.
fn finished_status(text: &str) -> Result<JobStatus, String> {
    match text.parse::<JobStatus>()? {
        status @ (JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled) => Ok(status),
        other => Err(format!(
            "{other} jobs have not finished; prune takes succeeded, failed or cancelled"
        )),
    }
}

/// `backup` arguments.
#[derive(Debug, Args)]
pub(crate) struct BackupArgs {
    /// Where to write the copy; must not exist yet.
    path: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn stats(config: &Config, args: StatsArgs) -> Result<(), CliError> {
    let queue = open_existing_queue(config).await?;
    let now = now_ms();
    let stats = queue.stats(now).await?;
    let month = quota_month(now);
    let calls = queue.monthly_calls(&month).await?;
    let outcomes = queue.outcome_stats().await?;
    let paused = queue.paused().await?;
    queue.close().await;
    let app_key = &config.dingtalk.app_key;
    let counted: i64 = calls
        .iter()
        .filter(|c| c.counted && (app_key.is_empty() || &c.app_key == app_key))
        .map(|c| c.calls)
        .sum();
    let budget = config.dingtalk.monthly_call_budget;
    if args.json {
        let out = json!({
            "by_status": stats.by_status.iter().map(|(s, n)| (s.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "by_step": stats.by_step.iter().map(|(status, step, jobs)| json!({"status": status, "step": step, "jobs": jobs})).collect::<Vec<_>>(),
            "succeeded_last_hour": stats.succeeded_last_hour,
            "failed_last_hour": stats.failed_last_hour,
            "oldest_queued": stats.oldest_queued_id.map(|id| json!({"id": id, "created_at": stats.oldest_queued_at})),
            "paused_queues": paused,
            "outcomes": {
                "by_outcome": outcomes.by_outcome.iter().map(|(s, n)| (s.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
                "instance_reads": outcomes.checks,
                "notifications": outcomes.deliveries.iter().map(|(s, n)| (s.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
            },
            "dingtalk_calls": {
                "month": month,
                "counted": counted,
                "budget": budget,
                "by_endpoint": calls,
            },
        });
        println!("{out}");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = stats
        .by_status
        .iter()
        .map(|(status, count)| vec![status.clone(), count.to_string()])
        .collect();
    print!("{}", render(&["STATUS", "JOBS"], &rows));
    if !stats.by_step.is_empty() {
        let rows: Vec<Vec<String>> = stats
            .by_step
            .iter()
            .map(|(status, step, count)| vec![status.clone(), step.clone(), count.to_string()])
            .collect();
        println!();
        print!("{}", render(&["STATUS", "STEP", "JOBS"], &rows));
    }
    println!(
        "\nlast hour: {} succeeded, {} failed",
        stats.succeeded_last_hour, stats.failed_last_hour
    );
    if let (Some(id), Some(at)) = (stats.oldest_queued_id, stats.oldest_queued_at) {
        let age = Duration::from_millis(u64::try_from(now - at).unwrap_or(0));
        println!(
            "oldest queued job: {id}, created {} UTC ({} ago)",
            time(at),
            human(age)
        );
    } else {
        println!("no queued jobs");
    }
    for pause in &paused {
        println!(
            "queue {:?} is PAUSED since {} UTC{} (`approval-worker resume {}`)",
            pause.queue,
            time(pause.paused_at),
            pause
                .reason
                .as_deref()
                .map(|reason| format!(": {reason}"))
                .unwrap_or_default(),
            pause.queue
        );
    }
    if !outcomes.by_outcome.is_empty() {
        let rows: Vec<Vec<String>> = outcomes
            .by_outcome
            .iter()
            .map(|(outcome, count)| vec![outcome.clone(), count.to_string()])
            .collect();
        println!(
            "
approvals followed:"
        );
        print!("{}", render(&["OUTCOME", "JOBS"], &rows));
        let notifications: Vec<String> = outcomes
            .deliveries
            .iter()
            .map(|(status, count)| format!("{count} {status}"))
            .collect();
        println!(
            "instance reads so far: {}; notifications: {}",
            outcomes.checks,
            if notifications.is_empty() {
                "none".to_owned()
            } else {
                notifications.join(", ")
            }
        );
    }
    print_calls(&month, &calls, counted, budget);
    Ok(())
}

fn print_calls(month: &str, calls: &[MonthlyCalls], counted: i64, budget: Option<u64>) {
    println!("\nDingTalk calls in {month} (China Standard Time):");
    if calls.is_empty() {
        println!("none recorded");
        return;
    }
    let rows: Vec<Vec<String>> = calls
        .iter()
        .map(|c| {
            vec![
                c.app_key.clone(),
                c.endpoint.clone(),
                c.calls.to_string(),
                if c.counted { "yes" } else { "no (exempt)" }.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        render(&["APP", "ENDPOINT", "CALLS", "COUNTS FOR QUOTA"], &rows)
    );
    match budget {
        Some(budget) => {
            println!("counted against the monthly quota: {counted} of a {budget} budget")
        }
        None => println!("counted against the monthly quota: {counted}"),
    }
}

pub(crate) async fn prune(config: &Config, args: PruneArgs) -> Result<(), CliError> {
    let queue = open_existing_queue(config).await?;
    let before = ms_before(now_ms(), args.older_than);
    let statuses = if args.status.is_empty() {
        vec![
            JobStatus::Succeeded,
            JobStatus::Failed,
            JobStatus::Cancelled,
        ]
    } else {
        args.status
    };
    let pruned = queue.prune(before, &statuses, args.dry_run).await?;
    queue.close().await;
    let ended: Vec<&str> = statuses.iter().map(|status| status.as_str()).collect();
    if args.json {
        println!(
            "{}",
            json!({"pruned": if args.dry_run { 0 } else { pruned }, "matched": pruned,
                   "dry_run": args.dry_run, "statuses": ended, "finished_before": before})
        );
    } else {
        let verb = if args.dry_run {
            "would prune"
        } else {
            "pruned"
        };
        let which = if ended.len() == 3 {
            String::new()
        } else {
            format!("{} ", ended.join("/"))
        };
        println!(
            "{verb} {pruned} {which}jobs (and their history) that finished before {} UTC",
            time(before)
        );
    }
    Ok(())
}

pub(crate) async fn backup(config: &Config, args: BackupArgs) -> Result<(), CliError> {
    if args.path.exists() {
        return Err(CliError::Usage(format!(
            "{} exists; a backup never overwrites",
            args.path.display()
        )));
    }
    let queue = open_existing_queue(config).await?;
    let bytes = queue.backup(&args.path).await;
    queue.close().await;
    let bytes = bytes.map_err(|e| CliError::Runtime(anyhow::anyhow!("backup failed: {e}")))?;
    if args.json {
        let out: Value = json!({"path": args.path, "bytes": bytes});
        println!("{out}");
    } else {
        println!(
            "backed up {} to {} ({bytes} bytes)",
            queue.describe(),
            args.path.display()
        );
    }
    Ok(())
}

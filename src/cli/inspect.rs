//! `jobs` and `show`: reading the queue.

use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

use super::duration::{human, ms_before, parse_duration};
use super::outcome::{outcome_json, print_outcome};
use super::table::{render, time};
use super::{CliError, open_existing_queue};
use crate::approval::PartedUpload;
use crate::config::Config;
use crate::queue::{
    HistoryEntry, JobFilter, JobId, JobRow, JobStatus, LiveUpload, Verdict, history, now_ms,
};

const DEFAULT_LIST_LIMIT: i64 = 50;

/// Examples shown by `jobs --help`.
pub(crate) const JOBS_EXAMPLES: &str = "Examples:
  approval-worker jobs --status failed --since 1h
  approval-worker jobs --queue default --limit 10
  approval-worker jobs --status queued --json | jq '.[].id'";
/// Examples shown by `show --help`.
pub(crate) const SHOW_EXAMPLES: &str = "Examples:
  approval-worker show 42
  approval-worker show 42 --json | jq '.events[] | select(.kind == \"step_done\")'";
/// `jobs` arguments.
#[derive(Debug, Args)]
pub(crate) struct JobsArgs {
    /// Only jobs with this status (queued, running, succeeded, failed, cancelled).
    #[arg(long)]
    status: Option<JobStatus>,
    /// Only jobs of this queue.
    #[arg(long)]
    queue: Option<String>,
    /// Only jobs at this step (space, upload_info, put, commit, submit, done).
    #[arg(long)]
    step: Option<String>,
    /// Only the job with this idempotency key.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Only the job that created this approval instance.
    #[arg(long)]
    instance_id: Option<String>,
    /// Only jobs whose approval has this outcome (pending, agree, refuse, terminated,
    /// deleted, unknown).
    #[arg(long)]
    outcome: Option<Verdict>,
    /// Only jobs created within this long before now, e.g. 90s, 15m, 1h, 7d.
    #[arg(long, value_name = "AGE", value_parser = parse_duration)]
    since: Option<Duration>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = DEFAULT_LIST_LIMIT)]
    limit: i64,
    /// Print a JSON array.
    #[arg(long)]
    json: bool,
}

/// `show` arguments.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The job id.
    id: JobId,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// The JSON form of a job (payload, checkpoint and result as JSON, not strings).
pub(crate) fn job_json(job: &JobRow) -> Value {
    let parse = |text: &Option<String>| {
        text.as_deref()
            .map(|t| {
                serde_json::from_str::<Value>(t).unwrap_or_else(|_| Value::String(t.to_string()))
            })
            .unwrap_or(Value::Null)
    };
    json!({
        "id": job.id,
        "idempotency_key": job.idempotency_key,
        "queue": job.queue,
        "priority": job.priority,
        "status": job.status,
        "step": job.step,
        "attempt": job.attempt,
        "uncharged_attempts": job.uncharged_attempts,
        "max_attempts": job.max_attempts,
        "run_at": job.run_at,
        "last_error": job.last_error,
        "result": parse(&job.result),
        "cancel_requested": job.cancel_requested,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "finished_at": job.finished_at,
        "outcome": job.outcome,
        "payload": parse(&Some(job.payload.clone())),
        "checkpoint": parse(&job.checkpoint),
    })
}

/// The instance id of a succeeded job, from its result.
pub(crate) fn instance_id(job: &JobRow) -> Option<String> {
    let result: Value = serde_json::from_str(job.result.as_deref()?).ok()?;
    result.get("instance_id")?.as_str().map(str::to_string)
}

/// Renders jobs as the human table used by `jobs` and `demo`: the attempt as charged
/// attempts of the limit (`max_attempts` where the job sets none), and for a queued job
/// waiting for a later retry, when it runs next.
pub(crate) fn jobs_table(jobs: &[JobRow], max_attempts: i64, now_ms: i64) -> String {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|job| {
            let outcome = match job.status.as_str() {
                "succeeded" => instance_id(job).unwrap_or_default(),
                _ => job.last_error.clone().unwrap_or_default(),
            };
            let status = match job.status.as_str() {
                "queued" if job.run_at > now_ms => {
                    format!(
                        "queued, next in {}",
                        human(Duration::from_millis(
                            u64::try_from(job.run_at - now_ms).unwrap_or(0)
                        ))
                    )
                }
                "succeeded" if job.outcome.is_some() => {
                    format!("succeeded, {}", job.outcome.as_deref().unwrap_or_default())
                }
                status => status.to_owned(),
            };
            let charged = job.attempt - job.uncharged_attempts;
            vec![
                job.id.to_string(),
                status,
                job.step.clone(),
                format!("{charged} of {}", job.max_attempts.unwrap_or(max_attempts)),
                time(job.updated_at),
                truncate(&outcome, 100),
            ]
        })
        .collect();
    render(
        &[
            "ID",
            "STATUS",
            "STEP",
            "ATTEMPT",
            "UPDATED (UTC)",
            "INSTANCE / LAST ERROR",
        ],
        &rows,
    )
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max_chars - 1).collect();
        format!("{cut}…")
    }
}

pub(crate) async fn jobs(config: &Config, args: JobsArgs) -> Result<(), CliError> {
    let queue = open_existing_queue(config).await?;
    if args.limit < 1 {
        return Err(CliError::Usage(format!(
            "--limit: {} is below 1",
            args.limit
        )));
    }
    let filter = JobFilter {
        status: args.status,
        queue: args.queue,
        step: args.step,
        idempotency_key: args.idempotency_key,
        instance_id: args.instance_id,
        since_ms: args.since.map(|since| ms_before(now_ms(), since)),
        outcome: args.outcome,
        // One more than shown, to tell whether the list was cut.
        limit: args.limit.saturating_add(1),
        ..JobFilter::default()
    };
    let mut jobs = queue.list(&filter).await?;
    queue.close().await;
    let shown = usize::try_from(args.limit).unwrap_or(usize::MAX);
    let cut = jobs.len() > shown;
    jobs.truncate(shown);
    let more = format!(
        "the newest {} are shown; more jobs match (--limit, or narrow with --status, --queue, \
         --since)",
        args.limit
    );
    if args.json {
        let list: Vec<Value> = jobs.iter().map(job_json).collect();
        println!("{}", Value::Array(list));
        if cut {
            eprintln!("{more}");
        }
    } else if jobs.is_empty() {
        println!("no jobs");
    } else {
        print!(
            "{}",
            jobs_table(&jobs, i64::from(config.worker.max_attempts), now_ms())
        );
        if cut {
            println!("{more}");
        }
    }
    Ok(())
}

pub(crate) async fn show(config: &Config, args: ShowArgs) -> Result<(), CliError> {
    let queue = open_existing_queue(config).await?;
    let job = queue.get(args.id).await?;
    let events = queue.events(args.id).await?;
    let outcome = queue.outcome(args.id).await?;
    let deliveries = queue.deliveries(args.id).await?;
    let parts = PartedUpload::in_checkpoint(job.checkpoint.as_deref());
    let stored = parts.as_ref().map_or(0, PartedUpload::bytes_done);
    let upload = queue
        .live_upload(args.id)
        .await?
        .map(|live| live.at_least(stored));
    queue.close().await;
    let detail = job_json(&job);
    if args.json {
        let mut detail = detail;
        detail["upload"] = upload.as_ref().map_or(Value::Null, upload_json);
        detail["parts"] = parts.as_ref().map_or(Value::Null, parts_json);
        detail["events"] = serde_json::to_value(&events).unwrap_or(Value::Null);
        detail["outcome"] = outcome
            .as_ref()
            .map_or(Value::Null, |outcome| outcome_json(outcome, &deliveries));
        println!("{detail}");
        return Ok(());
    }
    let charged = job.attempt - job.uncharged_attempts;
    let limit = job
        .max_attempts
        .unwrap_or_else(|| i64::from(config.worker.max_attempts));
    println!(
        "job {}  status {}  step {}  attempt {charged} of {limit}",
        job.id, job.status, job.step
    );
    let now = now_ms();
    if job.status == "queued" && job.run_at > now {
        let wait = Duration::from_millis(u64::try_from(job.run_at - now).unwrap_or(0));
        println!("next attempt in {} (at {})", human(wait), time(job.run_at));
    }
    println!(
        "created {}  updated {}",
        time(job.created_at),
        time(job.updated_at)
    );
    if let Some(key) = &job.idempotency_key {
        println!("idempotency key {key}");
    }
    if let Some(upload) = &upload {
        println!("{}", upload.summary(now));
    }
    if let Some(parts) = &parts {
        println!("uploading in parts: {}", parts.summary());
    }
    if let Some(error) = &job.last_error {
        println!("last error: {error}");
    }
    let pretty = |value: &Value| serde_json::to_string_pretty(value).unwrap_or_default();
    println!("\npayload:\n{}", pretty(&detail["payload"]));
    if !detail["checkpoint"].is_null() {
        println!("\ncheckpoint:\n{}", pretty(&detail["checkpoint"]));
    }
    if !detail["result"].is_null() {
        println!("\nresult:\n{}", pretty(&detail["result"]));
    }
    // A large file's parts, one event each, fold into one row per run of them.
    let rows: Vec<Vec<String>> = history(&events)
        .into_iter()
        .map(|HistoryEntry { event: e, count }| {
            let step = e.step.clone().unwrap_or_default();
            vec![
                time(e.at),
                e.kind.clone(),
                if count > 1 {
                    format!("{step} × {count}")
                } else {
                    step
                },
                e.attempt.map(|a| a.to_string()).unwrap_or_default(),
                e.duration_ms.map(|d| format!("{d} ms")).unwrap_or_default(),
                e.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    println!("\nhistory:");
    print!(
        "{}",
        render(
            &["AT (UTC)", "EVENT", "STEP", "ATTEMPT", "DURATION", "ERROR"],
            &rows
        )
    );
    if let Some(outcome) = &outcome {
        print_outcome(outcome, &deliveries);
    }
    Ok(())
}

/// An upload in parts as JSON.
fn parts_json(upload: &PartedUpload) -> Value {
    json!({
        "parts_done": upload.parts_done,
        "part_count": upload.part_count(),
        "part_bytes": upload.part_bytes,
        "bytes_done": upload.bytes_done(),
        "bytes_total": upload.size,
    })
}

/// A live upload as JSON, with its mean speed and the time left at that speed.
pub(crate) fn upload_json(upload: &LiveUpload) -> Value {
    json!({
        "file_index": upload.file_index,
        "file_count": upload.file_count,
        "file_name": upload.file_name,
        "bytes_sent": upload.bytes_sent,
        "bytes_total": upload.bytes_total,
        "started_at": upload.started_at,
        "updated_at": upload.updated_at,
        "bytes_per_sec": upload.bytes_per_sec(),
        "eta_secs": upload.eta_secs(),
    })
}

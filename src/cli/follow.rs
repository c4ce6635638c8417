//! `enqueue --wait`: follows jobs live from their history (`job_events`) until they finish,
//! with a byte progress bar for large uploads.
//!
//! The worker may be another process, so progress is read from the database: the bytes of
//! attachments whose PUT is checkpointed, plus those of the PUT running now as its worker
//! last reported them (about once a second). Without a terminal (or with several jobs) a
//! line says how a long upload goes every few seconds instead of the bar.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use super::CliError;
use super::enqueue::Until;
use super::inspect::{instance_id, job_json};
use crate::approval::{PartedUpload, Step};
use crate::queue::{EventRow, JobId, JobRow, LiveUpload, Queue, now_ms};

/// How often the database is read while following.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// The same once every job left waits only for its approval's decision.
const DECISION_POLL: Duration = Duration::from_secs(1);
/// Jobs with at least this many attachment bytes get a progress bar.
const PROGRESS_BAR_MIN_BYTES: u64 = 1024 * 1024;
/// How often the bar's spinner and clock redraw.
const BAR_TICK: Duration = Duration::from_millis(120);
/// Without a bar, how often a line tells how a long upload goes.
const UPLOAD_LINE_EVERY_MS: i64 = 3_000;

/// One job being followed.
struct Followed {
    id: JobId,
    last_event: i64,
    announced_wait: bool,
    /// Succeeded, its approval undecided, and that was said.
    announced_pending: bool,
    /// When an upload line was last printed (unix ms).
    upload_said_at: i64,
    /// Files committed so far, by the history: the file the next upload steps are for.
    files_done: usize,
    finished: Option<JobRow>,
}

/// Follows `ids` until all finish, or `timeout` passes; prints each step as it completes
/// (or, with `json`, only the finished jobs as a JSON array). Fails when any job did not
/// succeed, or with [`CliError::Timeout`] when one is still unfinished at the timeout.
pub(crate) async fn follow(
    queue: &Queue,
    ids: &[JobId],
    json: bool,
    timeout: Option<Duration>,
    until: Until,
) -> Result<(), CliError> {
    let deadline = timeout.map(|timeout| tokio::time::Instant::now() + timeout);
    let prefix = ids.len() > 1;
    let mut jobs: Vec<Followed> = ids
        .iter()
        .map(|&id| Followed {
            id,
            last_event: 0,
            announced_wait: false,
            announced_pending: false,
            upload_said_at: 0,
            files_done: 0,
            finished: None,
        })
        .collect();
    let bar = match (ids, json) {
        ([id], false) => upload_bar(&queue.get(*id).await?),
        _ => None,
    };
    let say = |line: String| match &bar {
        Some(bar) => bar.suspend(|| println!("{line}")),
        None => println!("{line}"),
    };
    while jobs.iter().any(|job| job.finished.is_none()) {
        for followed in jobs.iter_mut().filter(|job| job.finished.is_none()) {
            let job = queue.get(followed.id).await?;
            let events = queue.events(followed.id).await?;
            let label = if prefix {
                format!("job {}: ", followed.id)
            } else {
                String::new()
            };
            let seen = followed.last_event;
            for event in events.iter().filter(|e| e.id > seen) {
                followed.last_event = event.id;
                let file = file_label(&job, event, followed.files_done);
                if event.kind == "step_done" && event.step.as_deref() == Some("commit") {
                    followed.files_done += 1;
                }
                if let Some(line) = describe(event, &job, &file).filter(|_| !json) {
                    say(format!("{label}{line}"));
                }
            }
            let parts = PartedUpload::in_checkpoint(job.checkpoint.as_deref());
            let upload = if job.status == "running" && job.step == "put" {
                let stored = parts.as_ref().map_or(0, PartedUpload::bytes_done);
                queue
                    .live_upload(followed.id)
                    .await?
                    .map(|live| live.at_least(stored))
            } else {
                None
            };
            if let Some(bar) = &bar {
                update_bar(bar, &job, upload.as_ref(), parts.as_ref());
            } else if let Some(upload) = upload.as_ref().filter(|_| !json) {
                let now = now_ms();
                if now - followed.upload_said_at >= UPLOAD_LINE_EVERY_MS {
                    followed.upload_said_at = now;
                    let parts = parts
                        .as_ref()
                        .map(|upload| format!("; {}", upload.summary()))
                        .unwrap_or_default();
                    say(format!("{label}  … {}{parts}", upload.summary(now)));
                }
            }
            if events.is_empty() && job.status == "queued" && !followed.announced_wait && !json {
                followed.announced_wait = true;
                say(format!(
                    "{label}job {} queued; waiting for a worker (`approval-worker run`)",
                    job.id
                ));
            }
            let ended = matches!(job.status.as_str(), "succeeded" | "failed" | "cancelled");
            let undecided = until == Until::Decided
                && job.status == "succeeded"
                && job.outcome.as_deref() == Some("pending");
            if ended && undecided {
                if !followed.announced_pending && !json {
                    followed.announced_pending = true;
                    say(format!("{}; waiting for the decision", outcome_line(&job)));
                }
            } else if ended {
                if !json {
                    if !followed.announced_pending {
                        say(outcome_line(&job));
                    }
                    if until == Until::Decided && job.status == "succeeded" {
                        say(decision_line(&job));
                    }
                }
                followed.finished = Some(job);
            }
        }
        if jobs.iter().any(|job| job.finished.is_none()) {
            if deadline.is_some_and(|deadline| tokio::time::Instant::now() >= deadline) {
                break;
            }
            let waiting_for_decisions = jobs
                .iter()
                .all(|job| job.finished.is_some() || job.announced_pending);
            // A decision takes minutes to days: no need to read five times a second.
            let pause = if waiting_for_decisions {
                DECISION_POLL
            } else {
                FOLLOW_POLL
            };
            tokio::time::sleep(pause).await;
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let unfinished: Vec<String> = jobs
        .iter()
        .filter(|job| job.finished.is_none())
        .map(|job| job.id.to_string())
        .collect();
    let finished: Vec<JobRow> = jobs.into_iter().filter_map(|job| job.finished).collect();
    if json {
        println!("{}", Value::Array(finished.iter().map(job_json).collect()));
    }
    let unsuccessful: Vec<String> = finished
        .iter()
        .filter_map(|job| {
            if job.status != "succeeded" {
                Some(format!("job {} {}", job.id, job.status))
            } else if until == Until::Decided && job.outcome.as_deref() != Some("agree") {
                Some(format!(
                    "job {}: approval {}",
                    job.id,
                    job.outcome.as_deref().unwrap_or("not followed")
                ))
            } else {
                None
            }
        })
        .collect();
    if !unfinished.is_empty() {
        let waited = timeout.map(super::duration::human).unwrap_or_default();
        return Err(CliError::Timeout(format!(
            "still unfinished after {waited}: job {} (they go on; `approval-worker show ID` \
             tells where they are){}",
            unfinished.join(", "),
            if unsuccessful.is_empty() {
                String::new()
            } else {
                format!("; {}", unsuccessful.join(", "))
            }
        )));
    }
    if unsuccessful.is_empty() {
        Ok(())
    } else {
        Err(CliError::Runtime(anyhow::anyhow!(
            "{}",
            unsuccessful.join(", ")
        )))
    }
}

/// " of b.pdf (file 2 of 3)" for an upload step's event of a job with several files, where
/// `done` files were committed before it; empty otherwise (one file says nothing new).
fn file_label(job: &JobRow, event: &EventRow, done: usize) -> String {
    let upload_step = matches!(
        event.step.as_deref(),
        Some("upload_info" | "put" | "put_part" | "commit")
    );
    let payload: Value = serde_json::from_str(&job.payload).unwrap_or(Value::Null);
    let files = payload["attachments"].as_array().map_or(0, Vec::len);
    if !upload_step || files < 2 {
        return String::new();
    }
    let attachment = &payload["attachments"][done];
    let name = attachment["name"]
        .as_str()
        .or_else(|| {
            attachment["path"]
                .as_str()
                .and_then(|p| p.rsplit('/').next())
        })
        .unwrap_or("?");
    format!(" of {name} (file {} of {files})", done + 1)
}

/// The line for one history event; `None` for the final ones (the outcome line says it).
fn describe(event: &EventRow, job: &JobRow, file: &str) -> Option<String> {
    let step = format!("{}{file}", event.step.as_deref().unwrap_or("?"));
    let error = event.error.as_deref().unwrap_or("");
    let attempt = event.attempt.unwrap_or(job.attempt);
    let line = match event.kind.as_str() {
        "claimed" => format!("attempt {attempt} started"),
        // A large file's parts show on the progress line, not one line each.
        "step_done" if event.step.as_deref() == Some("put_part") => return None,
        "step_done" => format!("  ✓ {step} ({})", millis(event.duration_ms)),
        "step_failed" => format!("  ↺ {step}: {error}; redoing"),
        "retry_scheduled" => {
            let wait_ms = u64::try_from(job.run_at - now_ms()).unwrap_or(0);
            format!(
                "  ✗ {step} failed: {error}; retrying in {} s",
                wait_ms.div_ceil(1000)
            )
        }
        "rescued" => "  ! the worker's lease expired; queued again".to_string(),
        "released" => "  ! released at its checkpoint (worker stopping); queued again".to_string(),
        "retried" => "queued again by `retry`".to_string(),
        _ => return None,
    };
    Some(line)
}

/// The decision line of a succeeded job followed `--until decided`.
fn decision_line(job: &JobRow) -> String {
    match job.outcome.as_deref() {
        Some("agree") => format!("job {}: approval agreed", job.id),
        Some("refuse") => format!("job {}: approval refused", job.id),
        Some("terminated") => format!("job {}: approval withdrawn by the originator", job.id),
        Some("deleted") => format!("job {}: approval deleted in DingTalk", job.id),
        Some("unknown") => format!(
            "job {}: approval still undecided when the worker stopped asking ([outcome] give_up_after_days)",
            job.id
        ),
        Some(other) => format!("job {}: approval {other}", job.id),
        None => format!(
            "job {}: its approval is not followed ([outcome] follow = false when it succeeded)",
            job.id
        ),
    }
}

fn outcome_line(job: &JobRow) -> String {
    match job.status.as_str() {
        "succeeded" => format!(
            "job {} succeeded: approval instance {}",
            job.id,
            instance_id(job).unwrap_or_default()
        ),
        "failed" => format!(
            "job {} failed at {}: {}",
            job.id,
            job.step,
            job.last_error.as_deref().unwrap_or("")
        ),
        status => format!("job {} {status}", job.id),
    }
}

fn millis(duration_ms: Option<i64>) -> String {
    match duration_ms {
        Some(ms) if ms >= 1000 => format!("{:.1} s", ms as f64 / 1000.0),
        Some(ms) => format!("{ms} ms"),
        None => "?".to_string(),
    }
}

/// A bar over the job's attachment bytes, when they are many and stderr is a terminal.
fn upload_bar(job: &JobRow) -> Option<ProgressBar> {
    let total: u64 = attachment_sizes(job).iter().sum();
    if total < PROGRESS_BAR_MIN_BYTES {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if bar.is_hidden() {
        return None;
    }
    let style = ProgressStyle::with_template(
        "{spinner} {msg:24!} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {eta} left ({elapsed})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.enable_steady_tick(BAR_TICK);
    Some(bar)
}

/// Sizes of the job's attachments as they are on disk now, in payload order.
fn attachment_sizes(job: &JobRow) -> Vec<u64> {
    let payload: Value = serde_json::from_str(&job.payload).unwrap_or(Value::Null);
    payload["attachments"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|a| {
                    a["path"]
                        .as_str()
                        .and_then(|path| std::fs::metadata(path).ok())
                        .map_or(0, |meta| meta.len())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `parts`: the upload in parts the job's checkpoint holds, if any.
fn update_bar(
    bar: &ProgressBar,
    job: &JobRow,
    upload: Option<&LiveUpload>,
    parts: Option<&PartedUpload>,
) {
    let (done, uploading) = uploaded_bytes(job);
    // A live report of a file in parts counts its earlier parts too; between reports the
    // checkpoint's parts are what is known.
    let stored = parts.map_or(0, PartedUpload::bytes_done);
    let sending = upload.map_or(0, |upload| u64::try_from(upload.bytes_sent).unwrap_or(0));
    bar.set_position(done + sending.max(stored));
    bar.set_message(match (uploading, parts) {
        (Some(name), Some(parts)) => format!(
            "uploading {name} (part {} of {})",
            (parts.parts_done + 1).min(parts.part_count()),
            parts.part_count()
        ),
        (Some(name), None) => format!("uploading {name}"),
        (None, _) => job.step.clone(),
    });
}

/// Bytes of attachments whose PUT is checkpointed, and the file being uploaded now.
fn uploaded_bytes(job: &JobRow) -> (u64, Option<String>) {
    let Ok(step) = Step::from_checkpoint(job.checkpoint.as_deref()) else {
        return (0, None);
    };
    let committed = |files: &[crate::dingtalk::Dentry]| files.iter().map(|f| f.size).sum::<u64>();
    match step {
        Step::Space => (0, None),
        Step::UploadInfo { progress } | Step::Submit { progress, .. } => {
            (committed(&progress.files), None)
        }
        Step::Put { progress, .. } | Step::PutParts { progress, .. } => {
            let payload: Value = serde_json::from_str(&job.payload).unwrap_or(Value::Null);
            let next = &payload["attachments"][progress.files.len()];
            let name = next["name"]
                .as_str()
                .or_else(|| next["path"].as_str().and_then(|p| p.rsplit('/').next()))
                .map(str::to_string);
            (committed(&progress.files), name)
        }
        Step::Commit { progress, upload } => (committed(&progress.files) + upload.size, None),
        Step::CommitParts { progress, upload } => (committed(&progress.files) + upload.size, None),
        Step::Done { files, .. } => (committed(&files), None),
    }
}

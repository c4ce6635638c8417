//! `enqueue`: build payloads from flags or read them as JSON, check them, and add the jobs.

use std::io::Read;
use std::path::PathBuf;

use clap::Args;
use serde_json::{Value, json};

use super::{CliError, open_queue};
use crate::approval::{self, UploadLimits};
use crate::config::Config;
use crate::queue::{NewJob, now_ms};
use crate::worker::WorkerSettings;

/// Examples shown by `enqueue --help`.
pub(crate) const EXAMPLES: &str = "Examples:
  approval-worker enqueue --process-code PROC-EXPENSE --originator manager4220 --dept-id -1 \\
      --form '报销事由=差旅' --form '金额=1200' --attach /srv/approval-spool/receipt.pdf
  approval-worker enqueue --payload job.json --idempotency-key order-42
  producer | approval-worker enqueue --payload -      # one JSON object per line
  approval-worker enqueue --payload job.json --wait    # follow it to its instance id

  approval-worker enqueue --payload job.json --wait --timeout 10m
  approval-worker enqueue --payload job.json --wait --until decided   # to agree or refuse
  approval-worker enqueue --payload job.json --delay 2h        # or --run-at 2026-12-04T09:00:00+08:00
  approval-worker enqueue --payload job.json --dry-run         # validate only

With --wait the exit code tells the outcome: 0 when every job succeeded, 1 when one failed or
was cancelled, 3 when --timeout ran out first (the jobs go on; `show ID` follows up).
With --until decided: 0 when every approval was agreed, 1 when a job failed or was cancelled
or its approval was refused, withdrawn, deleted or never decided, 3 on timeout.
Interrupting the wait leaves the jobs queued.";

/// How far `enqueue --wait` follows a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Until {
    /// Until the approval instance exists (or the job fails).
    Submitted,
    /// Until the approval is decided: agree, refuse, withdrawn, deleted (or never, `unknown`).
    Decided,
}

/// `enqueue` arguments.
#[derive(Debug, Args)]
pub(crate) struct EnqueueArgs {
    /// Read the payload(s) from this file ('-' for stdin): one JSON object, or JSON lines.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["process_code", "originator", "attach", "form"])]
    payload: Option<PathBuf>,
    /// Approval template code (PROC-…).
    #[arg(long, required_unless_present = "payload")]
    process_code: Option<String>,
    /// The originator's DingTalk userId.
    #[arg(long, required_unless_present = "payload", value_name = "USER_ID")]
    originator: Option<String>,
    /// The originator's department id; -1 is the root department.
    #[arg(long, allow_negative_numbers = true, value_name = "ID")]
    dept_id: Option<i64>,
    /// The originator's unionId (resolved from the userId when absent).
    #[arg(long)]
    union_id: Option<String>,
    /// A file to attach (repeat for several). Relative paths are resolved here.
    #[arg(long, value_name = "PATH")]
    attach: Vec<PathBuf>,
    /// A form value as NAME=VALUE (repeat for several).
    #[arg(long, value_name = "NAME=VALUE")]
    form: Vec<String>,
    /// Label of the template's DDAttachment component [default: from config].
    #[arg(long)]
    attachment_field: Option<String>,
    /// An approver group as TYPE:USER[,USER…] with TYPE AND, OR or NONE (repeatable).
    #[arg(long, value_name = "TYPE:USERS")]
    approver: Vec<String>,
    /// A userId to copy (repeatable).
    #[arg(long, value_name = "USER_ID")]
    cc: Vec<String>,
    /// Deduplication key: enqueueing the same key again returns the existing job.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Higher runs first.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    priority: i64,
    /// Queue name [default: default].
    #[arg(long)]
    queue: Option<String>,
    /// Attempts before the job fails [default: from config].
    #[arg(long)]
    max_attempts: Option<i64>,
    /// Follow the job(s) live until they finish: each step, a progress bar for large
    /// uploads, then the instance id or the error.
    #[arg(long)]
    wait: bool,
    /// With --wait: stop waiting after this long (e.g. 90s, 10m), exit 3 if a job is still
    /// unfinished; the jobs go on.
    #[arg(long, value_name = "AGE", requires = "wait", value_parser = super::duration::parse_duration)]
    timeout: Option<std::time::Duration>,
    /// With --wait: follow each job until its instance is created (submitted), or on until
    /// the approval is decided (decided).
    #[arg(long, value_enum, requires = "wait", default_value_t = Until::Submitted)]
    until: Until,
    /// Start no earlier than this time: RFC 3339 with its offset (2026-12-04T09:00:00+08:00)
    /// or unix milliseconds.
    #[arg(long, value_name = "TIME", conflicts_with = "delay", value_parser = parse_run_at)]
    run_at: Option<i64>,
    /// Start no earlier than this long from now, e.g. 90s, 10m, 2h.
    #[arg(long, value_name = "AGE", value_parser = super::duration::parse_duration)]
    delay: Option<std::time::Duration>,
    /// Where this job's approval decision is POSTed, instead of [outcome] webhook_url (flags
    /// only; a JSON payload names its own `callback_url`).
    #[arg(long, value_name = "URL")]
    callback_url: Option<String>,
    /// Check the payload(s) as the worker will (fields, files) and print what would be
    /// enqueued; enqueue nothing and touch no database.
    #[arg(long, conflicts_with = "wait")]
    dry_run: bool,
    /// Print the outcome as JSON (with --wait: the finished jobs).
    #[arg(long)]
    json: bool,
}

pub(crate) async fn enqueue(config: &Config, args: EnqueueArgs) -> Result<(), CliError> {
    let payloads = match &args.payload {
        Some(path) => read_payloads(path)?,
        None => vec![payload_from_flags(&args)?],
    };
    if let Some(max) = args.max_attempts.filter(|max| *max < 1) {
        return Err(CliError::Usage(format!("--max-attempts: {max} is below 1")));
    }
    let settings = WorkerSettings::from_config(config);
    let now = now_ms();
    let run_at = args.run_at.or_else(|| {
        args.delay
            .map(|delay| now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)))
    });
    let jobs = payloads
        .into_iter()
        .enumerate()
        .map(|(index, payload)| {
            check(
                &payload,
                &settings.attachment_field,
                &settings.upload,
                index,
            )?;
            let idempotency_key = match &args.idempotency_key {
                Some(key) if index == 0 => Some(key.clone()),
                Some(key) => Some(format!("{key}#{index}")),
                None => None,
            };
            Ok(NewJob {
                payload: payload.to_string(),
                idempotency_key,
                queue: args.queue.clone(),
                priority: args.priority,
                run_at,
                max_attempts: args.max_attempts,
            })
        })
        .collect::<Result<Vec<_>, CliError>>()?;
    if args.dry_run {
        print_dry_run(&jobs, args.json);
        return Ok(());
    }
    let queue = open_queue(config).await?;
    let outcomes = queue.enqueue_many(&jobs, now_ms()).await;
    let outcomes = match outcomes {
        Ok(outcomes) => outcomes,
        Err(e) => {
            queue.close().await;
            return Err(e.into());
        }
    };
    if args.wait {
        if !args.json {
            for outcome in &outcomes {
                let existing = if outcome.created {
                    ""
                } else {
                    " (existing job with this idempotency key)"
                };
                println!("enqueued job {}{existing}", outcome.id);
            }
        }
        let ids: Vec<_> = outcomes.iter().map(|outcome| outcome.id).collect();
        let followed =
            super::follow::follow(&queue, &ids, args.json, args.timeout, args.until).await;
        queue.close().await;
        return followed;
    }
    queue.close().await;
    if args.json {
        println!("{}", serde_json::to_string(&outcomes).unwrap_or_default());
    } else {
        for outcome in outcomes {
            if outcome.created {
                println!("{}", outcome.id);
            } else {
                println!("{} (existing job with this idempotency key)", outcome.id);
            }
        }
    }
    Ok(())
}

fn check(
    payload: &Value,
    field: &str,
    limits: &UploadLimits,
    index: usize,
) -> Result<(), CliError> {
    approval::validate(&payload.to_string(), field, limits)
        .map(|_| ())
        .map_err(|e| CliError::Usage(format!("job {}: {e}", index + 1)))
}

fn read_payloads(path: &PathBuf) -> Result<Vec<Value>, CliError> {
    let mut text = String::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut text))
    };
    read.map_err(|e| CliError::Usage(format!("--payload {}: {e}", path.display())))?;
    // A single (possibly pretty-printed) object, or one object per line.
    if let Ok(value) = serde_json::from_str::<Value>(&text) {
        return match value {
            Value::Object(_) => Ok(vec![value]),
            Value::Array(items) => Ok(items),
            _ => Err(CliError::Usage(
                "--payload: expected a JSON object per job".into(),
            )),
        };
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str::<Value>(line)
                .map_err(|e| CliError::Usage(format!("--payload line {}: {e}", n + 1)))
        })
        .collect()
}

fn payload_from_flags(args: &EnqueueArgs) -> Result<Value, CliError> {
    let mut form = Vec::new();
    for entry in &args.form {
        let Some((name, value)) = entry.split_once('=') else {
            return Err(CliError::Usage(format!(
                "--form {entry:?}: expected NAME=VALUE"
            )));
        };
        form.push(json!({"name": name, "value": value}));
    }
    let mut attachments = Vec::new();
    for path in &args.attach {
        let absolute = std::path::absolute(path)
            .map_err(|e| CliError::Usage(format!("--attach {}: {e}", path.display())))?;
        attachments.push(json!({"path": absolute}));
    }
    let mut approvers = Vec::new();
    for entry in &args.approver {
        let Some((kind, users)) = entry.split_once(':') else {
            return Err(CliError::Usage(format!(
                "--approver {entry:?}: expected TYPE:USER[,USER…]"
            )));
        };
        let users: Vec<&str> = users.split(',').filter(|u| !u.is_empty()).collect();
        approvers.push(json!({"action_type": kind, "user_ids": users}));
    }
    let mut payload = json!({
        "process_code": args.process_code,
        "originator_user_id": args.originator,
        "form": form,
        "attachments": attachments,
    });
    let object = payload
        .as_object_mut()
        .ok_or_else(|| CliError::Usage("payload is not an object".into()))?;
    if let Some(dept) = args.dept_id {
        object.insert("dept_id".into(), json!(dept));
    }
    if let Some(union_id) = &args.union_id {
        object.insert("union_id".into(), json!(union_id));
    }
    if let Some(field) = &args.attachment_field {
        object.insert("attachment_field".into(), json!(field));
    }
    if !approvers.is_empty() {
        object.insert("approvers".into(), json!(approvers));
    }
    if !args.cc.is_empty() {
        object.insert("cc_list".into(), json!(args.cc));
    }
    if let Some(url) = &args.callback_url {
        object.insert("callback_url".into(), json!(url));
    }
    Ok(payload)
}

/// What `--dry-run` would have enqueued.
fn print_dry_run(jobs: &[NewJob], json: bool) {
    if json {
        let list: Vec<Value> = jobs
            .iter()
            .map(|job| {
                json!({
                    "payload": serde_json::from_str::<Value>(&job.payload).unwrap_or(Value::Null),
                    "idempotency_key": job.idempotency_key,
                    "queue": job.queue,
                    "priority": job.priority,
                    "run_at": job.run_at,
                    "max_attempts": job.max_attempts,
                })
            })
            .collect();
        println!("{}", Value::Array(list));
        return;
    }
    let when = jobs
        .first()
        .and_then(|job| job.run_at)
        .map(|at| format!(", to start at {} UTC", super::table::time(at)))
        .unwrap_or_default();
    println!(
        "dry run: {} valid job(s) would be enqueued{when}; nothing was written",
        jobs.len()
    );
}

/// `--run-at`: an RFC 3339 time with its offset, or unix milliseconds.
fn parse_run_at(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    crate::dingtalk::parse_time_ms(text).ok_or_else(|| {
        format!(
            "{text:?} is not a time: use RFC 3339 with an offset (2026-12-04T09:00:00+08:00) \
             or unix milliseconds"
        )
    })
}

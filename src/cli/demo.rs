//! `demo`: the whole pipeline against the embedded sandbox, no configuration needed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::CliError;
use super::inspect::jobs_table;
use super::run::build_worker;
use crate::config::Config;
use crate::queue::{JobFilter, NewJob, Queue, now_ms};
use crate::sandbox::{Sandbox, SandboxOptions};
use crate::secret::Secret;

/// Examples shown by `demo --help`.
pub(crate) const DEMO_EXAMPLES: &str = "Examples:
  approval-worker demo
  approval-worker demo --jobs 20 --dir /tmp/approval-demo   # keep the database to inspect";
const DEFAULT_DEMO_JOBS: usize = 6;
const DEMO_TIMEOUT: Duration = Duration::from_secs(120);
/// How long after its creation the sandbox decides a demo approval.
const DEMO_DECISION_DELAY: Duration = Duration::from_millis(1500);
const DEMO_PROCESS_CODE: &str = "PROC-DEMO-EXPENSE";
/// Attachment sizes the demo cycles through: a note, a scan, a photo set, an archive.
const DEMO_FILE_SIZES: [(&str, usize); 4] = [
    ("说明.txt", 2 * 1024),
    ("receipt.pdf", 150 * 1024),
    ("photos.zip", 1536 * 1024),
    ("contract-scan.pdf", 8 * 1024 * 1024),
];

/// `demo` arguments.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How many jobs to run.
    #[arg(long, default_value_t = DEFAULT_DEMO_JOBS)]
    jobs: usize,
    /// Directory for the demo's database and attachments [default: a new temporary one].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub(crate) async fn demo(args: DemoArgs) -> Result<(), CliError> {
    if args.jobs == 0 {
        return Err(CliError::Usage("--jobs: at least 1".into()));
    }
    let dir = match args.dir {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!(
            "approval-worker-demo-{}-{}",
            std::process::id(),
            now_ms()
        )),
    };
    let spool = dir.join("spool");
    std::fs::create_dir_all(&spool).with_context(|| format!("creating {}", spool.display()))?;
    let database = dir.join("demo.db");

    // The sandbox decides each approval shortly after it is created (every third refused), so
    // the demo shows outcomes arriving over the Stream too.
    let options = SandboxOptions {
        auto_decide_after: Some(DEMO_DECISION_DELAY),
        ..SandboxOptions::default()
    };
    let sandbox = Sandbox::start(options.clone())
        .await
        .context("starting the sandbox")?;
    println!(
        "sandbox:   {} (a local DingTalk-compatible server)",
        sandbox.base_url()
    );
    println!("database:  {}", database.display());

    let config = demo_config(&sandbox, &options, &database, &spool);
    let queue = Queue::open(&database)
        .await
        .context("opening the demo database")?;
    // Originators from the sandbox's directory, so every one of them is known to it.
    let originators: Vec<String> = options
        .directory
        .members_of(-1)
        .map(|user| user.user_id().to_owned())
        .collect();
    let jobs = demo_jobs(&spool, args.jobs, &originators)?;
    let total_bytes: u64 = jobs.iter().map(|(_, bytes)| bytes).sum();
    let enqueued = queue
        .enqueue_many(
            &jobs.into_iter().map(|(job, _)| job).collect::<Vec<_>>(),
            now_ms(),
        )
        .await
        .context("enqueueing the demo jobs")?;
    println!(
        "enqueued:  {} jobs with {} of attachments\n",
        enqueued.len(),
        human_bytes(total_bytes)
    );

    let worker = build_worker(
        &config,
        Secret::new(options.app_secret.clone()),
        queue.clone(),
    )?;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let worker = worker.clone();
        let shutdown = shutdown.clone();
        async move { worker.run(shutdown, CancellationToken::new()).await }
    });
    let started = Instant::now();
    let finished = wait_until_finished(&queue, started).await;
    shutdown.cancel();
    running.await.context("worker task")?.context("worker")?;
    let elapsed = started.elapsed();

    let filter = JobFilter {
        limit: i64::try_from(args.jobs).unwrap_or(i64::MAX),
        ..JobFilter::default()
    };
    let mut rows = queue.list(&filter).await.context("listing jobs")?;
    rows.reverse();
    print!(
        "{}",
        jobs_table(&rows, i64::from(config.worker.max_attempts), now_ms())
    );
    let succeeded = rows.iter().filter(|job| job.status == "succeeded").count();
    println!(
        "\n{succeeded}/{} jobs succeeded in {:.1} s; the sandbox holds {} approval instances and {} committed files.",
        rows.len(),
        elapsed.as_secs_f64(),
        sandbox.instances().len(),
        sandbox.files().len()
    );
    let decided: Vec<String> = ["agree", "refuse", "terminated", "deleted", "pending"]
        .iter()
        .filter_map(|outcome| {
            let count = rows
                .iter()
                .filter(|job| job.outcome.as_deref() == Some(*outcome))
                .count();
            (count > 0).then(|| format!("{count} {outcome}"))
        })
        .collect();
    println!(
        "Approvals (the sandbox decides each {:.1} s after its creation, every third refused; \
         the worker learns it over DingTalk's Stream): {}.",
        DEMO_DECISION_DELAY.as_secs_f64(),
        decided.join(", ")
    );
    let exe = std::env::current_exe()
        .map(|path| path.display().to_string())
        .unwrap_or_else(|_| "approval-worker".to_string());
    println!(
        "Inspect a job's history: APPROVAL_WORKER_DATABASE={} {exe} show {}",
        database.display(),
        rows.first().map(|job| job.id).unwrap_or(1)
    );
    queue.close().await;
    sandbox.shutdown().await;
    if !finished {
        return Err(CliError::Runtime(anyhow::anyhow!(
            "jobs still unfinished after {DEMO_TIMEOUT:?}"
        )));
    }
    if succeeded != rows.len() {
        return Err(CliError::Runtime(anyhow::anyhow!(
            "{} jobs did not succeed",
            rows.len() - succeeded
        )));
    }
    Ok(())
}

fn demo_config(
    sandbox: &Sandbox,
    options: &SandboxOptions,
    database: &Path,
    spool: &Path,
) -> Config {
    let mut config = Config::default();
    config.database.path = database.to_path_buf();
    config.dingtalk.app_key = options.app_key.clone();
    config.dingtalk.agent_id = options.agent_id;
    config.dingtalk.api_base = sandbox.base_url();
    config.dingtalk.oapi_base = sandbox.base_url();
    if let Some(label) = options
        .directory
        .template(DEMO_PROCESS_CODE)
        .and_then(|template| template.attachment_label())
    {
        config.dingtalk.attachment_field = label.to_owned();
    }
    config.upload.allowed_dirs = vec![spool.to_path_buf()];
    config.worker.concurrency = Some(4);
    config.worker.poll_interval_ms = 50;
    config
}

/// Writes attachments of mixed sizes and builds jobs with one to three of them each, by
/// `originators` in turn (members of the root department).
fn demo_jobs(
    spool: &Path,
    count: usize,
    originators: &[String],
) -> Result<Vec<(NewJob, u64)>, CliError> {
    if originators.is_empty() {
        return Err(CliError::Runtime(anyhow::anyhow!(
            "the sandbox's directory has no user in the root department to originate the demo jobs"
        )));
    }
    let mut jobs = Vec::with_capacity(count);
    for n in 0..count {
        let mut attachments = Vec::new();
        let mut bytes = 0_u64;
        for k in 0..(n % 3 + 1) {
            let (name, size) = DEMO_FILE_SIZES[(n + k) % DEMO_FILE_SIZES.len()];
            let path = spool.join(format!("job{}-{name}", n + 1));
            write_sample(&path, size, (n * 7 + k) as u64)?;
            bytes += size as u64;
            attachments.push(json!({"path": path, "name": format!("{}-{name}", n + 1)}));
        }
        let payload = json!({
            "process_code": DEMO_PROCESS_CODE,
            "originator_user_id": originators[n % originators.len()],
            "dept_id": -1,
            "form": [
                {"name": "报销事由", "value": format!("演示报销 #{}", n + 1)},
                {"name": "金额", "value": format!("{}.00", 100 * (n + 1))},
            ],
            "attachments": attachments,
        });
        let job = NewJob {
            payload: payload.to_string(),
            idempotency_key: Some(format!("demo-{}", n + 1)),
            ..NewJob::default()
        };
        jobs.push((job, bytes));
    }
    Ok(jobs)
}

fn write_sample(path: &Path, size: usize, seed: u64) -> Result<(), CliError> {
    // A cheap deterministic byte pattern (xorshift), so files differ and MD5s are real.
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = Vec::with_capacity(size);
    while data.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(size);
    std::fs::write(path, data)
        .with_context(|| format!("writing {}", path.display()))
        .map_err(CliError::Runtime)
}

/// Waits until every job has finished and every approval created is decided, with its
/// approvers' records read.
async fn wait_until_finished(queue: &Queue, started: Instant) -> bool {
    while started.elapsed() < DEMO_TIMEOUT {
        match tokio::try_join!(queue.stats(now_ms()), queue.outcome_stats()) {
            Ok((stats, outcomes)) => {
                let unfinished = stats
                    .by_status
                    .iter()
                    .filter(|(status, _)| status == "queued" || status == "running")
                    .map(|(_, count)| count)
                    .sum::<i64>();
                let undecided = outcomes
                    .by_outcome
                    .iter()
                    .filter(|(outcome, _)| outcome == "pending")
                    .map(|(_, count)| count)
                    .sum::<i64>();
                if unfinished == 0 && undecided == 0 && outcomes.awaiting_records == 0 {
                    return true;
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading queue stats"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn human_bytes(bytes: u64) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib >= 1.0 {
        format!("{mib:.1} MiB")
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

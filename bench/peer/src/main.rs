//! Runs the same no-HTTP job shape on effectum 0.7 and on approval-worker's queue, in turns,
//! and prints the median jobs/s of each and their ratio.
//!
//! The shape: 16 producer tasks add N jobs one at a time while a worker with concurrency 16
//! runs them; each job writes 5 checkpoints, then completes. approval-worker runs as its
//! own binary (`approval-worker bench --peer-shape`, see the manifest for why), one run per
//! turn, so both see the same machine noise.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use effectum::{Job, JobRunner, Queue, RunningJob, Worker};
use tokio::sync::Notify;

/// The allocator approval-worker's binary uses, so the comparison is like-for-like.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Producers and worker concurrency of the shape.
const PRODUCERS: usize = 16;
const CONCURRENCY: u16 = 16;
/// Checkpoints per job.
const CHECKPOINTS: usize = 5;
/// Jobs per run and runs (turns) unless given on the command line.
const DEFAULT_JOBS: usize = 20_000;
const DEFAULT_RUNS: usize = 5;
/// How often the driver checks that effectum has recorded the last completions.
const FINISH_POLL: Duration = Duration::from_millis(10);

/// The payload every job carries: the same JSON approval-worker's shape stores.
const PAYLOAD: &str = r#"{"process_code":"PROC-BENCH","originator_user_id":"manager4220","dept_id":-1,"form":[{"name":"报销事由","value":"bench"}],"attachments":[{"path":"/tmp/spool/receipt-0.pdf","name":"receipt-0.pdf"}]}"#;

#[derive(Debug)]
struct Progress {
    done: AtomicUsize,
    all_done: Notify,
    target: usize,
}

type Context = Arc<Progress>;

async fn run_job(job: RunningJob, context: Context) -> Result<(), effectum::Error> {
    let payload: serde_json::Value = job.json_payload()?;
    for _ in 0..CHECKPOINTS {
        job.checkpoint_json(&payload).await?;
    }
    if context.done.fetch_add(1, Ordering::AcqRel) + 1 == context.target {
        context.all_done.notify_one();
    }
    Ok(())
}

/// One effectum run in a fresh database; jobs/s.
async fn effectum_run(dir: &Path, jobs: usize) -> Result<f64, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("effectum.db");
    let queue = Arc::new(Queue::new(&path).await?);
    let progress = Arc::new(Progress {
        done: AtomicUsize::new(0),
        all_done: Notify::new(),
        target: jobs,
    });
    let runner = JobRunner::builder("bench", run_job).build();
    let worker = Worker::builder(&queue, Arc::clone(&progress))
        .min_concurrency(CONCURRENCY)
        .max_concurrency(CONCURRENCY)
        .jobs([runner])
        .build()
        .await?;
    let payload: serde_json::Value = serde_json::from_str(PAYLOAD)?;
    let started = Instant::now();
    let mut producers = tokio::task::JoinSet::new();
    for producer in 0..PRODUCERS {
        let queue = Arc::clone(&queue);
        let payload = payload.clone();
        let share = jobs / PRODUCERS + usize::from(producer < jobs % PRODUCERS);
        producers.spawn(async move {
            for _ in 0..share {
                Job::builder("bench")
                    .json_payload(&payload)?
                    .add_to(&queue)
                    .await?;
            }
            Ok::<(), effectum::Error>(())
        });
    }
    while let Some(joined) = producers.join_next().await {
        joined??;
    }
    let all_done = progress.all_done.notified();
    if progress.done.load(Ordering::Acquire) < jobs {
        all_done.await;
    }
    // The runner has returned for every job; wait for effectum to record the completions.
    loop {
        let active = queue.num_active_jobs().await?;
        if active.pending + active.running == 0 {
            break;
        }
        tokio::time::sleep(FINISH_POLL).await;
    }
    let elapsed = started.elapsed();
    worker.unregister(None).await?;
    queue.close(Duration::from_secs(5)).await?;
    Ok(jobs as f64 / elapsed.as_secs_f64())
}

/// One approval-worker run through its binary; jobs/s and commits per job.
fn approval_worker_run(
    exe: &Path,
    dir: &Path,
    jobs: usize,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let output = Command::new(exe)
        .args([
            "bench",
            "--peer-shape",
            "--runs",
            "1",
            "--jobs",
            &jobs.to_string(),
        ])
        .arg("--dir")
        .arg(dir)
        .env("APPROVAL_WORKER_LOG", "warn")
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "{} exited with {}: {}",
            exe.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let figures: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let number = |key: &str| {
        figures[key]
            .as_f64()
            .ok_or(format!("no {key} in {figures}"))
    };
    Ok((number("jobs_per_sec")?, number("commits_per_job")?))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 0 {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}

struct Args {
    jobs: usize,
    runs: usize,
    exe: PathBuf,
}

fn args() -> Result<Args, String> {
    let mut parsed = Args {
        jobs: DEFAULT_JOBS,
        runs: DEFAULT_RUNS,
        exe: Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/approval-worker"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--jobs" => parsed.jobs = value.parse().map_err(|e| format!("--jobs: {e}"))?,
            "--runs" => parsed.runs = value.parse().map_err(|e| format!("--runs: {e}"))?,
            "--approval-worker" => parsed.exe = PathBuf::from(value),
            _ => {
                return Err(format!(
                    "unknown flag {flag}; usage: [--jobs N] [--runs N] [--approval-worker PATH]"
                ));
            }
        }
    }
    if parsed.runs == 0 || parsed.jobs == 0 {
        return Err("--jobs and --runs must be at least 1".into());
    }
    Ok(parsed)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // effectum runs on both tokio schedulers each turn and is credited with the faster:
    // approval-worker's worker runs on one scheduler thread, which may suit effectum too.
    let multi = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let args = args()?;
    if !args.exe.exists() {
        return Err(format!(
            "{} not found: run `cargo build --release` at the repository root first, or pass --approval-worker PATH",
            args.exe.display()
        )
        .into());
    }
    let root = std::env::temp_dir().join(format!("approval-worker-peer-{}", std::process::id()));
    println!(
        "peer shape: {PRODUCERS} producers, concurrency {CONCURRENCY}, {CHECKPOINTS} checkpoints per job, no HTTP; {} jobs per run, {} runs each, alternating",
        args.jobs, args.runs
    );
    let mut effectum = Vec::new();
    let mut ours = Vec::new();
    let mut commits = Vec::new();
    for run in 0..args.runs {
        let dir = root.join(format!("run-{run}"));
        std::fs::create_dir_all(&dir)?;
        let on_multi = multi.block_on(effectum_run(&dir.join("multi"), args.jobs))?;
        let on_current = current.block_on(effectum_run(&dir.join("current"), args.jobs))?;
        let peer = on_multi.max(on_current);
        let (jobs_per_sec, commits_per_job) = approval_worker_run(&args.exe, &dir, args.jobs)?;
        println!(
            "  run {}: effectum {peer:>7.0} jobs/s (multi-thread {on_multi:.0}, current-thread {on_current:.0})   approval-worker {jobs_per_sec:>7.0} jobs/s ({commits_per_job:.2} commits/job)",
            run + 1
        );
        effectum.push(peer);
        ours.push(jobs_per_sec);
        commits.push(commits_per_job);
        std::fs::remove_dir_all(&dir)?;
    }
    let _ = std::fs::remove_dir_all(&root);
    let (peer, mine) = (median(&mut effectum), median(&mut ours));
    println!(
        "median: effectum {peer:.0} jobs/s, approval-worker {mine:.0} jobs/s ({:.2} commits/job); ratio {:.2} (target ≥ 2)",
        median(&mut commits),
        mine / peer
    );
    Ok(())
}

//! Batch enqueue: `approval-worker enqueue --payload -` reading JSON lines from stdin, as a
//! producer would pipe them, timed from spawn to exit; then the rows are counted with a fresh
//! connection to show they are all there.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use super::BenchError;
use super::setup::Scratch;
use super::stats::rate;
use crate::queue::Queue;

/// What the batch enqueue measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct BatchFigures {
    /// Jobs piped in.
    pub(crate) jobs: usize,
    /// Jobs per second, process start to exit.
    pub(crate) jobs_per_sec: f64,
    /// Jobs found queued after the process exited.
    pub(crate) durable: i64,
}

/// Pipes `jobs` JSON lines (attachments spread over the spool's files) into `enqueue`.
pub(crate) async fn measure(
    exe: &Path,
    scratch: &Scratch,
    jobs: usize,
) -> Result<BatchFigures, BenchError> {
    let database = scratch.dir.join("batch.db");
    let config_path = scratch.dir.join("batch.toml");
    std::fs::write(
        &config_path,
        format!(
            "[database]\npath = {:?}\n\n[upload]\nallowed_dirs = [{:?}]\n",
            database.display().to_string(),
            scratch.spool.display().to_string()
        ),
    )?;
    // Create the schema first: the measured run is the enqueue, not the migration.
    Queue::open(&database).await?.close().await;
    let mut input = String::with_capacity(jobs * 300);
    for index in 0..jobs {
        input.push_str(&scratch.payload(index));
        input.push('\n');
    }
    let started = Instant::now();
    let mut child = Command::new(exe)
        .arg("--config")
        .arg(&config_path)
        .args(["enqueue", "--payload", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| BenchError::Setup("enqueue child has no stdin".into()))?;
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let status = child.wait()?;
    let elapsed = started.elapsed();
    writer
        .join()
        .map_err(|_| BenchError::Setup("stdin writer panicked".into()))??;
    if !status.success() {
        return Err(BenchError::Setup(format!("enqueue exited with {status}")));
    }
    let queue = Queue::open(&database).await?;
    let durable = queue.count_statuses(&["queued"]).await?;
    queue.close().await;
    Ok(BatchFigures {
        jobs,
        jobs_per_sec: rate(jobs as f64, elapsed),
        durable,
    })
}

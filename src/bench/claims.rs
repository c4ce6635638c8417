//! Claim scaling: the cost of one claim with 1 k due jobs against 1 M, with and without
//! 100 k jobs waiting in backoff, and of an idle poll when nothing is due. Tables are built
//! with one `INSERT … SELECT` each. The shapes take short turns, in a rotated order, so the
//! machine's noise falls on all of them alike; claimed jobs are released (untimed) after
//! each turn, so the tables keep their shape. Each claim is timed on its own and a shape's
//! figure comes from its median claim: a turn is a few milliseconds, so one burst of the
//! VM's steal time could otherwise decide a turn's rate, and with it a ratio.
//! The scenario runs on one CPU, its queues' connection threads included: each claim is a
//! few hand-offs between threads, and on this VM a wake-up across vCPUs costs far more
//! than one on the same core. Unpinned, the scheduler placed each queue's connection thread
//! anew in every run, and reruns of one build swung 0.57-1.02; pinned, 0.99-1.04.

use std::time::{Duration, Instant};

use super::BenchError;
use super::setup::Scratch;
use super::stats::{OneCpu, median, rate};
use crate::queue::{DEFAULT_QUEUE, Queue, Unstored, now_ms};

/// How far in the future the backoff rows wait.
const BACKOFF_MS: i64 = 3_600_000;
/// Lease of the measured claims.
const LEASE_MS: i64 = 60_000;

/// One table shape.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    /// What the table holds.
    pub(crate) label: String,
    /// Due jobs.
    pub(crate) due: u64,
    /// Jobs waiting in backoff.
    pub(crate) backoff: u64,
}

/// One table shape and what claiming from it costs.
#[derive(Debug, Clone)]
pub(crate) struct ClaimFigures {
    /// What the table held.
    pub(crate) label: String,
    /// Claims (of one job each) per second at the median claim's time (every claim of every
    /// turn); 0 for idle shapes.
    pub(crate) claims_per_sec: f64,
    /// Idle polls (a claim finding nothing due) per second, for tables with nothing due.
    pub(crate) idle_polls_per_sec: Option<f64>,
}

/// Turns per run: a run's claims are split into this many short turns per shape, in a
/// rotated order, so a slow stretch of the machine, or the turn after another shape's
/// releases, never lands on one shape only.
const TURNS_PER_RUN: usize = 10;

/// What the claim scenario measured.
#[derive(Debug, Clone)]
pub(crate) struct ClaimRun {
    /// Per shape, in the order given.
    pub(crate) figures: Vec<ClaimFigures>,
    /// The CPU the scenario ran on, if the kernel let it pin itself.
    pub(crate) cpu: Option<usize>,
}

/// Builds every shape in its own SQLite file, then measures `claims` claims (or idle polls)
/// per shape per run.
pub(crate) async fn measure(
    scratch: &Scratch,
    shapes: &[Shape],
    claims: u32,
    runs: usize,
) -> Result<ClaimRun, BenchError> {
    // Before the queues open, so their connection threads inherit the CPU.
    let pinned = OneCpu::pin();
    let payload = scratch.payload(0);
    let mut queues = Vec::new();
    for (index, shape) in shapes.iter().enumerate() {
        let queue = Queue::open(&scratch.dir.join(format!("claims-{index}.db"))).await?;
        fill(&queue, shape, &payload).await?;
        queue.checkpoint_wal().await?;
        queues.push(queue);
    }
    let figures = time_claims(&queues, shapes, claims, runs).await?;
    for queue in &queues {
        queue.close().await;
    }
    Ok(ClaimRun {
        figures,
        cpu: pinned.cpu(),
    })
}

/// Fills an empty queue to `shape`: its jobs in backoff, then its due jobs.
pub(crate) async fn fill(queue: &Queue, shape: &Shape, payload: &str) -> Result<(), BenchError> {
    let now = now_ms();
    if shape.backoff > 0 {
        queue
            .fill(shape.backoff, payload, now + BACKOFF_MS, now)
            .await?;
    }
    if shape.due > 0 {
        queue.fill(shape.due, payload, now - 1_000, now).await?;
    }
    Ok(())
}

/// Measures `claims` claims (or idle polls) per run from each of `queues`, filled to the
/// matching `shapes`, in rotated turns.
pub(crate) async fn time_claims(
    queues: &[Queue],
    shapes: &[Shape],
    claims: u32,
    runs: usize,
) -> Result<Vec<ClaimFigures>, BenchError> {
    let mut timings = vec![Vec::new(); shapes.len()];
    let per_turn = claims.div_ceil(TURNS_PER_RUN as u32).max(1);
    for turn in 0..runs * TURNS_PER_RUN {
        for offset in 0..queues.len() {
            let index = (turn + offset) % queues.len();
            let queue = &queues[index];
            let mut held = Vec::new();
            for _ in 0..per_turn {
                let started = Instant::now();
                let jobs = queue
                    .claim(DEFAULT_QUEUE, "bench", 1, LEASE_MS, now_ms())
                    .await?;
                timings[index].push(started.elapsed().as_secs_f64());
                held.extend(jobs);
            }
            for job in held {
                queue
                    .release(job.fence(), &Unstored::default(), now_ms() - 1_000)
                    .await?;
            }
        }
    }
    Ok(shapes
        .iter()
        .zip(timings)
        .map(|(shape, secs)| {
            let figure = rate(1.0, Duration::from_secs_f64(median(&secs)));
            ClaimFigures {
                label: shape.label.clone(),
                claims_per_sec: if shape.due > 0 { figure } else { 0.0 },
                idle_polls_per_sec: (shape.due == 0).then_some(figure),
            }
        })
        .collect())
}

/// The query plan of the claim, for the report.
pub(crate) async fn plans(scratch: &Scratch) -> Result<Vec<String>, BenchError> {
    let queue = Queue::open(&scratch.dir.join("plan.db")).await?;
    let plan = queue.claim_plan().await?;
    queue.close().await;
    Ok(plan)
}

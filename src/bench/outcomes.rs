//! Outcomes: what following created approvals to their decision costs.
//!
//! 1. *Idle*: N succeeded jobs whose instances are pending, each next read a day away. The
//!    real worker (outcomes followed, the Stream connected to the sandbox child's gateway)
//!    idles for S s and this process's CPU is read over the window; then the same worker with
//!    `[outcome] follow = false` on the same database, so the difference is outcome tracking's
//!    own cost.
//! 2. *Reads*: N pending instances, all due now, in a sandbox in this process that knows every
//!    one of them (running) and limits each API to 20 calls/s; the worker's client limited to
//!    20 calls/s, `poll_share = 0.25`. The sandbox counts the GetInstance calls it received
//!    over W s, per one-second slice, and the throttle answers it gave. Then the same while the
//!    sandbox decides instances at a steady rate, each announced by a Stream event (each such
//!    decision comes without its approvers' records, so it asks for one more read).
//! 3. *Recording*: `Queue::record_decisions` on batches of 1, 16 and 256 Stream decisions, as
//!    the Stream listener hands over whatever events are waiting, with a webhook URL set so
//!    each decision also queues its notification: commits per event, wall and CPU µs per event.

use std::time::{Duration, Instant};

use futures_util::future::try_join_all;

use super::BenchError;
use super::pgserver::PgServer;
use super::setup::{self, Checkpoints::Automatic, Running, Scratch};
use super::stats::{cpu_time, median, rate};
use crate::queue::outcome::{Decision, DecisionFollowUp, LearnedFrom};
use crate::queue::{DEFAULT_QUEUE, Follow, Queue, Unstored, Verdict, now_ms};
use crate::sandbox::{self, Endpoint, Sandbox, SandboxOptions};
use crate::worker::WorkerSettings;

/// Concurrency of the worker (it has no jobs to run).
const RUN_CONCURRENCY: u32 = 16;
/// How far ahead the idle scenario's next reads are: none falls due while it measures.
const FAR_AHEAD_MS: i64 = 86_400_000;
/// Jobs claimed (and then succeeded) per round while the pending rows are made.
const SEED_CHUNK: u32 = 1_000;
/// Lease of those claims.
const SEED_LEASE_MS: i64 = 600_000;
/// The sandbox's limit per API and the worker client's rate limit in the reads scenario.
pub(crate) const API_RATE: u32 = 20;
/// `[outcome] poll_share` in the reads scenario.
pub(crate) const POLL_SHARE: f64 = 0.25;
/// Decisions per second the sandbox makes in the second reads window: below the reads'
/// share, so reads that kept to it would stay within it even if each decision cost one.
const DECIDE_RATE: u32 = 4;
/// Longest wait for the worker's Stream socket to open before a window starts.
const STREAM_WAIT: Duration = Duration::from_secs(10);
/// Settling time after the Stream connected, before a window starts.
const SETTLE: Duration = Duration::from_secs(1);
/// Decisions per `record_decisions` call.
pub(crate) const RECORD_BATCHES: [usize; 3] = [1, 16, 256];
/// The notification URL of the recording scenario (nothing is sent: no signing secret).
const WEBHOOK_URL: &str = "http://127.0.0.1:9/approval-decided";
/// Who originates the sandbox's seeded instances.
const ORIGINATOR: &str = "manager4220";

/// How big the scenario is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutcomeSizes {
    /// Pending instances (idle and reads).
    pub(crate) pending: usize,
    /// Length of each idle window, s.
    pub(crate) idle_secs: u64,
    /// Length of each reads window, s.
    pub(crate) read_secs: u64,
    /// Decisions recorded per batch size and run.
    pub(crate) events: usize,
    /// Runs of the recording scenario (medians).
    pub(crate) runs: usize,
}

/// The idle worker.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdleFigures {
    pub(crate) pending: usize,
    /// Over how long each window ran, s.
    pub(crate) secs: f64,
    /// This process's CPU with outcomes followed, % of one core.
    pub(crate) following_percent: f64,
    /// The same worker with `follow = false`.
    pub(crate) not_following_percent: f64,
    /// Commits while following (the reader's idle polls among them).
    pub(crate) commits: u64,
    /// Whether the Stream socket was open at the end of the following window.
    pub(crate) stream_connected: bool,
    /// The PostgreSQL server's CPU in the following window, % of one core (a local server).
    pub(crate) server_percent: Option<f64>,
    /// The same in the window without following.
    pub(crate) server_not_following_percent: Option<f64>,
}

/// One reads window.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReadFigures {
    /// What else happened meanwhile.
    pub(crate) label: String,
    pub(crate) secs: f64,
    /// GetInstance calls the sandbox received.
    pub(crate) reads: u64,
    pub(crate) reads_per_sec: f64,
    /// Fewest and most reads in one one-second slice.
    pub(crate) slowest_second: u64,
    pub(crate) busiest_second: u64,
    /// Throttle answers the sandbox gave, any API.
    pub(crate) throttled: u64,
    /// Decisions the sandbox made (0 in the quiet window).
    pub(crate) decisions: u64,
    /// Of those, recorded by the worker by the window's end (Stream or read).
    pub(crate) recorded: u64,
}

/// Recording decisions in batches of one size.
#[derive(Debug, Clone, Default)]
pub(crate) struct RecordFigures {
    /// Decisions per call.
    pub(crate) batch: usize,
    /// Decisions recorded per run.
    pub(crate) events: usize,
    pub(crate) commits_per_event: f64,
    /// Wall time per event, µs.
    pub(crate) us_per_event: f64,
    /// This process's CPU per event, µs (SQLite's work included; on PostgreSQL the client's).
    pub(crate) cpu_us_per_event: f64,
}

/// Everything the scenario measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct OutcomeFigures {
    pub(crate) idle: IdleFigures,
    pub(crate) reads: Vec<ReadFigures>,
    pub(crate) recording: Vec<RecordFigures>,
}

/// Runs the three parts, each in its own scratch directory under `scratch` (each its own
/// database, made by `fresh`: a SQLite file, or a new PostgreSQL database).
pub(crate) async fn measure(
    sizes: OutcomeSizes,
    sandbox_url: &str,
    server: Option<&PgServer>,
    fresh: impl AsyncFn(&str) -> Result<Scratch, BenchError>,
) -> Result<OutcomeFigures, BenchError> {
    let idle = idle(&fresh("outcomes_idle").await?, sandbox_url, sizes, server).await?;
    let reads = reads(&fresh("outcomes_reads").await?, sizes).await?;
    let recording = recording(&fresh("outcomes_record").await?, sizes).await?;
    Ok(OutcomeFigures {
        idle,
        reads,
        recording,
    })
}

/// Makes one succeeded job per instance id, each followed from its success on, first read
/// at `first_check_at`, as the worker leaves them: rows inserted, claimed and succeeded
/// with a [`Follow`] through the queue's API.
async fn seed(
    queue: &Queue,
    scratch: &Scratch,
    instance_ids: &[String],
    first_check_at: i64,
) -> Result<(), BenchError> {
    let now = now_ms();
    let count = u64::try_from(instance_ids.len()).unwrap_or(u64::MAX);
    queue.fill(count, &scratch.payload(0), now, now).await?;
    let mut ids = instance_ids.iter();
    loop {
        let claimed = queue
            .claim(
                DEFAULT_QUEUE,
                "bench:outcomes",
                SEED_CHUNK,
                SEED_LEASE_MS,
                now_ms(),
            )
            .await?;
        if claimed.is_empty() {
            break;
        }
        let succeeds = claimed
            .into_iter()
            .zip(ids.by_ref())
            .map(|(job, instance_id)| {
                let follow = Follow {
                    instance_id: instance_id.clone(),
                    callback_url: None,
                    first_check_at,
                };
                async move {
                    let none = Unstored::default();
                    let fence = job.fence();
                    queue
                        .succeed(fence, &none, "{}", "submit", "{}", Some(follow), now_ms())
                        .await
                }
            });
        try_join_all(succeeds).await?;
    }
    let followed: i64 = queue
        .outcome_stats()
        .await?
        .by_outcome
        .iter()
        .map(|(_, n)| n)
        .sum();
    if followed != i64::try_from(instance_ids.len()).unwrap_or(i64::MAX) {
        return Err(BenchError::Setup(format!(
            "{followed} outcome rows made for {} instances",
            instance_ids.len()
        )));
    }
    Ok(())
}

/// Waits until `worker`'s Stream socket is open (or [`STREAM_WAIT`] passes) when it follows
/// outcomes, then settles.
async fn settle(worker: &crate::worker::Worker, following: bool) {
    let deadline = Instant::now() + STREAM_WAIT;
    while following
        && Instant::now() < deadline
        && !worker.stream_state().is_some_and(|s| s.connected)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(SETTLE).await;
}

/// Part 1: the idle worker with N pending, following and not.
async fn idle(
    scratch: &Scratch,
    sandbox_url: &str,
    sizes: OutcomeSizes,
    server: Option<&PgServer>,
) -> Result<IdleFigures, BenchError> {
    let queue = scratch.queue(Automatic).await?;
    let ids: Vec<String> = (0..sizes.pending)
        .map(|i| format!("bench-idle-{i:06}"))
        .collect();
    seed(&queue, scratch, &ids, now_ms() + FAR_AHEAD_MS).await?;
    queue.checkpoint_wal().await?;
    let mut figures = IdleFigures {
        pending: sizes.pending,
        ..IdleFigures::default()
    };
    for follow in [true, false] {
        let mut config = scratch.config(sandbox_url, RUN_CONCURRENCY);
        config.outcome.follow = follow;
        let settings = WorkerSettings::from_config(&config);
        let worker = setup::worker(queue.clone(), sandbox_url, settings)?;
        let running = Running::start(&worker);
        settle(&worker, follow).await;
        let (cpu, commits) = (cpu_time(None), queue.commits());
        let server_cpu = server.and_then(PgServer::cpu);
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(sizes.idle_secs)).await;
        let elapsed = started.elapsed().as_secs_f64();
        let percent = cpu_time(None).saturating_sub(cpu).as_secs_f64() * 100.0 / elapsed;
        let server_percent = server_cpu.and_then(|before| {
            let used = server.and_then(PgServer::cpu)?.saturating_sub(before);
            Some(used.as_secs_f64() * 100.0 / elapsed)
        });
        figures.secs = elapsed;
        if follow {
            figures.following_percent = percent;
            figures.commits = queue.commits() - commits;
            figures.stream_connected = worker.stream_state().is_some_and(|s| s.connected);
            figures.server_percent = server_percent;
        } else {
            figures.not_following_percent = percent;
            figures.server_not_following_percent = server_percent;
        }
        running.stop().await;
    }
    queue.close().await;
    Ok(figures)
}

/// Part 2: reads of N due instances against a sandbox that limits every API, quiet and then
/// while instances are decided.
async fn reads(scratch: &Scratch, sizes: OutcomeSizes) -> Result<Vec<ReadFigures>, BenchError> {
    let sandbox = Sandbox::start(SandboxOptions {
        qps_limit: Some(API_RATE),
        ..SandboxOptions::default()
    })
    .await?;
    let url = sandbox.base_url();
    let ids = sandbox.seed_running(sizes.pending, ORIGINATOR);
    let queue = scratch.queue(Automatic).await?;
    seed(&queue, scratch, &ids, now_ms()).await?;
    queue.checkpoint_wal().await?;

    let mut config = scratch.config(&url, RUN_CONCURRENCY);
    config.dingtalk.rate_limit_per_sec = API_RATE;
    config.outcome.poll_share = POLL_SHARE;
    let settings = WorkerSettings::from_config(&config);
    let client = setup::dingtalk(&url, API_RATE)?;
    let worker = setup::worker_with_client(queue.clone(), client, settings)?;
    let running = Running::start(&worker);
    settle(&worker, true).await;
    let quiet = window(&sandbox, &queue, sizes.read_secs, &[]).await?;
    // Decided from the end of the list: the reads, oldest due first, reach those last.
    let deciding: Vec<&str> = ids
        .iter()
        .rev()
        .take(usize::try_from(u64::from(DECIDE_RATE) * sizes.read_secs).unwrap_or(0))
        .map(String::as_str)
        .collect();
    let busy = window(&sandbox, &queue, sizes.read_secs, &deciding).await?;
    running.stop().await;
    queue.close().await;
    sandbox.shutdown().await;
    Ok(vec![quiet, busy])
}

/// GetInstance calls and throttle answers (any API) the sandbox has recorded.
fn counts(sandbox: &Sandbox) -> (u64, u64) {
    let requests = sandbox.requests();
    let reads = requests
        .iter()
        .filter(|r| r.endpoint == Endpoint::GetInstance)
        .count();
    // The sandbox's throttle answer is DingTalk's: 403 `QpsLimitForAppkeyAndApi` (90018 on
    // the oapi user call, which the worker does not make here).
    let throttled = requests
        .iter()
        .filter(|r| r.status == 403 && r.endpoint != Endpoint::OssPut)
        .count();
    (reads as u64, throttled as u64)
}

/// Decided outcomes so far.
async fn decided(queue: &Queue) -> Result<u64, BenchError> {
    let stats = queue.outcome_stats().await?;
    let decided: i64 = stats
        .by_outcome
        .iter()
        .filter(|(outcome, _)| outcome != Verdict::Pending.as_str())
        .map(|(_, n)| n)
        .sum();
    Ok(u64::try_from(decided).unwrap_or(0))
}

/// One reads window of `secs` s, deciding `deciding` (agree) evenly spread over it.
async fn window(
    sandbox: &Sandbox,
    queue: &Queue,
    secs: u64,
    deciding: &[&str],
) -> Result<ReadFigures, BenchError> {
    let decided_before = decided(queue).await?;
    let per_sec = if deciding.is_empty() { 1 } else { DECIDE_RATE };
    let period = Duration::from_secs(1) / per_sec;
    let (reads_before, throttled_before) = counts(sandbox);
    let mut last = reads_before;
    let mut slices = Vec::new();
    let started = tokio::time::Instant::now();
    for step in 1..=u32::try_from(secs).unwrap_or(u32::MAX) * per_sec {
        if let Some(id) = deciding.get(step as usize - 1) {
            sandbox
                .decide(id, sandbox::Decision::Agree)
                .map_err(|e| BenchError::Setup(format!("deciding {id}: {e}")))?;
        }
        tokio::time::sleep_until(started + period * step).await;
        if step % per_sec == 0 {
            let (reads, _) = counts(sandbox);
            slices.push(reads - last);
            last = reads;
        }
    }
    let elapsed = started.elapsed();
    let (reads, throttled) = counts(sandbox);
    let reads = reads - reads_before;
    Ok(ReadFigures {
        label: if deciding.is_empty() {
            "nothing decided".to_owned()
        } else {
            format!("{DECIDE_RATE} decisions/s by Stream events")
        },
        secs: elapsed.as_secs_f64(),
        reads,
        reads_per_sec: rate(reads as f64, elapsed),
        slowest_second: slices.iter().copied().min().unwrap_or(0),
        busiest_second: slices.iter().copied().max().unwrap_or(0),
        throttled: throttled - throttled_before,
        decisions: deciding.len() as u64,
        recorded: decided(queue).await? - decided_before,
    })
}

/// Part 3: `record_decisions` on batches of each size, in turns, `runs` times.
async fn recording(
    scratch: &Scratch,
    sizes: OutcomeSizes,
) -> Result<Vec<RecordFigures>, BenchError> {
    let queue = scratch.queue(Automatic).await?;
    let runs = sizes.runs.max(1);
    let per_turn = sizes.events;
    let ids: Vec<String> = (0..per_turn * RECORD_BATCHES.len() * runs)
        .map(|i| format!("bench-record-{i:07}"))
        .collect();
    seed(&queue, scratch, &ids, now_ms() + FAR_AHEAD_MS).await?;
    queue.checkpoint_wal().await?;
    let follow_up = DecisionFollowUp {
        default_url: Some(WEBHOOK_URL.to_owned()),
        fetch_records: true,
    };
    let mut turns: Vec<Vec<RecordFigures>> = vec![Vec::new(); RECORD_BATCHES.len()];
    let mut unused = ids.chunks(per_turn);
    for _ in 0..runs {
        for (index, &batch) in RECORD_BATCHES.iter().enumerate() {
            let mine = unused.next().unwrap_or_default();
            let decisions: Vec<Decision> = mine
                .iter()
                .map(|id| Decision {
                    instance_id: id.clone(),
                    verdict: Verdict::Agree,
                    decided_at_ms: Some(now_ms()),
                    learned_from: LearnedFrom::Stream,
                    records: None,
                })
                .collect();
            let (commits, cpu) = (queue.commits(), cpu_time(None));
            let started = Instant::now();
            let mut recorded = 0;
            for chunk in decisions.chunks(batch) {
                let changed = queue.record_decisions(chunk, &follow_up, now_ms()).await?;
                recorded += changed.iter().flatten().count();
            }
            let elapsed = started.elapsed();
            let cpu = cpu_time(None).saturating_sub(cpu);
            let commits = queue.commits() - commits;
            if recorded != decisions.len() {
                return Err(BenchError::Setup(format!(
                    "{recorded} of {} decisions recorded",
                    decisions.len()
                )));
            }
            let events = decisions.len().max(1) as f64;
            turns[index].push(RecordFigures {
                batch,
                events: decisions.len(),
                commits_per_event: commits as f64 / events,
                us_per_event: elapsed.as_secs_f64() * 1e6 / events,
                cpu_us_per_event: cpu.as_secs_f64() * 1e6 / events,
            });
        }
    }
    queue.close().await;
    Ok(turns
        .iter()
        .map(|runs| {
            let pick =
                |f: fn(&RecordFigures) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
            RecordFigures {
                batch: runs.first().map_or(0, |r| r.batch),
                events: runs.first().map_or(0, |r| r.events),
                commits_per_event: pick(|r| r.commits_per_event),
                us_per_event: pick(|r| r.us_per_event),
                cpu_us_per_event: pick(|r| r.cpu_us_per_event),
            }
        })
        .collect())
}

/// Idle CPU with the pending instances, % of one core, below.
const TARGET_IDLE_PERCENT: f64 = 1.0;
/// Commits per recorded event, at most.
const TARGET_COMMITS_PER_EVENT: f64 = 1.0;

/// Whether a window's reads kept to the share: at most `share × secs` and one tick's claim
/// more (a window of W s sees W or W + 1 of the reader's one-second ticks).
fn within_share(r: &ReadFigures) -> bool {
    let share = f64::from(API_RATE) * POLL_SHARE;
    r.reads as f64 <= share * r.secs.round() + share.floor()
}

/// Prints the scenario's block.
pub(crate) fn print(f: &OutcomeFigures) {
    let i = &f.idle;
    println!("== outcomes (following created approvals to their decision)");
    println!(
        "  idle worker, {} pending instances, next reads a day away, Stream {}: {:.2} % of a core \
         over {:.0} s ({} commits); with `follow = false`: {:.2} %",
        i.pending,
        if i.stream_connected {
            "connected"
        } else {
            "NOT connected"
        },
        i.following_percent,
        i.secs,
        i.commits,
        i.not_following_percent,
    );
    if let (Some(following), Some(not)) = (i.server_percent, i.server_not_following_percent) {
        println!(
            "    PostgreSQL server meanwhile: {following:.2} % of a core; without following: {not:.2} %"
        );
    }
    let share = f64::from(API_RATE) * POLL_SHARE;
    for r in &f.reads {
        let decided = if r.decisions > 0 {
            format!(
                "; {} decided, {} recorded by the end",
                r.decisions, r.recorded
            )
        } else {
            String::new()
        };
        println!(
            "  reads, {} pending all due, {API_RATE} calls/s per API, poll_share {POLL_SHARE} \
             (≤ {share:.0}/s), {}: {:.2} GetInstance/s over {:.0} s, one-second slices {}..{}, \
             {} throttled{decided}",
            i.pending,
            r.label,
            r.reads_per_sec,
            r.secs,
            r.slowest_second,
            r.busiest_second,
            r.throttled,
        );
    }
    for r in &f.recording {
        println!(
            "  record_decisions, {:>3} per call ({} events, notification queued): {:.3} commits/event, \
             {:.1} µs/event wall, {:.1} µs/event CPU",
            r.batch, r.events, r.commits_per_event, r.us_per_event, r.cpu_us_per_event
        );
    }
    println!();
}

/// Its target lines, through `line(name, value, met)`.
pub(crate) fn targets(f: &OutcomeFigures, line: &dyn Fn(&str, String, bool)) {
    let i = &f.idle;
    line(
        &format!(
            "idle with {} pending outcomes < 1 % of a core (Stream on)",
            i.pending
        ),
        format!(
            "{:.2} % ({:.2} % without following)",
            i.following_percent, i.not_following_percent
        ),
        i.following_percent < TARGET_IDLE_PERCENT && i.stream_connected,
    );
    let share = f64::from(API_RATE) * POLL_SHARE;
    for r in &f.reads {
        line(
            &format!(
                "outcome reads ≤ poll_share × rate limit = {share:.0}/s, none throttled ({})",
                r.label
            ),
            format!(
                "{:.2}/s, slices {}..{}, {} throttled",
                r.reads_per_sec, r.slowest_second, r.busiest_second, r.throttled
            ),
            within_share(r) && r.throttled == 0,
        );
    }
    if let Some(worst) = f
        .recording
        .iter()
        .max_by(|a, b| a.commits_per_event.total_cmp(&b.commits_per_event))
    {
        line(
            "recording a decision ≤ 1 commit per event",
            f.recording
                .iter()
                .map(|r| format!("{:.3} at {}/call", r.commits_per_event, r.batch))
                .collect::<Vec<_>>()
                .join(", "),
            worst.commits_per_event <= TARGET_COMMITS_PER_EVENT,
        );
    }
}

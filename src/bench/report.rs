//! Printing the figures, taking medians over runs, and checking the targets (each a ratio to
//! something measured in the same run, or an absolute bound from the issue).

use super::batch::BatchFigures;
use super::claims::ClaimFigures;
use super::e2e::RunFigures;
use super::largefile::LargeFileFigures;
use super::limiter::LimiterFigures;
use super::openloop::OpenLoopFigures;
use super::stats::median;
use super::{BenchOptions, Results};

/// CPU per job allowed at concurrency 16 with HTTP, µs.
const TARGET_CPU_US_PER_JOB: f64 = 400.0;
/// Jobs/s with HTTP at concurrency 16 against the no-HTTP shape, at least.
/// Claims/s of the big table (and with backoff rows) against the small one, at least.
const TARGET_CLAIM_RATIO: f64 = 0.9;
/// Pickup p99, ms, at most.
const TARGET_PICKUP_P99_MS: f64 = 200.0;
/// Idle `run`, percent of a core, below.
const TARGET_IDLE_CPU_PERCENT: f64 = 1.0;
/// Peak RSS growth for the large upload, KiB, at most.
const TARGET_RSS_GROWTH_KIB: u64 = 16 * 1024;
/// Large-upload MB/s against the loopback PUT ceiling, at least.
const TARGET_UPLOAD_RATIO: f64 = 0.5;
/// Limiter deviation from its limit, at most (fraction).
const TARGET_LIMITER_DEVIATION: f64 = 0.05;
/// Limiter utilisation, at least (fraction).
const TARGET_LIMITER_UTILISATION: f64 = 0.95;
/// Batch enqueue jobs/s, at least.
const TARGET_BATCH_JOBS_PER_SEC: f64 = 20_000.0;

pub(super) fn header(options: &BenchOptions, concurrencies: &[u32], runs: usize) {
    println!(
        "approval-worker bench{} — {} run(s) per figure (medians), concurrency {:?}, scratch in {}",
        if options.quick { " --quick" } else { "" },
        runs,
        concurrencies,
        options.dir.display()
    );
    println!(
        "CPU is user+system time from /proc/<pid>/stat; latencies come from job_events (1 ms resolution)."
    );
    println!(
        "Timed runs checkpoint the WAL as the product does; WAL bytes/job come from one extra run \
         per shape with checkpoints off."
    );
    if options.quick {
        println!("--quick: sizes too small to judge the targets; it proves the benchmark runs.");
    }
    println!();
}

pub(super) fn ceilings(results: &Results, put_bytes: u64) {
    println!("== ceilings (same disk, same machine)");
    if let Some(commits) = results.commits_per_sec {
        println!("  raw single-row commits (sqlx, queue pragmas): {commits:>10.0} commits/s");
    }
    if let Some(put) = results.put_mb_per_sec {
        println!(
            "  loopback PUT to the sandbox child ({} MiB): {put:>8.0} MB/s",
            put_bytes / (1024 * 1024)
        );
    }
    if let Some(calls) = results.calls {
        println!(
            "  DingTalk calls through the client, 16 at once:  {:>8.0} calls/s, {:.0} µs CPU each in this process",
            calls.calls_per_sec, calls.cpu_us
        );
    }
    println!();
}

/// The run whose jobs/s is the median, with every other figure the median of its own.
pub(super) fn median_run(runs: &[RunFigures]) -> RunFigures {
    let pick = |f: fn(&RunFigures) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    let Some(first) = runs.first() else {
        return RunFigures::default();
    };
    let steps = first
        .steps
        .iter()
        .enumerate()
        .map(|(index, (name, _, _))| {
            let p50: Vec<f64> = runs
                .iter()
                .filter_map(|r| r.steps.get(index))
                .map(|s| s.1)
                .collect();
            let p99: Vec<f64> = runs
                .iter()
                .filter_map(|r| r.steps.get(index))
                .map(|s| s.2)
                .collect();
            (name.clone(), median(&p50), median(&p99))
        })
        .collect();
    RunFigures {
        jobs: first.jobs,
        failed: runs.iter().map(|r| r.failed).sum(),
        elapsed: first.elapsed,
        jobs_per_sec: pick(|r| r.jobs_per_sec),
        latency_p50_ms: pick(|r| r.latency_p50_ms),
        latency_p99_ms: pick(|r| r.latency_p99_ms),
        steps,
        commits_per_job: pick(|r| r.commits_per_job),
        cpu_us_per_job: pick(|r| r.cpu_us_per_job),
        sandbox_cpu_us_per_job: pick(|r| r.sandbox_cpu_us_per_job),
        wal_bytes_per_job: pick(|r| r.wal_bytes_per_job),
        server_cpu_us_per_job: runs
            .iter()
            .map(|r| r.server_cpu_us_per_job)
            .collect::<Option<Vec<f64>>>()
            .map(|cpu| median(&cpu)),
    }
}

pub(super) fn http_run(concurrency: u32, f: &RunFigures) {
    println!(
        "== end to end with HTTP, concurrency {concurrency} ({} jobs/run{})",
        f.jobs,
        if f.failed > 0 {
            format!(", {} FAILED", f.failed)
        } else {
            String::new()
        }
    );
    print_run(f);
    println!(
        "  sandbox child (the same cores): {:.0} µs CPU/job",
        f.sandbox_cpu_us_per_job
    );
    let steps: Vec<String> = f
        .steps
        .iter()
        .map(|(name, p50, p99)| format!("{name} {p50:.0}/{p99:.0}"))
        .collect();
    println!("  per step p50/p99 ms:  {}", steps.join(" · "));
    println!();
}

pub(super) fn no_http_run(f: &RunFigures) {
    println!(
        "== no HTTP (16 producers, concurrency 16, {} checkpoints + succeed per job, {} jobs/run)",
        super::e2e::NO_HTTP_CHECKPOINTS.len(),
        f.jobs
    );
    print_run(f);
    println!();
}

fn print_run(f: &RunFigures) {
    println!(
        "  {:>8.0} jobs/s   latency claim→succeeded p50 {:.0} ms p99 {:.0} ms",
        f.jobs_per_sec, f.latency_p50_ms, f.latency_p99_ms
    );
    // On PostgreSQL the WAL is the server's, shared by every database: its CPU is shown.
    let store = match f.server_cpu_us_per_job {
        Some(cpu) => format!("{cpu:>6.0} µs CPU/job in the PostgreSQL server"),
        None => format!("{:>7.0} WAL bytes/job", f.wal_bytes_per_job),
    };
    println!(
        "  {:>8.2} commits/job   {:>6.0} µs CPU/job   {store}",
        f.commits_per_job, f.cpu_us_per_job
    );
}

pub(super) fn claim(f: &ClaimFigures) {
    match f.idle_polls_per_sec {
        Some(polls) => println!("  claims: {:<44} {polls:>9.0} idle polls/s", f.label),
        None => println!(
            "  claims: {:<44} {:>9.0} claims/s",
            f.label, f.claims_per_sec
        ),
    }
}

/// Where the claim scenario ran (see `claims`: pinned to one CPU, so every hand-off stays on
/// one core).
pub(super) fn claims_cpu(cpu: Option<usize>) {
    match cpu {
        Some(cpu) => println!("  (claims measured on CPU {cpu}, connection threads included)"),
        None => println!("  (claims measured unpinned: the kernel refused to pin the thread)"),
    }
}

/// The idle polls' ratio, without a verdict: the targets are on claims, and an idle
/// `run` polls only after the files changed or its poll interval passed (its CPU is the open
/// loop's target). With 100 k jobs in backoff `jobs_due` is two levels deeper than in an
/// empty table, which shows in a poll of ~15 µs.
pub(super) fn idle_polls(figures: &[ClaimFigures]) {
    let polls = |backoff: bool| {
        figures
            .iter()
            .filter(|f| f.label.contains("backoff") == backoff)
            .find_map(|f| f.idle_polls_per_sec)
    };
    if let (Some(idle), Some(idle_backoff)) = (polls(false), polls(true)) {
        println!(
            "  idle polls with backoff rows / without: {idle_backoff:.0} / {idle:.0} = {:.2} \
             (reported, no target)",
            idle_backoff / idle
        );
    }
}

pub(super) fn claim_plan(plan: &[String]) {
    println!("  claim plan: {}", plan.join(" | "));
    println!();
}

pub(super) fn open_loop(f: &OpenLoopFigures) {
    println!(
        "== open loop (`run` in its own process; rows inserted by another process with plain SQL)"
    );
    println!(
        "  idle `run`: {:.2} % of a core over {:.0} s",
        f.idle_cpu_percent, f.idle_secs
    );
    println!(
        "  {} jobs at {}/s: pickup p50 {:.0} ms p99 {:.0} ms max {:.0} ms; backlog mean {:.1} max {}; {:.0} µs CPU/job in `run`",
        f.jobs,
        f.rate,
        f.pickup_p50_ms,
        f.pickup_p99_ms,
        f.pickup_max_ms,
        f.backlog_mean,
        f.backlog_max,
        f.cpu_us_per_job
    );
    println!();
}

pub(super) fn median_large(runs: &[LargeFileFigures]) -> LargeFileFigures {
    let pick = |f: fn(&LargeFileFigures) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    LargeFileFigures {
        bytes: runs.first().map_or(0, |r| r.bytes),
        parts: runs.first().map_or(0, |r| r.parts),
        job_secs: pick(|r| r.job_secs),
        put_secs: pick(|r| r.put_secs),
        job_mb_per_sec: pick(|r| r.job_mb_per_sec),
        put_mb_per_sec: pick(|r| r.put_mb_per_sec),
        ceiling_mb_per_sec: pick(|r| r.ceiling_mb_per_sec),
        first_read_secs: pick(|r| r.first_read_secs),
        // The worst run, not the median: later runs reuse memory the first one grew.
        rss_growth_kib: runs.iter().map(|r| r.rss_growth_kib).max().unwrap_or(0),
        peak_reset: runs.iter().all(|r| r.peak_reset),
    }
}

pub(super) fn large_file(f: &LargeFileFigures) {
    let how = match f.parts {
        0 => "one PUT".to_owned(),
        parts => format!("{parts} parts"),
    };
    println!(
        "== large file ({} MiB sparse attachment in {how}, real upload path)",
        f.bytes / (1024 * 1024)
    );
    println!(
        "  whole job {:.2} s = {:.0} MB/s (ticket + PUT, hashed as it is sent + commit + submit); PUT steps {:.2} s = {:.0} MB/s",
        f.job_secs, f.job_mb_per_sec, f.put_secs, f.put_mb_per_sec
    );
    println!(
        "  loopback PUT ceiling, same size to the same sandbox: {:.0} MB/s; first read of the new sparse file (before the job, untimed): {:.2} s",
        f.ceiling_mb_per_sec, f.first_read_secs
    );
    println!(
        "  peak RSS growth over the idle worker: {} KiB{}",
        f.rss_growth_kib,
        if f.peak_reset {
            ""
        } else {
            " (peak not resettable: upper bound)"
        }
    );
    println!();
}

pub(super) fn limiter(f: &LimiterFigures) {
    println!(
        "== rate limiter ({}/s, {} tasks competing, {} s)",
        f.per_sec, f.tasks, f.secs
    );
    println!(
        "  {:.2} calls/s overall; one-second slices {}..{}",
        f.achieved_per_sec, f.slowest_second, f.busiest_second
    );
    println!();
}

pub(super) fn median_batch(runs: &[BatchFigures]) -> BatchFigures {
    BatchFigures {
        jobs: runs.first().map_or(0, |r| r.jobs),
        jobs_per_sec: median(&runs.iter().map(|r| r.jobs_per_sec).collect::<Vec<_>>()),
        durable: runs.iter().map(|r| r.durable).min().unwrap_or(0),
    }
}

pub(super) fn batch(f: &BatchFigures) {
    println!(
        "== batch enqueue (`enqueue --payload -`, {} JSON lines, process start to exit)",
        f.jobs
    );
    println!(
        "  {:>8.0} jobs/s; {} of {} queued after exit",
        f.jobs_per_sec, f.durable, f.jobs
    );
    println!();
}

/// Prints one line per target: the figure, the bound, and whether it holds.
pub(super) fn targets(r: &Results) {
    println!("== targets");
    let line = |name: &str, value: String, ok: bool| {
        println!("  [{}] {name}: {value}", if ok { "met " } else { "MISS" });
    };
    let at16 = r.http.iter().find(|(c, _)| *c == 16).map(|(_, f)| f);
    if let Some(http) = at16 {
        line(
            "CPU per job ≤ 400 µs (concurrency 16, HTTP)",
            format!(
                "{:.0} µs, {:.2} commits/job",
                http.cpu_us_per_job, http.commits_per_job
            ),
            http.cpu_us_per_job <= TARGET_CPU_US_PER_JOB,
        );
    }
    let small = r.claims.first().map(|c| c.claims_per_sec);
    let big = r.claims.get(1).map(|c| c.claims_per_sec);
    let backoff = r.claims.get(2).map(|c| c.claims_per_sec);
    if let (Some(small), Some(big), Some(backoff)) = (small, big, backoff) {
        line(
            "claims/s big table ≥ 0.9 × small",
            format!("{big:.0} / {small:.0} = {:.2}", big / small),
            big / small >= TARGET_CLAIM_RATIO,
        );
        line(
            "claims/s with backoff rows ≥ 0.9 × without",
            format!("{backoff:.0} / {small:.0} = {:.2}", backoff / small),
            backoff / small >= TARGET_CLAIM_RATIO,
        );
    }
    if !r.claim_plan.is_empty() {
        let sorted = r.claim_plan.iter().any(|l| l.contains("TEMP B-TREE"));
        line(
            "claim plan has no TEMP B-TREE",
            r.claim_plan.join(" | "),
            !sorted,
        );
    }
    if let Some(o) = &r.open_loop {
        line(
            "pickup p99 ≤ 200 ms",
            format!("{:.0} ms", o.pickup_p99_ms),
            o.pickup_p99_ms <= TARGET_PICKUP_P99_MS,
        );
        line(
            "idle `run` < 1 % of a core",
            format!("{:.2} %", o.idle_cpu_percent),
            o.idle_cpu_percent < TARGET_IDLE_CPU_PERCENT,
        );
    }
    if let Some(l) = &r.large_file {
        line(
            "large upload RSS growth ≤ 16 MiB",
            format!("{} KiB", l.rss_growth_kib),
            l.rss_growth_kib <= TARGET_RSS_GROWTH_KIB,
        );
        let ceiling = l.ceiling_mb_per_sec;
        let ratio = l.job_mb_per_sec / ceiling;
        line(
            "large upload ≥ 0.5 × loopback PUT (whole job)",
            format!("{:.0} / {ceiling:.0} MB/s = {ratio:.2}", l.job_mb_per_sec),
            ratio >= TARGET_UPLOAD_RATIO,
        );
    }
    if let Some(l) = &r.large_parts {
        line(
            &format!(
                "{} MiB in {} parts: RSS growth ≤ 16 MiB",
                l.bytes / (1024 * 1024),
                l.parts
            ),
            format!("{} KiB", l.rss_growth_kib),
            l.rss_growth_kib <= TARGET_RSS_GROWTH_KIB,
        );
    }
    if let Some(l) = &r.limiter {
        let limit = f64::from(l.per_sec);
        let deviation = (l.achieved_per_sec - limit).abs() / limit;
        let utilisation = l.achieved_per_sec / limit;
        line(
            "rate limiter within ±5 % and ≥ 95 % utilised",
            format!(
                "{:.2}/s of {limit}/s ({:+.1} %), slices {}..{}",
                l.achieved_per_sec,
                (utilisation - 1.0) * 100.0,
                l.slowest_second,
                l.busiest_second
            ),
            deviation <= TARGET_LIMITER_DEVIATION && utilisation >= TARGET_LIMITER_UTILISATION,
        );
    }
    if let Some(b) = &r.batch {
        line(
            "batch enqueue ≥ 20 k jobs/s, all durable",
            format!("{:.0} jobs/s, {} of {}", b.jobs_per_sec, b.durable, b.jobs),
            b.jobs_per_sec >= TARGET_BATCH_JOBS_PER_SEC && b.durable == b.jobs as i64,
        );
    }
    if let Some(o) = &r.outcomes {
        super::outcomes::targets(o, &line);
    }
    for (ok, text) in super::apibound::targets(&r.api_bound) {
        println!("  [{}] {text}", if ok { "met " } else { "MISS" });
    }
    for (ok, text) in r.dashboard.iter().flat_map(super::dashboard::targets) {
        println!("  [{}] {text}", if ok { "met " } else { "MISS" });
    }
}

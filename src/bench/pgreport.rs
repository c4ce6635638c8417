//! Printing what `bench --database` measured on PostgreSQL, and checking its targets (each a
//! ratio within the run, or an absolute bound from the issue).

use super::postgres::PgResults;
use super::processes::ProcessFigures;
use super::stats::median;
use super::{BenchOptions, Scenario};
use crate::bench::pgserver::PgServer;

/// Claims/s of the big table against the small one, at least.
const TARGET_CLAIM_RATIO: f64 = 0.9;
/// Pickup p99 through LISTEN/NOTIFY, ms, at most.
const TARGET_PICKUP_P99_MS: f64 = 50.0;
/// Worker CPU per job at concurrency 16 with HTTP, µs, at most.
const TARGET_CPU_US_PER_JOB: f64 = 400.0;

pub(super) fn header(
    options: &BenchOptions,
    server: &PgServer,
    concurrencies: &[u32],
    runs: usize,
) {
    println!(
        "approval-worker bench{} on PostgreSQL {} — {} run(s) per figure (medians), concurrency {:?}",
        if options.quick { " --quick" } else { "" },
        server.describe(),
        runs,
        concurrencies,
    );
    println!("Every run uses a fresh database on that server, dropped when it ends.");
    match server.cpu() {
        Some(_) => println!(
            "CPU is user+system time from /proc; the server's (all its processes) is shown beside \
             the worker's: they share this machine's cores."
        ),
        None => println!("The server is not on this machine: only the worker's CPU is shown."),
    }
    println!("WAL bytes/job are not measured: the server's WAL is shared by every database on it.");
    if options.quick {
        println!("--quick: sizes too small to judge the targets; it proves the benchmark runs.");
    }
    println!();
}

pub(super) fn ceilings(results: &PgResults) {
    println!("== ceilings");
    if let Some(commits) = results.commits_per_sec {
        println!("  raw single-row commits (one connection, autocommit): {commits:>8.0} commits/s");
    }
    println!(
        "  (loopback PUT and DingTalk call ceilings do not touch the database: run them without \
         --database)"
    );
    println!();
}

pub(super) fn claims(results: &PgResults) {
    println!("== claims (one job per claim, each table in its own database)");
    for figure in &results.claims {
        super::report::claim(figure);
    }
    if let [small, big] = results.claims.as_slice() {
        println!(
            "  big table / small: {:.0} / {:.0} = {:.2}",
            big.claims_per_sec,
            small.claims_per_sec,
            big.claims_per_sec / small.claims_per_sec.max(f64::MIN_POSITIVE)
        );
    }
    println!("  claim plan (big table):");
    for line in &results.claim_plan {
        println!("    {line}");
    }
    println!();
}

/// One figure per process count: medians over runs; failures, claims and double claims
/// summed over every run.
pub(super) fn median_processes(runs: &[ProcessFigures]) -> ProcessFigures {
    let pick = |f: fn(&ProcessFigures) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    ProcessFigures {
        processes: runs.first().map_or(0, |r| r.processes),
        jobs: runs.first().map_or(0, |r| r.jobs),
        failed: runs.iter().map(|r| r.failed).sum(),
        jobs_per_sec: pick(|r| r.jobs_per_sec),
        cpu_us_per_job: pick(|r| r.cpu_us_per_job),
        server_cpu_us_per_job: runs
            .iter()
            .map(|r| r.server_cpu_us_per_job)
            .collect::<Option<Vec<f64>>>()
            .map(|cpu| median(&cpu)),
        claims: runs.iter().map(|r| r.claims).sum(),
        double_claims: runs.iter().map(|r| r.double_claims).sum(),
    }
}

pub(super) fn processes(figures: &[ProcessFigures]) {
    println!(
        "== `run` processes on one database (concurrency 16 each, HTTP to the sandbox, jobs \
         enqueued in one transaction once they idle)"
    );
    for f in figures {
        let server = f
            .server_cpu_us_per_job
            .map_or(String::new(), |cpu| format!(" + {cpu:.0} µs in the server"));
        println!(
            "  {} process(es), {} jobs/run: {:>7.0} jobs/s   {:.0} µs CPU/job in all `run`s{server}   \
             claims {} (all runs), double claims {}{}",
            f.processes,
            f.jobs,
            f.jobs_per_sec,
            f.cpu_us_per_job,
            f.claims,
            f.double_claims,
            if f.failed > 0 {
                format!(", {} FAILED", f.failed)
            } else {
                String::new()
            }
        );
    }
    println!();
}

/// Says which scenarios asked for do not run on PostgreSQL, and why.
pub(super) fn skipped(options: &BenchOptions) {
    let asked = |scenario: Scenario| options.only.is_empty() || options.only.contains(&scenario);
    let mut lines = Vec::new();
    if asked(Scenario::LargeFile) || asked(Scenario::Limiter) {
        lines.push(
            "large-file, limiter: they measure the upload path and the client, not the store; \
             run them without --database",
        );
    }
    if asked(Scenario::Batch) {
        lines.push("batch: measured on SQLite only; run it without --database");
    }
    for line in lines {
        println!("== skipped on PostgreSQL: {line}");
    }
    println!();
}

/// Prints one line per target: the figure, the bound, and whether it holds.
pub(super) fn targets(r: &PgResults) {
    println!("== targets (PostgreSQL)");
    let line = |name: &str, value: String, ok: bool| {
        println!("  [{}] {name}: {value}", if ok { "met " } else { "MISS" });
    };
    if let [small, big] = r.claims.as_slice() {
        let ratio = big.claims_per_sec / small.claims_per_sec.max(f64::MIN_POSITIVE);
        line(
            &format!("claims/s with {} ≥ 0.9 × with {}", big.label, small.label),
            format!(
                "{:.0} / {:.0} = {ratio:.2}",
                big.claims_per_sec, small.claims_per_sec
            ),
            ratio >= TARGET_CLAIM_RATIO,
        );
    }
    if let Some(o) = &r.open_loop {
        line(
            "plain-SQL pickup p99 ≤ 50 ms (LISTEN/NOTIFY)",
            format!(
                "p50 {:.0} ms, p99 {:.0} ms",
                o.pickup_p50_ms, o.pickup_p99_ms
            ),
            o.pickup_p99_ms <= TARGET_PICKUP_P99_MS,
        );
    }
    if let Some((_, http)) = r.http.iter().find(|(c, _)| *c == 16) {
        let server = http
            .server_cpu_us_per_job
            .map_or(String::new(), |cpu| format!(" (server: {cpu:.0} µs more)"));
        line(
            "worker CPU per job ≤ 400 µs (concurrency 16, HTTP)",
            format!("{:.0} µs{server}", http.cpu_us_per_job),
            http.cpu_us_per_job <= TARGET_CPU_US_PER_JOB,
        );
    }
    for f in r.processes.iter().filter(|f| f.processes > 1) {
        line(
            &format!("{} `run` processes: no double claims", f.processes),
            format!(
                "{} of {} claims; {:.0} jobs/s",
                f.double_claims, f.claims, f.jobs_per_sec
            ),
            f.double_claims == 0 && f.failed == 0,
        );
    }
    if let Some(o) = &r.outcomes {
        super::outcomes::targets(o, &line);
    }
    if r.no_http.is_some() {
        println!(
            "  (no-HTTP ≥ 2 × underway: measured by bench/peer/underway, which runs the same shape \
             through `bench --peer-shape --database`)"
        );
    }
}

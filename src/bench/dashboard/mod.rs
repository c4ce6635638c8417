//! Dashboard: the server time of the operators' pages with a big table.
//!
//! A SQLite queue of 1 M jobs (a month of a busy queue, see `fill`) is served by the
//! dashboard's router in this process: each request goes through `oneshot`, no socket, so
//! the time is the server's (access guard, queue reads, rendering, headers), not the
//! network's. The pages are requested in rounds, each round every page once, so a slow
//! stretch of the machine falls on all of them alike; each page is requested once before
//! the rounds, untimed, to warm the caches as an operator's first click would. Like a
//! browser, every request after the first carries the session cookie the first one got.
//!
//! The target covers the jobs list (HTML and JSON, first and second page, with filters),
//! job detail and the count a bulk action shows first; the overview, which counts every
//! job by status, queue and outcome, is reported beside it without a target.

mod fill;

use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

use super::BenchError;
use super::setup::Scratch;
use super::stats::percentile;
use crate::config::Config;
use crate::dashboard::{Dashboard, DashboardSettings, router};
use crate::queue::{Queue, now_ms};
use fill::{Arg, ListQuery};

/// The bound on the jobs list and job detail, ms of server time.
const TARGET_MS: f64 = 50.0;
/// The Host header of every request: the listener the settings are made for.
const HOST: &str = "127.0.0.1:9188";
/// A queue the list is filtered by.
const FILTER_QUEUE: &str = "expenses";

/// How big the scenario is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DashboardSizes {
    /// Jobs in the table.
    pub(crate) jobs: i64,
    /// Timed requests per page.
    pub(crate) requests: usize,
}

/// Whether a page is under the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The jobs list, a job, or the count before a bulk action: ≤ 50 ms.
    Targeted,
    /// The overview: reported, no target.
    Overview,
}

/// One page's server times.
#[derive(Debug, Clone)]
pub(crate) struct PageFigures {
    pub(crate) path: String,
    pub(crate) kind: Kind,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    /// Size of the answer's body.
    pub(crate) bytes: usize,
}

/// What the scenario measured.
#[derive(Debug, Clone)]
pub(crate) struct DashboardFigures {
    pub(crate) jobs: i64,
    pub(crate) events: i64,
    pub(crate) outcomes: i64,
    /// Time to build the table, s.
    pub(crate) fill_secs: f64,
    pub(crate) requests: usize,
    pub(crate) pages: Vec<PageFigures>,
    /// `(page, plan)` of every jobs-list statement.
    pub(crate) plans: Vec<(String, String)>,
}

impl DashboardFigures {
    /// The targeted page with the highest p99.
    pub(crate) fn worst(&self) -> Option<&PageFigures> {
        self.pages
            .iter()
            .filter(|p| p.kind == Kind::Targeted)
            .max_by(|a, b| a.p99_ms.total_cmp(&b.p99_ms))
    }
}

/// The dashboard over `queue` as `approval-worker dashboard` would serve it on loopback with
/// the default settings and no token.
fn app(queue: &Queue) -> Result<Router, BenchError> {
    let mut config = Config::default();
    // A token in the environment would guard every page; this run measures without one.
    config.dashboard.token_env = "APPROVAL_WORKER_BENCH_NO_DASHBOARD_TOKEN".to_owned();
    let listen = HOST
        .parse()
        .map_err(|e| BenchError::Setup(format!("{HOST}: {e}")))?;
    let settings = DashboardSettings::from_config(&config, listen)
        .map_err(|e| BenchError::Setup(format!("dashboard settings: {e}")))?;
    Ok(router(Dashboard::new(queue.clone(), settings)))
}

/// Builds the table in `scratch`, then times every page.
pub(crate) async fn measure(
    scratch: &Scratch,
    sizes: DashboardSizes,
) -> Result<DashboardFigures, BenchError> {
    let path = scratch.database();
    let jobs = sizes.jobs.max(1_000);
    Queue::open(&path).await?.close().await;
    let now = now_ms();
    let fill_secs = fill::fill(&path, jobs, now).await?.as_secs_f64();
    let queue = Queue::open(&path).await?;
    queue
        .pause(
            fill::PAUSED_QUEUE,
            Some("bench: paused by an operator"),
            now,
        )
        .await?;
    let app = app(&queue)?;
    let mut client = Client { app, cookie: None };

    let failed = fill::failed_id(jobs);
    let succeeded = fill::succeeded_id(jobs);
    client.expect_status(failed, "failed").await?;
    client.expect_status(succeeded, "succeeded").await?;
    let first_page = client.get("/jobs").await?;
    let second = older_link(&first_page)
        .ok_or_else(|| BenchError::Setup("/jobs has no link to older jobs".to_owned()))?;

    let targeted = |path: String| (path, Kind::Targeted);
    let pages = vec![
        ("/".to_owned(), Kind::Overview),
        targeted("/jobs".to_owned()),
        targeted("/jobs?status=failed".to_owned()),
        targeted("/jobs?status=running".to_owned()),
        targeted(format!("/jobs?queue={FILTER_QUEUE}&status=succeeded")),
        targeted("/jobs?outcome=refuse".to_owned()),
        targeted(second.clone()),
        targeted(format!("/jobs/{failed}")),
        targeted(format!("/jobs/{succeeded}")),
        targeted("/api/jobs?status=failed".to_owned()),
        targeted("/bulk/retry?status=failed".to_owned()),
    ];
    let mut bytes = Vec::new();
    for (path, _) in &pages {
        bytes.push(client.get(path).await?.len());
    }
    let mut times = vec![Vec::new(); pages.len()];
    for _ in 0..sizes.requests.max(1) {
        for (index, (path, _)) in pages.iter().enumerate() {
            let started = Instant::now();
            client.get(path).await?;
            times[index].push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    queue.close().await;

    let before = second
        .rsplit_once("before=")
        .and_then(|(_, id)| id.parse::<i64>().ok())
        .unwrap_or(0);
    let plans = fill::plans(&path, &list_queries(before)).await?;
    let (events, outcomes) = totals(&path).await?;
    Ok(DashboardFigures {
        jobs,
        events,
        outcomes,
        fill_secs,
        requests: sizes.requests.max(1),
        pages: pages
            .into_iter()
            .zip(times)
            .zip(bytes)
            .map(|(((path, kind), ms), bytes)| PageFigures {
                path,
                kind,
                p50_ms: percentile(&ms, 50.0),
                p99_ms: percentile(&ms, 99.0),
                max_ms: percentile(&ms, 100.0),
                bytes,
            })
            .collect(),
        plans,
    })
}

/// The router and the session a browser would hold.
struct Client {
    app: Router,
    cookie: Option<String>,
}

impl Client {
    /// GETs `path`; the status must be 200. Returns the body.
    async fn get(&mut self, path: &str) -> Result<String, BenchError> {
        let mut request = Request::get(path).header(header::HOST, HOST);
        if let Some(cookie) = &self.cookie {
            request = request.header(header::COOKIE, cookie.as_str());
        }
        let request = request
            .body(Body::empty())
            .map_err(|e| BenchError::Setup(format!("GET {path}: {e}")))?;
        // The router's error type is `Infallible`.
        let response = match self.app.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        if self.cookie.is_none()
            && let Some(set) = response.headers().get(header::SET_COOKIE)
            && let Ok(set) = set.to_str()
        {
            self.cookie = set.split(';').next().map(str::to_owned);
        }
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .map_err(|e| BenchError::Setup(format!("GET {path}: {e}")))?;
        let body = String::from_utf8_lossy(&body).into_owned();
        if status != StatusCode::OK {
            return Err(BenchError::Setup(format!(
                "GET {path}: {status}: {}",
                body.chars().take(300).collect::<String>()
            )));
        }
        Ok(body)
    }

    /// Checks through the API that job `id` has `status`: the table is the mix `fill` says.
    async fn expect_status(&mut self, id: i64, status: &str) -> Result<(), BenchError> {
        let body = self.get(&format!("/api/jobs/{id}")).await?;
        let found = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.pointer("/job/status")?.as_str().map(str::to_owned));
        if found.as_deref() == Some(status) {
            Ok(())
        } else {
            Err(BenchError::Setup(format!(
                "job {id} should be {status}, the API says {found:?}"
            )))
        }
    }
}

/// The "Older »" link of a jobs page (the keyset of the second page), as a browser follows it.
fn older_link(page: &str) -> Option<String> {
    let end = page.find("\">Older »</a>")?;
    let start = page[..end].rfind("href=\"")? + "href=\"".len();
    Some(page[start..end].replace("&amp;", "&"))
}

/// The jobs-list statements of the timed pages (`before`: the second page's keyset).
fn list_queries(before: i64) -> Vec<ListQuery> {
    let query = |page, terms, args| ListQuery {
        page,
        terms,
        args,
        count: false,
    };
    vec![
        query("/jobs", "", Vec::new()),
        query(
            "/jobs?status=failed",
            " AND (status = 'failed' OR status = 'cancelled') AND status = ?",
            vec![Arg::Text("failed")],
        ),
        query(
            "/jobs?status=running",
            " AND status = 'running' AND status = ?",
            vec![Arg::Text("running")],
        ),
        query(
            "/jobs?queue=…&status=succeeded",
            " AND +status = ? AND queue = ?",
            vec![Arg::Text("succeeded"), Arg::Text(FILTER_QUEUE)],
        ),
        query(
            "/jobs?outcome=refuse",
            " AND EXISTS (SELECT 1 FROM outcomes o WHERE o.job_id = jobs.id AND o.outcome = ?)",
            vec![Arg::Text("refuse")],
        ),
        query("/jobs?before=…", " AND id < ?", vec![Arg::Int(before)]),
        ListQuery {
            page: "/bulk/retry?status=failed",
            terms: " AND (status = 'failed' OR status = 'cancelled') AND status = ?",
            args: vec![Arg::Text("failed")],
            count: true,
        },
    ]
}

/// Events and outcome rows in the table.
async fn totals(path: &std::path::Path) -> Result<(i64, i64), BenchError> {
    use sqlx::Connection;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
    let events = sqlx::query_scalar("SELECT MAX(id) FROM job_events")
        .fetch_one(&mut conn)
        .await?;
    let outcomes = sqlx::query_scalar("SELECT COUNT(*) FROM outcomes")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok((events, outcomes))
}

/// A job count the way the report says it (`1 M`, `20 k`).
fn jobs_in_words(jobs: i64) -> String {
    match jobs {
        j if j >= 1_000_000 && j % 1_000_000 == 0 => format!("{} M", j / 1_000_000),
        j if j >= 1_000 && j % 1_000 == 0 => format!("{} k", j / 1_000),
        j => j.to_string(),
    }
}

/// Prints the figures and the plans of the list statements.
pub(crate) fn print(f: &DashboardFigures) {
    println!(
        "== dashboard: {} jobs ({} events, {} outcomes; built in {:.1} s), server time \
         in process, {} requests per page after one warm-up",
        f.jobs, f.events, f.outcomes, f.fill_secs, f.requests
    );
    for page in &f.pages {
        let note = match page.kind {
            Kind::Targeted => "",
            Kind::Overview => "  (overview: no target)",
        };
        println!(
            "  {:<40} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  {:>7} B{note}",
            page.path, page.p50_ms, page.p99_ms, page.max_ms, page.bytes
        );
    }
    let overview = f.pages.iter().find(|p| p.kind == Kind::Overview);
    if let (Some(overview), Some(worst)) = (overview, f.worst())
        && overview.p99_ms > worst.p99_ms
    {
        println!(
            "  the overview is the slowest page: it counts every job by status, queue and \
             outcome and the last 24 h by hour"
        );
    }
    println!("  query plans of the jobs list:");
    for (page, plan) in &f.plans {
        println!("    {page:<32} {plan}");
    }
    println!();
}

/// The target line for the summary.
pub(crate) fn targets(f: &DashboardFigures) -> Vec<(bool, String)> {
    let Some(worst) = f.worst() else {
        return Vec::new();
    };
    let mut lines = vec![(
        worst.p99_ms <= TARGET_MS,
        format!(
            "jobs list and job detail ≤ 50 ms server time with {} jobs: worst p99 {:.2} ms \
             ({}), max {:.2} ms",
            jobs_in_words(f.jobs),
            worst.p99_ms,
            worst.path,
            f.pages
                .iter()
                .filter(|p| p.kind == Kind::Targeted)
                .map(|p| p.max_ms)
                .fold(0.0, f64::max)
        ),
    )];
    // Running jobs are read from jobs_lease and sorted: there are only as many as the
    // workers' pools hold.
    let plans_walk_indexes = f
        .plans
        .iter()
        .filter(|(page, _)| !page.contains("status=running"))
        .all(|(_, plan)| !plan.contains("TEMP B-TREE"));
    lines.push((
        plans_walk_indexes,
        "jobs-list statements need no sort (no TEMP B-TREE in their plans; the running jobs' \
         list sorts the few jobs_lease holds)"
            .to_owned(),
    ));
    lines
}

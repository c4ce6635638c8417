//! The PostgreSQL server `bench --database` measures against: a fresh database for every
//! run (`CREATE DATABASE aw_bench_<pid>_<label>`, dropped afterwards), the server's CPU time
//! when it runs on this machine, and the plain SQL the figures need beyond the queue's API
//! (another service's insert, the raw-commit ceiling, table statistics, double claims).

use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{Connection, PgPool};

use super::BenchError;
use crate::config::Config;
use crate::queue::PgOptions;

/// Clock ticks per second of `/proc/<pid>/stat` (see `stats::cpu_time`).
const USER_HZ: u64 = 100;

/// One database created for a run.
#[derive(Debug, Clone)]
pub(crate) struct Database {
    /// Its name on the server.
    pub(crate) name: String,
    /// The URL given to `bench`, with this database in its path.
    pub(crate) url: String,
}

/// A connection to the server and the databases this benchmark created on it.
#[derive(Debug)]
pub(crate) struct PgServer {
    url: String,
    /// One connection to the URL's own database, for `CREATE`/`DROP DATABASE`.
    admin: PgPool,
    /// `aw_bench_<pid>`: every database of this process starts with it.
    prefix: String,
    created: Mutex<Vec<String>>,
    /// The server's main process, when it is on this machine (its CPU can then be read).
    postmaster: Option<u32>,
}

impl PgServer {
    /// Connects to the database named in `url` (any database the user may connect to; the
    /// user needs `CREATEDB`).
    pub(crate) async fn connect(url: &str) -> Result<PgServer, BenchError> {
        let options = PgConnectOptions::from_str(url)?.application_name("approval-worker bench");
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&admin)
            .await?;
        let postmaster = u32::try_from(backend)
            .ok()
            .filter(|pid| is_postgres(*pid))
            .and_then(|pid| proc_stat(pid).map(|stat| stat.parent))
            .filter(|pid| is_postgres(*pid));
        Ok(PgServer {
            url: url.to_owned(),
            admin,
            prefix: format!("aw_bench_{}", std::process::id()),
            created: Mutex::new(Vec::new()),
            postmaster,
        })
    }

    /// A new, empty database named after `label` (letters, digits and `_`).
    pub(crate) async fn fresh(&self, label: &str) -> Result<Database, BenchError> {
        let name = format!("{}_{label}", self.prefix);
        if name.len() > 63 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(BenchError::Setup(format!("bad database name {name:?}")));
        }
        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&self.admin)
            .await?;
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&self.admin)
            .await?;
        if let Ok(mut created) = self.created.lock() {
            created.push(name.clone());
        }
        let url = with_database(&self.url, &name);
        Ok(Database { name, url })
    }

    /// Drops `database`, closing whatever connections are still open to it.
    pub(crate) async fn drop_database(&self, database: &Database) -> Result<(), BenchError> {
        sqlx::raw_sql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            database.name
        ))
        .execute(&self.admin)
        .await?;
        if let Ok(mut created) = self.created.lock() {
            created.retain(|name| name != &database.name);
        }
        Ok(())
    }

    /// Drops every database still left (those of a run that failed), then disconnects.
    pub(crate) async fn drop_all(&self) {
        let left = self
            .created
            .lock()
            .map(|created| created.clone())
            .unwrap_or_default();
        for name in left {
            let statement = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            if let Err(e) = sqlx::raw_sql(&statement).execute(&self.admin).await {
                eprintln!("bench: could not drop database {name}: {e}");
            }
        }
        self.admin.close().await;
    }

    /// CPU time the whole server has used so far: its main process, every child alive now,
    /// and the children that have exited (the kernel adds those to their parent's account
    /// once reaped). `None` when the server is not on this machine.
    pub(crate) fn cpu(&self) -> Option<Duration> {
        let postmaster = self.postmaster?;
        let main = proc_stat(postmaster)?;
        let mut ticks = main.own_ticks + main.children_ticks;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let pid = entry.file_name().to_str().and_then(|s| s.parse().ok());
            if let Some(stat) = pid.and_then(proc_stat)
                && stat.parent == postmaster
            {
                ticks += stat.own_ticks;
            }
        }
        Some(Duration::from_millis(ticks * 1000 / USER_HZ))
    }

    /// What `bench` prints for this server: its URL without a password.
    pub(crate) fn describe(&self) -> String {
        crate::queue::redacted_url(&self.url)
    }
}

/// How the benchmark's queues reach a database: as `run` would with default settings.
pub(crate) fn queue_options(url: &str) -> PgOptions {
    PgOptions {
        url: url.to_owned(),
        password: None,
        max_connections: Config::default().database.max_connections,
        listen: true,
    }
}

/// `url` with its path (the database) replaced by `name`; user, host, port and query kept.
fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let query = tail.find('?').map_or("", |at| &tail[at..]);
    format!("{scheme}://{authority}/{name}{query}")
}

/// Another service's producer: one connection and the README's plain `INSERT`, relying on
/// the schema's defaults (the trigger on `jobs` notifies the listening workers).
#[derive(Debug)]
pub(crate) struct PgProducer {
    conn: PgConnection,
}

impl PgProducer {
    pub(crate) async fn connect(url: &str) -> Result<PgProducer, BenchError> {
        Ok(PgProducer {
            conn: PgConnection::connect(url).await?,
        })
    }

    /// `INSERT INTO jobs (payload) VALUES ($1::jsonb)`, autocommit.
    pub(crate) async fn insert(&mut self, payload: &str) -> Result<(), BenchError> {
        sqlx::query("INSERT INTO jobs (payload) VALUES ($1::jsonb)")
            .bind(payload)
            .execute(&mut self.conn)
            .await?;
        Ok(())
    }
}

/// Commits `commits` single-row inserts into a new table of `database`, one autocommit
/// statement each over one connection: the server's ceiling for one writer. Returns the
/// time taken.
pub(crate) async fn raw_commits(database: &Database, commits: u32) -> Result<Duration, BenchError> {
    let mut conn = PgConnection::connect(&database.url).await?;
    sqlx::raw_sql("CREATE TABLE ceiling (id bigint GENERATED ALWAYS AS IDENTITY, at bigint)")
        .execute(&mut conn)
        .await?;
    let started = Instant::now();
    for at in 0..commits {
        sqlx::query("INSERT INTO ceiling (at) VALUES ($1)")
            .bind(i64::from(at))
            .execute(&mut conn)
            .await?;
    }
    let elapsed = started.elapsed();
    conn.close().await?;
    Ok(elapsed)
}

/// `VACUUM ANALYZE jobs`: a table just filled in one statement gets the statistics and
/// visibility map autovacuum would give it soon after, before anything is timed on it.
pub(crate) async fn settle(database: &Database) -> Result<(), BenchError> {
    let mut conn = PgConnection::connect(&database.url).await?;
    sqlx::raw_sql("VACUUM ANALYZE jobs")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// Claims recorded, and attempts claimed more than once: `(claims, double claims)`. Each
/// claim starts a new attempt, so two `claimed` events of one attempt are two workers that
/// both believed they held the job.
pub(crate) async fn claims(database: &Database) -> Result<(i64, i64), BenchError> {
    let mut conn = PgConnection::connect(&database.url).await?;
    let counts = sqlx::query_as(
        "SELECT coalesce(sum(claims), 0)::bigint, count(*) FILTER (WHERE claims > 1) \
         FROM (SELECT count(*) AS claims FROM job_events WHERE kind = 'claimed' \
               GROUP BY job_id, attempt) AS per_attempt",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    Ok(counts)
}

/// What the benchmark reads from `/proc/<pid>/stat`.
struct ProcStat {
    parent: u32,
    /// utime + stime.
    own_ticks: u64,
    /// cutime + cstime: children that exited and were reaped.
    children_ticks: u64,
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3 (state) on.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |number: usize| fields.get(number - 3)?.parse::<u64>().ok();
    Some(ProcStat {
        parent: u32::try_from(field(4)?).ok()?,
        own_ticks: field(14)? + field(15)?,
        children_ticks: field(16)? + field(17)?,
    })
}

/// Whether `pid` on this machine is a PostgreSQL process (a server elsewhere has pids that
/// mean nothing here).
fn is_postgres(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| {
        let comm = comm.trim();
        comm == "postgres" || comm == "postmaster"
    })
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_in_a_url_is_replaced_and_the_rest_kept() {
        assert_eq!(
            with_database("postgres://approval@127.0.0.1:55432/postgres", "aw_1"),
            "postgres://approval@127.0.0.1:55432/aw_1"
        );
        assert_eq!(
            with_database("postgresql://u:p@db/x?sslmode=require", "aw_1"),
            "postgresql://u:p@db/aw_1?sslmode=require"
        );
        assert_eq!(with_database("postgres://db", "aw_1"), "postgres://db/aw_1");
        assert_eq!(
            with_database("postgres://db?host=/tmp", "aw_1"),
            "postgres://db/aw_1?host=/tmp"
        );
    }
}

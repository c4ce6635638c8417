//! PostgreSQL for the tests: a throwaway cluster started from the machine's PostgreSQL
//! binaries (one shared by the test binary, or one of a test's own), and a database per test.
//!
//! Where PostgreSQL is not installed the tests that need it are skipped with one line naming
//! the package; with `APPROVAL_WORKER_REQUIRE_POSTGRES` set (`.ci/run` sets it) a missing
//! PostgreSQL fails them instead.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use approval_worker::queue::{Location, PgOptions, Queue};

/// The schema's migrations, in the order they apply.
fn migrations() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
        .collect();
    files.sort();
    files
}

/// A PostgreSQL cluster in a temporary directory, on a free port of 127.0.0.1, stopped and
/// removed when dropped.
pub struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// The server refuses to run as root: as root, its commands run as `postgres`.
    as_user: Option<&'static str>,
}

impl Cluster {
    /// Starts a cluster, or returns `None` (having said why) where PostgreSQL is missing and
    /// not required.
    pub fn start() -> Option<Cluster> {
        Cluster::start_with(None)
    }

    /// [`Cluster::start`] with `password` required of its user (SCRAM) instead of trusting
    /// every connection.
    pub fn start_with(password: Option<&str>) -> Option<Cluster> {
        let Some(bin) = server_binaries() else {
            let why = "PostgreSQL tests skipped: no initdb found (install Debian's `postgresql` \
                       package; .ci/run does)";
            assert!(
                std::env::var_os("APPROVAL_WORKER_REQUIRE_POSTGRES").is_none(),
                "{why}, and APPROVAL_WORKER_REQUIRE_POSTGRES is set"
            );
            eprintln!("{why}");
            return None;
        };
        let as_user = is_root().then_some("postgres");
        let dir = tempfile::tempdir().unwrap();
        if as_user.is_some() {
            let chown = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(chown.success(), "chown of the cluster directory");
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Cluster {
            bin,
            dir,
            port,
            as_user,
        };
        let data = cluster.data();
        let mut init = vec![
            "-D",
            &data,
            "-U",
            "approval",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ];
        let pwfile = cluster.dir.path().join("pwfile").display().to_string();
        let pwfile_arg = format!("--pwfile={pwfile}");
        match password {
            None => init.extend(["-A", "trust"]),
            Some(password) => {
                std::fs::write(&pwfile, password).unwrap();
                if let Some(user) = cluster.as_user {
                    let chown = Command::new("chown")
                        .arg(user)
                        .arg(&pwfile)
                        .status()
                        .unwrap();
                    assert!(chown.success());
                }
                init.extend(["-A", "scram-sha-256", &pwfile_arg]);
            }
        }
        cluster.run("initdb", &init);
        let options = format!(
            "-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off",
            dir = cluster.dir.path().display()
        );
        let log = cluster.dir.path().join("server.log");
        cluster.run(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-l",
                &log.display().to_string(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
        // Dropping the cluster stops it; the watchdog stops it too when this process is
        // killed before any drop can run (a test binary cut off by a timeout, say).
        cluster.watch_for_exit();
        Some(cluster)
    }

    /// One cluster for the whole test binary, started on first use, each test in its own
    /// database ([`Database`]). Never dropped: its watchdog stops it and removes its
    /// directory once this process has exited.
    pub fn shared() -> Option<&'static Cluster> {
        static SHARED: OnceLock<Option<Cluster>> = OnceLock::new();
        SHARED.get_or_init(Cluster::start).as_ref()
    }

    /// Spawns a process that stops the cluster and removes its directory once this process
    /// has exited, however it exits.
    fn watch_for_exit(&self) {
        let stop = self.command_line("pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"]);
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; \
             rm -rf '{dir}'",
            pid = std::process::id(),
            dir = self.dir.path().display()
        );
        // Never waited for: it outlives this process by design, and init reaps it.
        #[allow(clippy::zombie_processes)]
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    }

    /// Restarts the server (`pg_ctl restart -m fast`): every connection is cut, and the
    /// server is back when this returns.
    pub fn restart(&self) {
        // The server's output goes to the log, as at start: a server holding this
        // process's pipe would keep `output()` waiting for ever.
        let log = self.dir.path().join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-m",
                "fast",
                "-w",
                "restart",
            ],
        );
    }

    /// The connection URL of the cluster's default database.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// The connection URL of `database` in this cluster.
    pub fn url_of(&self, database: &str) -> String {
        format!("postgres://approval@127.0.0.1:{}/{database}", self.port)
    }

    /// A shell command line running one of the server's programs as [`Cluster::command`] does.
    fn command_line(&self, program: &str, args: &[&str]) -> String {
        let program = self.bin.join(program).display().to_string();
        let runner = match self.as_user {
            Some(user) => format!("runuser -u {user} -- "),
            None => String::new(),
        };
        format!("{runner}{program} {}", args.join(" "))
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// One of the server's programs, to run as `postgres` when this process is root.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut command = match self.as_user {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&program);
                command
            }
            None => Command::new(&program),
        };
        command.current_dir(self.dir.path());
        command
    }

    /// Runs one of the server's programs, which must succeed.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let output = self.command(program).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Runs `sql` through `psql` as a producer would; returns its output whether or not the
    /// server accepted it.
    pub fn psql(&self, sql: &str) -> Output {
        Command::new("psql")
            .arg(self.url())
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("psql is installed with PostgreSQL")
    }

    /// [`Cluster::psql`] that must succeed; returns its output.
    pub fn psql_ok(&self, sql: &str) -> String {
        let output = self.psql(sql);
        assert!(
            output.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Applies the PostgreSQL schema with `psql`.
    pub fn apply_schema(&self) {
        for file in migrations() {
            let output = Command::new("psql")
                .arg(self.url())
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
                .arg(&file)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{}: {}",
                file.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "stop"])
            .output();
    }
}

/// A database of its own in the shared cluster, for one test.
pub struct Database {
    /// Its connection URL.
    pub url: String,
}

impl Database {
    /// Creates an empty database, or returns `None` where PostgreSQL is missing and not
    /// required.
    pub fn create() -> Option<Database> {
        Some(Database::create_in(Cluster::shared()?))
    }

    /// Creates an empty database in `cluster`.
    pub fn create_in(cluster: &Cluster) -> Database {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed));
        cluster.psql_ok(&format!("CREATE DATABASE {name}"));
        Database {
            url: cluster.url_of(&name),
        }
    }

    /// Where the queue in this database is, as `[database] url` names it.
    pub fn location(&self) -> Location {
        Location::Postgres(PgOptions {
            url: self.url.clone(),
            password: None,
            max_connections: 8,
            listen: true,
        })
    }

    /// Opens the queue in this database, migrating it.
    pub async fn queue(&self) -> Queue {
        Queue::connect(&self.location()).await.unwrap()
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// The directory of `initdb` and `pg_ctl`: on the PATH, else the newest of Debian's
/// `/usr/lib/postgresql/<version>/bin`.
fn server_binaries() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|dir| dir.join("initdb").is_file()));
    if let Some(dir) = on_path {
        // Debian links the programs into /usr/local/bin or wraps them; pg_ctl sits beside.
        let resolved = std::fs::canonicalize(dir.join("initdb")).ok()?;
        return resolved.parent().map(Path::to_path_buf);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(|version| version.file_name())
            .and_then(|name| name.to_str())
            .and_then(|name| name.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop()
}

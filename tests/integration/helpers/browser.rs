//! Headless Chromium for the dashboard's browser tests, driven through chromedriver's
//! WebDriver (fantoccini): Debian's `chromium` and `chromium-driver`, which `.ci/run`
//! installs where they are missing.
//!
//! Where they are missing the tests are skipped with a loud message; with
//! `APPROVAL_WORKER_REQUIRE_BROWSER` set (`.ci/run` sets it) they fail instead. Chromium runs
//! with a fresh profile, every background service off, a resolver that finds no host but
//! 127.0.0.1, and every other address sent to a proxy on a closed port of 127.0.0.1, so it
//! contacts nothing but the dashboard under test. Each test saves a screenshot of every page
//! it sees under the target directory; a failing test prints where they are.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// Browser tests take turns: two Chromiums at once on two cores make both slow and flaky.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a page may take to show what a test waits for.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// A Chromium session, its chromedriver, and where its screenshots go.
pub struct Browser {
    pub client: Client,
    driver: Child,
    shots: PathBuf,
    taken: usize,
    _profile: tempfile::TempDir,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Browser {
    /// Starts Chromium for test `name`, or `None` (having said so loudly) where it is not
    /// installed and skipping is allowed.
    pub async fn start(name: &str) -> Option<Browser> {
        let (Some(chromium), Some(chromedriver)) = (
            installed(&["chromium", "chromium-browser"]),
            installed(&["chromedriver"]),
        ) else {
            let why = "the dashboard's browser tests need Debian's chromium and chromium-driver \
                       (apt-get install -y chromium chromium-driver; .ci/run installs them)";
            assert!(
                std::env::var_os("APPROVAL_WORKER_REQUIRE_BROWSER").is_none(),
                "{why}, and APPROVAL_WORKER_REQUIRE_BROWSER is set"
            );
            eprintln!("\n*** SKIPPED {name}: {why} ***\n");
            return None;
        };
        let turn = ONE_AT_A_TIME.lock().await;
        let shots = screenshot_dir(name);
        eprintln!("{name}: screenshots in {}", shots.display());
        let port = free_port();
        // A process group of its own, so that ending it ends the Chromium it started too.
        let driver = Command::new(&chromedriver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--disable-default-apps".to_owned(),
            "--disable-extensions".to_owned(),
            "--disable-domain-reliability".to_owned(),
            "--disable-client-side-phishing-detection".to_owned(),
            "--disable-breakpad".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-pings".to_owned(),
            "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication".to_owned(),
            // No name resolves but 127.0.0.1: whatever Chromium would fetch by itself fails.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1".to_owned(),
            // And an address written as a number goes to a proxy that is not there (loopback
            // itself bypasses proxies).
            format!("--proxy-server=http://127.0.0.1:{}", free_port()),
            "--window-size=1280,1000".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({"binary": chromium, "args": args}),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + PAGE_TIMEOUT;
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                // chromedriver is still starting.
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("no WebDriver session from {chromedriver}: {e}"),
            }
        };
        Some(Browser {
            client,
            driver,
            shots,
            taken: 0,
            _profile: profile,
            _turn: turn,
        })
    }

    /// Opens `url` and saves a screenshot named `shot`.
    pub async fn open(&mut self, url: &str, shot: &str) {
        self.client.goto(url).await.expect("page opens");
        self.screenshot(shot).await;
    }

    /// Saves a screenshot of the window as `NN-shot.png`; returns its path.
    pub async fn screenshot(&mut self, shot: &str) -> PathBuf {
        self.taken += 1;
        let path = self.shots.join(format!("{:02}-{shot}.png", self.taken));
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(&path, png).expect("screenshot saved");
        path
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        self.client
            .find(Locator::Css("body"))
            .await
            .expect("a body")
            .text()
            .await
            .expect("its text")
    }

    /// The path and query of the page shown.
    pub async fn location(&self) -> String {
        let url = self.client.current_url().await.expect("current url");
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Clicks the first element matching `css` (a link or a submit button) and waits for the
    /// page it leads to: until the page shown before is gone and the new one has loaded.
    pub async fn click(&self, css: &str) {
        let before = self
            .client
            .find(Locator::Css("html"))
            .await
            .expect("a page is shown");
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
        let deadline = Instant::now() + PAGE_TIMEOUT;
        // The old page's root goes stale once the browser has navigated away.
        while before.tag_name().await.is_ok() {
            assert!(Instant::now() < deadline, "clicking {css} led nowhere");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        loop {
            let state = self
                .client
                .execute("return document.readyState", Vec::new())
                .await;
            if matches!(&state, Ok(serde_json::Value::String(s)) if s == "complete") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the page after clicking {css} never loaded: {state:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Types `text` into the field matching `css`.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("typing into {css}: {e}"));
    }

    /// Chooses the option of value `value` in the select matching `css`.
    pub async fn choose(&self, css: &str, value: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("choosing {value} in {css}: {e}"));
    }

    /// Reloads the page until its text contains `needle`; saves a screenshot named `shot`.
    pub async fn reload_until(&mut self, needle: &str, shot: &str) -> String {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        loop {
            let text = self.text().await;
            if text.contains(needle) {
                self.screenshot(shot).await;
                return text;
            }
            if Instant::now() > deadline {
                self.screenshot(&format!("{shot}-timed-out")).await;
                panic!("the page never showed {needle:?}; it shows:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            self.client.refresh().await.expect("reload");
        }
    }

    /// Ends the session (Chromium quits), then chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    /// Ends chromedriver's process group: chromedriver and any Chromium it left.
    fn end_processes(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failing test must not leave chromedriver or Chromium running, and should say
        // where to look.
        self.end_processes();
        if std::thread::panicking() {
            eprintln!("screenshots of the failed run: {}", self.shots.display());
        }
    }
}

/// A fresh directory for the screenshots of test `name`, under the target directory (kept
/// after the run, for reading when it failed).
fn screenshot_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("browser-screenshots")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The first of `names` found on `PATH`.
fn installed(names: &[&str]) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
            .map(|found| found.display().to_string())
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

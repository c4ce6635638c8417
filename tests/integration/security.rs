//! Credential hygiene end to end: a full run of the binary with faults on and debug logging,
//! then every output (the log, `jobs --json`, `show`, `stats`) and the database file with its
//! WAL are searched for the app secret and every access token the sandbox issued.

use std::collections::BTreeSet;
use std::time::Duration;

use approval_worker::sandbox::{Endpoint, Fault, SandboxOptions};

use crate::helpers::{BINARY_WORKER, Harness, bytes, sigterm, wait_exit};

fn output(h: &Harness, config: &std::path::Path, args: &[&str]) -> String {
    let out = h
        .command()
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("binary runs");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_access_token_appears_in_logs_outputs_or_the_database() {
    let h = Harness::new().await;
    let config = h.binary_config("worker", BINARY_WORKER);
    let log = h.spool.with_file_name("debug.log");
    let mut ids = Vec::new();
    for n in 0..3_u8 {
        let file = h.file(&format!("s{n}.pdf"), &bytes(4000, n));
        ids.push(h.enqueue(&h.payload(&[&file])).await);
    }
    // Faults that make the client refresh tokens, retry, reconcile and report errors.
    h.sandbox.inject(Endpoint::UserGet, Fault::TokenRevoked, 1);
    h.sandbox.inject(Endpoint::Space, Fault::TokenRevoked, 1);
    h.sandbox
        .inject(Endpoint::UploadInfo, Fault::DropConnection, 1);
    h.sandbox
        .inject(Endpoint::Commit, Fault::ServerError(500), 1);
    h.sandbox
        .inject(Endpoint::CreateInstance, Fault::LoseResponse, 1);
    h.sandbox.inject(
        Endpoint::CreateInstance,
        Fault::Throttle { pascal_case: true },
        1,
    );
    let mut daemon = h.spawn_binary(&config, &log, "debug");
    h.finished(ids[0]).await;
    // A second token: every issued one expires, the next call is refused and refreshes.
    h.sandbox.expire_tokens();
    for n in 3..5_u8 {
        let file = h.file(&format!("s{n}.pdf"), &bytes(4000, n));
        ids.push(h.enqueue(&h.payload(&[&file])).await);
    }
    let jobs = h.all_finished(Duration::from_secs(60)).await;
    sigterm(&daemon);
    assert!(
        wait_exit(&mut daemon, Duration::from_secs(10))
            .await
            .success()
    );
    assert!(jobs.iter().all(|j| j.status == "succeeded"), "{jobs:?}");

    let mut tokens = BTreeSet::new();
    for request in h.sandbox.requests() {
        tokens.extend(request.headers.get("x-acs-dingtalk-access-token").cloned());
        tokens.extend(request.query.get("access_token").cloned());
    }
    assert!(tokens.len() >= 2, "the run used {} tokens", tokens.len());
    let secret = SandboxOptions::default().app_secret;

    let mut outputs = vec![
        ("log".to_string(), std::fs::read_to_string(&log).unwrap()),
        (
            "jobs --json".to_string(),
            output(&h, &config, &["jobs", "--json"]),
        ),
        ("jobs".to_string(), output(&h, &config, &["jobs"])),
        ("stats".to_string(), output(&h, &config, &["stats"])),
    ];
    for id in &ids {
        let id = id.to_string();
        outputs.push((
            format!("show {id} --json"),
            output(&h, &config, &["show", &id, "--json"]),
        ));
        outputs.push((format!("show {id}"), output(&h, &config, &["show", &id])));
    }
    // The harness's own connection keeps the WAL in place after the daemon exits.
    let db = h.config.database.path.clone();
    for suffix in ["", "-wal", "-shm"] {
        let path = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
        if let Ok(data) = std::fs::read(&path) {
            outputs.push((
                path.display().to_string(),
                String::from_utf8_lossy(&data).into_owned(),
            ));
        }
    }
    let log_text = &outputs[0].1;
    assert!(log_text.contains("DEBUG"), "the log is at debug level");
    assert!(
        log_text.contains("refreshing"),
        "a token was refreshed during the run"
    );

    for (name, text) in &outputs {
        assert!(!text.contains(&secret), "{name} contains the app secret");
        for token in &tokens {
            assert!(
                !text.contains(token.as_str()),
                "{name} contains an access token"
            );
        }
    }
    eprintln!(
        "security: {} outputs ({} log lines, database and WAL) searched for the secret and {} tokens: none found",
        outputs.len(),
        log_text.lines().count(),
        tokens.len()
    );
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_and_its_wal_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mut h = Harness::new().await;
    let file = h.file("p.pdf", &bytes(100, 1));
    let id = h.enqueue(&h.payload(&[&file])).await;
    h.start();
    h.finished(id).await;
    let db = h.config.database.path.clone();
    for suffix in ["", "-wal"] {
        let path = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", path.display());
    }
    h.stop().await;
}

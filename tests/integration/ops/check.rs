//! `check`, the systemd credential, and the shipped unit file.

use approval_worker::sandbox::SandboxOptions;

use super::{run, run_json, stderr, stdout};
use crate::helpers::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fetches_a_token_and_resolves_the_space_of_a_user() {
    let harness = Harness::new().await;
    let config = harness.config_file("worker.toml", "");
    let out = run(&harness, &config, &["check", "--user", "manager4220"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    for part in [
        "ok    config",
        "ok    app secret      read from $DINGTALK_APP_SECRET",
        "ok    access token    app dingsandboxkey authenticated",
        "ok    unionId         manager4220 → ",
        "ok    approval space  space ",
    ] {
        assert!(text.contains(part), "missing {part:?} in\n{text}");
    }
    let report = run_json(&harness, &config, &["check", "--json"]);
    let checks: Vec<&str> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert!(checks.contains(&"access token"), "{report}");
    assert!(
        report.as_array().unwrap().iter().all(|c| c["ok"] == true),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_tells_our_database_from_a_garbage_file_and_another_programs_database() {
    let harness = Harness::new().await;
    let config = harness.config_file("worker.toml", "");
    let ours = stdout(&run(&harness, &config, &["check"]));
    assert!(
        ours.contains("ok    database") && ours.contains("(current), 0 jobs"),
        "{ours}"
    );

    let garbage = harness.dir().join("garbage.db");
    std::fs::write(&garbage, vec![b'x'; 8192]).unwrap();
    let garbage_config = harness.config_file(
        "garbage.toml",
        &format!("[database]\npath = {:?}\n", garbage.display().to_string()),
    );
    let out = run(&harness, &garbage_config, &["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("FAIL  database")
            && stdout(&out).contains("cannot be read as a database"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        std::fs::read(&garbage).unwrap(),
        vec![b'x'; 8192],
        "left as it was"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_what_failed_and_the_permission_the_call_needs() {
    let harness = Harness::new().await;
    let config = harness.config_file("worker.toml", "");
    let unknown = run(&harness, &config, &["check", "--user", "ghost7"]);
    assert_eq!(unknown.status.code(), Some(1));
    let text = stdout(&unknown);
    assert!(text.contains("ok    access token"), "{text}");
    assert!(
        text.contains("FAIL  unionId") && text.contains("this call needs qyapi_get_member"),
        "{text}"
    );

    let wrong = harness
        .command()
        .env("DINGTALK_APP_SECRET", "not-the-secret")
        .arg("--config")
        .arg(&config)
        .args(["check", "--user", "manager4220"])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1));
    let text = stdout(&wrong);
    assert!(text.contains("FAIL  access token"), "{text}");
    assert!(
        !text.contains("not-the-secret"),
        "the secret is never printed"
    );
    assert!(
        !text.contains("unionId"),
        "nothing is tried without a token: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_secret_file_is_read_from_the_systemd_credentials_directory() {
    let harness = Harness::new().await;
    let config = harness.config_file(
        "worker.toml",
        "[dingtalk]\napp_secret_file = \"app_secret\"\n",
    );
    let credentials = harness.dir().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::write(
        credentials.join("app_secret"),
        format!("{}\n", SandboxOptions::default().app_secret),
    )
    .unwrap();

    let out = harness
        .command()
        .env_remove("DINGTALK_APP_SECRET")
        .env("CREDENTIALS_DIRECTORY", &credentials)
        .arg("--config")
        .arg(&config)
        .arg("check")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(
        text.contains(&format!(
            "read from {}",
            credentials.join("app_secret").display()
        )),
        "{text}"
    );

    let without = harness
        .command()
        .env_remove("CREDENTIALS_DIRECTORY")
        .arg("--config")
        .arg(&config)
        .arg("run")
        .output()
        .unwrap();
    assert_eq!(without.status.code(), Some(78));
    assert!(
        stderr(&without).contains("CREDENTIALS_DIRECTORY"),
        "{}",
        stderr(&without)
    );
}

#[test]
fn the_systemd_unit_speaks_notify_keeps_the_secret_out_and_does_not_loop_on_config_errors() {
    let unit = include_str!("../../../contrib/approval-worker.service");
    for directive in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "RestartPreventExitStatus=78",
        "LoadCredential=app_secret:",
        "User=approval-worker",
        "StateDirectory=approval-worker",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "ReadWritePaths=/var/lib/approval-worker",
        "ReadOnlyPaths=/srv/approval-spool",
    ] {
        assert!(
            unit.lines().any(|line| line.starts_with(directive)),
            "the unit lacks {directive}"
        );
    }
    // Where systemd is installed, the unit must verify clean (with the binary under test).
    let Ok(probe) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        return;
    };
    if !probe.status.success() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("approval-worker.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/approval-worker", crate::helpers::BIN),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_a_templates_fields_and_whether_the_attachment_field_is_its_ddattachment() {
    let harness = Harness::new().await;
    let config = harness.config_file("worker.toml", "");
    let out = run(
        &harness,
        &config,
        &["check", "--process-code", "PROC-EXPENSE"],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(
        text.contains(
            "ok    template        PROC-EXPENSE 「报销」: 报销事由 (TextField), 说明 \
             (TextareaField), 金额 (MoneyField), 附件 (DDAttachment, required); attachment \
             field 「附件」 is its DDAttachment"
        ),
        "{text}"
    );

    let wrong = harness.config_file("wrong.toml", "[dingtalk]\nattachment_field = \"说明\"\n");
    let out = run(
        &harness,
        &wrong,
        &["check", "--process-code", "PROC-EXPENSE"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("FAIL  template")
            && stdout(&out)
                .contains("attachment_field 「说明」 is a TextareaField, not a DDAttachment"),
        "{}",
        stdout(&out)
    );

    let out = run(&harness, &config, &["check", "--process-code", "EXPENSE"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("FAIL  template") && stdout(&out).contains("processCodeError"),
        "{}",
        stdout(&out)
    );
}

//! Tests of loading and validating `worker.toml`.

use super::*;

#[test]
fn a_relative_secret_file_is_a_systemd_credential() {
    let dir = Path::new("/run/credentials/approval-worker.service");
    assert_eq!(
        resolve_credential(
            "[dingtalk] app_secret_file",
            Path::new("app_secret"),
            Some(dir)
        )
        .unwrap(),
        dir.join("app_secret")
    );
    assert_eq!(
        resolve_credential(
            "[dingtalk] app_secret_file",
            Path::new("/etc/secret"),
            Some(dir)
        )
        .unwrap(),
        Path::new("/etc/secret")
    );
    let err = resolve_credential("[dingtalk] app_secret_file", Path::new("app_secret"), None)
        .unwrap_err();
    assert!(err.to_string().contains("CREDENTIALS_DIRECTORY"), "{err}");
}

#[test]
fn new_sections_parse_and_a_zero_budget_is_refused() {
    let config = Config::parse(
        "[metrics]\nlisten = \"127.0.0.1:9187\"\n[log]\nformat = \"json\"\n\
         [dingtalk]\nmonthly_call_budget = 0\n",
        Path::new("w.toml"),
    )
    .unwrap();
    assert_eq!(config.metrics.listen.unwrap().port(), 9187);
    assert_eq!(config.log.format, LogFormat::Json);
    let err = config.validate(Path::new("w.toml")).unwrap_err();
    assert!(err.to_string().contains("monthly_call_budget"), "{err}");
}

#[test]
fn an_unknown_key_is_refused_with_its_name() {
    let err = Config::parse("[worker]\nconcurency = 4\n", Path::new("w.toml")).unwrap_err();
    assert!(err.to_string().contains("concurency"), "{err}");
}

#[test]
fn every_bad_value_is_reported_at_once() {
    let config = Config::parse(
        "[worker]\nconcurrency = 0\nlease_secs = 1\n[dingtalk]\napi_base = \"ftp://x\"\n",
        Path::new("w.toml"),
    )
    .unwrap();
    let err = config
        .validate(Path::new("w.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("[worker] concurrency"), "{err}");
    assert!(err.contains("[worker] lease_secs"), "{err}");
    assert!(err.contains("[dingtalk] api_base"), "{err}");
}

/// The problems `validate` reports for `toml`, one line each.
fn problems(toml: &str) -> Vec<String> {
    let config = Config::parse(toml, Path::new("w.toml")).unwrap();
    match config.validate(Path::new("w.toml")) {
        Ok(()) => Vec::new(),
        Err(ConfigError::Invalid { problems, .. }) => problems,
        Err(other) => panic!("{other}"),
    }
}

#[test]
fn durations_too_large_to_compute_with_are_refused_naming_the_key_and_its_range() {
    let found = problems(&format!(
        "[dingtalk]\nconnect_timeout_secs = {}\nrequest_timeout_secs = {}\n\
         [worker]\npoll_interval_ms = {}\nlease_secs = {}\nbackoff_base_secs = {}\n\
         backoff_max_secs = {}\nshutdown_grace_secs = {}\n",
        i64::MAX,
        i64::MAX,
        i64::MAX,
        i64::MAX,
        i64::MAX,
        i64::MAX,
        i64::MAX,
    ));
    for (key, range) in [
        ("[dingtalk] connect_timeout_secs", "1..=300"),
        ("[dingtalk] request_timeout_secs", "1..=3600"),
        ("[worker] poll_interval_ms", "10..=60000"),
        ("[worker] lease_secs", "5..=86400"),
        ("[worker] backoff_base_secs", "1..=86400"),
        ("[worker] backoff_max_secs", "..=604800"),
        ("[worker] shutdown_grace_secs", "0..=86400"),
    ] {
        let line = found.iter().find(|line| line.starts_with(key));
        assert!(
            line.is_some_and(|line| line.contains(range)),
            "{key} with {range}: {found:#?}"
        );
    }
}

#[test]
fn the_largest_allowed_values_are_accepted() {
    let found = problems(
        "[dingtalk]\nconnect_timeout_secs = 300\nrequest_timeout_secs = 3600\n\
         rate_limit_per_sec = 10000\n\
         [worker]\npoll_interval_ms = 60000\nlease_secs = 86400\n\
         backoff_base_secs = 86400\nbackoff_max_secs = 604800\nshutdown_grace_secs = 86400\n",
    );
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn a_rate_limit_above_ten_thousand_calls_a_second_is_refused() {
    let found = problems("[dingtalk]\nrate_limit_per_sec = 4294967295\n");
    assert_eq!(
        found,
        vec!["[dingtalk] rate_limit_per_sec: must be in 0..=10000 (0 = unlimited), not 4294967295"]
    );
}

#[test]
fn parts_smaller_than_oss_takes_and_a_zero_threshold_are_refused_naming_the_key() {
    let found = problems("[upload]\npart_bytes = 65536\nmultipart_threshold_bytes = 0\n");
    assert_eq!(
        found,
        vec![
            "[upload] multipart_threshold_bytes: must be at least 1",
            "[upload] part_bytes: must be in 102400..=5368709120 (OSS takes parts of 100 KiB \
             to 5 GiB), not 65536",
        ]
    );
    let config = Config::parse("", Path::new("w.toml")).unwrap();
    assert_eq!(
        config.upload.part_plan(),
        crate::approval::PartPlan {
            threshold_bytes: 64 * 1024 * 1024,
            part_bytes: 8 * 1024 * 1024
        }
    );
}

#[test]
fn the_example_worker_toml_is_valid() {
    let text = include_str!("../../worker.toml");
    let config = Config::parse(text, Path::new("worker.toml")).unwrap();
    config.validate(Path::new("worker.toml")).unwrap();
    assert_eq!(config.worker.max_attempts, 12);
}

#[cfg(unix)]
#[test]
fn a_secret_file_readable_by_others_is_a_warning_and_an_owner_only_one_is_not() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app_secret");
    std::fs::write(&file, "s3cr3t").unwrap();
    let mut config = Config::default();
    assert!(
        config.warnings().is_empty(),
        "the secret comes from the env"
    );
    config.dingtalk.app_secret_file = Some(file.clone());

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let warnings = config.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("[dingtalk] app_secret_file: "),
        "{warnings:?}"
    );
    assert!(warnings[0].contains("0644") && warnings[0].contains("chmod 600"));

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(config.warnings().is_empty());
}

#[test]
fn the_secret_never_shows_in_debug_output() {
    let secret = Secret::new("s3cr3t-value");
    assert!(!format!("{secret:?}").contains("s3cr3t"));
}

#[test]
fn a_database_is_a_sqlite_path_or_a_postgres_url_never_both() {
    let both = problems("[database]\npath = \"q.db\"\nurl = \"postgres://u:secret@h/d\"\n");
    assert_eq!(both.len(), 1, "{both:?}");
    assert!(both[0].contains("give one, not both"), "{both:?}");
    let wrong = problems("[database]\nurl = \"mysql://u:secret@h/d\"\nmax_connections = 0\n");
    assert_eq!(wrong.len(), 2, "{wrong:?}");
    assert!(
        wrong[0].contains("mysql://u@h/d is not a postgres:// URL"),
        "{wrong:?}"
    );
    assert!(
        !wrong.concat().contains("secret"),
        "the password is never shown"
    );
    assert!(wrong[1].contains("max_connections"), "{wrong:?}");

    let config = Config::parse(
        "[database]\nurl = \"postgres://approval@db/approvals\"\nlisten = false\n",
        Path::new("w.toml"),
    )
    .unwrap();
    config.validate(Path::new("w.toml")).unwrap();
    match config.queue_location().unwrap() {
        crate::queue::Location::Postgres(options) => {
            assert_eq!(options.url, "postgres://approval@db/approvals");
            assert!(!options.listen);
            assert_eq!(options.max_connections, 10);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn outcome_settings_that_cannot_work_are_each_named() {
    let found = problems(
        "[outcome]\npoll_first_secs = 0\npoll_share = 1.5\ngive_up_after_days = 0\n\
         webhook_url = \"ftp://erp.example.com/hook\"\n",
    );
    for key in [
        "[outcome] poll_first_secs",
        "[outcome] poll_share",
        "[outcome] give_up_after_days",
        "[outcome] webhook_url",
    ] {
        assert!(found.iter().any(|p| p.starts_with(key)), "{key}: {found:?}");
    }
    let found = problems("[outcome]\nwebhook_url = \"not a url\"\n");
    assert!(found[0].contains("is not a URL"), "{found:?}");
}

#[test]
fn reads_of_pending_instances_are_sparser_when_the_stream_covers_them() {
    let parse = |text: &str| Config::parse(text, Path::new("w.toml")).unwrap().outcome;
    assert_eq!(parse("").poll_max_interval(), Duration::from_secs(6 * 3600));
    assert_eq!(
        parse("[outcome]\nstream = false\n").poll_max_interval(),
        Duration::from_secs(3600)
    );
    assert_eq!(
        parse("[outcome]\npoll_max_interval_secs = 120\n").poll_max_interval(),
        Duration::from_secs(120)
    );
}

#[test]
fn the_webhook_secret_comes_from_its_file_without_the_trailing_newline() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hook-secret");
    std::fs::write(&file, "s3cret\n").unwrap();
    let config = Config::parse(
        &format!(
            "[outcome]\nwebhook_secret_file = {:?}\n",
            file.display().to_string()
        ),
        Path::new("w.toml"),
    )
    .unwrap();
    assert_eq!(
        config.outcome.webhook_secret().unwrap().unwrap().expose(),
        "s3cret"
    );
    std::fs::write(&file, "\n").unwrap();
    assert!(
        config.outcome.webhook_secret().is_err(),
        "an empty file is refused"
    );
}

#[test]
fn a_dashboard_listening_beyond_loopback_without_allow_remote_is_a_config_error() {
    let found = problems("[dashboard]\nlisten = \"0.0.0.0:9188\"\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("[dashboard] listen:"), "{found:?}");
    assert!(found[0].contains("allow_remote"), "{found:?}");
    assert!(problems("[dashboard]\nlisten = \"127.0.0.1:9188\"\n").is_empty());
    assert!(problems("[dashboard]\nlisten = \"[::1]:9188\"\n").is_empty());
    assert!(problems("[dashboard]\nlisten = \"0.0.0.0:9188\"\nallow_remote = true\n").is_empty());
}

#[test]
fn a_dashboard_listen_address_written_as_a_host_name_is_refused_saying_what_is_wanted() {
    let err = Config::parse(
        "[dashboard]\nlisten = \"localhost:9188\"\n",
        Path::new("w.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("\"localhost:9188\" is not an IP address and port"),
        "{err}"
    );
    assert!(err.contains("127.0.0.1:9188"), "{err}");
    let config = Config::parse("", Path::new("w.toml")).unwrap();
    assert!(config.dashboard.listen.is_none(), "off when absent");
}

#[test]
fn a_remote_dashboard_needs_a_token_and_a_short_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let parse = |text: &str| Config::parse(text, Path::new("w.toml")).unwrap().dashboard;
    let unset =
        "[dashboard]\nallow_remote = true\ntoken_env = \"APPROVAL_WORKER_TEST_UNSET_TOKEN\"\n";
    let err = parse(unset).token().unwrap_err().to_string();
    assert!(err.contains("needs a token"), "{err}");
    let local = "[dashboard]\ntoken_env = \"APPROVAL_WORKER_TEST_UNSET_TOKEN\"\n";
    assert!(
        parse(local).token().unwrap().is_none(),
        "loopback needs none"
    );

    let file = dir.path().join("token");
    std::fs::write(&file, "short\n").unwrap();
    let with_file = format!(
        "[dashboard]\nallow_remote = true\ntoken_file = {:?}\n",
        file.display().to_string()
    );
    let err = parse(&with_file).token().unwrap_err().to_string();
    assert!(err.contains("shorter than 16"), "{err}");
    std::fs::write(&file, "0123456789abcdef0123\n").unwrap();
    assert_eq!(
        parse(&with_file).token().unwrap().unwrap().expose(),
        "0123456789abcdef0123"
    );
}

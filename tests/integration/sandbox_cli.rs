//! `approval-worker sandbox` as an integrator runs it: credentials and directory printed at
//! start, a directory file of one's own, `--fault`, `--latency-ms`, `sandbox fault` on the
//! running server, and a bad directory file refused with exit 78 naming the key.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::BIN;

/// A `sandbox` child process, killed on drop.
struct Served {
    child: Child,
    url: String,
    banner: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `sandbox ARGS --port P` and reads its banner up to "Press Ctrl-C".
fn serve(args: &[&str]) -> Served {
    let port = free_port();
    let mut child = Command::new(BIN)
        .arg("sandbox")
        .args(args)
        .args(["--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut served = Served {
        child,
        url: format!("http://127.0.0.1:{port}"),
        banner: String::new(),
    };
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        served.banner.push_str(&line);
        served.banner.push('\n');
        if line.starts_with("Press Ctrl-C") {
            return served;
        }
    }
    panic!("the sandbox ended before it was ready:\n{}", served.banner);
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const DIRECTORY: &str = r#"
[[departments]]
id = 7
name = "法务部"

[[users]]
user_id = "lawyer1"
union_id = "uNi0nLawyer1"
name = "冯律师"
departments = [7]

[[templates]]
process_code = "PROC-CONTRACT"
name = "合同审批"
fields = [
  { label = "合同名称", component = "TextField", required = true },
  { label = "合同文件", component = "DDAttachment", required = true },
]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_prints_credentials_and_its_directory_and_applies_faults_and_latency() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sandbox.toml");
    std::fs::write(&file, DIRECTORY).unwrap();
    let served = serve(&[
        "--directory",
        file.to_str().unwrap(),
        "--fault",
        "token:server_error(503)",
        "--latency-ms",
        "400",
        "--latency-jitter-ms",
        "100",
    ]);
    let banner = &served.banner;
    for expected in [
        "AppKey (Client ID)  dingsandboxkey",
        "AppSecret           sandbox-secret",
        "AgentId             3012345678",
        "lawyer1  uNi0nLawyer1  冯律师  法务部(7)",
        "PROC-CONTRACT  合同审批: 合同名称* (TextField), 合同文件* (DDAttachment)",
        "Every DingTalk API answer takes 400 ± 100 ms",
        "the next 1 call(s) to token get server_error(503)",
        "(instances created without approvers wait on manager0001, who is not in this directory)",
    ] {
        assert!(banner.contains(expected), "no {expected:?} in\n{banner}");
    }
    assert!(
        !banner.contains("manager4220"),
        "the file replaces the built-in directory"
    );

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let token_call = || {
        http.post(format!("{}/v1.0/oauth2/accessToken", served.url))
            .json(&json!({"appKey": "dingsandboxkey", "appSecret": "sandbox-secret"}))
            .send()
    };
    let started = Instant::now();
    let faulted = token_call().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(faulted.status(), 503);
    let answer: Value = token_call().await.unwrap().json().await.unwrap();
    let token = answer["accessToken"].as_str().unwrap().to_owned();
    let lookup: Value = http
        .post(format!(
            "{}/topapi/v2/user/get?access_token={token}",
            served.url
        ))
        .json(&json!({"userid": "lawyer1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(lookup["result"]["unionid"], "uNi0nLawyer1", "{lookup}");
    let schema: Value = http
        .get(format!(
            "{}/v1.0/workflow/forms/schemas/processCodes?processCode=PROC-EXPENSE",
            served.url
        ))
        .header("x-acs-dingtalk-access-token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(schema["code"], "processCodeError", "{schema}");

    let url = served.url.clone();
    let fault = move |args: &[&str]| {
        let mut command = Command::new(BIN);
        command
            .args(["sandbox", "fault"])
            .args(args)
            .args(["--url", &url]);
        tokio::task::spawn_blocking(move || command.output().unwrap())
    };
    let out = fault(&["commit:throttle:2"]).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("queued commit:throttle:2: the next 2 call(s) to commit"),
        "{}",
        text(&out.stdout)
    );
    let listed: Value = http
        .get(format!("{}/sandbox/faults", served.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["faults"],
        json!([{"endpoint": "commit", "fault": "throttle", "count": 2}])
    );
    let out = fault(&["--list"]).await.unwrap();
    assert_eq!(text(&out.stdout), "commit:throttle:2\n");
    let bad = fault(&["commit:throttle:0"]).await.unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("count `0`"),
        "{}",
        text(&bad.stderr)
    );
    let out = fault(&["--clear"]).await.unwrap();
    assert_eq!(text(&out.stdout), "cleared 2 queued fault(s)\n");
}

#[test]
fn the_sandbox_without_a_directory_prints_the_built_in_one() {
    let served = serve(&[]);
    for expected in [
        "Directory (built-in; --directory FILE for your own)",
        "manager4220",
        "PROC-EXPENSE",
        "附件* (DDAttachment)",
    ] {
        assert!(
            served.banner.contains(expected),
            "no {expected:?} in\n{}",
            served.banner
        );
    }
}

#[test]
fn a_bad_directory_or_fault_is_refused_before_serving_naming_the_bad_part() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sandbox.toml");
    let run = |args: &[&str]| {
        Command::new(BIN)
            .arg("sandbox")
            .args(args)
            .args(["--port", &free_port().to_string()])
            .output()
            .unwrap()
    };
    std::fs::write(&file, "[[users]]\nuser_id = \"a\"\nunion = \"x\"\n").unwrap();
    let out = run(&["--directory", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("unknown field `union`"), "{stderr}");
    assert!(stderr.contains("sandbox.toml"), "{stderr}");

    std::fs::write(&file, "[[users]]\nuser_id = \"a\"\ndepartments = [42]\n").unwrap();
    let out = run(&["--directory", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stderr)
            .contains("users[0].departments[0]: department 42 is not listed under [[departments]]"),
        "{}",
        text(&out.stderr)
    );

    let out = run(&["--fault", "create_instance:explode"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown fault kind `explode`"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["--fault", "create:throttle"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown sandbox endpoint `create`"),
        "{}",
        text(&out.stderr)
    );
}

//! DingTalk's official Python Stream SDK (PyPI `dingtalk-stream`), unchanged but for its
//! gateway URL, against the sandbox's Stream gateway: it connects, answers pings, handles
//! and acks instance events, and reconnects after a disconnect frame. `.ci/run` installs the
//! package in a venv; elsewhere the test is skipped unless it is installed
//! (`APPROVAL_WORKER_STREAM_SDK_PYTHON` may name a venv's python).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use approval_worker::sandbox::{AckStatus, Decision, SandboxOptions, StreamOptions};

use crate::helpers::Harness;

const PYTHON_ENV: &str = "APPROVAL_WORKER_STREAM_SDK_PYTHON";
const WAIT: Duration = Duration::from_secs(30);

/// Registers an all-events handler that prints each event as a JSON line and acks it the
/// SDK's way (code 200, the event's data echoed, no status). Exits on its own after a
/// minute, so it never outlives the test.
const CLIENT: &str = r#"
import asyncio, json, os, sys, threading
import dingtalk_stream
from dingtalk_stream import AckMessage, Credential, DingTalkStreamClient

threading.Timer(60, os._exit, [1]).start()
DingTalkStreamClient.OPEN_CONNECTION_API = sys.argv[1] + '/v1.0/gateway/connections/open'

class Handler(dingtalk_stream.EventHandler):
    async def process(self, event):
        print(json.dumps({'eventType': event.headers.event_type, 'eventId': event.headers.event_id,
                          'type': event.data.get('type'), 'result': event.data.get('result')}), flush=True)
        return AckMessage.STATUS_OK, 'OK'

client = DingTalkStreamClient(Credential(sys.argv[2], sys.argv[3]))
client.register_all_event_handler(Handler())
asyncio.run(client.start())
"#;

/// Kills the client when the test ends, however it ends.
struct Client(Option<Child>);

impl Client {
    fn output(mut self) -> String {
        let mut child = self.0.take().unwrap();
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn python_with_the_sdk() -> Option<String> {
    let python = std::env::var(PYTHON_ENV).unwrap_or_else(|_| "python3".to_owned());
    let found = Command::new(&python)
        .args(["-c", "import dingtalk_stream"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    found.then_some(python)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_stream_sdk_receives_and_acks_instance_events() {
    let Some(python) = python_with_the_sdk() else {
        // `.ci/run` installs the SDK and sets this, so CI never skips it.
        assert!(
            std::env::var_os("APPROVAL_WORKER_REQUIRE_STREAM_SDK").is_none(),
            "dingtalk-stream is required (APPROVAL_WORKER_REQUIRE_STREAM_SDK) but {PYTHON_ENV} \
             names no python that has it"
        );
        eprintln!(
            "skipped: no python with dingtalk-stream (pip install dingtalk-stream; {PYTHON_ENV})"
        );
        return;
    };
    let options = SandboxOptions {
        stream: StreamOptions {
            ping_interval: Duration::from_millis(300),
            ..StreamOptions::default()
        },
        ..SandboxOptions::default()
    };
    let mut h = Harness::with_sandbox(options.clone()).await;
    let client = Client(Some(
        Command::new(python)
            .args([
                "-c",
                CLIENT,
                &h.sandbox.base_url(),
                &options.app_key,
                &options.app_secret,
            ])
            .env("NO_PROXY", "127.0.0.1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    let connected = |n: u64| {
        move |s: &approval_worker::sandbox::Sandbox| {
            let stats = s.stream_stats();
            stats.connections_accepted == n && stats.open_connections == 1
        }
    };
    assert!(
        h.sandbox.wait_for(WAIT, connected(1)).await,
        "{:?}",
        h.sandbox.stream_stats()
    );

    h.start();
    let first = h.enqueue(&h.payload(&[&h.file("a.pdf", b"%PDF a")])).await;
    h.finished(first).await;
    let instance = h.sandbox.instances()[0].instance_id.clone();
    h.sandbox.decide(&instance, Decision::Agree).unwrap();
    let all_acked = |n: usize| {
        move |s: &approval_worker::sandbox::Sandbox| {
            let events = s.stream_events();
            events.len() == n && events.iter().all(|e| e.acked)
        }
    };
    assert!(
        h.sandbox.wait_for(WAIT, all_acked(2)).await,
        "{:?}",
        h.sandbox.stream_events()
    );
    let echoed = h
        .sandbox
        .wait_for(WAIT, |s| {
            s.stream_pings().iter().any(|p| p.answered && p.echoed)
        })
        .await;
    assert!(echoed, "{:?}", h.sandbox.stream_pings());

    // On a disconnect frame the SDK closes and opens a new connection with a new ticket.
    assert_eq!(h.sandbox.stream_disconnect("sdk check"), 1);
    assert!(
        h.sandbox.wait_for(WAIT, connected(2)).await,
        "{:?}",
        h.sandbox.stream_stats()
    );
    let second = h.enqueue(&h.payload(&[&h.file("b.pdf", b"%PDF b")])).await;
    h.finished(second).await;
    let instance = h.sandbox.instances()[1].instance_id.clone();
    h.sandbox.decide(&instance, Decision::Terminate).unwrap();
    assert!(
        h.sandbox.wait_for(WAIT, all_acked(4)).await,
        "{:?}",
        h.sandbox.stream_events()
    );
    h.stop().await;

    let stats = h.sandbox.stream_stats();
    assert_eq!(
        (stats.tickets_used, stats.malformed_frames, stats.stray_acks),
        (2, 0, 0)
    );
    for event in h.sandbox.stream_events() {
        let statuses: Vec<AckStatus> = event.deliveries.iter().map(|d| d.status).collect();
        assert_eq!(statuses, [AckStatus::Success], "{event:?}");
    }
    let seen: Vec<serde_json::Value> = client
        .output()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let kinds: Vec<(&str, Option<&str>)> = seen
        .iter()
        .map(|e| (e["type"].as_str().unwrap(), e["result"].as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("start", None),
            ("finish", Some("agree")),
            ("start", None),
            ("terminate", None)
        ]
    );
    assert!(
        seen.iter()
            .all(|e| e["eventType"] == "bpms_instance_change")
    );
}

//! The ceilings the other figures are read against, measured on the same disk and machine
//! in the same run: single-row SQLite commits through sqlx with the queue's pragmas, and
//! loopback PUT throughput to the sandbox child the upload scenarios use.

use std::time::Instant;

use bytes::Bytes;
use futures_util::stream;

use super::BenchError;
use super::setup::Scratch;
use super::stats::rate;
use crate::queue::measure;

/// Bytes per chunk of the generated PUT body.
const PUT_CHUNK_BYTES: usize = 1024 * 1024;

/// Single-row autocommit inserts per second.
pub(crate) async fn commits_per_sec(scratch: &Scratch, commits: u32) -> Result<f64, BenchError> {
    let path = scratch
        .dir
        .join(format!("ceiling-{}.db", crate::queue::now_ms()));
    let elapsed = measure::raw_commits(&path, commits).await?;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.clone().into_os_string();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
    Ok(rate(f64::from(commits), elapsed))
}

/// MB/s (10^6 bytes) of one PUT of `bytes` generated in memory to the OSS path of the
/// sandbox at `sandbox_url`, which reads and hashes the whole body as it does for a real
/// upload: the fastest any upload to it can go.
pub(crate) async fn loopback_put_mb_per_sec(
    sandbox_url: &str,
    bytes: u64,
) -> Result<f64, BenchError> {
    let url = format!("{sandbox_url}/oss/bench/ceiling.bin");
    let chunk = Bytes::from(vec![0x5a_u8; PUT_CHUNK_BYTES]);
    let chunks = bytes.div_ceil(PUT_CHUNK_BYTES as u64);
    let last = bytes - (chunks.saturating_sub(1)) * PUT_CHUNK_BYTES as u64;
    let body = stream::iter((0..chunks).map(move |index| {
        let piece = if index + 1 == chunks {
            chunk.slice(..usize::try_from(last).unwrap_or(PUT_CHUNK_BYTES))
        } else {
            chunk.clone()
        };
        Ok::<Bytes, std::io::Error>(piece)
    }));
    let client = reqwest::Client::builder()
        .build()
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let started = Instant::now();
    let response = client
        .put(&url)
        .header(reqwest::header::CONTENT_LENGTH, bytes)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .map_err(|e| BenchError::Setup(format!("loopback PUT: {e}")))?;
    // The sandbox refuses the unsigned PUT, but only after reading and hashing all of it.
    let _ = response.bytes().await;
    let elapsed = started.elapsed();
    Ok(rate(bytes as f64 / 1e6, elapsed))
}

/// DingTalk calls to the sandbox child through the real client, `tasks` tasks calling at
/// once until `calls` calls are done: nothing else runs, so this is the floor under the
/// calls every job makes and the most calls per second the two processes manage together.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallCeiling {
    /// CPU (µs, this process) per call.
    pub(crate) cpu_us: f64,
    /// Calls per second.
    pub(crate) calls_per_sec: f64,
}

/// Measures a [`CallCeiling`].
pub(crate) async fn http_calls(
    sandbox_url: &str,
    calls: usize,
    tasks: usize,
) -> Result<CallCeiling, BenchError> {
    let client = super::setup::dingtalk(sandbox_url, 0)?;
    client
        .approval_space(CALL_USER)
        .await
        .map_err(|e| BenchError::Setup(format!("warm-up call: {e}")))?;
    let cpu = super::stats::cpu_time(None);
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for task in 0..tasks {
        let client = client.clone();
        let share = calls / tasks + usize::from(task < calls % tasks);
        set.spawn(async move {
            for _ in 0..share {
                client.approval_space(CALL_USER).await?;
            }
            Ok::<(), crate::dingtalk::DingTalkError>(())
        });
    }
    while let Some(joined) = set.join_next().await {
        joined
            .map_err(|e| BenchError::Setup(e.to_string()))?
            .map_err(|e| BenchError::Setup(format!("call: {e}")))?;
    }
    let elapsed = started.elapsed();
    let cpu = super::stats::cpu_time(None).saturating_sub(cpu);
    Ok(CallCeiling {
        cpu_us: cpu.as_secs_f64() * 1e6 / calls.max(1) as f64,
        calls_per_sec: rate(calls as f64, elapsed),
    })
}

/// The originator the ceiling calls ask about.
const CALL_USER: &str = "manager4220";

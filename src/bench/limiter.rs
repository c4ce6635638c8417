//! The client-wide rate limiter under contention: many tasks calling DingTalk (the sandbox,
//! which enforces no limit here) through one client limited to `per_sec` calls a second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::BenchError;
use super::setup;

/// The user whose approval space the calls ask for.
const USER: &str = "manager4220";

/// What the limiter run measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct LimiterFigures {
    /// The configured limit.
    pub(crate) per_sec: u32,
    /// Competing tasks.
    pub(crate) tasks: usize,
    /// Calls completed per second over the whole window.
    pub(crate) achieved_per_sec: f64,
    /// Fewest and most calls in any one-second slice of the window.
    pub(crate) slowest_second: usize,
    /// See `slowest_second`.
    pub(crate) busiest_second: usize,
    /// Seconds measured.
    pub(crate) secs: u64,
}

/// `tasks` tasks call as fast as the limiter lets them for `secs` seconds. A warm-up call
/// fetches the token first; the window then starts with the limiter's full burst available,
/// as after any idle period.
pub(crate) async fn measure(
    sandbox_url: &str,
    per_sec: u32,
    tasks: usize,
    secs: u64,
) -> Result<LimiterFigures, BenchError> {
    let client = setup::dingtalk(sandbox_url, per_sec)?;
    client
        .approval_space(USER)
        .await
        .map_err(|e| BenchError::Setup(format!("warm-up call: {e}")))?;
    // Let the burst refill, as it would after an idle spell.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let window = Duration::from_secs(secs);
    let started = Instant::now();
    let stamps = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut set = JoinSet::new();
    for _ in 0..tasks {
        let client = client.clone();
        let stamps = Arc::clone(&stamps);
        set.spawn(async move {
            while started.elapsed() < window {
                if client.approval_space(USER).await.is_ok() {
                    let at = started.elapsed();
                    if at < window {
                        stamps
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(at);
                    }
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
    let stamps = stamps
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let mut per_second = vec![0_usize; usize::try_from(secs).unwrap_or(0)];
    for at in &stamps {
        if let Some(slot) = per_second.get_mut(usize::try_from(at.as_secs()).unwrap_or(usize::MAX))
        {
            *slot += 1;
        }
    }
    Ok(LimiterFigures {
        per_sec,
        tasks,
        achieved_per_sec: stamps.len() as f64 / secs.max(1) as f64,
        slowest_second: per_second.iter().copied().min().unwrap_or(0),
        busiest_second: per_second.iter().copied().max().unwrap_or(0),
        secs,
    })
}

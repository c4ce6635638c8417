//! Numbers the benchmark reports: percentiles and medians, and the process's CPU time and
//! memory as Linux accounts them (`/proc/<pid>/stat` and `/proc/self/status`).

use std::time::Duration;

/// Clock ticks per second of the `utime`/`stime` fields in `/proc/<pid>/stat`. Linux fixes
/// USER_HZ at 100 in its ABI for these files, whatever the kernel's internal tick rate.
const USER_HZ: u64 = 100;

/// The `p`-th percentile (0–100) of `values`, nearest rank; 0 when empty.
pub(crate) fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of `values` (the mean of the middle two for an even count); 0 when empty.
pub(crate) fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    }
}

/// User plus system CPU time of a process so far (all its threads, living and exited), read
/// from `/proc/<pid>/stat` fields 14 and 15. 10 ms resolution: runs are seconds long.
pub(crate) fn cpu_time(pid: Option<u32>) -> Duration {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let Ok(stat) = std::fs::read_to_string(path) else {
        return Duration::ZERO;
    };
    // The command name (field 2) may contain spaces; the fields after it are plain numbers.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After ")" come field 3 (state) onwards: utime is field 14, stime field 15.
    let ticks = |index: usize| {
        fields
            .get(index - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let total = ticks(14) + ticks(15);
    Duration::from_millis(total * 1000 / USER_HZ)
}

/// `(VmRSS, VmHWM)` of this process in KiB, from `/proc/self/status`.
pub(crate) fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets this process's peak RSS (VmHWM) to its current RSS, so a later peak measures one
/// phase only. Returns false where the kernel does not allow it.
pub(crate) fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// While alive, this thread (and every thread it starts meanwhile, which inherit it) runs on
/// the CPU it was on; dropping it gives this thread its former CPUs back. Where the kernel
/// refuses, nothing is pinned and [`OneCpu::cpu`] is `None`.
pub(crate) struct OneCpu {
    #[cfg(target_os = "linux")]
    former: Option<rustix::thread::CpuSet>,
    cpu: Option<usize>,
}

impl OneCpu {
    /// Pins this thread to its current CPU.
    pub(crate) fn pin() -> OneCpu {
        #[cfg(target_os = "linux")]
        {
            use rustix::thread::{CpuSet, sched_getaffinity, sched_getcpu, sched_setaffinity};
            let Ok(former) = sched_getaffinity(None) else {
                return OneCpu {
                    former: None,
                    cpu: None,
                };
            };
            let cpu = sched_getcpu();
            let mut one = CpuSet::new();
            one.set(cpu);
            let pinned = sched_setaffinity(None, &one).is_ok();
            OneCpu {
                former: pinned.then_some(former),
                cpu: pinned.then_some(cpu),
            }
        }
        #[cfg(not(target_os = "linux"))]
        OneCpu { cpu: None }
    }

    /// The CPU this thread is pinned to, if it is.
    pub(crate) fn cpu(&self) -> Option<usize> {
        self.cpu
    }
}

impl Drop for OneCpu {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(former) = &self.former {
            // Best effort: a failure leaves the thread pinned, which only slows what follows.
            let _ = rustix::thread::sched_setaffinity(None, former);
        }
    }
}

/// Per-second rate of `count` events over `elapsed`.
pub(crate) fn rate(count: f64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count / secs } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 50.0);
        assert_eq!(percentile(&values, 99.0), 99.0);
        assert_eq!(percentile(&values, 100.0), 100.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
    }

    #[test]
    fn this_process_has_used_some_cpu_and_memory() {
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {}
        assert!(cpu_time(None) > Duration::ZERO);
        let (rss, peak) = rss_kib();
        assert!(rss > 0 && peak >= rss);
    }
}

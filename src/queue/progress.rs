//! Live upload progress: the bytes a worker has sent of each upload it runs, written at most
//! about once a second per worker (all its uploads in one statement, never a commit per
//! chunk), so that another process (`show`, `enqueue --wait`, the dashboard) shows bytes,
//! speed and time left.

use indicatif::HumanBytes;
use serde::Serialize;
use sqlx::FromRow;

use super::text::Lossy;
use super::{Fence, JobId, Queue, QueueError};

/// One running upload as its worker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadReport {
    /// The claim running it: a report lands only while the job is still that claim's.
    pub fence: Fence,
    /// Which of the job's attachments (from 0).
    pub file_index: i64,
    /// How many attachments the job has.
    pub file_count: i64,
    /// The attachment's name.
    pub file_name: String,
    /// Bytes handed to the connection so far.
    pub bytes_sent: i64,
    /// The file's size.
    pub bytes_total: i64,
    /// When this upload started (unix ms).
    pub started_at: i64,
}

/// The upload a running job is doing now, as last reported.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, Serialize)]
pub struct LiveUpload {
    /// Which of the job's attachments (from 0).
    pub file_index: i64,
    /// How many attachments the job has.
    pub file_count: i64,
    /// The attachment's name.
    #[sqlx(try_from = "Lossy")]
    pub file_name: String,
    /// Bytes sent as of `updated_at`.
    pub bytes_sent: i64,
    /// The file's size.
    pub bytes_total: i64,
    /// When the upload started (unix ms).
    pub started_at: i64,
    /// When the worker last reported (unix ms).
    pub updated_at: i64,
}

impl LiveUpload {
    /// The report, counting at least `stored` bytes sent: a file in parts may have stored
    /// more parts since its worker's last report.
    pub fn at_least(mut self, stored: u64) -> Self {
        self.bytes_sent = self
            .bytes_sent
            .max(i64::try_from(stored).unwrap_or(i64::MAX));
        self
    }

    /// Mean bytes per second since the upload started, once there is something to measure.
    pub fn bytes_per_sec(&self) -> Option<f64> {
        let elapsed_ms = self.updated_at - self.started_at;
        (elapsed_ms > 0 && self.bytes_sent > 0)
            .then(|| self.bytes_sent as f64 * 1000.0 / elapsed_ms as f64)
    }

    /// Seconds left at the mean speed so far.
    pub fn eta_secs(&self) -> Option<f64> {
        let left = (self.bytes_total - self.bytes_sent).max(0);
        self.bytes_per_sec().map(|speed| left as f64 / speed)
    }

    /// "uploading file 2 of 3 (big.zip): 120.50 MiB of 288.96 MiB (41 %), 12.30 MiB/s,
    /// about 14 s left (as of 1 s ago)", for people.
    pub fn summary(&self, now_ms: i64) -> String {
        let bytes = |n: i64| HumanBytes(u64::try_from(n).unwrap_or(0)).to_string();
        let percent = if self.bytes_total > 0 {
            self.bytes_sent.saturating_mul(100) / self.bytes_total
        } else {
            100
        };
        let mut line = format!(
            "uploading file {} of {} ({}): {} of {} ({percent} %)",
            self.file_index + 1,
            self.file_count,
            self.file_name,
            bytes(self.bytes_sent),
            bytes(self.bytes_total),
        );
        if self.bytes_sent >= self.bytes_total {
            line.push_str(", all sent, waiting for OSS's answer");
        } else if let (Some(speed), Some(eta)) = (self.bytes_per_sec(), self.eta_secs()) {
            line.push_str(&format!(
                ", {}/s, about {} left",
                HumanBytes(speed as u64),
                seconds(eta.ceil() as u64)
            ));
        }
        let age_ms = u64::try_from(now_ms - self.updated_at).unwrap_or(0);
        line.push_str(&format!(" (as of {} ago)", seconds(age_ms / 1000)));
        line
    }
}

/// `42 s`, `3 min`, `2 h`.
fn seconds(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7_199 => format!("{} min", secs / 60),
        _ => format!("{} h", secs / 3_600),
    }
}

impl Queue {
    /// Records `reports` in one statement; returns how many landed. A report whose claim is
    /// no longer the job's (lease lost, job finished) is left out.
    pub async fn report_uploads(
        &self,
        reports: &[UploadReport],
        now_ms: i64,
    ) -> Result<u64, QueueError> {
        if reports.is_empty() {
            return Ok(0);
        }
        on_store!(self, store => store.report_uploads(reports, now_ms).await)
    }

    /// The upload job `id` is running now, if it is running one that lasted long enough to be
    /// reported.
    pub async fn live_upload(&self, id: JobId) -> Result<Option<LiveUpload>, QueueError> {
        on_store!(self, store => store.live_upload(id).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(sent: i64, total: i64, started_at: i64, updated_at: i64) -> LiveUpload {
        LiveUpload {
            file_index: 0,
            file_count: 1,
            file_name: "a.zip".into(),
            bytes_sent: sent,
            bytes_total: total,
            started_at,
            updated_at,
        }
    }

    #[test]
    fn parts_stored_since_the_last_report_count_and_an_older_figure_does_not_lower_it() {
        assert_eq!(upload(100, 1000, 0, 1).at_least(300).bytes_sent, 300);
        assert_eq!(upload(500, 1000, 0, 1).at_least(300).bytes_sent, 500);
    }

    #[test]
    fn speed_is_the_mean_since_the_upload_started_and_eta_follows_from_it() {
        let live = upload(50_000_000, 150_000_000, 10_000, 15_000);
        assert_eq!(live.bytes_per_sec(), Some(10_000_000.0));
        assert_eq!(live.eta_secs(), Some(10.0));
    }

    #[test]
    fn the_summary_names_the_file_and_tells_bytes_percent_speed_and_time_left() {
        let mut live = upload(50 * 1024 * 1024, 150 * 1024 * 1024, 10_000, 15_000);
        live.file_count = 2;
        assert_eq!(
            live.summary(16_000),
            "uploading file 1 of 2 (a.zip): 50.00 MiB of 150.00 MiB (33 %), 10.00 MiB/s, \
             about 10 s left (as of 1 s ago)"
        );
        live.bytes_sent = live.bytes_total;
        assert!(
            live.summary(16_000)
                .contains("(100 %), all sent, waiting for OSS's answer")
        );
    }

    #[test]
    fn nothing_is_estimated_before_a_byte_was_sent_or_time_passed() {
        assert_eq!(upload(0, 100, 10_000, 12_000).bytes_per_sec(), None);
        assert_eq!(upload(50, 100, 10_000, 10_000).eta_secs(), None);
    }
}

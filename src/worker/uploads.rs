//! The uploads this process runs: their bytes sent, counted into the upload-bytes metric as
//! they go and reported to the database about once a second (all in one statement), so that
//! another process shows live progress.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::Worker;
use crate::oss::SentBytes;
use crate::queue::{Fence, JobId, UploadReport};

/// An upload is reported once it has run this long: a small file's never is.
pub(super) const REPORT_AFTER_MS: i64 = 1_000;

/// Which file of the job an upload sends.
#[derive(Debug, Clone)]
pub(super) struct UploadFile {
    pub(super) index: usize,
    pub(super) count: usize,
    pub(super) name: String,
    pub(super) size: u64,
    /// For a part of a file sent in parts: the bytes of the parts before it, and when its
    /// upload was opened, so that progress and speed are the whole file's.
    pub(super) earlier: Option<(u64, i64)>,
}

struct Live {
    fence: Fence,
    file: UploadFile,
    sent: SentBytes,
    started_at: i64,
    /// Bytes already added to the metric.
    counted: u64,
}

/// The uploads running now, by job.
#[derive(Default)]
pub(super) struct Uploads {
    live: Mutex<HashMap<JobId, Live>>,
}

impl Uploads {
    fn live(&self) -> MutexGuard<'_, HashMap<JobId, Live>> {
        // Plain counters: a panic elsewhere cannot leave an entry half-written.
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes sent since the last call, for the metric, and a report of each upload that has
    /// run at least [`REPORT_AFTER_MS`].
    pub(super) fn tick(&self, now_ms: i64) -> (u64, Vec<UploadReport>) {
        let mut fresh = 0;
        let mut reports = Vec::new();
        for live in self.live().values_mut() {
            let sent = live.sent.get();
            fresh += sent.saturating_sub(live.counted);
            live.counted = sent;
            if now_ms - live.started_at >= REPORT_AFTER_MS {
                reports.push(report(live, sent));
            }
        }
        (fresh, reports)
    }
}

fn report(live: &Live, sent: u64) -> UploadReport {
    let wide = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    UploadReport {
        fence: live.fence,
        file_index: wide(live.file.index),
        file_count: wide(live.file.count),
        file_name: live.file.name.clone(),
        bytes_sent: i64::try_from(sent).unwrap_or(i64::MAX),
        bytes_total: i64::try_from(live.file.size).unwrap_or(i64::MAX),
        started_at: live.started_at,
    }
}

/// One upload of a runner, counted until dropped (however the step ends, a panic included):
/// then its bytes not yet counted go into the metric.
pub(super) struct Upload<'a> {
    worker: &'a Worker,
    id: JobId,
    pub(super) sent: SentBytes,
}

impl Worker {
    /// Starts counting the upload of `file` by the claim `fence`.
    pub(super) fn upload(&self, fence: Fence, file: UploadFile, now_ms: i64) -> Upload<'_> {
        let (done, started_at) = file.earlier.unwrap_or((0, now_ms));
        let sent = SentBytes::starting_at(done);
        self.inner.uploads.live().insert(
            fence.id,
            Live {
                fence,
                file,
                sent: sent.clone(),
                started_at,
                // The earlier parts' bytes were counted when they were sent.
                counted: done,
            },
        );
        Upload {
            worker: self,
            id: fence.id,
            sent,
        }
    }
}

impl Drop for Upload<'_> {
    fn drop(&mut self) {
        let ended = self.worker.inner.uploads.live().remove(&self.id);
        if let Some(live) = ended {
            let rest = live.sent.get().saturating_sub(live.counted);
            self.worker.inner.metrics.uploaded(rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(uploads: &Uploads, id: JobId, started_at: i64) -> SentBytes {
        let sent = SentBytes::default();
        uploads.live().insert(
            id,
            Live {
                fence: Fence::for_tests(id, 1),
                file: UploadFile {
                    index: 1,
                    count: 2,
                    name: "b.zip".into(),
                    size: 1000,
                    earlier: None,
                },
                sent: sent.clone(),
                started_at,
                counted: 0,
            },
        );
        sent
    }

    #[test]
    fn each_tick_counts_the_bytes_sent_since_the_last_and_reports_uploads_older_than_a_second() {
        let uploads = Uploads::default();
        let old = live(&uploads, 1, 10_000);
        let young = live(&uploads, 2, 10_900);
        old.add_for_tests(300);
        young.add_for_tests(50);

        let (fresh, reports) = uploads.tick(11_000);
        assert_eq!(fresh, 350);
        assert_eq!(reports.len(), 1, "the young upload is not reported yet");
        assert_eq!(reports[0].fence, Fence::for_tests(1, 1));
        assert_eq!(reports[0].bytes_sent, 300);
        assert_eq!(reports[0].file_index, 1);
        assert_eq!(reports[0].file_count, 2);
        assert_eq!(reports[0].bytes_total, 1000);

        old.add_for_tests(100);
        let (fresh, reports) = uploads.tick(12_000);
        assert_eq!(fresh, 100, "only what was sent since");
        assert_eq!(reports.len(), 2);
    }
}

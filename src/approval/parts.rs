//! Large attachments in parts (dingtalk-api.md §5.7): when a file is large enough to go in
//! parts, their size, and the step that fetches signed targets and PUTs the next part.
//!
//! Parts go in order, one at a time per job, each streamed from disk (memory stays at the
//! body's few read-ahead chunks whatever the file's size), and the job stores its checkpoint
//! after every part: a restart sends again at most the part that was on its way.

use super::error::StepError;
use super::payload::Job;
use super::step::{PartTarget, PartedUpload, Progress, Step};
use super::{Approval, Attempt, Reason, TICKET_MARGIN_MS, next_attachment, stale};
use crate::dingtalk::{MAX_PARTS, MAX_PARTS_PER_QUERY, MIN_PART_BYTES};
use crate::oss::SentBytes;

/// Files from this size are sent in parts unless configured otherwise.
pub const DEFAULT_MULTIPART_THRESHOLD_BYTES: u64 = 64 * 1024 * 1024;
/// The part size unless configured otherwise: a restart sends again at most this much, and
/// a 4 GiB file takes 512 parts (18 target queries).
pub const DEFAULT_PART_BYTES: u64 = 8 * 1024 * 1024;

/// When a file goes in parts, and how large they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    /// Files of at least this many bytes are sent in parts.
    pub threshold_bytes: u64,
    /// The size of every part but the last (at least [`MIN_PART_BYTES`]), grown for a file
    /// that would otherwise need more than [`MAX_PARTS`] parts.
    pub part_bytes: u64,
}

impl Default for PartPlan {
    fn default() -> Self {
        Self {
            threshold_bytes: DEFAULT_MULTIPART_THRESHOLD_BYTES,
            part_bytes: DEFAULT_PART_BYTES,
        }
    }
}

impl PartPlan {
    /// Whether a file of `size` bytes goes in parts. An empty file never does: it has none.
    pub(super) fn parted(&self, size: u64) -> bool {
        size > 0 && size >= self.threshold_bytes
    }

    /// The part size for a file of `size` bytes.
    pub(super) fn part_bytes_for(&self, size: u64) -> u64 {
        self.part_bytes
            .max(MIN_PART_BYTES)
            .max(size.div_ceil(MAX_PARTS))
    }
}

impl Approval {
    /// PUTs the next part, first fetching signed targets for it and the parts after it (up
    /// to [`MAX_PARTS_PER_QUERY`]) when none is left that will not expire on the way.
    pub(super) async fn put_part(
        &self,
        job: &Job,
        mut progress: Progress,
        mut upload: PartedUpload,
        at: Attempt,
        sent: &SentBytes,
    ) -> Result<Step, StepError> {
        let attachment = next_attachment(job, &progress)?;
        let count = upload.part_count();
        let number = upload.parts_done + 1;
        if number > count {
            return Ok(Step::CommitParts { progress, upload });
        }
        let part = format!("part {number} of {count}");
        upload
            .targets
            .retain(|target| target.ticket.part_number >= number);
        let usable = upload.targets.first().is_some_and(|target| {
            target.ticket.part_number == number
                && at.now_ms + margin_ms(target) < target.expires_at_ms
        });
        if !usable {
            upload.targets = self
                .fetch_targets(job, &mut progress, &upload, number, at)
                .await
                .map_err(|e| e.about(&part))?;
        }
        let Some(target) = upload.targets.first() else {
            return Err(StepError::permanent(format!("{part}: no signed target")));
        };
        let Some(url) = target.ticket.resource_urls.first() else {
            return Err(StepError::permanent(format!("{part}: no resourceUrls")));
        };
        let (offset, len) = upload.span(number);
        let put = self
            .oss
            .put_part(
                url,
                &target.ticket.headers,
                &attachment.path,
                upload.size,
                upload.modified,
                offset,
                len,
                sent,
            )
            .await;
        match put {
            Ok(_) => {
                upload.parts_done = number;
                upload.targets.remove(0);
                if number == count {
                    upload.targets.clear();
                    Ok(Step::CommitParts { progress, upload })
                } else {
                    Ok(Step::PutParts { progress, upload })
                }
            }
            Err(error) if error.is_expired() => {
                // Targets are signed together, so the later ones are no better: all are
                // fetched again, for the same upload; the parts in OSS stay.
                upload.targets.clear();
                Err(StepError::Stale {
                    reason: Reason {
                        message: format!("{part}: OSS refused its signature: {error}"),
                        http_status: error.http_status(),
                    },
                    back_to: Box::new(Step::PutParts { progress, upload }),
                })
            }
            Err(error) => Err(StepError::from_oss(error).about(&part)),
        }
    }

    /// Signed targets for part `from` and the ones after it, at most [`MAX_PARTS_PER_QUERY`].
    /// An upload DingTalk no longer knows is begun again; a refused right is renewed once.
    async fn fetch_targets(
        &self,
        job: &Job,
        progress: &mut Progress,
        upload: &PartedUpload,
        from: u32,
        at: Attempt,
    ) -> Result<Vec<PartTarget>, StepError> {
        let last = upload
            .part_count()
            .min(from.saturating_add(MAX_PARTS_PER_QUERY as u32 - 1));
        let numbers: Vec<u32> = (from..=last).collect();
        let mut answer = self
            .dingtalk
            .multipart_urls(&progress.union_id, &upload.upload_key, &numbers)
            .await;
        if let Err(error) = &answer
            && error.is_permission_denied()
        {
            tracing::debug!(error = %error, "part targets refused; renewing the upload grant once");
            self.refresh_grant(job, progress, at).await?;
            answer = self
                .dingtalk
                .multipart_urls(&progress.union_id, &upload.upload_key, &numbers)
                .await;
        }
        let tickets = match answer {
            Ok(tickets) => tickets,
            Err(error) if error.is_upload_key_rejected() => {
                return Err(stale(
                    &format!("the upload in parts is gone: {error}"),
                    error.http_status(),
                    progress.clone(),
                ));
            }
            Err(error) => return Err(StepError::from_dingtalk(error, false)),
        };
        Ok(tickets
            .into_iter()
            .map(|ticket| {
                let lifetime_ms =
                    i64::try_from(ticket.expiration_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
                PartTarget {
                    expires_at_ms: at.now_ms.saturating_add(lifetime_ms),
                    ticket,
                }
            })
            .collect())
    }
}

/// The margin kept before a part target's expiry, as for a whole file's ticket.
fn margin_ms(target: &PartTarget) -> i64 {
    let lifetime_ms =
        i64::try_from(target.ticket.expiration_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    TICKET_MARGIN_MS.min(lifetime_ms / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_goes_in_parts_from_the_threshold_and_an_empty_one_never() {
        let plan = PartPlan {
            threshold_bytes: 1000,
            part_bytes: MIN_PART_BYTES,
        };
        assert!(!plan.parted(999));
        assert!(plan.parted(1000));
        let eager = PartPlan {
            threshold_bytes: 0,
            ..plan
        };
        assert!(!eager.parted(0));
    }

    #[test]
    fn parts_are_never_smaller_than_oss_allows_nor_more_than_ten_thousand() {
        let plan = PartPlan {
            threshold_bytes: 1,
            part_bytes: 1,
        };
        assert_eq!(plan.part_bytes_for(10), MIN_PART_BYTES);
        let huge = 200 * 1024 * 1024 * 1024_u64;
        let part = PartPlan::default().part_bytes_for(huge);
        assert!(huge.div_ceil(part) <= MAX_PARTS, "{part}");
        assert_eq!(
            PartPlan::default().part_bytes_for(4 << 30),
            DEFAULT_PART_BYTES
        );
    }

    #[test]
    fn the_last_part_carries_what_is_left_and_bytes_done_stop_at_the_size() {
        let upload = PartedUpload {
            upload_key: "k".into(),
            size: 250,
            modified: None,
            part_bytes: 100,
            parts_done: 3,
            started_at_ms: 0,
            targets: vec![],
        };
        assert_eq!(upload.part_count(), 3);
        assert_eq!(upload.span(1), (0, 100));
        assert_eq!(upload.span(3), (200, 50));
        assert_eq!(upload.bytes_done(), 250);
    }
}

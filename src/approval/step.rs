//! The checkpointed steps of one job. Each variant carries everything earlier steps
//! produced, so a job resumes from its checkpoint alone.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::dingtalk::{Dentry, PartTicket, UploadTicket};
use crate::oss::Snapshot;

/// Attachments of at least this size are checkpointed after their ticket and their PUT:
/// hashing and uploading them again after a restart would cost more than the writes.
pub const CHECKPOINT_UPLOADS_FROM_BYTES: u64 = 1024 * 1024;

/// The name of the step that sends the create: a job stored at it may have created its
/// instance already, so only reconciliation may end it (a cancel merely flags it).
pub const CREATE_STEP: &str = "submit";

/// Where a job stands. Serialized (JSON) into `jobs.checkpoint` after the steps that
/// `Step::must_store` says to keep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Resolve the originator's unionId and approval space (which also grants upload right).
    Space,
    /// Hash the next attachment and ask for an upload ticket.
    UploadInfo {
        /// What earlier steps produced.
        progress: Progress,
    },
    /// PUT the attachment to OSS with the ticket's signed headers.
    Put {
        /// What earlier steps produced.
        progress: Progress,
        /// The ticket for this attachment.
        upload: PendingUpload,
    },
    /// Commit the uploaded attachment into the space.
    Commit {
        /// What earlier steps produced.
        progress: Progress,
        /// The ticket for this attachment.
        upload: PendingUpload,
    },
    /// PUT the next part of a large attachment uploaded in parts (dingtalk-api.md §5.7).
    PutParts {
        /// What earlier steps produced.
        progress: Progress,
        /// The upload and the parts already in OSS.
        upload: PartedUpload,
    },
    /// Commit a large attachment whose parts are all in OSS.
    CommitParts {
        /// What earlier steps produced.
        progress: Progress,
        /// The upload, every part in OSS.
        upload: PartedUpload,
    },
    /// Create the approval instance. The intent is stored before the create is sent.
    Submit {
        /// What earlier steps produced (all attachments committed).
        progress: Progress,
        /// When and in which attempt the create was (possibly) sent.
        intent: SubmitIntent,
    },
    /// The instance exists.
    Done {
        /// The approval instance.
        instance_id: String,
        /// The committed attachments it references.
        files: Vec<Dentry>,
        /// True when found by reconciliation rather than created by this job's last call.
        adopted: bool,
    },
}

impl Step {
    /// The step's name as stored in `jobs.step`.
    pub fn name(&self) -> &'static str {
        match self {
            Step::Space => "space",
            Step::UploadInfo { .. } => "upload_info",
            Step::Put { .. } | Step::PutParts { .. } => "put",
            Step::Commit { .. } | Step::CommitParts { .. } => "commit",
            Step::Submit { .. } => CREATE_STEP,
            Step::Done { .. } => "done",
        }
    }

    /// Reads a stored checkpoint; `None` (no checkpoint yet) is the first step.
    pub(crate) fn from_checkpoint(checkpoint: Option<&str>) -> Result<Step, serde_json::Error> {
        match checkpoint {
            None => Ok(Step::Space),
            Some(json) => serde_json::from_str(json),
        }
    }

    /// Whether the job must store `next`, reached by finishing `self`, before it goes on.
    ///
    /// Only where a restart could otherwise repeat something that must not happen twice or
    /// costs real work: after each part of a large file, after a commit (the file now exists in the space; committing again
    /// would leave a duplicate) and before a create (the intent rides in the submit
    /// checkpoint). The space grant, an upload ticket and a small file's PUT are cheaper to
    /// redo from the last checkpoint than to store: one DingTalk call, or a hash and PUT of
    /// under [`CHECKPOINT_UPLOADS_FROM_BYTES`]. Skipping them takes a one-file job from five
    /// writes to two after its claim; their `step_done` events ride with the next write.
    pub(crate) fn must_store(&self, next: &Step) -> bool {
        match (self, next) {
            (Step::Space, Step::UploadInfo { .. }) => false,
            (Step::UploadInfo { .. }, Step::Put { upload, .. })
            | (Step::Put { .. }, Step::Commit { upload, .. }) => {
                upload.size >= CHECKPOINT_UPLOADS_FROM_BYTES
            }
            _ => true,
        }
    }

    /// The checkpoint text for this step.
    pub fn to_checkpoint(&self) -> String {
        // Serializing these plain structs cannot fail: every map key is a string.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What the steps so far produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// The originator's unionId (the operator of every storage call).
    pub union_id: String,
    /// The approval space.
    pub space_id: i64,
    /// When spaces/infos/query last granted upload right (unix ms).
    pub granted_at_ms: i64,
    /// Attachments committed so far, in payload order.
    pub files: Vec<Dentry>,
}

/// An upload ticket for the attachment at index `progress.files.len()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingUpload {
    /// DingTalk's answer to uploadInfos/query.
    pub ticket: UploadTicket,
    /// The file's size when the ticket was asked for.
    pub size: u64,
    /// The file's modification time then, where the filesystem keeps one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<SystemTime>,
    /// The file's MD5 (hex): a small file's from before its ticket, a larger one's from the
    /// PUT that read it (absent until then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// When the ticket stops working (unix ms).
    pub expires_at_ms: i64,
    /// A small file's content as hashed, for the PUT. Never stored: a job resumed from a
    /// checkpoint reads the file.
    #[serde(skip)]
    pub snapshot: Option<Snapshot>,
}

/// A large attachment (the one at index `progress.files.len()`) uploaded in parts of
/// `part_bytes` (the last one shorter), sent in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartedUpload {
    /// The upload's key from multiPartUploadInfos/init, needed by the commit.
    pub(crate) upload_key: String,
    /// The file's size when the upload was opened.
    pub size: u64,
    /// The file's modification time then, where the filesystem keeps one: a part is not sent
    /// from a file written since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<SystemTime>,
    /// The size of every part but the last.
    pub part_bytes: u64,
    /// Parts 1 to this one are in OSS.
    pub parts_done: u32,
    /// When the upload was opened (unix ms): its mean speed counts from here.
    pub started_at_ms: i64,
    /// Signed targets already fetched for the parts after `parts_done`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<PartTarget>,
}

impl PartedUpload {
    /// The upload in parts a stored checkpoint is sending or committing, if it is one.
    pub fn in_checkpoint(checkpoint: Option<&str>) -> Option<PartedUpload> {
        match Step::from_checkpoint(checkpoint).ok()? {
            Step::PutParts { upload, .. } | Step::CommitParts { upload, .. } => Some(upload),
            _ => None,
        }
    }

    /// How many parts the file has.
    pub fn part_count(&self) -> u32 {
        let count = self.size.div_ceil(self.part_bytes.max(1));
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    /// Where part `number` (from 1) starts in the file, and its length.
    pub fn span(&self, number: u32) -> (u64, u64) {
        let offset = u64::from(number.saturating_sub(1)).saturating_mul(self.part_bytes);
        (
            offset,
            self.part_bytes.min(self.size.saturating_sub(offset)),
        )
    }

    /// Bytes of the file in OSS.
    pub fn bytes_done(&self) -> u64 {
        u64::from(self.parts_done)
            .saturating_mul(self.part_bytes)
            .min(self.size)
    }

    /// "12 of 40 parts in OSS (96.00 MiB of 320.00 MiB)", for people.
    pub fn summary(&self) -> String {
        let bytes = |n: u64| indicatif::HumanBytes(n).to_string();
        format!(
            "{} of {} parts in OSS ({} of {})",
            self.parts_done,
            self.part_count(),
            bytes(self.bytes_done()),
            bytes(self.size)
        )
    }
}

/// A part's signed target and when it stops working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartTarget {
    /// DingTalk's answer for the part.
    pub ticket: PartTicket,
    /// When the signature stops working (unix ms).
    pub expires_at_ms: i64,
}

/// The record that a create may have been sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitIntent {
    /// Written before the first create could be sent (unix ms): reconciliation looks for
    /// instances from here on.
    pub(crate) at_ms: i64,
    /// The attempt that may send the create: a later attempt must reconcile before creating.
    pub(crate) attempt: i64,
    /// When `attempt` armed the intent, just before its create could be sent (unix ms);
    /// absent for the first arming, which happened at `at_ms`. A create sent this recently
    /// may still be in flight, so finding no instance proves nothing until it settles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) armed_at_ms: Option<i64>,
}

impl SubmitIntent {
    /// When the latest create may have been sent (unix ms).
    pub(crate) fn sent_at_ms(&self) -> i64 {
        self.armed_at_ms.unwrap_or(self.at_ms)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_intent_checkpointed_before_rearming_existed_still_reads() {
        let step = Step::from_checkpoint(Some(
            r#"{"step":"submit","progress":{"union_id":"u","space_id":1,"granted_at_ms":5,
                "files":[]},"intent":{"at_ms":100,"attempt":2}}"#,
        ))
        .unwrap();
        let Step::Submit { intent, .. } = step else {
            panic!("{step:?}")
        };
        assert_eq!(intent.sent_at_ms(), 100);
        assert!(!step_json_has_armed(&Step::Submit {
            progress: Progress {
                union_id: "u".into(),
                space_id: 1,
                granted_at_ms: 5,
                files: vec![],
            },
            intent,
        }));
    }

    #[test]
    fn a_rearmed_intent_keeps_the_first_time_and_records_the_latest_send() {
        let intent = SubmitIntent {
            at_ms: 100,
            attempt: 3,
            armed_at_ms: Some(900),
        };
        let json = serde_json::to_string(&intent).unwrap();
        let back: SubmitIntent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, intent);
        assert_eq!((back.at_ms, back.sent_at_ms()), (100, 900));
    }

    fn progress() -> Progress {
        Progress {
            union_id: "u".into(),
            space_id: 1,
            granted_at_ms: 5,
            files: vec![],
        }
    }

    fn upload(size: u64) -> PendingUpload {
        PendingUpload {
            ticket: UploadTicket {
                upload_key: "k".into(),
                resource_urls: vec!["http://127.0.0.1/o".into()],
                headers: Default::default(),
                expiration_secs: 900,
            },
            size,
            modified: None,
            md5: None,
            expires_at_ms: 1,
            snapshot: None,
        }
    }

    /// The upload_info, put and commit steps of one attachment of `size` bytes.
    fn upload_steps(size: u64) -> [Step; 3] {
        let upload = upload(size);
        [
            Step::UploadInfo {
                progress: progress(),
            },
            Step::Put {
                progress: progress(),
                upload: upload.clone(),
            },
            Step::Commit {
                progress: progress(),
                upload,
            },
        ]
    }

    #[test]
    fn a_grant_and_a_small_files_ticket_and_put_are_redone_rather_than_stored() {
        let [upload_info, put, commit] = upload_steps(CHECKPOINT_UPLOADS_FROM_BYTES - 1);
        assert!(!Step::Space.must_store(&upload_info));
        assert!(!upload_info.must_store(&put));
        assert!(!put.must_store(&commit));
    }

    #[test]
    fn a_large_files_ticket_and_put_are_stored() {
        let [upload_info, put, commit] = upload_steps(CHECKPOINT_UPLOADS_FROM_BYTES);
        assert!(upload_info.must_store(&put));
        assert!(put.must_store(&commit));
    }

    #[test]
    fn every_commit_and_every_submit_intent_is_stored() {
        let commit = Step::Commit {
            progress: progress(),
            upload: upload(1),
        };
        let intent = SubmitIntent {
            at_ms: 1,
            attempt: 1,
            armed_at_ms: None,
        };
        let submit = Step::Submit {
            progress: progress(),
            intent,
        };
        let next_file = Step::UploadInfo {
            progress: progress(),
        };
        assert!(
            commit.must_store(&next_file),
            "a file now exists in the space"
        );
        assert!(commit.must_store(&submit), "the intent precedes any create");
        assert!(submit.must_store(&submit.clone()), "a re-armed intent");
    }

    fn parted(parts_done: u32) -> PartedUpload {
        PartedUpload {
            upload_key: "k".into(),
            size: 25 * 1024 * 1024,
            modified: None,
            part_bytes: 8 * 1024 * 1024,
            parts_done,
            started_at_ms: 7,
            targets: vec![],
        }
    }

    #[test]
    fn every_part_of_a_file_in_parts_is_stored_before_the_next() {
        let open = Step::UploadInfo {
            progress: progress(),
        };
        let first = Step::PutParts {
            progress: progress(),
            upload: parted(0),
        };
        let second = Step::PutParts {
            progress: progress(),
            upload: parted(1),
        };
        let commit = Step::CommitParts {
            progress: progress(),
            upload: parted(4),
        };
        assert!(open.must_store(&first), "the upload's key");
        assert!(first.must_store(&second), "a part now in OSS");
        assert!(second.must_store(&commit), "the last part");
        assert_eq!((first.name(), commit.name()), ("put", "commit"));
    }

    #[test]
    fn a_file_in_parts_reads_back_from_its_checkpoint_with_its_part_targets() {
        let mut upload = parted(2);
        upload.targets.push(PartTarget {
            ticket: PartTicket {
                part_number: 3,
                resource_urls: vec!["http://127.0.0.1/o?partNumber=3".into()],
                headers: Default::default(),
                expiration_secs: 900,
            },
            expires_at_ms: 99,
        });
        let step = Step::PutParts {
            progress: progress(),
            upload,
        };
        let stored = step.to_checkpoint();
        assert_eq!(Step::from_checkpoint(Some(&stored)).unwrap(), step);
        let upload = PartedUpload::in_checkpoint(Some(&stored)).unwrap();
        assert_eq!(upload.part_count(), 4);
        assert_eq!(
            upload.summary(),
            "2 of 4 parts in OSS (16.00 MiB of 25.00 MiB)"
        );
    }

    fn step_json_has_armed(step: &Step) -> bool {
        step.to_checkpoint().contains("armed_at_ms")
    }
}

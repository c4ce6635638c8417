//! The checkpointed steps of one job. Each variant carries everything earlier steps
//! produced, so a job resumes from its checkpoint alone.

use serde::{Deserialize, Serialize};

use crate::dingtalk::{Dentry, UploadTicket};

/// Where a job stands. Serialized (JSON) into `jobs.checkpoint` after every step.
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
            Step::Put { .. } => "put",
            Step::Commit { .. } => "commit",
            Step::Submit { .. } => "submit",
            Step::Done { .. } => "done",
        }
    }

    /// Reads a stored checkpoint; `None` (no checkpoint yet) is the first step.
    pub fn from_checkpoint(checkpoint: Option<&str>) -> Result<Step, serde_json::Error> {
        match checkpoint {
            None => Ok(Step::Space),
            Some(json) => serde_json::from_str(json),
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
    /// The file's size when hashed.
    pub size: u64,
    /// The file's MD5 (hex) when hashed.
    pub md5: String,
    /// When the ticket stops working (unix ms).
    pub expires_at_ms: i64,
}

/// The record that a create may have been sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitIntent {
    /// Written before the first create could be sent (unix ms): reconciliation looks for
    /// instances from here on.
    pub at_ms: i64,
    /// The attempt that may send the create: a later attempt must reconcile before creating.
    pub attempt: i64,
    /// When `attempt` armed the intent, just before its create could be sent (unix ms);
    /// absent for the first arming, which happened at `at_ms`. A create sent this recently
    /// may still be in flight, so finding no instance proves nothing until it settles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub armed_at_ms: Option<i64>,
}

impl SubmitIntent {
    /// When the latest create may have been sent (unix ms).
    pub fn sent_at_ms(&self) -> i64 {
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

    fn step_json_has_armed(step: &Step) -> bool {
        step.to_checkpoint().contains("armed_at_ms")
    }
}

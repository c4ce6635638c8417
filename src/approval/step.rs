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
    /// Written before the create could be sent (unix ms).
    pub at_ms: i64,
    /// The attempt that wrote it: a later attempt must reconcile before creating.
    pub attempt: i64,
}

//! The commit step: turning an upload, whole or in parts, into a file in the approval space,
//! and arming the submit once the last attachment is in.

use super::error::StepError;
use super::payload::{Attachment, Job};
use super::step::{PartedUpload, PendingUpload, Progress, Step, SubmitIntent};
use super::{Approval, Attempt, next_attachment, stale};
use crate::dingtalk::Dentry;

impl Approval {
    pub(super) async fn commit(
        &self,
        job: &Job,
        progress: Progress,
        upload: PendingUpload,
        at: Attempt,
    ) -> Result<Step, StepError> {
        let key = upload.ticket.upload_key.clone();
        self.commit_key(job, progress, &key, upload.size, at).await
    }

    pub(super) async fn commit_parts(
        &self,
        job: &Job,
        progress: Progress,
        upload: PartedUpload,
        at: Attempt,
    ) -> Result<Step, StepError> {
        self.commit_key(job, progress, &upload.upload_key, upload.size, at)
            .await
    }

    /// Commits the upload `key` of `size` bytes, the attachment after the committed ones.
    async fn commit_key(
        &self,
        job: &Job,
        mut progress: Progress,
        key: &str,
        size: u64,
        at: Attempt,
    ) -> Result<Step, StepError> {
        let attachment = next_attachment(job, &progress)?;
        let mut dentry = self.send_commit(&progress, key, size, attachment).await;
        if let Err(error) = &dentry
            && error.is_permission_denied()
        {
            // The grant may have lapsed during a long PUT. A refusal did nothing, so the same
            // uploadKey is committed again once the grant is renewed: the file is already in
            // OSS. A refusal after that is the real answer.
            tracing::debug!(error = %error, "commit refused; renewing the upload grant once");
            self.refresh_grant(job, &mut progress, at).await?;
            dentry = self.send_commit(&progress, key, size, attachment).await;
        }
        let dentry = match dentry {
            Ok(dentry) => dentry,
            // An orphan file in the space is harmless; uploading again is the way forward.
            Err(error) if error.is_upload_key_rejected() => {
                return Err(stale(&error.to_string(), error.http_status(), progress));
            }
            Err(error) => return Err(StepError::from_dingtalk(error, false)),
        };
        progress.files.push(dentry);
        if progress.files.len() < job.attachments.len() {
            return Ok(Step::UploadInfo { progress });
        }
        // The intent goes into this checkpoint, so it is stored before any create is sent.
        let intent = SubmitIntent {
            at_ms: at.now_ms,
            attempt: at.attempt,
            armed_at_ms: None,
        };
        Ok(Step::Submit { progress, intent })
    }

    /// Commits the upload `key` of `attachment` into the space `progress` names.
    async fn send_commit(
        &self,
        progress: &Progress,
        key: &str,
        size: u64,
        attachment: &Attachment,
    ) -> Result<Dentry, crate::dingtalk::DingTalkError> {
        self.dingtalk
            .commit(
                progress.space_id,
                &progress.union_id,
                key,
                &attachment.name,
                size,
            )
            .await
    }
}

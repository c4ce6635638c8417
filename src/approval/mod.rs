//! The approval state machine: `space → upload_info → put → commit → … → submit → done`.
//!
//! [`Approval::advance`] does the I/O of exactly one step and returns the next step or a
//! [`StepError`] that carries the retry decision. It knows nothing of SQL or leases: the
//! worker checkpoints what it returns.

mod backoff;
mod error;
mod files;
mod payload;
mod reconcile;
mod step;

use std::time::Duration;

pub use backoff::backoff;
pub use error::{QUOTA_PAUSE, Reason, StepError};
pub use payload::{
    Attachment, FormField, Job, Payload, PayloadError, UploadLimits, check_file_name, validate,
};
pub use step::{PendingUpload, Progress, Step, SubmitIntent};

use crate::dingtalk::{Approver, CreateInstance, Dentry, DingTalk, FormValue, UploadInfoRequest};
use crate::oss::Oss;

/// How long an upload grant from spaces/infos/query is trusted before it is renewed. The
/// real lifetime is undocumented (the legacy custom-space grant defaulted to 30 s), so a job
/// that paused longer renews it before asking for a ticket.
pub const GRANT_REFRESH_MS: i64 = 30_000;
/// A ticket this close to its expiry is not used: the PUT itself takes time.
pub const TICKET_MARGIN_MS: i64 = 30_000;
/// How far before the recorded intent reconciliation looks for the instance, for clock skew
/// between this machine and DingTalk.
pub const RECONCILE_SKEW_MS: i64 = 5 * 60_000;

/// Drives jobs through the steps with the DingTalk and OSS clients.
#[derive(Clone)]
pub struct Approval {
    dingtalk: DingTalk,
    oss: Oss,
}

/// What `advance` needs to know about the claim it runs under.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    /// The claim's attempt number.
    pub attempt: i64,
    /// Now, unix ms.
    pub now_ms: i64,
}

impl Approval {
    /// A state machine using these clients.
    pub fn new(dingtalk: DingTalk, oss: Oss) -> Self {
        Approval { dingtalk, oss }
    }

    /// Does the I/O of exactly one step.
    pub async fn advance(&self, job: &Job, step: Step, at: Attempt) -> Result<Step, StepError> {
        match step {
            Step::Space => self.space(job, at).await,
            Step::UploadInfo { progress } => self.upload_info(job, progress, at).await,
            Step::Put { progress, upload } => self.put(job, progress, upload, at).await,
            Step::Commit { progress, upload } => self.commit(job, progress, upload, at).await,
            Step::Submit { progress, intent } => self.submit(job, progress, intent, at).await,
            Step::Done { .. } => Ok(step),
        }
    }

    async fn space(&self, job: &Job, at: Attempt) -> Result<Step, StepError> {
        let user = &job.payload.originator_user_id;
        let union_id = match &job.payload.union_id {
            Some(union_id) => union_id.clone(),
            None => self
                .dingtalk
                .union_id(user)
                .await
                .map_err(|e| StepError::from_dingtalk(e, false))?,
        };
        let space_id = self
            .dingtalk
            .approval_space(user)
            .await
            .map_err(|e| StepError::from_dingtalk(e, false))?;
        Ok(Step::UploadInfo {
            progress: Progress {
                union_id,
                space_id,
                granted_at_ms: at.now_ms,
                files: Vec::new(),
            },
        })
    }

    async fn upload_info(
        &self,
        job: &Job,
        mut progress: Progress,
        at: Attempt,
    ) -> Result<Step, StepError> {
        let attachment = next_attachment(job, &progress)?;
        if at.now_ms - progress.granted_at_ms > GRANT_REFRESH_MS {
            progress.space_id = self
                .dingtalk
                .approval_space(&job.payload.originator_user_id)
                .await
                .map_err(|e| StepError::from_dingtalk(e, false))?;
            progress.granted_at_ms = at.now_ms;
        }
        let (size, md5) = files::fingerprint(&attachment.path).await?;
        let request = UploadInfoRequest {
            name: attachment.name.clone(),
            size,
            md5_hex: md5.clone(),
        };
        let ticket = self
            .dingtalk
            .upload_info(progress.space_id, &progress.union_id, &request)
            .await
            .map_err(|e| StepError::from_dingtalk(e, false))?;
        let lifetime_ms =
            i64::try_from(ticket.expiration_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let upload = PendingUpload {
            ticket,
            size,
            md5,
            expires_at_ms: at.now_ms.saturating_add(lifetime_ms),
        };
        Ok(Step::Put { progress, upload })
    }

    async fn put(
        &self,
        job: &Job,
        progress: Progress,
        upload: PendingUpload,
        at: Attempt,
    ) -> Result<Step, StepError> {
        let attachment = next_attachment(job, &progress)?;
        if at.now_ms + TICKET_MARGIN_MS >= upload.expires_at_ms {
            return Err(stale("upload ticket expired before the PUT", progress));
        }
        let Some(url) = upload.ticket.resource_urls.first() else {
            return Err(StepError::permanent("upload ticket has no resourceUrls"));
        };
        match self
            .oss
            .put_file(
                url,
                &upload.ticket.headers,
                &attachment.path,
                upload.size,
                &upload.md5,
            )
            .await
        {
            Ok(_) => Ok(Step::Commit { progress, upload }),
            Err(error) if error.is_expired() => {
                Err(stale(&format!("OSS refused the ticket: {error}"), progress))
            }
            Err(error) => Err(StepError::from_oss(error)),
        }
    }

    async fn commit(
        &self,
        job: &Job,
        mut progress: Progress,
        upload: PendingUpload,
        at: Attempt,
    ) -> Result<Step, StepError> {
        let attachment = next_attachment(job, &progress)?;
        let dentry = self
            .dingtalk
            .commit(
                progress.space_id,
                &progress.union_id,
                &upload.ticket.upload_key,
                &attachment.name,
                upload.size,
            )
            .await;
        let dentry = match dentry {
            Ok(dentry) => dentry,
            // An orphan file in the space is harmless; uploading again is the way forward.
            Err(error) if error.is_upload_key_rejected() => {
                return Err(stale(&error.to_string(), progress));
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
        };
        Ok(Step::Submit { progress, intent })
    }

    async fn submit(
        &self,
        job: &Job,
        progress: Progress,
        intent: SubmitIntent,
        at: Attempt,
    ) -> Result<Step, StepError> {
        if intent.attempt != at.attempt {
            // An earlier attempt may have created the instance and lost the answer.
            let since_ms = intent.at_ms - RECONCILE_SKEW_MS;
            if let Some(instance_id) =
                reconcile::find_instance(&self.dingtalk, job, &progress.files, since_ms).await?
            {
                return Ok(Step::Done {
                    instance_id,
                    files: progress.files,
                    adopted: true,
                });
            }
        }
        let request = create_request(job, &progress.files);
        let instance_id = self
            .dingtalk
            .create_instance(&request)
            .await
            .map_err(|e| StepError::from_dingtalk(e, true))?;
        Ok(Step::Done {
            instance_id,
            files: progress.files,
            adopted: false,
        })
    }

    /// The DingTalk client (shared token cache and rate limiter).
    pub fn dingtalk(&self) -> &DingTalk {
        &self.dingtalk
    }
}

fn next_attachment<'a>(job: &'a Job, progress: &Progress) -> Result<&'a Attachment, StepError> {
    job.attachments.get(progress.files.len()).ok_or_else(|| {
        StepError::permanent(format!(
            "checkpoint has {} committed files but the payload lists {} attachments",
            progress.files.len(),
            job.attachments.len()
        ))
    })
}

fn stale(message: &str, progress: Progress) -> StepError {
    StepError::Stale {
        reason: Reason::new(message),
        back_to: Box::new(Step::UploadInfo { progress }),
    }
}

/// The create-instance request for a job whose attachments are all committed.
pub fn create_request(job: &Job, files: &[Dentry]) -> CreateInstance {
    let mut form: Vec<FormValue> = job
        .payload
        .form
        .iter()
        .map(|field| FormValue {
            name: field.name.clone(),
            value: field.value.clone(),
            component_type: None,
        })
        .collect();
    form.push(FormValue {
        name: job.attachment_field.clone(),
        value: crate::dingtalk::dd_attachment_value(files),
        component_type: None,
    });
    CreateInstance {
        process_code: job.payload.process_code.clone(),
        originator_user_id: job.payload.originator_user_id.clone(),
        dept_id: job.payload.dept_id,
        form,
        approvers: job
            .payload
            .approvers
            .iter()
            .map(|a| Approver {
                action_type: a.action_type.clone(),
                user_ids: a.user_ids.clone(),
            })
            .collect(),
        cc_list: job.payload.cc_list.clone(),
    }
}

/// The `result` stored on success.
pub fn result_json(instance_id: &str, files: &[Dentry]) -> serde_json::Value {
    serde_json::json!({
        "instance_id": instance_id,
        "files": files.iter().map(|f| serde_json::json!({
            "space_id": f.space_id,
            "file_id": f.id,
            "file_name": f.name,
            "file_size": f.size,
            "file_type": f.extension,
        })).collect::<Vec<_>>(),
    })
}

/// How long to wait before retrying after a failed attempt, per the error and the backoff.
pub fn retry_delay(error: &StepError, backoff_delay: Duration) -> Duration {
    match error {
        StepError::RetryAfter { after, .. } => (*after).max(backoff_delay),
        _ => backoff_delay,
    }
}

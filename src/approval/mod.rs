//! The approval state machine: `space → upload_info → put → commit → … → submit → done`.
//!
//! `Approval::advance` does the I/O of exactly one step and returns the next step or a
//! `StepError` that carries the retry decision. It knows nothing of SQL or leases: the
//! worker checkpoints what it returns.

mod backoff;
mod commit;
mod error;
mod files;
mod grants;
mod parts;
mod payload;
mod reconcile;
mod step;
mod template;

use std::time::Duration;

pub(crate) use backoff::backoff;
pub(crate) use error::{Reason, StepError};
pub use parts::{DEFAULT_MULTIPART_THRESHOLD_BYTES, DEFAULT_PART_BYTES, PartPlan};
pub(crate) use payload::{UploadLimits, validate};
pub use step::{
    CHECKPOINT_UPLOADS_FROM_BYTES, CREATE_STEP, PartTarget, PartedUpload, PendingUpload, Progress,
    Step, SubmitIntent,
};

use crate::dingtalk::{
    Approver, CreateInstance, Dentry, DingTalk, ErrorClass, FormValue, UploadInfoRequest,
};
use crate::oss::{Oss, SentBytes};
use grants::{Grant, Grants, Turn};
use payload::Attachment;
pub(crate) use payload::Job;
use template::Templates;

/// How long an upload grant from spaces/infos/query is trusted before it is renewed. The
/// real lifetime is undocumented (the legacy custom-space grant defaulted to 30 s), so a job
/// that paused longer renews it before asking for a ticket.
const GRANT_REFRESH_MS: i64 = 30_000;
/// A ticket this close to its expiry is not used: the PUT itself takes time. A short-lived
/// ticket keeps at most a quarter of its lifetime as margin, so it stays usable at all.
const TICKET_MARGIN_MS: i64 = 30_000;
/// How far before the recorded intent reconciliation looks for the instance, for clock skew
/// between this machine and DingTalk.
const RECONCILE_SKEW_MS: i64 = 5 * 60_000;
/// How long after a create was sent a reconciliation that finds no instance is believed: a
/// create whose answer never came may still be in flight inside DingTalk, and creating again
/// before it lands would make a second approval. Twice the default request timeout; `run`
/// sets it from the configured one ([`Approval::with_submit_settle`]).
const DEFAULT_SUBMIT_SETTLE: Duration = Duration::from_secs(60);

/// Drives jobs through the steps with the DingTalk and OSS clients.
#[derive(Clone)]
pub struct Approval {
    dingtalk: DingTalk,
    oss: Oss,
    submit_settle: Duration,
    grants: Grants,
    templates: Templates,
    parts: PartPlan,
}

/// What `advance` needs to know about the claim it runs under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempt {
    /// The claim's attempt number.
    pub(crate) attempt: i64,
    /// Now, unix ms.
    pub(crate) now_ms: i64,
    /// False once the job has used up its attempts: a submit may still reconcile (an earlier
    /// create may have landed) but must not send another create.
    pub(crate) may_create: bool,
}

impl Approval {
    /// A state machine using these clients.
    pub fn new(dingtalk: DingTalk, oss: Oss) -> Self {
        Approval {
            dingtalk,
            oss,
            submit_settle: DEFAULT_SUBMIT_SETTLE,
            grants: Grants::default(),
            templates: Templates::default(),
            parts: PartPlan::default(),
        }
    }

    /// Sets when a file goes in parts and how large they are.
    pub fn with_parts(mut self, plan: PartPlan) -> Self {
        self.parts = plan;
        self
    }

    /// Sets how long a create without an answer may still land (see
    /// `DEFAULT_SUBMIT_SETTLE`); at least the DingTalk request timeout is sensible.
    pub fn with_submit_settle(mut self, settle: Duration) -> Self {
        self.submit_settle = settle;
        self
    }

    /// How long a create sent without an answer may still land: a retry after an ambiguous
    /// create waits at least this long, so the next attempt's reconciliation can be believed.
    pub(crate) fn submit_settle(&self) -> Duration {
        self.submit_settle
    }

    /// Does the I/O of exactly one step; a PUT counts its bytes into `sent` as they go.
    pub(crate) async fn advance(
        &self,
        job: &Job,
        step: Step,
        at: Attempt,
        sent: &SentBytes,
    ) -> Result<Step, StepError> {
        match step {
            Step::Space => self.space(job, at).await,
            Step::UploadInfo { progress } => self.upload_info(job, progress, at).await,
            Step::Put { progress, upload } => self.put(job, progress, upload, at, sent).await,
            Step::Commit { progress, upload } => self.commit(job, progress, upload, at).await,
            Step::PutParts { progress, upload } => {
                self.put_part(job, progress, upload, at, sent).await
            }
            Step::CommitParts { progress, upload } => {
                self.commit_parts(job, progress, upload, at).await
            }
            Step::Submit { progress, intent } => self.submit(job, progress, intent, at).await,
            Step::Done { .. } => Ok(step),
        }
    }

    /// The first step: the form is checked against its template before anything else, so a
    /// form that cannot work fails here, before any upload.
    async fn space(&self, job: &Job, at: Attempt) -> Result<Step, StepError> {
        self.templates.check(&self.dingtalk, job).await?;
        let user = &job.payload.originator_user_id;
        let union_id = match &job.payload.union_id {
            Some(union_id) => union_id.clone(),
            None => self
                .dingtalk
                .union_id(user)
                .await
                .map_err(|e| StepError::from_dingtalk(e, false))?,
        };
        let grant = match self.grants.fresh(user, at.now_ms) {
            Some(grant) => grant,
            None => self.take_grant(user, at).await?,
        };
        Ok(Step::UploadInfo {
            progress: Progress {
                union_id,
                space_id: grant.space_id,
                granted_at_ms: grant.granted_at_ms,
                files: Vec::new(),
            },
        })
    }

    /// Queries the approval space for `user`, which grants them upload right, and shares
    /// the grant with the user's other jobs.
    async fn take_grant(&self, user: &str, at: Attempt) -> Result<Grant, StepError> {
        let _turn = match self.grants.turn(user).await {
            Turn::Shared(grant) => return Ok(grant),
            Turn::Mine(turn) => turn,
        };
        let space_id = self
            .dingtalk
            .approval_space(user)
            .await
            .map_err(|e| StepError::from_dingtalk(e, false))?;
        let grant = Grant {
            space_id,
            granted_at_ms: at.now_ms,
        };
        self.grants.record(user, grant);
        Ok(grant)
    }

    async fn upload_info(
        &self,
        job: &Job,
        mut progress: Progress,
        at: Attempt,
    ) -> Result<Step, StepError> {
        let attachment = next_attachment(job, &progress)?;
        let mut refreshed = false;
        if at.now_ms - progress.granted_at_ms > GRANT_REFRESH_MS {
            match self
                .grants
                .fresh(&job.payload.originator_user_id, at.now_ms)
            {
                Some(shared) => adopt(&mut progress, shared),
                None => {
                    self.refresh_grant(job, &mut progress, at).await?;
                    refreshed = true;
                }
            }
        }
        let found = files::fingerprint(&attachment.path, attachment.checked_bytes).await?;
        let request = UploadInfoRequest {
            name: attachment.name.clone(),
            size: found.size,
            md5_hex: found.md5.clone(),
        };
        let parted = self.parts.parted(found.size);
        let mut answer = self.open_upload(&progress, &request, parted).await;
        if let Err(error) = &answer
            && error.class() == ErrorClass::Permanent
            && !refreshed
        {
            // The grant's lifetime is undocumented: a refusal may only mean it lapsed.
            // Renewing it is one harmless call; a refusal after that is the real answer.
            tracing::debug!(error = %error, "upload refused; renewing the upload grant once");
            self.refresh_grant(job, &mut progress, at).await?;
            answer = self.open_upload(&progress, &request, parted).await;
        }
        let ticket = match answer.map_err(|e| StepError::from_dingtalk(e, false))? {
            Opened::Ticket(ticket) => ticket,
            Opened::Parts(upload_key) => {
                let upload = PartedUpload {
                    upload_key,
                    size: found.size,
                    modified: found.modified,
                    part_bytes: self.parts.part_bytes_for(found.size),
                    parts_done: 0,
                    started_at_ms: at.now_ms,
                    targets: Vec::new(),
                };
                return Ok(Step::PutParts { progress, upload });
            }
        };
        let lifetime_ms =
            i64::try_from(ticket.expiration_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let upload = PendingUpload {
            ticket,
            size: found.size,
            modified: found.modified,
            md5: found.md5,
            expires_at_ms: at.now_ms.saturating_add(lifetime_ms),
            snapshot: found.snapshot,
        };
        Ok(Step::Put { progress, upload })
    }

    /// Asks for a simple upload's ticket, or opens an upload in parts.
    async fn open_upload(
        &self,
        progress: &Progress,
        request: &UploadInfoRequest,
        parted: bool,
    ) -> Result<Opened, crate::dingtalk::DingTalkError> {
        let (space, user) = (progress.space_id, &progress.union_id);
        if parted {
            let key = self.dingtalk.multipart_init(space, user, request).await?;
            Ok(Opened::Parts(key))
        } else {
            let ticket = self.dingtalk.upload_info(space, user, request).await?;
            Ok(Opened::Ticket(ticket))
        }
    }

    /// Queries the approval space again, which renews the originator's upload grant.
    async fn refresh_grant(
        &self,
        job: &Job,
        progress: &mut Progress,
        at: Attempt,
    ) -> Result<(), StepError> {
        let grant = self.take_grant(&job.payload.originator_user_id, at).await?;
        adopt(progress, grant);
        Ok(())
    }

    async fn put(
        &self,
        job: &Job,
        progress: Progress,
        mut upload: PendingUpload,
        at: Attempt,
        sent: &SentBytes,
    ) -> Result<Step, StepError> {
        let attachment = next_attachment(job, &progress)?;
        if at.now_ms + ticket_margin_ms(&upload) >= upload.expires_at_ms {
            return Err(stale(
                "upload ticket expired before the PUT",
                None,
                progress,
            ));
        }
        let Some(url) = upload.ticket.resource_urls.first() else {
            return Err(StepError::permanent("upload ticket has no resourceUrls"));
        };
        let headers = &upload.ticket.headers;
        let path = &attachment.path;
        let put = match (&upload.snapshot, upload.md5.as_deref()) {
            (Some(snapshot), Some(md5)) => {
                self.oss
                    .put_snapshot(url, headers, path, snapshot, upload.modified, md5, sent)
                    .await
            }
            (_, md5) => {
                self.oss
                    .put_file(url, headers, path, upload.size, upload.modified, md5, sent)
                    .await
            }
        };
        match put {
            Ok(receipt) => {
                upload.md5 = Some(receipt.md5);
                Ok(Step::Commit { progress, upload })
            }
            Err(error) if error.is_expired() => Err(stale(
                &format!("OSS refused the ticket: {error}"),
                error.http_status(),
                progress,
            )),
            Err(error) => Err(StepError::from_oss(error)),
        }
    }

    async fn submit(
        &self,
        job: &Job,
        progress: Progress,
        intent: SubmitIntent,
        at: Attempt,
    ) -> Result<Step, StepError> {
        if intent.attempt != at.attempt {
            return self.reconcile(job, progress, intent, at).await;
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
}

/// What opening an upload gave.
enum Opened {
    /// A simple upload's ticket.
    Ticket(crate::dingtalk::UploadTicket),
    /// The key of an upload in parts.
    Parts(String),
}

/// Uploads from here on run under `grant`.
fn adopt(progress: &mut Progress, grant: Grant) {
    progress.space_id = grant.space_id;
    progress.granted_at_ms = grant.granted_at_ms;
}

pub(super) fn next_attachment<'a>(
    job: &'a Job,
    progress: &Progress,
) -> Result<&'a Attachment, StepError> {
    job.attachments.get(progress.files.len()).ok_or_else(|| {
        StepError::permanent(format!(
            "checkpoint has {} committed files but the payload lists {} attachments",
            progress.files.len(),
            job.attachments.len()
        ))
    })
}

pub(super) fn stale(message: &str, http_status: Option<u16>, progress: Progress) -> StepError {
    StepError::Stale {
        reason: Reason {
            message: message.to_string(),
            http_status,
        },
        back_to: Box::new(Step::UploadInfo { progress }),
    }
}

/// The create-instance request for a job whose attachments are all committed.
fn create_request(job: &Job, files: &[Dentry]) -> CreateInstance {
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
pub(crate) fn result_json(instance_id: &str, files: &[Dentry]) -> serde_json::Value {
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

/// The margin kept before a ticket's expiry: [`TICKET_MARGIN_MS`], or a quarter of the
/// ticket's lifetime when that is shorter.
fn ticket_margin_ms(upload: &PendingUpload) -> i64 {
    let lifetime_ms =
        i64::try_from(upload.ticket.expiration_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    TICKET_MARGIN_MS.min(lifetime_ms / 4)
}

#[cfg(test)]
mod tests;

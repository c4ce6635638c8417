//! Finding an instance an earlier attempt created but never heard back about, and deciding
//! whether a resumed submit may create one.

use std::collections::BTreeSet;
use std::time::Duration;

use super::error::{Reason, StepError};
use super::payload::Job;
use super::step::{Progress, Step, SubmitIntent};
use super::{Approval, Attempt, RECONCILE_SKEW_MS};
use crate::dingtalk::{Dentry, DingTalk, dd_attachment_file_ids};

impl Approval {
    /// A submit resumed by a later attempt: an earlier one may have created the instance and
    /// lost the answer. Adopts that instance if it exists; otherwise, once any create sent
    /// earlier has had time to land, re-arms the intent for this attempt, so the create is
    /// sent only after that checkpoint is stored.
    pub(super) async fn reconcile(
        &self,
        job: &Job,
        progress: Progress,
        intent: SubmitIntent,
        at: Attempt,
    ) -> Result<Step, StepError> {
        let since_ms = intent.at_ms - RECONCILE_SKEW_MS;
        if let Some(instance_id) =
            find_instance(&self.dingtalk, job, &progress.files, since_ms).await?
        {
            tracing::info!(instance_id = %instance_id, "reconciled: adopting the instance an earlier attempt created");
            return Ok(Step::Done {
                instance_id,
                files: progress.files,
                adopted: true,
            });
        }
        let settle_ms = i64::try_from(self.submit_settle.as_millis()).unwrap_or(i64::MAX);
        let settled_at_ms = intent.sent_at_ms().saturating_add(settle_ms);
        if at.now_ms < settled_at_ms {
            let wait_ms = u64::try_from(settled_at_ms - at.now_ms).unwrap_or(0);
            return Err(StepError::RetryAfter {
                reason: Reason::new(
                    "no instance found yet, but an earlier create may still be in flight",
                ),
                after: Duration::from_millis(wait_ms),
            });
        }
        if !at.may_create {
            return Err(StepError::permanent(
                "attempts exhausted; reconciliation found no instance, so none was created",
            ));
        }
        Ok(Step::Submit {
            progress,
            intent: SubmitIntent {
                at_ms: intent.at_ms,
                attempt: at.attempt,
                armed_at_ms: Some(at.now_ms),
            },
        })
    }
}

/// Lists the originator's instances of the job's template created since `since_ms` and
/// returns the one whose DDAttachment references exactly this job's files. The file ids were
/// committed by this job alone, so they identify its instance.
async fn find_instance(
    dingtalk: &DingTalk,
    job: &Job,
    files: &[Dentry],
    since_ms: i64,
) -> Result<Option<String>, StepError> {
    let ours: BTreeSet<&str> = files.iter().map(|f| f.id.as_str()).collect();
    let ids = dingtalk
        .list_instance_ids(
            &job.payload.process_code,
            since_ms,
            None,
            std::slice::from_ref(&job.payload.originator_user_id),
        )
        .await
        .map_err(|e| StepError::from_dingtalk(e, false))?;
    for id in ids {
        let instance = dingtalk
            .get_instance(&id)
            .await
            .map_err(|e| StepError::from_dingtalk(e, false))?;
        let matches = instance
            .form
            .iter()
            .filter(|value| value.name == job.attachment_field)
            .filter_map(|value| dd_attachment_file_ids(&value.value))
            .any(|ids| ids.iter().map(String::as_str).collect::<BTreeSet<_>>() == ours);
        if matches {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

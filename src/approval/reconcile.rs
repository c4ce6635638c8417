//! Finding an instance an earlier attempt created but never heard back about.

use std::collections::BTreeSet;

use super::error::StepError;
use super::payload::Job;
use crate::dingtalk::{Dentry, DingTalk, dd_attachment_file_ids};

/// Lists the originator's instances of the job's template created since `since_ms` and
/// returns the one whose DDAttachment references exactly this job's files. The file ids were
/// committed by this job alone, so they identify its instance.
pub async fn find_instance(
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

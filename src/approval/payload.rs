//! The job payload: its JSON shape, and the checks that turn it into a [`Job`] or a
//! readable reason naming the field that is wrong.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Most form values DingTalk accepts in one instance.
const MAX_FORM_VALUES: usize = 150;
/// Longest form value DingTalk accepts, in characters.
const MAX_FORM_VALUE_CHARS: usize = 65_535;
/// Most approver groups DingTalk accepts.
const MAX_APPROVERS: usize = 20;
/// Most cc users DingTalk accepts.
const MAX_CC: usize = 50;
/// Most attachments one job may carry (their DDAttachment value must stay under
/// [`MAX_FORM_VALUE_CHARS`]).
const MAX_ATTACHMENTS: usize = 50;
/// Longest file name DingPan accepts, in characters.
const MAX_FILE_NAME_CHARS: usize = 255;

/// The payload as producers write it (DESIGN.md §4). Unknown fields are refused so a typo
/// never silently drops data.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Payload {
    /// Template code, `PROC-…`.
    pub(crate) process_code: String,
    /// The originator's userId.
    pub(crate) originator_user_id: String,
    /// The originator's department; `-1` is the root. Required without `approvers`.
    #[serde(default)]
    pub(crate) dept_id: Option<i64>,
    /// The originator's unionId; resolved (and cached) when absent.
    #[serde(default)]
    pub(crate) union_id: Option<String>,
    /// Form values other than the attachments.
    #[serde(default)]
    pub(crate) form: Vec<FormField>,
    /// Label of the DDAttachment component; the configured default when absent.
    #[serde(default)]
    attachment_field: Option<String>,
    /// Files to attach, in order.
    attachments: Vec<AttachmentSpec>,
    /// Approvers replacing the template's flow.
    #[serde(default)]
    pub(crate) approvers: Vec<ApproverSpec>,
    /// Users to copy.
    #[serde(default)]
    pub(crate) cc_list: Vec<String>,
    /// Where this job's decision is POSTed, instead of `[outcome] webhook_url`.
    #[serde(default)]
    pub(crate) callback_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct FormField {
    /// The component label in the template.
    pub(crate) name: String,
    /// The value; structured values are JSON serialised into this string, as DingTalk wants.
    pub(crate) value: String,
}

/// One file to attach.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachmentSpec {
    /// Absolute path of the file.
    path: PathBuf,
    /// Display name; the file's own name when absent.
    #[serde(default)]
    name: Option<String>,
}

/// One approver group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApproverSpec {
    /// `AND`, `OR` or `NONE`.
    pub(crate) action_type: String,
    /// The approvers' userIds.
    pub(crate) user_ids: Vec<String>,
}

/// Where attachments may come from and how large they may be.
#[derive(Debug, Clone, Default)]
pub(crate) struct UploadLimits {
    /// Directories (already canonical) that attachments must lie in.
    pub(crate) allowed_dirs: Vec<PathBuf>,
    /// Largest attachment in bytes.
    pub(crate) max_file_bytes: u64,
}

/// A payload that passed every check, with attachment paths resolved.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    /// The payload as given.
    pub(crate) payload: Payload,
    /// The attachment component label to use.
    pub(crate) attachment_field: String,
    /// The attachments, checked.
    pub(crate) attachments: Vec<Attachment>,
}

/// A checked attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attachment {
    /// Canonical path inside an allowed directory.
    pub(crate) path: PathBuf,
    /// The name DingPan will show.
    pub(crate) name: String,
    /// Its size when it was checked. It only decides where the file is read: a small one
    /// on the job's own task, a larger one on the blocking pool. What is sent is measured
    /// again then.
    pub(crate) checked_bytes: u64,
}

/// Why a payload cannot become a job; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid payload: {0}")]
pub(crate) struct PayloadError(pub(crate) String);

fn invalid(message: impl Into<String>) -> PayloadError {
    PayloadError(message.into())
}

/// Parses and checks a payload, touching the attachment files (existence, type, size,
/// confinement) but not reading their contents.
pub(crate) fn validate(
    payload_json: &str,
    default_attachment_field: &str,
    limits: &UploadLimits,
) -> Result<Job, PayloadError> {
    let payload: Payload =
        serde_json::from_str(payload_json).map_err(|e| invalid(e.to_string()))?;
    check_fields(&payload)?;
    let attachments = payload
        .attachments
        .iter()
        .enumerate()
        .map(|(index, spec)| check_attachment(index, spec, limits))
        .collect::<Result<Vec<_>, _>>()?;
    let attachment_field = payload
        .attachment_field
        .clone()
        .unwrap_or_else(|| default_attachment_field.to_string());
    if attachment_field.trim().is_empty() {
        return Err(invalid("attachment_field: must not be empty"));
    }
    if payload
        .form
        .iter()
        .any(|field| field.name == attachment_field)
    {
        return Err(invalid(format!(
            "form: {attachment_field:?} is the attachment field and is filled from attachments"
        )));
    }
    Ok(Job {
        payload,
        attachment_field,
        attachments,
    })
}

fn check_fields(payload: &Payload) -> Result<(), PayloadError> {
    check_identifier("process_code", &payload.process_code)?;
    check_identifier("originator_user_id", &payload.originator_user_id)?;
    if let Some(union_id) = &payload.union_id {
        check_identifier("union_id", union_id)?;
    }
    if let Some(url) = &payload.callback_url {
        crate::config::check_webhook_url(url).map_err(|e| invalid(format!("callback_url: {e}")))?;
    }
    if payload.dept_id.is_none() && payload.approvers.is_empty() {
        return Err(invalid(
            "dept_id: required when approvers is empty (-1 is the root department)",
        ));
    }
    if payload.form.len() + 1 > MAX_FORM_VALUES {
        return Err(invalid(format!(
            "form: {} values, DingTalk accepts at most {} including the attachment field",
            payload.form.len(),
            MAX_FORM_VALUES
        )));
    }
    for (index, field) in payload.form.iter().enumerate() {
        if field.name.trim().is_empty() {
            return Err(invalid(format!("form[{index}].name: must not be empty")));
        }
        let chars = field.value.chars().count();
        if chars > MAX_FORM_VALUE_CHARS {
            return Err(invalid(format!(
                "form[{index}].value: {chars} characters, DingTalk accepts at most {MAX_FORM_VALUE_CHARS}"
            )));
        }
    }
    if payload.attachments.is_empty() {
        return Err(invalid("attachments: at least one file is required"));
    }
    if payload.attachments.len() > MAX_ATTACHMENTS {
        return Err(invalid(format!(
            "attachments: {} files, at most {MAX_ATTACHMENTS} per job",
            payload.attachments.len()
        )));
    }
    if payload.approvers.len() > MAX_APPROVERS {
        return Err(invalid(format!(
            "approvers: {} groups, DingTalk accepts at most {MAX_APPROVERS}",
            payload.approvers.len()
        )));
    }
    for (index, approver) in payload.approvers.iter().enumerate() {
        if !matches!(approver.action_type.as_str(), "AND" | "OR" | "NONE") {
            return Err(invalid(format!(
                "approvers[{index}].action_type: {:?} is not AND, OR or NONE",
                approver.action_type
            )));
        }
        if approver.user_ids.is_empty() {
            return Err(invalid(format!(
                "approvers[{index}].user_ids: must not be empty"
            )));
        }
        for user in &approver.user_ids {
            check_identifier(&format!("approvers[{index}].user_ids"), user)?;
        }
    }
    if payload.cc_list.len() > MAX_CC {
        return Err(invalid(format!(
            "cc_list: {} users, DingTalk accepts at most {MAX_CC}",
            payload.cc_list.len()
        )));
    }
    for user in &payload.cc_list {
        check_identifier("cc_list", user)?;
    }
    Ok(())
}

fn check_identifier(field: &str, value: &str) -> Result<(), PayloadError> {
    if value.is_empty() {
        return Err(invalid(format!("{field}: must not be empty")));
    }
    if value.len() > 128 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(format!(
            "{field}: {value:?} is not a DingTalk identifier (no spaces, at most 128 bytes)"
        )));
    }
    Ok(())
}

fn check_attachment(
    index: usize,
    spec: &AttachmentSpec,
    limits: &UploadLimits,
) -> Result<Attachment, PayloadError> {
    let field = format!("attachments[{index}].path");
    let shown = spec.path.display();
    if !spec.path.is_absolute() {
        return Err(invalid(format!("{field}: {shown} is not an absolute path")));
    }
    // Resolve symlinks and `..` before the confinement check, so neither can escape it.
    let path = std::fs::canonicalize(&spec.path)
        .map_err(|e| invalid(format!("{field}: {shown}: {}", io_reason(&e))))?;
    if !limits.allowed_dirs.iter().any(|dir| path.starts_with(dir)) {
        let allowed = if limits.allowed_dirs.is_empty() {
            "none are configured".to_string()
        } else {
            format!("{:?}", limits.allowed_dirs)
        };
        return Err(invalid(format!(
            "{field}: {shown} is outside [upload] allowed_dirs ({allowed})"
        )));
    }
    let metadata = std::fs::metadata(&path)
        .map_err(|e| invalid(format!("{field}: {shown}: {}", io_reason(&e))))?;
    if !metadata.is_file() {
        return Err(invalid(format!("{field}: {shown} is not a regular file")));
    }
    if metadata.len() > limits.max_file_bytes {
        return Err(invalid(format!(
            "{field}: {shown} is {} bytes, larger than [upload] max_file_bytes ({})",
            metadata.len(),
            limits.max_file_bytes
        )));
    }
    // The type is checked again on the opened descriptor: a FIFO or device swapped in after
    // the stat above reads as an empty file.
    let expected = crate::resolved::Expected::default();
    crate::resolved::open_attachment(&path, expected).map_err(|e| match e {
        crate::resolved::OpenError::Io(e) => {
            invalid(format!("{field}: {shown}: {}", io_reason(&e)))
        }
        changed => invalid(format!("{field}: {shown}: {changed}")),
    })?;
    let name = match &spec.name {
        Some(name) => name.clone(),
        None => file_name_of(&path).ok_or_else(|| {
            invalid(format!(
                "{field}: {shown} has no file name usable in DingPan"
            ))
        })?,
    };
    check_file_name(&format!("attachments[{index}].name"), &name)?;
    Ok(Attachment {
        path,
        name,
        checked_bytes: metadata.len(),
    })
}

fn file_name_of(path: &Path) -> Option<String> {
    path.file_name()?.to_str().map(str::to_string)
}

/// DingPan's file-name rules (dingtalk-api.md §5.4), plus an extension, which commit needs.
fn check_file_name(field: &str, name: &str) -> Result<(), PayloadError> {
    let reason = if name.is_empty() {
        Some("must not be empty".to_string())
    } else if name.trim() != name {
        Some("must not start or end with a space".to_string())
    } else if let Some(c) = name
        .chars()
        .find(|c| matches!(c, '\t' | '*' | '"' | '<' | '>' | '|' | '/' | '\\') || c.is_control())
    {
        Some(format!("must not contain {c:?}"))
    } else if name.ends_with('.') {
        Some("must not end with '.'".to_string())
    } else if name.chars().count() > MAX_FILE_NAME_CHARS {
        Some(format!("longer than {MAX_FILE_NAME_CHARS} characters"))
    } else if !has_extension(name) {
        Some("needs an extension (DingTalk derives the file type from it)".to_string())
    } else {
        None
    };
    match reason {
        Some(reason) => Err(invalid(format!("{field}: {name:?} {reason}"))),
        None => Ok(()),
    }
}

fn has_extension(name: &str) -> bool {
    matches!(name.rsplit_once('.'), Some((stem, ext)) if !stem.is_empty() && !ext.is_empty())
}

fn io_reason(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied (unreadable)".to_string(),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(dir: &Path) -> UploadLimits {
        UploadLimits {
            allowed_dirs: vec![std::fs::canonicalize(dir).unwrap()],
            max_file_bytes: 1024,
        }
    }

    fn payload_with(dir: &Path, extra: &str) -> String {
        let file = dir.join("a.pdf");
        std::fs::write(&file, b"%PDF").unwrap();
        format!(
            r#"{{"process_code":"PROC-1","originator_user_id":"u1","dept_id":-1,
                "attachments":[{{"path":{:?}}}]{extra}}}"#,
            file.display().to_string()
        )
    }

    #[test]
    fn a_good_payload_becomes_a_job_with_resolved_attachments() {
        let dir = tempfile::tempdir().unwrap();
        let job = validate(&payload_with(dir.path(), ""), "附件", &limits(dir.path())).unwrap();
        assert_eq!(job.attachment_field, "附件");
        assert_eq!(job.attachments[0].name, "a.pdf");
        assert!(job.attachments[0].path.is_absolute());
    }

    #[test]
    fn a_callback_url_must_be_an_http_url_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let job = validate(
            &payload_with(
                dir.path(),
                r#","callback_url":"https://erp.example.com/hook""#,
            ),
            "附件",
            &limits(dir.path()),
        )
        .unwrap();
        assert_eq!(
            job.payload.callback_url.as_deref(),
            Some("https://erp.example.com/hook")
        );
        let err = validate(
            &payload_with(dir.path(), r#","callback_url":"file:///etc/passwd""#),
            "附件",
            &limits(dir.path()),
        )
        .unwrap_err();
        assert!(err.0.starts_with("callback_url: "), "{err}");
        assert!(err.0.contains("only http and https"), "{err}");
    }

    #[test]
    fn an_unknown_field_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = validate(
            &payload_with(dir.path(), r#","colour":"red""#),
            "附件",
            &limits(dir.path()),
        )
        .unwrap_err();
        assert!(err.0.contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn a_file_outside_the_allowed_dirs_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let err =
            validate(&payload_with(dir.path(), ""), "附件", &limits(other.path())).unwrap_err();
        assert!(err.0.contains("outside [upload] allowed_dirs"), "{err}");
    }

    #[test]
    fn file_names_dingtalk_refuses_are_refused() {
        for bad in [
            " a.pdf", "a.pdf ", "a*b.pdf", "a|b.pdf", "a.pdf.", "noext", "a\tb.pdf", "",
        ] {
            assert!(check_file_name("name", bad).is_err(), "{bad:?} passed");
        }
        assert!(check_file_name("name", "报销单据-2026.pdf").is_ok());
    }

    #[test]
    fn dept_id_is_required_without_approvers() {
        let dir = tempfile::tempdir().unwrap();
        let json = payload_with(dir.path(), "").replace(r#""dept_id":-1,"#, "");
        let err = validate(&json, "附件", &limits(dir.path())).unwrap_err();
        assert!(err.0.starts_with("dept_id:"), "{err}");
    }
}

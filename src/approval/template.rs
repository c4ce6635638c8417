//! The template check before any upload: a job's form against its template's form schema
//! (cached a while per process code), so a form DingTalk would refuse at create fails at once,
//! naming the field, with no file uploaded and no call spent on it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::error::StepError;
use super::payload::Job;
use crate::dingtalk::{DingTalk, FormSchema};

/// How long a fetched schema is believed: templates are edited in DingTalk's console, and a
/// stale schema only delays noticing that by this long.
const SCHEMA_TTL: Duration = Duration::from_secs(300);

/// The component DingTalk's attachment field is.
const ATTACHMENT_COMPONENT: &str = "DDAttachment";

/// What a template's schema says about a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Schema {
    /// The template's fields.
    Known(Arc<FormSchema>),
    /// The app may not read templates (no permission): forms go unchecked, as before.
    Unreadable,
}

/// Schemas by process code, shared by every job of the process.
#[derive(Clone, Default)]
pub(crate) struct Templates {
    cached: Arc<Mutex<HashMap<String, (Schema, Instant)>>>,
    /// Held while a schema is fetched: the jobs that start together with a template not yet
    /// cached wait for one fetch instead of each spending a call on it.
    fetching: Arc<tokio::sync::Mutex<()>>,
}

impl Templates {
    /// Checks `job`'s form against its template, fetching the schema when it is not cached.
    /// A form that cannot work fails the job (`Permanent`, naming the field); a template that
    /// does not exist too; an app without the permission to read templates skips the check
    /// (said once per template and TTL, in the log).
    pub(crate) async fn check(&self, dingtalk: &DingTalk, job: &Job) -> Result<(), StepError> {
        let code = &job.payload.process_code;
        let schema = match self.cached(code) {
            Some(schema) => schema,
            None => self.fetch(dingtalk, code).await?,
        };
        match schema {
            Schema::Known(schema) => check_form(&schema, code, job).map_err(StepError::permanent),
            Schema::Unreadable => Ok(()),
        }
    }

    /// Fetches the schema of `code`, once for all the jobs waiting on it.
    async fn fetch(&self, dingtalk: &DingTalk, code: &str) -> Result<Schema, StepError> {
        let _fetching = self.fetching.lock().await;
        if let Some(schema) = self.cached(code) {
            return Ok(schema);
        }
        let schema = match dingtalk.form_schema(code).await {
            Ok(schema) => Schema::Known(Arc::new(schema)),
            Err(e) if e.is_permission_denied() => {
                tracing::warn!(
                    process_code = %code,
                    error = %e,
                    "cannot read the template's form, so forms are not checked before \
                     uploading; grant the app the template read permission"
                );
                Schema::Unreadable
            }
            Err(e) => return Err(StepError::from_dingtalk(e, false)),
        };
        self.remember(code, schema.clone());
        Ok(schema)
    }

    fn cached(&self, code: &str) -> Option<Schema> {
        let cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        cached
            .get(code)
            .filter(|(_, fetched)| fetched.elapsed() < SCHEMA_TTL)
            .map(|(schema, _)| schema.clone())
    }

    fn remember(&self, code: &str, schema: Schema) {
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        cached.insert(code.to_owned(), (schema, Instant::now()));
    }
}

/// Why `job`'s form cannot work with the template `code` of `schema`, if it cannot: its
/// attachment field must be a DDAttachment of the template, every form value must name one
/// of its fields, and every required field must have a value (the attachment field gets the
/// files).
pub(crate) fn check_form(schema: &FormSchema, code: &str, job: &Job) -> Result<(), String> {
    let labels = || {
        schema
            .fields
            .iter()
            .map(|field| format!("「{}」", field.label))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let attachment = &job.attachment_field;
    match schema.field(attachment) {
        Some(field) if field.component == ATTACHMENT_COMPONENT => {}
        Some(field) => {
            return Err(format!(
                "attachment field 「{attachment}」 of template {code} is a {}, not a \
                 DDAttachment: name the template's attachment field (attachment_field)",
                field.component
            ));
        }
        None => {
            return Err(format!(
                "template {code} has no field 「{attachment}」 for the attachments; its fields \
                 are {}",
                labels()
            ));
        }
    }
    for value in &job.payload.form {
        if schema.field(&value.name).is_none() {
            return Err(format!(
                "form field 「{}」 is not in template {code}; its fields are {}",
                value.name,
                labels()
            ));
        }
    }
    let missing: Vec<String> = schema
        .fields
        .iter()
        .filter(|field| field.required && field.label != *attachment)
        .filter(|field| !job.payload.form.iter().any(|v| v.name == field.label))
        .map(|field| format!("「{}」", field.label))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "template {code} requires {}, which the form lacks",
            missing.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::check_form;
    use crate::approval::payload::{Job, UploadLimits, validate};
    use crate::dingtalk::{FormField, FormSchema};

    fn schema() -> FormSchema {
        let field = |label: &str, component: &str, required| FormField {
            label: label.into(),
            component: component.into(),
            required,
        };
        FormSchema {
            name: "报销".into(),
            fields: vec![
                field("报销事由", "TextField", true),
                field("说明", "TextareaField", false),
                field("附件", "DDAttachment", true),
            ],
        }
    }

    /// A job with `form` (a JSON array) and `extra` payload keys.
    fn job(form: &str, extra: &str) -> Job {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.pdf");
        std::fs::write(&file, b"%PDF").unwrap();
        let payload = format!(
            r#"{{"process_code":"PROC-1","originator_user_id":"u1","dept_id":-1,
                "form":{form},"attachments":[{{"path":{:?}}}]{extra}}}"#,
            file.display().to_string()
        );
        let limits = UploadLimits {
            allowed_dirs: vec![std::fs::canonicalize(dir.path()).unwrap()],
            max_file_bytes: 1024,
        };
        validate(&payload, "附件", &limits).unwrap()
    }

    #[test]
    fn a_form_with_the_required_fields_and_known_labels_passes() {
        let form = r#"[{"name":"报销事由","value":"出差"},{"name":"说明","value":"x"}]"#;
        assert_eq!(check_form(&schema(), "PROC-1", &job(form, "")), Ok(()));
    }

    #[test]
    fn a_label_the_template_lacks_is_named_with_the_fields_it_has() {
        let form = r#"[{"name":"报销事由","value":"出差"},{"name":"事由","value":"x"}]"#;
        let err = check_form(&schema(), "PROC-1", &job(form, "")).unwrap_err();
        assert_eq!(
            err,
            "form field 「事由」 is not in template PROC-1; its fields are 「报销事由」, 「说明」, 「附件」"
        );
    }

    #[test]
    fn a_required_field_without_a_value_is_named() {
        let err = check_form(&schema(), "PROC-1", &job("[]", "")).unwrap_err();
        assert_eq!(
            err,
            "template PROC-1 requires 「报销事由」, which the form lacks"
        );
    }

    #[test]
    fn an_attachment_field_that_is_missing_or_no_ddattachment_is_refused() {
        let form = r#"[{"name":"报销事由","value":"出差"}]"#;
        let err = check_form(
            &schema(),
            "PROC-1",
            &job(form, r#","attachment_field":"附件列表""#),
        )
        .unwrap_err();
        assert!(
            err.starts_with("template PROC-1 has no field 「附件列表」"),
            "{err}"
        );
        let err = check_form(
            &schema(),
            "PROC-1",
            &job(form, r#","attachment_field":"说明""#),
        )
        .unwrap_err();
        assert!(
            err.contains("「说明」 of template PROC-1 is a TextareaField, not a DDAttachment"),
            "{err}"
        );
    }
}

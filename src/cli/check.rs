//! `check`: validates the configuration and, against the configured DingTalk, fetches a token
//! and resolves a user's unionId and approval space, saying what works and what is missing.

use clap::Args;
use serde_json::json;

use super::CliError;
use super::run::dingtalk_client;
use crate::config::Config;
use crate::dingtalk::{DingTalk, DingTalkError};
use crate::queue::{DatabaseFile, Location, inspect, redacted_url};

/// Examples shown by `check --help`.
pub(crate) const EXAMPLES: &str = "Examples:
  approval-worker --config /etc/approval-worker/worker.toml check
  approval-worker check --user manager4220     # also resolve this originator's space
  approval-worker check --process-code PROC-FF6Y4BE1-8C57-4F35-A8B1-6F2E6B6A5C41
                                               # the template's fields, and its attachment field

Exit code 0 when everything checked works, 78 for a configuration problem, 1 when DingTalk
refuses a call (the line says which permission the app lacks).";

/// `check` arguments.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// A DingTalk userId (an originator) whose unionId and approval space to resolve.
    #[arg(long, value_name = "USER_ID")]
    user: Option<String>,
    /// An approval template (process code) whose form fields to print, checking that the
    /// configured attachment field is one of its DDAttachment fields.
    #[arg(long, value_name = "CODE")]
    process_code: Option<String>,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

/// One line of the report.
struct Finding {
    what: String,
    ok: bool,
    detail: String,
}

pub(crate) async fn check(config: &Config, source: &str, args: CheckArgs) -> Result<(), CliError> {
    let mut findings = vec![Finding {
        what: "config".into(),
        ok: true,
        detail: format!("{source}: valid"),
    }];
    findings.extend(check_paths(config).await);
    let secret = config.validate_for_run();
    let client = match secret {
        Ok(secret) => {
            let mut detail = secret_source(config);
            for warning in config.warnings() {
                tracing::warn!("{warning}");
                detail.push_str(&format!("; warning: {warning}"));
            }
            findings.push(Finding {
                what: "app secret".into(),
                ok: true,
                detail,
            });
            Some(dingtalk_client(config, secret)?)
        }
        Err(e) => {
            report(&findings, args.json);
            return Err(e.into());
        }
    };
    if let Some(client) = client {
        findings.extend(check_dingtalk(&client, config, args.user.as_deref()).await);
        if let Some(code) = &args.process_code
            && findings.iter().all(|f| f.what != "access token" || f.ok)
        {
            findings.push(check_template(&client, config, code).await);
        }
    }
    report(&findings, args.json);
    let failed = findings.iter().filter(|f| !f.ok).count();
    if failed == 0 {
        Ok(())
    } else {
        Err(CliError::Runtime(anyhow::anyhow!(
            "{failed} check(s) failed"
        )))
    }
}

fn secret_source(config: &Config) -> String {
    match config.app_secret_path() {
        Ok(Some(path)) => format!("read from {}", path.display()),
        _ => format!("read from ${}", config.dingtalk.app_secret_env),
    }
}

async fn check_paths(config: &Config) -> Vec<Finding> {
    let mut findings = Vec::new();
    match config.queue_location() {
        Ok(location) => findings.push(check_database(&location).await),
        Err(e) => findings.push(Finding {
            what: "database".into(),
            ok: false,
            detail: e.to_string(),
        }),
    }
    if config.upload.allowed_dirs.is_empty() {
        findings.push(Finding {
            what: "attachments".into(),
            ok: false,
            detail: "[upload] allowed_dirs is empty: every attachment is refused".into(),
        });
    }
    for dir in &config.upload.allowed_dirs {
        let ok = std::fs::read_dir(dir).is_ok();
        findings.push(Finding {
            what: "attachments".into(),
            ok,
            detail: if ok {
                format!("{} is readable", dir.display())
            } else {
                format!("{} is missing or not readable", dir.display())
            },
        });
    }
    findings
}

/// What the configured database holds, read without creating or migrating anything.
async fn check_database(location: &Location) -> Finding {
    let (name, missing_parent) = match location {
        Location::Sqlite(path) => {
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            (path.display().to_string(), !parent.is_dir())
        }
        Location::Postgres(options) => (redacted_url(&options.url), false),
    };
    let (state, server) = inspect(location).await;
    let server = server
        .map(|version| format!(" on {version}"))
        .unwrap_or_default();
    let (ok, detail) = match state {
        DatabaseFile::Missing if !missing_parent => (
            true,
            format!("{name} does not exist yet; `migrate` or `run` creates it"),
        ),
        DatabaseFile::Missing => (
            false,
            format!("{name} does not exist, and neither does its directory"),
        ),
        DatabaseFile::Ours { version: 0, .. } => (
            true,
            format!("{name}{server}: empty; `migrate` or `run` creates the schema"),
        ),
        DatabaseFile::Ours {
            version,
            latest,
            jobs,
        } if version < latest => (
            true,
            format!(
                "{name}{server}: schema {version}, {} migration(s) to apply (`migrate`); \
                 {jobs} jobs",
                latest - version
            ),
        ),
        DatabaseFile::Ours {
            version, latest, ..
        } if version > latest => (
            false,
            format!(
                "{name}{server}: schema {version} is newer than this approval-worker knows \
                 ({latest}); run the newer binary"
            ),
        ),
        DatabaseFile::Ours { version, jobs, .. } => (
            true,
            format!("{name}{server}: schema {version} (current), {jobs} jobs"),
        ),
        DatabaseFile::Foreign(tables) => (
            false,
            format!("{name} is not an approval-worker database: it holds other tables ({tables})"),
        ),
        DatabaseFile::Unreadable(reason) => (
            false,
            format!("{name} cannot be read as a database: {reason}"),
        ),
    };
    Finding {
        what: "database".into(),
        ok,
        detail,
    }
}

async fn check_dingtalk(client: &DingTalk, config: &Config, user: Option<&str>) -> Vec<Finding> {
    let mut findings = vec![finding(
        "access token",
        client.check_token().await.map(|()| {
            format!(
                "app {} authenticated at {}",
                config.dingtalk.app_key, config.dingtalk.api_base
            )
        }),
        "qyapi_base; check app_key and the secret",
    )];
    if !findings[0].ok {
        return findings;
    }
    let Some(user) = user else {
        findings.push(Finding {
            what: "approval space".into(),
            ok: true,
            detail: "not checked: pass --user USER_ID to resolve an originator's space".into(),
        });
        return findings;
    };
    findings.push(finding(
        "unionId",
        client
            .union_id(user)
            .await
            .map(|union_id| format!("{user} → {union_id}")),
        "qyapi_get_member (成员信息读权限)",
    ));
    findings.push(finding(
        "approval space",
        client
            .approval_space(user)
            .await
            .map(|space| format!("space {space}, upload right granted to {user}")),
        "Workflow.Instance.Write, and the OA approval micro-app enabled",
    ));
    findings
}

/// The template's fields, and whether `[dingtalk] attachment_field` is a DDAttachment of it.
async fn check_template(client: &DingTalk, config: &Config, code: &str) -> Finding {
    let schema = match client.form_schema(code).await {
        Ok(schema) => schema,
        Err(e) => {
            return finding(
                "template",
                Err(e),
                "the approval template read permission (Workflow.Form.Read-style)",
            );
        }
    };
    let fields: Vec<String> = schema
        .fields
        .iter()
        .map(|field| {
            let required = if field.required { ", required" } else { "" };
            format!("{} ({}{required})", field.label, field.component)
        })
        .collect();
    let label = &config.dingtalk.attachment_field;
    let (ok, verdict) = match schema.field(label) {
        Some(field) if field.component == "DDAttachment" => (
            true,
            format!("attachment field 「{label}」 is its DDAttachment"),
        ),
        Some(field) => (
            false,
            format!(
                "[dingtalk] attachment_field 「{label}」 is a {}, not a DDAttachment",
                field.component
            ),
        ),
        None => (
            false,
            format!("[dingtalk] attachment_field 「{label}」 is not one of its fields"),
        ),
    };
    Finding {
        what: "template".into(),
        ok,
        detail: format!(
            "{code} 「{}」: {}; {verdict}",
            schema.name,
            fields.join(", ")
        ),
    }
}

fn finding(what: &str, result: Result<String, DingTalkError>, permission: &str) -> Finding {
    match result {
        Ok(detail) => Finding {
            what: what.into(),
            ok: true,
            detail,
        },
        Err(e) => Finding {
            what: what.into(),
            ok: false,
            detail: format!("{e}; this call needs {permission}"),
        },
    }
}

fn report(findings: &[Finding], json: bool) {
    if json {
        let list: Vec<_> = findings
            .iter()
            .map(|f| json!({"check": f.what, "ok": f.ok, "detail": f.detail}))
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return;
    }
    let width = findings.iter().map(|f| f.what.len()).max().unwrap_or(0);
    for f in findings {
        let mark = if f.ok { "ok  " } else { "FAIL" };
        println!("{mark}  {:width$}  {}", f.what, f.detail);
    }
}

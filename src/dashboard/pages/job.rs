//! `/jobs/{id}`: one job — its state, its history as a timeline with each step's duration
//! and each failure's HTTP status and error, its approval's outcome, the notifications, and
//! its payload — with the actions its status allows. While it uploads, the page shows the
//! bytes sent, speed and time left, and asks the browser to reload it every few seconds.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::{Section, csrf_field, cut, layout, paused_marker, span, status_badge, utc, when};
use crate::dashboard::Dashboard;
use crate::dashboard::access::Viewer;
use crate::dashboard::actions::{act, parse_action};
use crate::dashboard::failure::PageError;
use crate::dashboard::view::{DeliveryView, EventView, JobDetail, OutcomeView};
use crate::queue::{JobId, now_ms};

/// What an action that redirected here did.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct JobNotice {
    done: String,
}

pub(crate) async fn job(
    State(dashboard): State<Dashboard>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<JobId>,
    Query(notice): Query<JobNotice>,
) -> Result<Response, PageError> {
    let settings = dashboard.settings();
    let detail = JobDetail::load(dashboard.queue(), settings, id, now_ms()).await?;
    let job = &detail.job;
    let now = detail.now_ms;
    let pretty = |value: &Value| serde_json::to_string_pretty(value).unwrap_or_default();
    let longest = detail
        .events
        .iter()
        .filter_map(|e| e.duration_ms)
        .max()
        .unwrap_or(0);
    let body = html! {
        h1 { "Job " (job.id) " " (status_badge(&job.status)) }
        @match notice.done.as_str() {
            "retry" => p.notice { "Queued again at its checkpoint, with a fresh set of attempts." },
            "cancel" => p.notice { "Cancelled." },
            "stopping" => p.notice {
                "Asked to stop: it stops at its next checkpoint (a job that may have sent its \
                 create reconciles first, then adopts the approval or cancels)."
            },
            _ => {},
        }
        @if !settings.read_only {
            div.actions {
                @if matches!(job.status.as_str(), "failed" | "cancelled") {
                    form.inline method="post" action={ "/jobs/" (job.id) "/retry" } {
                        (csrf_field(&viewer))
                        button type="submit" { "Retry" }
                    }
                }
                @if matches!(job.status.as_str(), "queued" | "running") && !job.cancel_requested {
                    form.inline method="post" action={ "/jobs/" (job.id) "/cancel" } {
                        (csrf_field(&viewer))
                        button.danger type="submit" { "Cancel" }
                    }
                }
            }
        }
        dl.facts {
            dt { "Queue" } dd {
                (job.queue) " (priority " (job.priority) ")"
                @if job.queue_paused {
                    " " (paused_marker()) " "
                    span.quiet { "no worker claims it until the queue is "
                                 a href="/#paused-queues" { "resumed" } }
                }
            }
            dt { "Step" } dd { (job.step) }
            dt { "Attempt" } dd {
                @if job.attempt > job.max_attempts {
                    (job.attempt) " (limit " (job.max_attempts) "; the attempts past it only looked \
                    for an approval an earlier create may have made, and never create one)"
                } @else {
                    (job.attempt) " of " (job.max_attempts)
                }
                @if job.claims != job.attempt { " (" (job.claims) " claims, some cut short by a stop)" }
            }
            @if let Some(at) = job.next_attempt_at {
                dt { "Next attempt" } dd { (when(at, now)) " (" (utc(at)) ")" }
            }
            @if job.cancel_requested && matches!(job.status.as_str(), "queued" | "running") {
                dt { "Cancel" } dd { "requested: stops at its next checkpoint" }
            }
            @if let Some(key) = &job.idempotency_key { dt { "Idempotency key" } dd { code { (key) } } }
            @if let Some(instance) = &job.instance_id { dt { "Instance" } dd { code { (instance) } } }
            dt { "Created" } dd { (utc(job.created_at)) " (" (when(job.created_at, now)) ")" }
            dt { "Updated" } dd { (utc(job.updated_at)) }
            @if let Some(at) = job.finished_at { dt { "Finished" } dd { (utc(at)) } }
            @if let Some(error) = &job.last_error { dt { "Last error" } dd.error { (error) } }
            @if let Some(upload) = &detail.upload {
                dt { "Uploading" } dd.upload {
                    progress value=(upload.live.bytes_sent) max=(upload.live.bytes_total.max(1)) {}
                    " " (upload.summary)
                }
            }
            @if let Some(parts) = &detail.parts { dt { "In parts" } dd { (parts) } }
        }
        section.panel {
            h2 { "History" }
            @if detail.events.is_empty() {
                p.quiet { "No events yet: the job has not been claimed." }
            } @else {
                ol.timeline {
                    @for event in &detail.events { (timeline_entry(event, longest)) }
                }
            }
        }
        @if let Some(outcome) = &detail.outcome {
            (outcome_section(outcome, &detail.deliveries, now))
        }
        section.panel {
            h2 { "Payload" }
            pre.json { (pretty(&detail.payload)) }
            @if !detail.result.is_null() {
                h2 { "Result" }
                pre.json { (pretty(&detail.result)) }
            }
            @if detail.has_checkpoint {
                p.quiet { "A checkpoint is stored; it is not shown here, as it holds signed upload URLs." }
            }
        }
        p.quiet { a href={ "/api/jobs/" (job.id) } { "JSON" } }
    };
    let page = layout(
        &format!("Job {}", job.id),
        Section::Jobs,
        &viewer,
        settings,
        body,
    );
    // The worker reports about once a second; a reload every few seconds follows it without
    // a script (the page's CSP allows none). A running file in parts reloads too before its
    // first report, which comes a second after the upload opened.
    let uploading =
        detail.upload.is_some() || (detail.parts.is_some() && detail.job.status == "running");
    Ok(if uploading {
        ([("refresh", UPLOAD_REFRESH_SECS)], page).into_response()
    } else {
        page.into_response()
    })
}

/// How often a page showing a running upload reloads itself, s.
const UPLOAD_REFRESH_SECS: &str = "2";

/// `POST /jobs/{id}/{retry|cancel}`: acts, then shows the job again.
pub(crate) async fn job_action(
    State(dashboard): State<Dashboard>,
    Path((id, action)): Path<(JobId, String)>,
) -> Result<Response, PageError> {
    let done = act(&dashboard, id, parse_action(&action)?).await?;
    let notice = if done.stopping {
        "stopping"
    } else {
        done.action.as_str()
    };
    Ok(Redirect::to(&format!("/jobs/{id}?done={notice}")).into_response())
}

fn timeline_entry(event: &EventView, longest_ms: i64) -> Markup {
    let failed = event.error.is_some() || event.kind.contains("fail");
    html! {
        li class={ "event kind-" (event.kind) @if failed { " failed" } } {
            div.when {
                time { (utc(event.at)) }
                @if let Some(after) = event.after_ms { span.after { "+" (span(after)) } }
            }
            div.what {
                span.kind { (event.kind.replace('_', " ")) }
                @if let Some(step) = &event.step { " " span.step { (step) } }
                @if event.count > 1 { " " span.count { "× " (event.count) } }
                @if let Some(attempt) = event.attempt { " " span.attempt { "attempt " (attempt) } }
                @if let Some(duration) = event.duration_ms {
                    " " span.duration { (span(duration)) }
                    svg.bar viewBox="0 0 100 6" preserveAspectRatio="none" role="img"
                        aria-label={ "took " (span(duration)) } {
                        rect x="0" y="0" width=(duration.max(0) * 100 / longest_ms.max(1)) height="6" {}
                    }
                }
                @if let Some(status) = event.http_status { " " span.http { "HTTP " (status) } }
                @if let Some(error) = &event.error { p.error { (error) } }
            }
        }
    }
}

fn outcome_section(outcome: &OutcomeView, deliveries: &[DeliveryView], now: i64) -> Markup {
    let records = outcome.records["operation_records"].as_array();
    let tasks = outcome.records["tasks"].as_array();
    html! {
        section.panel {
            h2 { "Approval outcome " span class={ "badge outcome-" (outcome.outcome) } { (outcome.outcome) } }
            dl.facts {
                dt { "Instance" } dd { code { (outcome.instance_id) } }
                dt { "Submitted" } dd { (utc(outcome.submitted_at)) }
                @if let Some(at) = outcome.decided_at {
                    dt { "Decided" } dd {
                        (utc(at))
                        @if let Some(from) = &outcome.learned_from { " (learned from " (from) ")" }
                    }
                }
                dt { "Reads" } dd {
                    (outcome.checks)
                    @if let Some(at) = outcome.next_check_at { ", next " (when(at, now)) }
                }
                @if let Some(error) = &outcome.last_error { dt { "Last read failed" } dd.error { (error) } }
                @if let Some(url) = &outcome.callback_url { dt { "Callback" } dd { code { (url) } } }
            }
            @if let Some(records) = records.filter(|r| !r.is_empty()) {
                h3 { "Approvers' records" }
                table {
                    thead { tr { th { "At" } th { "User" } th { "Action" } th { "Result" } th { "Remark" } } }
                    tbody {
                        @for record in records {
                            tr {
                                td { (text(&record["date"])) }
                                td { (text(&record["user_id"])) }
                                td { (text(&record["kind"])) }
                                td { (text(&record["result"])) }
                                td { (cut(&text(&record["remark"]), 200)) }
                            }
                        }
                    }
                }
            }
            @if let Some(tasks) = tasks.filter(|t| !t.is_empty()) {
                h3 { "Tasks" }
                table {
                    thead { tr { th { "User" } th { "Status" } th { "Result" } th { "Finished" } } }
                    tbody {
                        @for task in tasks {
                            tr {
                                td { (text(&task["user_id"])) }
                                td { (text(&task["status"])) }
                                td { (text(&task["result"])) }
                                td { (text(&task["finish_time"])) }
                            }
                        }
                    }
                }
            }
            @if !deliveries.is_empty() {
                h3 { "Notifications" }
                table {
                    thead { tr { th { "Delivery" } th { "To" } th { "Status" } th.num { "Sends" }
                                 th { "HTTP" } th { "Delivered / next" } th { "Error" } } }
                    tbody {
                        @for d in deliveries {
                            tr {
                                td { code { (d.delivery_id) } }
                                td { code { (d.url) } }
                                td { (d.status) }
                                td.num { (d.attempts) }
                                td { @if let Some(s) = d.last_status { (s) } }
                                td { @if let Some(at) = d.delivered_at.or(d.next_attempt_at) { (utc(at)) } }
                                td.error { @if let Some(e) = &d.last_error { (cut(e, 200)) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A JSON value as plain text (strings without their quotes).
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

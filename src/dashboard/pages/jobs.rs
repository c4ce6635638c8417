//! `/jobs`: the jobs list, filtered, newest first, a page at a time (keyset paging: the
//! "older" link carries the last id shown), with the bulk actions for the same filter.

use axum::Extension;
use axum::extract::{Query, State};
use maud::{Markup, html};
use serde::Deserialize;

use super::{Section, cut, layout, number, paused_marker, status_badge, when};
use crate::dashboard::Dashboard;
use crate::dashboard::access::Viewer;
use crate::dashboard::failure::PageError;
use crate::dashboard::filter::FilterForm;
use crate::dashboard::view::{JobView, JobsPage};
use crate::queue::{JobStatus, Verdict, now_ms};

/// Jobs per page.
pub(crate) const PAGE_SIZE: i64 = 50;

/// What a bulk action that redirected here did.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct BulkNotice {
    done: String,
    n: u64,
    flagged: u64,
    more: bool,
}

pub(crate) async fn jobs(
    State(dashboard): State<Dashboard>,
    Extension(viewer): Extension<Viewer>,
    Query(form): Query<FilterForm>,
    Query(notice): Query<BulkNotice>,
) -> Result<Markup, PageError> {
    let settings = dashboard.settings();
    let now = now_ms();
    let filter = form.filter(now, PAGE_SIZE)?;
    let page = JobsPage::load(dashboard.queue(), settings, &filter, now).await?;
    let query = form.query();
    let body = html! {
        h1 { "Jobs" }
        (filter_form(&form))
        (bulk_notice(&notice, settings.bulk_cap))
        p.summary {
            "Showing " (page.jobs.len()) " of " (form.describe()) ", newest first"
            @if !form.before.is_empty() { ", below #" (form.before) }
            "."
            @if page.more { " More match: see older ones below." }
            @if !settings.read_only {
                span.bulk {
                    a.button href={ "/bulk/retry?" (query) } { "Retry all matching…" }
                    a.button.danger href={ "/bulk/cancel?" (query) } { "Cancel all matching…" }
                }
            }
        }
        @if page.jobs.is_empty() {
            p.quiet { "No job matches." }
        } @else {
            table.jobs {
                thead { tr {
                    th.num { "ID" } th { "Status" } th { "Queue" } th { "Step" }
                    th { "Attempt" } th { "Updated" } th { "Instance / last error" }
                } }
                tbody {
                    @for job in &page.jobs { (row(job, page.now_ms)) }
                }
            }
        }
        nav.pages {
            @if !form.before.is_empty() {
                a href={ "/jobs?" (query) } { "« Newest" }
            }
            @if let Some(before) = page.next_before {
                a href={ "/jobs?" (form.query_and(&format!("before={before}"))) } { "Older »" }
            }
            a.quiet href={ "/api/jobs?" (form.query_and(&format!("before={}", form.before))) } { "JSON" }
        }
    };
    Ok(layout("Jobs", Section::Jobs, &viewer, settings, body))
}

fn row(job: &JobView, now_ms: i64) -> Markup {
    html! {
        tr {
            td.num { a href={ "/jobs/" (job.id) } { (job.id) } }
            td {
                (status_badge(&job.status))
                @if let Some(at) = job.next_attempt_at {
                    " " span.next { "next attempt " (when(at, now_ms)) }
                }
                @if job.cancel_requested && matches!(job.status.as_str(), "queued" | "running") {
                    " " span.next { "cancel requested" }
                }
                @if let Some(outcome) = &job.outcome { " " span.outcome { (outcome) } }
            }
            td {
                (job.queue)
                @if job.queue_paused { " " (paused_marker()) }
            }
            td { (job.step) }
            @if job.attempt > job.max_attempts {
                td title="attempts past the limit only look for an approval an earlier create may have made" {
                    (job.attempt) " (limit " (job.max_attempts) ")"
                }
            } @else {
                td { (job.attempt) " of " (job.max_attempts) }
            }
            td { (when(job.updated_at, now_ms)) }
            td.detail {
                @match (&job.instance_id, &job.last_error) {
                    (Some(instance), _) if job.status == "succeeded" => code { (instance) },
                    (_, Some(error)) => span.error title=(error) { (cut(error, 120)) },
                    _ => "",
                }
            }
        }
    }
}

/// The filter as a GET form; its fields carry their current values.
fn filter_form(form: &FilterForm) -> Markup {
    let statuses = ["queued", "running", "succeeded", "failed", "cancelled"];
    debug_assert!(statuses.iter().all(|s| s.parse::<JobStatus>().is_ok()));
    let ages = ["15m", "1h", "6h", "24h", "7d", "30d"];
    html! {
        form.filter method="get" action="/jobs" {
            label { "Status "
                select name="status" {
                    option value="" { "any" }
                    @for status in statuses {
                        option value=(status) selected[form.status == status] { (status) }
                    }
                }
            }
            label { "Queue " input type="text" name="queue" size="10" value=(form.queue); }
            label { "Step " input type="text" name="step" size="10" value=(form.step); }
            label { "Outcome "
                select name="outcome" {
                    option value="" { "any" }
                    @for verdict in Verdict::ALL {
                        option value=(verdict.as_str()) selected[form.outcome == verdict.as_str()] {
                            (verdict.as_str())
                        }
                    }
                }
            }
            label { "Created in the last "
                select name="since" {
                    option value="" { "any time" }
                    @for age in ages {
                        option value=(age) selected[form.since == age] { (age) }
                    }
                    @if !form.since.is_empty() && !ages.contains(&form.since.as_str()) {
                        option value=(form.since) selected { (form.since) }
                    }
                }
            }
            @if !form.from.is_empty() {
                input type="hidden" name="from" value=(form.from);
            }
            label { "Idempotency key " input type="text" name="key" size="14" value=(form.key); }
            label { "Instance " input type="text" name="instance" size="14" value=(form.instance); }
            button type="submit" { "Filter" }
            " " a href="/jobs" { "Clear" }
        }
    }
}

fn bulk_notice(notice: &BulkNotice, cap: i64) -> Markup {
    let (what, flagged) = match notice.done.as_str() {
        "retry" => ("queued again at their checkpoint", String::new()),
        "cancel" => (
            "cancelled",
            match notice.flagged {
                0 => String::new(),
                n => format!(
                    "; {} asked to stop at their next checkpoint (running, or may have sent their create)",
                    number(i64::try_from(n).unwrap_or(i64::MAX))
                ),
            },
        ),
        _ => return html! {},
    };
    html! {
        p.notice {
            (number(i64::try_from(notice.n).unwrap_or(i64::MAX))) " jobs " (what) (flagged) "."
            @if notice.more {
                " More jobs match: the action took the newest "
                (number(cap)) " at most; run it again for the rest."
            }
        }
    }
}

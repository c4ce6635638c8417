//! `/`: the queue at a glance, and which queues are paused.

use axum::Extension;
use axum::extract::{Query, State};
use maud::{Markup, html};

use super::chart::{finished_bars, meter};
use super::queues::{self, QueueNotice, paused_marker, toggle_button};
use super::{Section, layout, number, utc, when};
use crate::dashboard::Dashboard;
use crate::dashboard::access::Viewer;
use crate::dashboard::failure::PageError;
use crate::dashboard::filter::percent_encode;
use crate::dashboard::view::{CHART_HOURS, Overview};
use crate::queue::now_ms;

pub(crate) async fn overview(
    State(dashboard): State<Dashboard>,
    Extension(viewer): Extension<Viewer>,
    Query(notice): Query<QueueNotice>,
) -> Result<Markup, PageError> {
    let settings = dashboard.settings();
    let view = Overview::load(dashboard.queue(), settings, now_ms()).await?;
    let (succeeded, failed) = view
        .finished_per_hour
        .iter()
        .fold((0, 0), |(s, f), b| (s + b.succeeded, f + b.failed));
    let body = html! {
        h1 { "Overview" }
        (queues::notice(&notice))
        section.cards {
            @for count in &view.by_status {
                a class={ "card status-" (count.name) } href={ "/jobs?status=" (count.name) } {
                    span.count { (number(count.jobs)) }
                    span.what { (count.name) }
                }
            }
        }
        // A paused queue is the first thing to see; otherwise the panel only offers to pause.
        @if !view.paused.is_empty() {
            (queues::panel(&view.paused, &viewer, settings.read_only, view.now_ms))
        }
        section.panel {
            h2 { "Finished per hour, last " (CHART_HOURS) " h (UTC)" }
            p.legend {
                span.key.ok {} " succeeded " (number(succeeded))
                span.key.bad {} " failed " (number(failed))
            }
            (finished_bars(&view.finished_per_hour, 3_600_000))
        }
        div.columns {
            section.panel {
                h2 { "Queues" }
                @if view.by_queue.is_empty() {
                    p.quiet { "No queued, running or failed jobs, and no queue is paused." }
                } @else {
                    table {
                        thead { tr { th { "Queue" } th.num { "Queued" } th.num { "Due now" }
                                     th.num { "Running" } th.num { "Failed" }
                                     @if !settings.read_only { th {} } } }
                        tbody {
                            @for row in &view.by_queue {
                                @let q = &row.counts;
                                @let name = percent_encode(&q.queue);
                                tr.paused[row.paused] {
                                    td {
                                        a href={ "/jobs?queue=" (name) } { (q.queue) }
                                        @if row.paused { " " (paused_marker()) }
                                    }
                                    td.num { a href={ "/jobs?status=queued&queue=" (name) } { (number(q.queued)) } }
                                    td.num { (number(q.due)) }
                                    td.num { a href={ "/jobs?status=running&queue=" (name) } { (number(q.running)) } }
                                    td.num { a href={ "/jobs?status=failed&queue=" (name) } { (number(q.failed)) } }
                                    @if !settings.read_only {
                                        td.num { (toggle_button(&viewer, &q.queue, row.paused)) }
                                    }
                                }
                            }
                        }
                    }
                }
                h2 { "Oldest waiting job" }
                @match &view.oldest_queued {
                    Some(oldest) => p {
                        a href={ "/jobs/" (oldest.id) } { "#" (oldest.id) }
                        ", created " (when(oldest.created_at, view.now_ms))
                    },
                    None => p.quiet { "No job is waiting." },
                }
            }
            section.panel {
                h2 { "Approval outcomes" }
                @if view.by_outcome.is_empty() {
                    p.quiet { "No approval is followed yet." }
                } @else {
                    table {
                        tbody {
                            @for count in &view.by_outcome {
                                tr {
                                    td { a href={ "/jobs?outcome=" (count.name) } { (count.name) } }
                                    td.num { (number(count.jobs)) }
                                }
                            }
                        }
                    }
                }
                h2 { "DingTalk calls in " (view.dingtalk_calls.month) }
                @let calls = &view.dingtalk_calls;
                @match calls.budget {
                    Some(budget) => {
                        @let budget = i64::try_from(budget).unwrap_or(i64::MAX);
                        p { (number(calls.counted)) " of " (number(budget)) " counted calls ("
                            (calls.counted.saturating_mul(100) / budget.max(1)) " %)" }
                        (meter(calls.counted, budget))
                    },
                    None => p { (number(calls.counted)) " counted calls; no "
                                code { "[dingtalk] monthly_call_budget" } " set." },
                }
            }
        }
        @if view.paused.is_empty() {
            (queues::panel(&view.paused, &viewer, settings.read_only, view.now_ms))
        }
        p.quiet { "As of " (utc(view.now_ms)) ". " a href="/api/overview" { "JSON" } }
    };
    Ok(layout(
        "Overview",
        Section::Overview,
        &viewer,
        settings,
        body,
    ))
}

//! Pausing and resuming queues from the overview: the "Paused queues" panel with its forms,
//! the marker shown wherever a paused queue is named, and `POST /queues/{pause|resume}`.

use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::{csrf_field, when};
use crate::dashboard::Dashboard;
use crate::dashboard::access::Viewer;
use crate::dashboard::actions::pause_or_resume;
use crate::dashboard::failure::{Failure, PageError};
use crate::dashboard::filter::percent_encode;
use crate::queue::PausedQueue;

/// The pause and resume forms.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct QueueForm {
    queue: String,
    reason: String,
}

/// What a pause or resume that redirected to the overview did.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct QueueNotice {
    done: String,
    queue: String,
}

/// `POST /queues/{pause|resume}`: acts, then shows the overview with what happened.
pub(crate) async fn queue_action(
    State(dashboard): State<Dashboard>,
    Path(action): Path<String>,
    Form(form): Form<QueueForm>,
) -> Result<Response, PageError> {
    let pause = match action.as_str() {
        "pause" => true,
        "resume" => false,
        other => {
            return Err(PageError(Failure::NotFound(format!(
                "no queue action {other:?} (pause or resume)"
            ))));
        }
    };
    let change = pause_or_resume(&dashboard, &form.queue, pause, Some(&form.reason)).await?;
    let done = match (pause, change.changed) {
        (true, true) => "paused",
        (true, false) => "paused-already",
        (false, true) => "resumed",
        (false, false) => "not-paused",
    };
    let to = format!("/?done={done}&queue={}", percent_encode(&change.queue));
    Ok(Redirect::to(&to).into_response())
}

/// The line saying what a pause or resume did, if one redirected here.
pub(crate) fn notice(notice: &QueueNotice) -> Markup {
    let queue = &notice.queue;
    html! {
        @match notice.done.as_str() {
            "paused" => p.notice { "Queue " strong { (queue) } " paused: no worker claims its \
                jobs until it is resumed. Jobs already running go on to their end." },
            "paused-already" => p.notice { "Queue " strong { (queue) } " was paused already; \
                the first pause's time and reason stay." },
            "resumed" => p.notice { "Queue " strong { (queue) } " resumed: workers claim its \
                jobs again at their next look." },
            "not-paused" => p.notice { "Queue " strong { (queue) } " was not paused." },
            _ => {},
        }
    }
}

/// The marker next to a paused queue's name.
pub(crate) fn paused_marker() -> Markup {
    html! { span.badge.paused title="no worker claims this queue's jobs until it is resumed" { "paused" } }
}

/// A one-button form that pauses or resumes `queue`.
pub(crate) fn toggle_button(viewer: &Viewer, queue: &str, paused: bool) -> Markup {
    let (action, label) = if paused {
        ("resume", "Resume")
    } else {
        ("pause", "Pause")
    };
    html! {
        form.inline method="post" action={ "/queues/" (action) } {
            (csrf_field(viewer))
            input type="hidden" name="queue" value=(queue);
            button.small.secondary[!paused] type="submit" title={ (label) " queue " (queue) } { (label) }
        }
    }
}

/// The "Paused queues" panel: each paused queue with when and why, a resume button, and a
/// form to pause any queue by name (one with no jobs yet included).
pub(crate) fn panel(
    paused: &[PausedQueue],
    viewer: &Viewer,
    read_only: bool,
    now_ms: i64,
) -> Markup {
    html! {
        section.panel.pauses id="paused-queues" {
            h2 { "Paused queues" }
            @if paused.is_empty() {
                p.quiet { "No queue is paused: workers claim every queue's jobs." }
            } @else {
                table {
                    thead { tr { th { "Queue" } th { "Paused" } th { "Reason" }
                                 @if !read_only { th {} } } }
                    tbody {
                        @for pause in paused {
                            tr {
                                td {
                                    a href={ "/jobs?queue=" (percent_encode(&pause.queue)) } { (pause.queue) }
                                    " " (paused_marker())
                                }
                                td { (when(pause.paused_at, now_ms)) }
                                td { (pause.reason.as_deref().unwrap_or("")) }
                                @if !read_only { td.num { (toggle_button(viewer, &pause.queue, true)) } }
                            }
                        }
                    }
                }
            }
            @if !read_only {
                form.pause method="post" action="/queues/pause" {
                    (csrf_field(viewer))
                    label { "Queue " input type="text" name="queue" size="12" required placeholder="default"; }
                    label { "Reason " input type="text" name="reason" size="28" placeholder="DingTalk outage"; }
                    button.danger type="submit" { "Pause" }
                }
                p.quiet { "No worker process claims a paused queue's jobs (checked at every \
                    claim); running jobs go on; producers may keep enqueueing." }
            }
        }
    }
}

//! `/bulk/{retry|cancel}`: acting on every job the current filter matches. The GET shows how
//! many jobs the action would take and asks to confirm; the form then POSTs the same filter,
//! with `since` fixed to the time it meant when counted.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::{Markup, html};

use super::{Section, csrf_field, layout, number};
use crate::dashboard::Dashboard;
use crate::dashboard::access::Viewer;
use crate::dashboard::actions::{bulk, parse_action};
use crate::dashboard::failure::{Failure, PageError};
use crate::dashboard::filter::FilterForm;
use crate::queue::{BulkAction, now_ms};

pub(crate) async fn bulk_confirm(
    State(dashboard): State<Dashboard>,
    Extension(viewer): Extension<Viewer>,
    Path(action): Path<String>,
    Query(form): Query<FilterForm>,
) -> Result<Markup, PageError> {
    let action = parse_action(&action)?;
    let settings = dashboard.settings();
    if settings.read_only {
        return Err(PageError(Failure::Forbidden(
            "this dashboard is read-only ([dashboard] read_only = true)".to_owned(),
        )));
    }
    let now = now_ms();
    let fixed = form.fixed_at(now)?;
    let filter = fixed.filter(now, 0)?;
    let cap = settings.bulk_cap;
    let count = dashboard
        .queue()
        .count_for(action, &filter, cap.saturating_add(1))
        .await?;
    let count = i64::try_from(count).unwrap_or(i64::MAX);
    let taken = count.min(cap);
    let (verb, which, effect) = match action {
        BulkAction::Retry => (
            "Retry",
            "failed or cancelled",
            "Each goes back to the queue at its checkpoint with a fresh set of attempts. A job \
             that may already have sent its create reconciles first, so no approval is made twice.",
        ),
        BulkAction::Cancel => (
            "Cancel",
            "queued or running",
            "Queued jobs are cancelled at once; running ones (and queued ones that may have sent \
             their create) stop at their next checkpoint. Jobs already asked to stop are not counted.",
        ),
    };
    let body = html! {
        h1 { (verb) " jobs by filter" }
        section.panel.confirm {
            p.count {
                @if count > cap { "More than " (number(cap)) } @else { (number(count)) }
                " " (which) " jobs match: " strong { (fixed.describe()) } "."
            }
            @if count == 0 {
                p { "Nothing to do." }
                p { a href={ "/jobs?" (form.query()) } { "Back to the list" } }
            } @else {
                p { (effect) }
                @if count > cap {
                    p.notice {
                        "One request takes at most " (number(cap)) " jobs, the newest first; \
                         run it again for the rest."
                    }
                }
                form method="post" action={ "/bulk/" (action.as_str()) } {
                    (csrf_field(&viewer))
                    @for (name, value) in fixed.pairs() {
                        input type="hidden" name=(name) value=(value);
                    }
                    button class=[(action == BulkAction::Cancel).then_some("danger")] type="submit" {
                        (verb) " " (number(taken)) " jobs"
                    }
                    " " a href={ "/jobs?" (form.query()) } { "Back" }
                }
            }
        }
    };
    Ok(layout(
        &format!("{verb} jobs"),
        Section::Jobs,
        &viewer,
        settings,
        body,
    ))
}

pub(crate) async fn bulk_perform(
    State(dashboard): State<Dashboard>,
    Path(action): Path<String>,
    Form(form): Form<FilterForm>,
) -> Result<Response, PageError> {
    let action = parse_action(&action)?;
    let filter = form.filter(now_ms(), 0)?;
    let done = bulk(&dashboard, action, &filter, &form.describe()).await?;
    let notice = format!(
        "done={}&n={}&flagged={}&more={}",
        action.as_str(),
        done.acted,
        done.flagged,
        done.more
    );
    Ok(Redirect::to(&format!("/jobs?{}", form.query_and(&notice))).into_response())
}

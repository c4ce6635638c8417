//! `/api/`: what the pages show, as JSON, and the same actions. Authenticated as the pages
//! are (`Authorization: Bearer TOKEN`, or a browser session whose POSTs carry its CSRF token
//! in `X-CSRF-Token` or a `csrf` form field).
//!
//! - `GET /api/overview`, `GET /api/jobs?FILTER`, `GET /api/jobs/{id}`
//! - `GET /api/bulk/{retry|cancel}?FILTER`: how many jobs the action would take
//! - `POST /api/jobs/{id}/{retry|cancel}`, `POST /api/bulk/{retry|cancel}?FILTER`
//! - `POST /api/queues/{name}/pause[?reason=…]`, `POST /api/queues/{name}/resume`

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};

use super::Dashboard;
use super::actions::{ActionDone, QueueChange, act, bulk, parse_action, pause_or_resume};
use super::failure::{ApiError, Failure};
use super::filter::FilterForm;
use super::pages::PAGE_SIZE;
use super::view::{JobDetail, JobsPage, Overview};
use crate::queue::{BulkAction, BulkDone, JobId, now_ms};

pub(crate) async fn overview(
    State(dashboard): State<Dashboard>,
) -> Result<Json<Overview>, ApiError> {
    let view = Overview::load(dashboard.queue(), dashboard.settings(), now_ms()).await?;
    Ok(Json(view))
}

pub(crate) async fn jobs(
    State(dashboard): State<Dashboard>,
    Query(form): Query<FilterForm>,
) -> Result<Json<JobsPage>, ApiError> {
    let now = now_ms();
    let filter = form.filter(now, PAGE_SIZE)?;
    Ok(Json(
        JobsPage::load(dashboard.queue(), dashboard.settings(), &filter, now).await?,
    ))
}

pub(crate) async fn job(
    State(dashboard): State<Dashboard>,
    Path(id): Path<JobId>,
) -> Result<Json<JobDetail>, ApiError> {
    Ok(Json(
        JobDetail::load(dashboard.queue(), dashboard.settings(), id, now_ms()).await?,
    ))
}

/// How many jobs a bulk action would take.
#[derive(Debug, Serialize)]
pub(crate) struct BulkCount {
    action: BulkAction,
    /// Jobs it would take now, counted up to `cap + 1`.
    matching: u64,
    /// Jobs one request takes at most.
    cap: i64,
    /// The filter, with `since` fixed to a time (`from`): POST it to act on these jobs.
    filter: FilterForm,
}

pub(crate) async fn bulk_count(
    State(dashboard): State<Dashboard>,
    Path(action): Path<String>,
    Query(form): Query<FilterForm>,
) -> Result<Json<BulkCount>, ApiError> {
    let action = parse_action(&action)?;
    let now = now_ms();
    let fixed = form.fixed_at(now)?;
    let cap = dashboard.settings().bulk_cap;
    let matching = dashboard
        .queue()
        .count_for(action, &fixed.filter(now, 0)?, cap.saturating_add(1))
        .await?;
    Ok(Json(BulkCount {
        action,
        matching,
        cap,
        filter: fixed,
    }))
}

pub(crate) async fn job_action(
    State(dashboard): State<Dashboard>,
    Path((id, action)): Path<(JobId, String)>,
) -> Result<Json<ActionDone>, ApiError> {
    Ok(Json(act(&dashboard, id, parse_action(&action)?).await?))
}

pub(crate) async fn bulk_action(
    State(dashboard): State<Dashboard>,
    Path(action): Path<String>,
    Query(form): Query<FilterForm>,
) -> Result<Json<BulkDone>, ApiError> {
    let action = parse_action(&action)?;
    let filter = form.filter(now_ms(), 0)?;
    Ok(Json(
        bulk(&dashboard, action, &filter, &form.describe()).await?,
    ))
}

/// The optional reason of `POST /api/queues/{name}/pause`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PauseReason {
    reason: String,
}

pub(crate) async fn queue_action(
    State(dashboard): State<Dashboard>,
    Path((name, action)): Path<(String, String)>,
    Query(reason): Query<PauseReason>,
) -> Result<Json<QueueChange>, ApiError> {
    let pause = match action.as_str() {
        "pause" => true,
        "resume" => false,
        other => {
            return Err(ApiError(Failure::NotFound(format!(
                "no queue action {other:?} (pause or resume)"
            ))));
        }
    };
    Ok(Json(
        pause_or_resume(&dashboard, &name, pause, Some(&reason.reason)).await?,
    ))
}

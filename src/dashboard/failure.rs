//! Why a request failed, answered as a page for browsers or as JSON for the API.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::queue::QueueError;

/// A request the dashboard cannot answer as asked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// Bad parameters (a filter that does not parse).
    #[error("{0}")]
    BadRequest(String),
    /// No such job or page.
    #[error("{0}")]
    NotFound(String),
    /// The job is not in a status that allows the action.
    #[error("{0}")]
    Conflict(String),
    /// Not allowed: read-only, cross-origin, a bad CSRF token, a foreign host.
    #[error("{0}")]
    Forbidden(String),
    /// The token (or a session made with it) is missing or wrong.
    #[error("{0}")]
    Unauthorized(String),
    /// The database failed.
    #[error("the database failed: {0}")]
    Database(String),
}

impl From<QueueError> for Failure {
    fn from(error: QueueError) -> Self {
        match error {
            QueueError::NotFound(_) => Failure::NotFound(error.to_string()),
            QueueError::WrongStatus { .. } => Failure::Conflict(error.to_string()),
            other => {
                tracing::warn!(error = %other, "dashboard: database request failed");
                Failure::Database(other.to_string())
            }
        }
    }
}

impl Failure {
    fn status(&self) -> StatusCode {
        match self {
            Failure::BadRequest(_) => StatusCode::BAD_REQUEST,
            Failure::NotFound(_) => StatusCode::NOT_FOUND,
            Failure::Conflict(_) => StatusCode::CONFLICT,
            Failure::Forbidden(_) => StatusCode::FORBIDDEN,
            Failure::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Failure::Database(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The failure as a small HTML page.
    pub(crate) fn page(&self) -> Response {
        let body = super::pages::failure_page(self.status(), &self.to_string());
        (self.status(), body).into_response()
    }

    /// The failure as `{"error": "…"}`; a 401 says how to authenticate.
    pub(crate) fn json(&self) -> Response {
        let mut response = (
            self.status(),
            axum::Json(json!({"error": self.to_string()})),
        )
            .into_response();
        if matches!(self, Failure::Unauthorized(_)) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"approval-worker\""),
            );
        }
        response
    }
}

/// A failure answered as a page.
#[derive(Debug)]
pub(crate) struct PageError(pub(crate) Failure);

impl<E: Into<Failure>> From<E> for PageError {
    fn from(error: E) -> Self {
        PageError(error.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        self.0.page()
    }
}

/// A failure answered as JSON.
#[derive(Debug)]
pub(crate) struct ApiError(pub(crate) Failure);

impl<E: Into<Failure>> From<E> for ApiError {
    fn from(error: E) -> Self {
        ApiError(error.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.json()
    }
}

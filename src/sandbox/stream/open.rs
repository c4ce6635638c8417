//! `POST /v1.0/gateway/connections/open`: the app's credentials and subscriptions in, the
//! WebSocket endpoint and a single-use ticket out; JSON only for clients that accept it.

use axum::http::{HeaderMap, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::super::error;
use super::super::pipeline::Call;
use super::super::state::Shared;
use super::super::wire;

/// The body the official SDKs send. Unknown keys are accepted: each SDK adds its own.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpenRequest {
    client_id: String,
    client_secret: String,
    subscriptions: Vec<Subscription>,
    #[expect(dead_code, reason = "type-checked only")]
    ua: Option<String>,
    #[expect(dead_code, reason = "type-checked only")]
    local_ip: Option<String>,
    #[expect(dead_code, reason = "type-checked only")]
    extras: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
struct Subscription {
    #[serde(rename = "type")]
    kind: String,
    #[expect(
        dead_code,
        reason = "type-checked only; every EVENT subscription gets all events"
    )]
    topic: String,
}

const SUBSCRIPTION_TYPES: [&str; 3] = ["EVENT", "CALLBACK", "SYSTEM"];

/// True when `Accept` names `application/json`. DingTalk's gateway answers XML otherwise,
/// so a client that forgets the header fails here as it would there.
fn accepts_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|range| range.split(';').next())
        .any(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// `POST /v1.0/gateway/connections/open` (no access token: the body carries the secret).
pub(crate) fn open(shared: &Shared, call: &Call) -> Response {
    let json = accepts_json(&call.headers);
    let refuse = |status: u16, code: &str, message: String| {
        if json {
            error::api(status, code, message)
        } else {
            error::xml(status, "Error", &[("code", code), ("message", &message)])
        }
    };
    if !wire::is_json(&call.headers) {
        return refuse(
            400,
            "invalidParameter",
            "Content-Type must be application/json".into(),
        );
    }
    let request: OpenRequest = match wire::parse(&call.body) {
        Ok(request) => request,
        Err(message) => return refuse(400, "invalidParameter", message),
    };
    let options = &shared.options;
    if request.client_id != options.app_key || request.client_secret != options.app_secret {
        return refuse(
            401,
            "authFailed",
            "clientId or clientSecret is invalid".into(),
        );
    }
    if request.subscriptions.is_empty() {
        return refuse(
            400,
            "invalidParameter",
            "subscriptions must not be empty".into(),
        );
    }
    if let Some(bad) = request
        .subscriptions
        .iter()
        .find(|s| !SUBSCRIPTION_TYPES.contains(&s.kind.as_str()))
    {
        return refuse(
            400,
            "invalidParameter",
            format!(
                "subscription type {} must be EVENT, CALLBACK or SYSTEM",
                bad.kind
            ),
        );
    }
    let events = request.subscriptions.iter().any(|s| s.kind == "EVENT");
    let now = shared.lock().now();
    let ticket = shared.stream.issue_ticket(now, events);
    let endpoint = shared.stream.endpoint();
    if json {
        error::ok(&json!({"endpoint": endpoint, "ticket": ticket}))
    } else {
        error::xml(
            200,
            "OpenConnectionResponse",
            &[("endpoint", endpoint), ("ticket", &ticket)],
        )
    }
}

//! Injectable faults and the answer each one produces on each endpoint.

use std::fmt;
use std::time::Duration;

use axum::response::Response;

use super::error;
use super::records::Endpoint;

/// Something going wrong on purpose for the next call(s) of one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer this HTTP status with the endpoint's server-error body
    /// (`{"code":"systemError",…}`; OSS XML `InternalError`; oapi errcode -1).
    ServerError(u16),
    /// The per-app QPS throttle: HTTP 403 `Forbidden.AccessDenied.QpsLimitForAppkeyAndApi`
    /// in lowercase or PascalCase keys; oapi answers HTTP 200 errcode 90018; OSS answers
    /// 503 `SlowDown`.
    Throttle {
        /// Use the gateway's `{"Code","Message","RequestId","HostId"}` spelling.
        pascal_case: bool,
    },
    /// IP-level throttling: HTTP 403 with an HTML page that does not parse as JSON.
    ThrottlePage,
    /// Answer as if the credential were invalid: 400 `InvalidAuthentication`
    /// (oapi errcode 40014; OSS 403 `AccessDenied` "Request has expired.").
    TokenRevoked,
    /// Do not do the work; close the connection without answering.
    DropConnection,
    /// Do the work, then close the connection without answering.
    LoseResponse,
    /// Sleep this long, then behave normally.
    Latency(Duration),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::ServerError(code) => write!(f, "server_error({code})"),
            Fault::Throttle { pascal_case: false } => f.write_str("throttle"),
            Fault::Throttle { pascal_case: true } => f.write_str("throttle_pascal_case"),
            Fault::ThrottlePage => f.write_str("throttle_page"),
            Fault::TokenRevoked => f.write_str("token_revoked"),
            Fault::DropConnection => f.write_str("drop_connection"),
            Fault::LoseResponse => f.write_str("lose_response"),
            Fault::Latency(d) => write!(f, "latency({}ms)", d.as_millis()),
        }
    }
}

/// What the client sees for an answering fault (everything except drop/lose/latency).
pub(super) fn answer(endpoint: Endpoint, fault: &Fault) -> Option<Response> {
    let response = match (endpoint, fault) {
        (_, Fault::DropConnection | Fault::LoseResponse | Fault::Latency(_)) => return None,
        (_, Fault::ThrottlePage) => error::throttle_page(),

        (Endpoint::OssPut, Fault::ServerError(code)) => error::oss(
            *code,
            "InternalError",
            "We encountered an internal error. Please try again.",
        ),
        // OSS is not behind DingTalk's gateway: its own throttle is a 503 SlowDown.
        (Endpoint::OssPut, Fault::Throttle { .. }) => {
            error::oss(503, "SlowDown", "Please reduce your request rate.")
        }
        (Endpoint::OssPut, Fault::TokenRevoked) => {
            error::oss(403, "AccessDenied", "Request has expired.")
        }

        (Endpoint::UserGet, Fault::ServerError(code)) => {
            error::oapi_with_status(*code, -1, "系统繁忙")
        }
        (Endpoint::UserGet, Fault::Throttle { .. }) => throttle(Endpoint::UserGet, false),
        (Endpoint::UserGet, Fault::TokenRevoked) => error::oapi(40014, "不合法的access_token"),

        (_, Fault::ServerError(code)) => error::api(*code, "systemError", "系统错误，请稍后重试"),
        (_, Fault::Throttle { pascal_case }) => throttle(endpoint, *pascal_case),
        (_, Fault::TokenRevoked) => error::invalid_token(),
    };
    Some(response)
}

/// The per-app, per-API QPS throttle answer, as the real limiter gives it.
pub(super) fn throttle(endpoint: Endpoint, pascal_case: bool) -> Response {
    const CODE: &str = "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi";
    const MESSAGE: &str = "您的应用调用当前API超过QPS限制";
    match endpoint {
        Endpoint::UserGet => error::oapi(
            90018,
            "您的服务器调用钉钉开放平台当前接口的频率超过了应用级别的QPS限制",
        ),
        _ if pascal_case => error::gateway_pascal(403, CODE, MESSAGE),
        _ => error::api(403, CODE, MESSAGE),
    }
}

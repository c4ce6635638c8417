//! Injectable faults, their text form (`--fault ENDPOINT:KIND[:COUNT]`, the admin route),
//! and the answer each one produces on each endpoint.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use axum::response::Response;

use super::auth::BAD_APP_CREDENTIALS;
use super::error;
use super::records::{Endpoint, UnknownEndpoint};

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

/// The fault kinds as `--fault` and the admin route spell them.
const KINDS: &str = "server_error, server_error(5xx), throttle, throttle_pascal_case, \
                     throttle_page, token_revoked, drop_connection, lose_response, latency(MS)";

/// A fault spelled wrongly, naming the part that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultSpecError {
    /// Not `ENDPOINT:KIND[:COUNT]`.
    #[error("`{0}`: expected ENDPOINT:KIND[:COUNT], e.g. create_instance:server_error(503):2")]
    Shape(String),
    /// The endpoint part names no endpoint.
    #[error(transparent)]
    Endpoint(#[from] UnknownEndpoint),
    /// The kind part names no fault.
    #[error("unknown fault kind `{0}` (expected one of {KINDS})")]
    Kind(String),
    /// `server_error(N)` with N not a 5xx status.
    #[error("fault kind `{0}`: the status must be 500 to 599")]
    Status(String),
    /// `latency(N)` with N not milliseconds.
    #[error("fault kind `{0}`: expected milliseconds, e.g. latency(800) or latency(800ms)")]
    Latency(String),
    /// The count part is not a positive whole number.
    #[error("count `{0}`: expected how many calls suffer the fault, 1 or more")]
    Count(String),
}

/// Parses a kind as [`Fault`]'s `Display` writes it; `server_error` alone is a 500 and
/// `latency(N)` may leave out the `ms`.
impl FromStr for Fault {
    type Err = FaultSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fault = match s {
            "server_error" => Fault::ServerError(500),
            "throttle" => Fault::Throttle { pascal_case: false },
            "throttle_pascal_case" => Fault::Throttle { pascal_case: true },
            "throttle_page" => Fault::ThrottlePage,
            "token_revoked" => Fault::TokenRevoked,
            "drop_connection" => Fault::DropConnection,
            "lose_response" => Fault::LoseResponse,
            _ => {
                if let Some(code) = argument(s, "server_error") {
                    match code.parse::<u16>() {
                        Ok(code) if (500..=599).contains(&code) => Fault::ServerError(code),
                        _ => return Err(FaultSpecError::Status(s.to_owned())),
                    }
                } else if let Some(ms) = argument(s, "latency") {
                    let ms = ms.strip_suffix("ms").unwrap_or(ms);
                    match ms.parse::<u64>() {
                        Ok(ms) => Fault::Latency(Duration::from_millis(ms)),
                        Err(_) => return Err(FaultSpecError::Latency(s.to_owned())),
                    }
                } else {
                    return Err(FaultSpecError::Kind(s.to_owned()));
                }
            }
        };
        Ok(fault)
    }
}

/// `inner` of `name(inner)`.
fn argument<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    s.strip_prefix(name)?.strip_prefix('(')?.strip_suffix(')')
}

/// A fault for the next `count` calls of one endpoint: `ENDPOINT:KIND[:COUNT]`, e.g.
/// `create_instance:server_error(503):2` or `commit:lose_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpec {
    /// Which API suffers it.
    pub endpoint: Endpoint,
    /// What happens.
    pub fault: Fault,
    /// How many calls in a row (1 when left out).
    pub count: u32,
}

impl FromStr for FaultSpec {
    type Err = FaultSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(':');
        let (Some(endpoint), Some(kind)) = (parts.next(), parts.next()) else {
            return Err(FaultSpecError::Shape(s.to_owned()));
        };
        let count = match (parts.next(), parts.next()) {
            (None, _) => 1,
            (Some(count), None) => match count.parse::<u32>() {
                Ok(n) if n >= 1 => n,
                _ => return Err(FaultSpecError::Count(count.to_owned())),
            },
            (Some(_), Some(_)) => return Err(FaultSpecError::Shape(s.to_owned())),
        };
        Ok(FaultSpec {
            endpoint: endpoint.parse()?,
            fault: kind.parse()?,
            count,
        })
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.endpoint, self.fault, self.count)
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

        (Endpoint::UserGet | Endpoint::LegacyToken, Fault::ServerError(code)) => {
            error::oapi_with_status(*code, -1, "系统繁忙")
        }
        (Endpoint::UserGet | Endpoint::LegacyToken, Fault::Throttle { .. }) => {
            throttle(endpoint, false)
        }
        (Endpoint::UserGet, Fault::TokenRevoked) => error::oapi(40014, "不合法的access_token"),
        (Endpoint::LegacyToken, Fault::TokenRevoked) => error::oapi(40001, BAD_APP_CREDENTIALS),

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
        Endpoint::UserGet | Endpoint::LegacyToken => error::oapi(
            90018,
            "您的服务器调用钉钉开放平台当前接口的频率超过了应用级别的QPS限制",
        ),
        _ if pascal_case => error::gateway_pascal(403, CODE, MESSAGE),
        _ => error::api(403, CODE, MESSAGE),
    }
}

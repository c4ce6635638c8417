//! Turning a DingTalk HTTP answer into a value or a classified `DingTalkError` (both error-body
//! spellings, non-JSON pages, oapi errcodes); the code tables of dingtalk-api.md §2.1 and §3.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::call::Host;
use super::error::{DingTalkError, ErrorClass};

/// Pause after per-second throttling codes: DingTalk suggests sleeping 1 s.
const QPS_PAUSE: Duration = Duration::from_secs(1);
/// Pause after a template's automation rules throttled instance creation ("slower").
const AUTOFLOW_PAUSE: Duration = Duration::from_secs(5);
/// Pause after the per-IP block (HTML page or `status:1111` without `wait`): DingTalk bans
/// the IP for five minutes.
const IP_BLOCK_PAUSE: Duration = Duration::from_secs(300);
/// Non-JSON bodies are quoted in error messages only this far, to keep logs readable.
const BODY_EXCERPT_CHARS: usize = 200;

/// The parts of an HTTP answer that decide its meaning.
pub(super) struct Answer<'a> {
    pub(crate) endpoint: &'static str,
    pub(crate) host: Host,
    /// A call authenticated by the app key and secret (token, stream open): a rejected
    /// credential there is a configuration error, not a stale token.
    pub(crate) credentials_call: bool,
    pub(crate) status: StatusCode,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: &'a [u8],
}

/// Parses a successful answer into `T`, or turns a failed one into a classified error.
pub(super) fn decode<T: DeserializeOwned>(answer: &Answer<'_>) -> Result<T, DingTalkError> {
    if !answer.status.is_success() {
        return Err(error_from(answer));
    }
    let decode_error = |detail: String| DingTalkError::Decode {
        endpoint: answer.endpoint,
        status: answer.status.as_u16(),
        detail,
    };
    match answer.host {
        Host::Api => serde_json::from_slice(answer.body).map_err(|e| decode_error(e.to_string())),
        Host::Oapi => {
            // oapi reports failures inside a 200 body, so look at errcode before the payload.
            let value: Value =
                serde_json::from_slice(answer.body).map_err(|e| decode_error(e.to_string()))?;
            if let Some(object) = value.as_object() {
                let errcode = field(object, &["errcode"]).map(code_text);
                if errcode.as_deref().is_some_and(|code| code != "0") {
                    return Err(error_from(answer));
                }
            }
            serde_json::from_value(value).map_err(|e| decode_error(e.to_string()))
        }
    }
}

/// Builds the error for a failed answer: any non-2xx, or an oapi errcode other than 0.
fn error_from(answer: &Answer<'_>) -> DingTalkError {
    let status = answer.status.as_u16();
    let header_request_id = answer
        .headers
        .get("x-acs-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let parsed = serde_json::from_slice::<Value>(answer.body).ok();
    let (code, message, request_id, class) = match parsed.as_ref().and_then(Value::as_object) {
        Some(object) => {
            let code = field(object, &["code", "errcode"]).map(code_text);
            let mut message = field(object, &["message", "errmsg"])
                .map(code_text)
                .unwrap_or_default();
            if let Some(scopes) = required_scopes(object) {
                message.push_str(&format!(" (required scopes: {scopes})"));
            }
            let request_id = field(object, &["requestid", "request_id"]).map(code_text);
            let class = match &code {
                Some(code) => classify_code(answer, code),
                None => classify_codeless(answer, Some(object)),
            };
            let code = code.unwrap_or_else(|| "-".to_owned());
            (code, message, request_id, class)
        }
        None => {
            let message = excerpt(answer.body);
            (
                "-".to_owned(),
                message,
                None,
                classify_codeless(answer, None),
            )
        }
    };
    let class = if answer.credentials_call && class == ErrorClass::TokenInvalid {
        // Such a call rejecting us means the app key or secret is wrong.
        ErrorClass::Permanent
    } else {
        class
    };
    DingTalkError::Api {
        endpoint: answer.endpoint,
        status,
        code,
        message,
        request_id: request_id.filter(|id| !id.is_empty()).or(header_request_id),
        class,
    }
}

/// Class of an error that names a code (new-style string code or oapi errcode).
fn classify_code(answer: &Answer<'_>, code: &str) -> ErrorClass {
    if let Ok(errcode) = code.parse::<i64>()
        && let Some(class) = classify_errcode(errcode)
    {
        return class;
    }
    let is = |name: &str| code.eq_ignore_ascii_case(name);
    let throttled = |retry_after| ErrorClass::Throttled { retry_after };
    if is("InvalidAuthentication") || is("accesstoken.expired") || is("Unauthorized") {
        ErrorClass::TokenInvalid
    } else if is("Forbidden.AccessDenied.QpsLimitForAppkeyAndApi")
        || is("Forbidden.AccessDenied.QpsLimitForApi")
        || is("failure.operation.requestTooFast")
        || is("request.too.frequent")
        || is("invokeFrequency")
        || is("qps.exceed.limit")
        || is("system.busy")
    {
        throttled(QPS_PAUSE)
    } else if is("Forbidden.AccessDenied.QpmLimitForAppkeyAndApi") {
        throttled(until_next_minute(SystemTime::now()))
    } else if is("autoflowLikeTriggerRateLimited") {
        throttled(AUTOFLOW_PAUSE)
    } else if is("Forbidden.AccessDenied.ApiCountLimitForOrg") {
        ErrorClass::QuotaExhausted
    } else {
        classify_status(answer, true)
    }
}

/// Class of a legacy oapi errcode, if the table knows it.
fn classify_errcode(errcode: i64) -> Option<ErrorClass> {
    match errcode {
        40014 | 42001 | 40001 => Some(ErrorClass::TokenInvalid),
        90018 | 90002 | 90006 | 90010..=90014 | -1 => Some(ErrorClass::Throttled {
            retry_after: QPS_PAUSE,
        }),
        90020 => Some(ErrorClass::QuotaExhausted),
        _ => None,
    }
}

/// Class of an error without a code: the IP-block body of dingtalk-api.md §2, else the status.
fn classify_codeless(answer: &Answer<'_>, object: Option<&Map<String, Value>>) -> ErrorClass {
    if let Some(object) = object
        && field(object, &["status"]).and_then(Value::as_i64) == Some(1111)
    {
        let wait = field(object, &["wait"]).and_then(Value::as_u64);
        return ErrorClass::Throttled {
            retry_after: wait.map_or(IP_BLOCK_PAUSE, Duration::from_secs),
        };
    }
    classify_status(answer, object.is_some())
}

/// Class from the HTTP status alone; `json` tells whether the body was a JSON object.
fn classify_status(answer: &Answer<'_>, json: bool) -> ErrorClass {
    let status = answer.status;
    if status == StatusCode::TOO_MANY_REQUESTS {
        let retry_after = answer
            .headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(QPS_PAUSE, Duration::from_secs);
        ErrorClass::Throttled { retry_after }
    } else if status == StatusCode::UNAUTHORIZED {
        ErrorClass::TokenInvalid
    } else if status == StatusCode::FORBIDDEN && !json {
        // DingTalk's IP-level block answers with an HTML page instead of its JSON error.
        ErrorClass::Throttled {
            retry_after: IP_BLOCK_PAUSE,
        }
    } else if status.is_server_error() {
        ErrorClass::Transient
    } else {
        ErrorClass::Permanent
    }
}

/// Time until the next full minute, for per-minute quotas (1..=60 s).
fn until_next_minute(now: SystemTime) -> Duration {
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    Duration::from_secs(60 - secs % 60)
}

/// Looks a key up case-insensitively: DingTalk uses `code` and `Code` for the same thing.
fn field<'a>(object: &'a Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|name| {
        object
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    })
}

/// A code or message as text, whether it came as a JSON string or number.
fn code_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// `AccessDeniedDetail.requiredScopes`, which names the permission the app lacks.
fn required_scopes(object: &Map<String, Value>) -> Option<String> {
    let detail = field(object, &["AccessDeniedDetail"])?.as_object()?;
    let scopes = field(detail, &["requiredScopes"])?.as_array()?;
    let names: Vec<String> = scopes.iter().map(code_text).collect();
    (!names.is_empty()).then(|| names.join(", "))
}

/// The start of a non-JSON body on one line, for the error message.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some((cut, _)) = words.char_indices().nth(BODY_EXCERPT_CHARS) {
        words.truncate(cut);
        words.push('…');
    }
    if words.is_empty() {
        "(empty body)".to_owned()
    } else {
        words
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn answer_with<'a>(
        host: Host,
        status: u16,
        headers: &'a HeaderMap,
        body: &'a str,
    ) -> Answer<'a> {
        Answer {
            endpoint: "test/endpoint",
            host,
            credentials_call: false,
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: body.as_bytes(),
        }
    }

    fn error(host: Host, status: u16, body: &str) -> DingTalkError {
        let headers = HeaderMap::new();
        decode::<Value>(&answer_with(host, status, &headers, body)).unwrap_err()
    }

    fn class(status: u16, body: &str) -> ErrorClass {
        error(Host::Api, status, body).class()
    }

    fn code_body(code: &str) -> String {
        format!(r#"{{"code":"{code}","message":"m","requestid":"R"}}"#)
    }

    const ONE_SEC: ErrorClass = ErrorClass::Throttled {
        retry_after: Duration::from_secs(1),
    };

    #[test]
    fn lowercase_body_is_parsed() {
        let err = error(
            Host::Api,
            400,
            r#"{"code":"InvalidAuthentication","requestid":"30EE","message":"不合法的access_token"}"#,
        );
        let DingTalkError::Api {
            code,
            message,
            request_id,
            status,
            class,
            ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(
            (
                code.as_str(),
                message.as_str(),
                request_id.as_deref(),
                *status,
                *class
            ),
            (
                "InvalidAuthentication",
                "不合法的access_token",
                Some("30EE"),
                400,
                ErrorClass::TokenInvalid
            )
        );
        assert_eq!(
            err.to_string(),
            "test/endpoint: HTTP 400 InvalidAuthentication: 不合法的access_token (request id 30EE)"
        );
    }

    #[test]
    fn pascal_case_body_is_parsed_and_keeps_required_scopes() {
        let err = error(
            Host::Api,
            403,
            r#"{"Code":"Forbidden.AccessDenied.AccessTokenPermissionDenied","Message":"没有调用该接口的权限","RequestId":"REQ-9","HostId":"api.dingtalk.com","AccessDeniedDetail":{"requiredScopes":["Storage.File.Write"]}}"#,
        );
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert_eq!(
            err.to_string(),
            "test/endpoint: HTTP 403 Forbidden.AccessDenied.AccessTokenPermissionDenied: 没有调用该接口的权限 (required scopes: Storage.File.Write) (request id REQ-9)"
        );
    }

    #[test]
    fn request_id_falls_back_to_the_header() {
        let mut headers = HeaderMap::new();
        headers.insert("x-acs-request-id", HeaderValue::from_static("HDR-1"));
        let err = decode::<Value>(&answer_with(
            Host::Api,
            400,
            &headers,
            r#"{"code":"paramError","message":"bad"}"#,
        ))
        .unwrap_err();
        assert!(
            matches!(err, DingTalkError::Api { request_id: Some(ref id), .. } if id == "HDR-1")
        );
    }

    #[test]
    fn token_invalid_codes() {
        for code in [
            "InvalidAuthentication",
            "accesstoken.expired",
            "Unauthorized",
        ] {
            assert_eq!(
                class(400, &code_body(code)),
                ErrorClass::TokenInvalid,
                "{code}"
            );
        }
        assert_eq!(class(401, ""), ErrorClass::TokenInvalid);
        assert_eq!(class(401, "{}"), ErrorClass::TokenInvalid);
    }

    #[test]
    fn throttle_codes() {
        for code in [
            "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi",
            "Forbidden.AccessDenied.QpsLimitForApi",
            "failure.operation.requestTooFast",
            "request.too.frequent",
            "invokeFrequency",
            "qps.exceed.limit",
            "system.busy",
        ] {
            assert_eq!(class(403, &code_body(code)), ONE_SEC, "{code}");
        }
        assert_eq!(
            class(400, &code_body("autoflowLikeTriggerRateLimited")),
            ErrorClass::Throttled {
                retry_after: Duration::from_secs(5)
            }
        );
        let ErrorClass::Throttled { retry_after } = class(
            403,
            &code_body("Forbidden.AccessDenied.QpmLimitForAppkeyAndApi"),
        ) else {
            panic!("QPM limit must throttle")
        };
        assert!((1..=60).contains(&retry_after.as_secs()), "{retry_after:?}");
    }

    #[test]
    fn next_minute_is_computed_from_the_clock() {
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(until_next_minute(at(120)), Duration::from_secs(60));
        assert_eq!(until_next_minute(at(179)), Duration::from_secs(1));
        assert_eq!(until_next_minute(at(150)), Duration::from_secs(30));
    }

    #[test]
    fn ip_block_and_429() {
        assert_eq!(
            class(403, "<html><body>访问被拒绝</body></html>"),
            ErrorClass::Throttled {
                retry_after: Duration::from_secs(300)
            }
        );
        assert_eq!(
            class(
                403,
                r#"{"status":1111,"wait":5,"source":"x5","punish":"deny","uuid":"u"}"#
            ),
            ErrorClass::Throttled {
                retry_after: Duration::from_secs(5)
            }
        );
        assert_eq!(
            class(403, r#"{"status":1111,"punish":"deny"}"#),
            ErrorClass::Throttled {
                retry_after: Duration::from_secs(300)
            }
        );
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        let err = decode::<Value>(&answer_with(Host::Api, 429, &headers, "slow down")).unwrap_err();
        assert_eq!(
            err.class(),
            ErrorClass::Throttled {
                retry_after: Duration::from_secs(7)
            }
        );
        assert_eq!(class(429, ""), ONE_SEC);
    }

    #[test]
    fn quota_transient_and_permanent() {
        assert_eq!(
            class(
                403,
                &code_body("Forbidden.AccessDenied.ApiCountLimitForOrg")
            ),
            ErrorClass::QuotaExhausted
        );
        for status in [500, 502, 503, 504] {
            assert_eq!(
                class(status, &code_body("systemError")),
                ErrorClass::Transient
            );
            assert_eq!(
                class(status, "<html>Bad Gateway</html>"),
                ErrorClass::Transient
            );
        }
        for code in [
            "invalidClientIdOrSecret",
            "Forbidden.AccessDenied.AccessTokenPermissionDenied",
            "Forbidden.AccessDenied.IpNotInWhiteList",
            "formConverterError",
            "paramError",
        ] {
            assert_eq!(
                class(400, &code_body(code)),
                ErrorClass::Permanent,
                "{code}"
            );
        }
        assert_eq!(class(404, "not found"), ErrorClass::Permanent);
        assert_eq!(class(403, &code_body("someNewCode")), ErrorClass::Permanent);
        assert_eq!(class(403, "{}"), ErrorClass::Permanent);
    }

    #[test]
    fn non_json_error_bodies_become_api_errors_with_an_excerpt() {
        let err = error(
            Host::Api,
            502,
            "<html>\n  <h1>502 Bad Gateway</h1>\n</html>",
        );
        assert_eq!(
            err.to_string(),
            "test/endpoint: HTTP 502 -: <html> <h1>502 Bad Gateway</h1> </html>"
        );
        let long = "x".repeat(1000);
        let DingTalkError::Api { message, .. } = error(Host::Api, 500, &long) else {
            panic!()
        };
        assert_eq!(message.chars().count(), BODY_EXCERPT_CHARS + 1);
    }

    #[test]
    fn token_call_rejection_is_permanent() {
        let headers = HeaderMap::new();
        let mut answer = answer_with(Host::Api, 401, &headers, r#"{"code":"Unauthorized"}"#);
        answer.credentials_call = true;
        let err = decode::<Value>(&answer).unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent);
    }

    #[test]
    fn oapi_errcodes_number_or_string() {
        let headers = HeaderMap::new();
        let ok: Value = decode(&answer_with(
            Host::Oapi,
            200,
            &headers,
            r#"{"errcode":"0","errmsg":"ok","result":{"unionid":"u"}}"#,
        ))
        .unwrap();
        assert_eq!(ok["result"]["unionid"], "u");
        let ok: Value = decode(&answer_with(
            Host::Oapi,
            200,
            &headers,
            r#"{"errcode":0,"errmsg":"ok"}"#,
        ))
        .unwrap();
        assert_eq!(ok["errmsg"], "ok");

        let oapi = |errcode: &str| {
            let body = format!(r#"{{"errcode":{errcode},"errmsg":"msg","request_id":"rid"}}"#);
            error(Host::Oapi, 200, &body)
        };
        for errcode in ["40014", "42001", "40001", "\"40014\""] {
            assert_eq!(oapi(errcode).class(), ErrorClass::TokenInvalid, "{errcode}");
        }
        for errcode in ["90018", "90002", "90006", "90010", "90014", "-1"] {
            assert_eq!(oapi(errcode).class(), ONE_SEC, "{errcode}");
        }
        assert_eq!(oapi("90020").class(), ErrorClass::QuotaExhausted);
        assert_eq!(oapi("33012").class(), ErrorClass::Permanent);
        assert_eq!(
            oapi("33012").to_string(),
            "test/endpoint: HTTP 200 33012: msg (request id rid)"
        );
        assert!(!oapi("33012").may_have_been_processed());
    }

    #[test]
    fn unparsable_success_is_a_decode_error() {
        let err = error(Host::Api, 200, "<html>captive portal</html>");
        assert!(
            matches!(err, DingTalkError::Decode { status: 200, .. }),
            "{err:?}"
        );
    }
}

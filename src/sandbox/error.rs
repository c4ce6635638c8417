//! Response bodies in the exact shapes DingTalk's gateway, its oapi host and OSS send.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::ids;

/// A refusal on its way out of a validation helper; boxed because `Response` is large.
pub(super) type Refusal = Box<Response>;

const JSON_UTF8: &str = "application/json;charset=utf-8";

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn with_body(code: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A DingTalk JSON answer carrying the gateway's request/trace id headers.
fn dingtalk(code: StatusCode, request_id: &str, body: &Value) -> Response {
    let mut response = with_body(code, JSON_UTF8, body.to_string());
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response
            .headers_mut()
            .insert("x-acs-request-id", value.clone());
        response.headers_mut().insert("x-acs-trace-id", value);
    }
    response
}

/// A successful api.dingtalk.com answer.
pub(super) fn ok(body: &Value) -> Response {
    dingtalk(StatusCode::OK, &ids::request_id(), body)
}

/// The usual api.dingtalk.com error: `{"code","requestid","message"}`.
pub(super) fn api(code: u16, error_code: &str, message: impl Into<String>) -> Response {
    let request_id = ids::request_id();
    let body = json!({"code": error_code, "requestid": request_id, "message": message.into()});
    dingtalk(status(code), &request_id, &body)
}

/// The gateway-level PascalCase error: `{"Code","Message","RequestId","HostId"}`.
pub(super) fn gateway_pascal(code: u16, error_code: &str, message: impl Into<String>) -> Response {
    let request_id = ids::request_id();
    let body = json!({
        "Code": error_code,
        "Message": message.into(),
        "RequestId": request_id,
        "HostId": "api.dingtalk.com",
    });
    dingtalk(status(code), &request_id, &body)
}

/// 400 `InvalidAuthentication`, for an unknown or expired token.
pub(super) fn invalid_token() -> Response {
    api(400, "InvalidAuthentication", "不合法的access_token")
}

/// An oapi.dingtalk.com answer: HTTP 200 whatever happened, `errcode` tells.
pub(super) fn oapi(errcode: i64, errmsg: &str) -> Response {
    oapi_with_status(200, errcode, errmsg)
}

/// An oapi error body under a chosen HTTP status (used for injected 5xx).
pub(super) fn oapi_with_status(code: u16, errcode: i64, errmsg: &str) -> Response {
    let request_id = ids::random_hex(13);
    let body = json!({"errcode": errcode, "errmsg": errmsg, "request_id": request_id});
    dingtalk(status(code), &request_id, &body)
}

/// A successful oapi answer: `{"errcode":0,"errmsg":"ok","request_id",..fields}`.
pub(super) fn oapi_ok(fields: Value) -> Response {
    let request_id = ids::random_hex(13);
    let mut body = json!({"errcode": 0, "errmsg": "ok", "request_id": request_id});
    if let (Some(out), Value::Object(extra)) = (body.as_object_mut(), fields) {
        out.extend(extra);
    }
    dingtalk(StatusCode::OK, &request_id, &body)
}

/// An OSS XML error: `<Error><Code/><Message/><RequestId/><HostId/></Error>`.
pub(super) fn oss(code: u16, error_code: &str, message: &str) -> Response {
    let request_id = ids::oss_request_id();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\n  <Code>{error_code}</Code>\n  \
         <Message>{}</Message>\n  <RequestId>{request_id}</RequestId>\n  \
         <HostId>sandbox.oss-cn-zhangjiakou.aliyuncs.com</HostId>\n</Error>\n",
        xml_escape(message)
    );
    let mut response = with_body(status(code), "application/xml", body);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-oss-request-id", value);
    }
    response
        .headers_mut()
        .insert(header::SERVER, HeaderValue::from_static("AliyunOSS"));
    response
}

/// An XML answer `<root><key>value</key>…</root>`: what DingTalk's Stream gateway sends a
/// client whose `Accept` does not ask for JSON (the element names are a guess).
pub(super) fn xml(code: u16, root: &str, fields: &[(&str, &str)]) -> Response {
    let mut body = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{root}>");
    for (key, value) in fields {
        body.push_str(&format!("<{key}>{}</{key}>", xml_escape(value)));
    }
    body.push_str(&format!("</{root}>\n"));
    let mut response = with_body(status(code), "application/xml;charset=utf-8", body);
    if let Ok(value) = HeaderValue::from_str(&ids::request_id()) {
        response.headers_mut().insert("x-acs-request-id", value);
    }
    response
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The HTML page served under IP-level throttling; deliberately not JSON.
pub(super) fn throttle_page() -> Response {
    const PAGE: &str = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>访问被拒绝</title></head>\
        <body><h1>403 Forbidden</h1><p>您的访问过于频繁，请稍后再试。</p>\
        <p>Your IP has been temporarily blocked because of too many requests.</p></body></html>\n";
    with_body(StatusCode::FORBIDDEN, "text/html; charset=utf-8", PAGE)
}

/// The gateway's answer for a path it does not know.
pub(super) fn not_found() -> Response {
    api(
        404,
        "InvalidAction.NotFound",
        "Specified api is not found, please check your url and method.",
    )
}

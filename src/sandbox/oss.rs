//! The OSS side: `PUT /oss/{objectKey}` with header-signature (V1) checks, streamed hashing.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use md5::{Digest, Md5};

use super::error::{self, Refusal};
use super::ids;
use super::listener::ConnTag;
use super::pipeline::{self, Arrival, Gate};
use super::records::Endpoint;
use super::state::{Shared, Upload};

/// Bodies up to this size are kept for `Sandbox::file_content`; larger ones only hashed.
const MAX_KEPT_BYTES: u64 = 64 * 1024 * 1024;

const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your key and signing method.";

/// Axum handler for `PUT /oss/{objectKey}`.
pub(super) async fn put(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnTag>,
    request: Request,
) -> Response {
    pipeline::detached(async move { handle(&shared, &conn, request).await }).await
}

async fn handle(shared: &Shared, conn: &ConnTag, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let mut arrival = Arrival::begin(shared, Endpoint::OssPut, &parts);
    let verdict = match arrival.gate(shared).await {
        Gate::Drop => return arrival.drop_connection(shared, conn),
        Gate::Answer(response) => Err(Box::new(response)),
        Gate::Proceed => check(shared, &parts),
    };
    // Even a refused PUT is read to the end: closing on an unread body makes clients
    // see a broken pipe instead of the XML error OSS sends.
    let received = receive(body, verdict.is_ok(), shared.options.oss_bytes_per_sec).await;
    arrival.received.body_len = received.upload.len;
    arrival.received.body_md5 = Some(received.upload.md5.clone());
    let response = match (verdict, received.error) {
        (Err(response), _) => *response,
        (Ok(_), Some(problem)) => error::oss(400, "IncompleteBody", &problem),
        (Ok(upload_key), None) => store(shared, &upload_key, received.upload),
    };
    arrival.finish(shared, conn, response)
}

/// Everything OSS decides from the request line and headers; yields the uploadKey.
fn check(shared: &Shared, parts: &Parts) -> Result<String, Refusal> {
    let headers = &parts.headers;
    if !headers.contains_key(header::CONTENT_LENGTH) {
        return Err(error::oss(
            411,
            "MissingContentLength",
            "You must provide the Content-Length HTTP header.",
        )
        .into());
    }
    let object_key = parts.uri.path().strip_prefix("/oss/").unwrap_or_default();
    let state = shared.lock();
    let Some(ticket) = state
        .objects
        .get(object_key)
        .and_then(|key| state.tickets.get(key))
    else {
        return Err(error::oss(
            403,
            "AccessDenied",
            "The bucket you access does not belong to you.",
        )
        .into());
    };
    if let Some(problem) = signature_problem(headers, ticket) {
        tracing::debug!("sandbox: oss signature mismatch: {problem}");
        return Err(error::oss(
            403,
            "SignatureDoesNotMatch",
            &format!("{SIGNATURE_MISMATCH} ({problem})"),
        )
        .into());
    }
    if state.now() >= ticket.expires_at {
        return Err(error::oss(403, "AccessDenied", "Request has expired.").into());
    }
    Ok(ticket.upload_key.clone())
}

/// V1 header signatures cover the signed headers plus Content-Type, Content-MD5 and every
/// `x-oss-*` header, so any of those added (or a signed one changed) breaks the signature.
fn signature_problem(headers: &HeaderMap, ticket: &super::state::Ticket) -> Option<String> {
    let signed: Vec<String> = ticket
        .signed_headers
        .keys()
        .map(|name| name.to_ascii_lowercase())
        .collect();
    for (name, value) in &ticket.signed_headers {
        let sent: Vec<&HeaderValue> = headers
            .get_all(name.to_ascii_lowercase().as_str())
            .iter()
            .collect();
        match sent.as_slice() {
            [only] if only.as_bytes() == value.as_bytes() => {}
            [] => return Some(format!("signed header {name} is missing")),
            _ => return Some(format!("signed header {name} differs from the ticket")),
        }
    }
    for name in headers.keys() {
        let name = name.as_str();
        let covered = name == "content-type" || name == "content-md5" || name.starts_with("x-oss-");
        if covered && !signed.iter().any(|s| s == name) {
            return Some(format!("header {name} is not part of the signature"));
        }
        if name == "x-acs-dingtalk-access-token" {
            return Some("a DingTalk access token must not be sent to OSS".to_owned());
        }
    }
    None
}

/// A streamed body: length and MD5 always, bytes only when wanted and small enough.
struct Receipt {
    upload: Upload,
    error: Option<String>,
}

async fn receive(body: Body, keep: bool, bytes_per_sec: Option<u64>) -> Receipt {
    let started = tokio::time::Instant::now();
    let mut stream = body.into_data_stream();
    let mut hasher = Md5::new();
    let mut len: u64 = 0;
    let mut kept = keep.then(BytesMut::new);
    let mut error = None;
    while let Some(chunk) = stream.next().await {
        let chunk: Bytes = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                error = Some(format!(
                    "You did not send the number of bytes specified by the Content-Length HTTP header ({e})."
                ));
                break;
            }
        };
        hasher.update(&chunk);
        len += chunk.len() as u64;
        if len > MAX_KEPT_BYTES {
            kept = None;
        } else if let Some(buffer) = kept.as_mut() {
            buffer.extend_from_slice(&chunk);
        }
        // Reading no faster than the rate holds the client back through TCP's window.
        if let Some(rate) = bytes_per_sec.filter(|rate| *rate > 0) {
            let due = std::time::Duration::from_secs_f64(len as f64 / rate as f64);
            tokio::time::sleep_until(started + due).await;
        }
    }
    Receipt {
        upload: Upload {
            len,
            md5: hex::encode(hasher.finalize()),
            content: kept.map(BytesMut::freeze),
        },
        error,
    }
}

/// Checks the bytes against the ticket's pre-check values and keeps them.
fn store(shared: &Shared, upload_key: &str, upload: Upload) -> Response {
    let mut state = shared.lock();
    let Some(ticket) = state.tickets.get_mut(upload_key) else {
        return error::oss(
            403,
            "AccessDenied",
            "The bucket you access does not belong to you.",
        );
    };
    if ticket
        .pre_size
        .is_some_and(|size| u64::try_from(size).ok() != Some(upload.len))
    {
        return error::oss(
            400,
            "InvalidDigest",
            "The size of the uploaded data does not match the size given in preCheckParam.",
        );
    }
    if ticket
        .pre_md5
        .as_deref()
        .is_some_and(|md5| md5 != upload.md5)
    {
        return error::oss(
            400,
            "InvalidDigest",
            "The MD5 of the uploaded data does not match the md5 given in preCheckParam.",
        );
    }
    let etag = format!("\"{}\"", upload.md5.to_uppercase());
    ticket.upload = Some(upload);
    drop(state);

    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    if let Ok(value) = HeaderValue::from_str(&ids::oss_request_id()) {
        headers.insert("x-oss-request-id", value);
    }
    headers.insert(header::SERVER, HeaderValue::from_static("AliyunOSS"));
    response
}

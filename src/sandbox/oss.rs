//! The OSS side: `PUT /oss/{objectKey}` of a whole file or (with `partNumber` and
//! `uploadId`) of one part of a multipart upload, with header-signature (V1) checks and
//! streamed hashing.

use std::collections::BTreeMap;
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
use super::multipart::{MAX_PART_NUMBER, Multipart};
use super::pipeline::{self, Arrival, Gate};
use super::records::Endpoint;
use super::state::{self, Shared, Upload};

/// Uploads up to this size (a body, or a multipart upload's parts in all) are kept for
/// `Sandbox::file_content`; larger ones only hashed.
pub(super) const MAX_KEPT_BYTES: u64 = 64 * 1024 * 1024;
/// OSS's largest part.
const MAX_PART_BYTES: u64 = 5 * 1024 * 1024 * 1024;

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
    arrival.received.part_number = arrival
        .received
        .query
        .get("partNumber")
        .and_then(|n| n.parse().ok());
    let verdict = match arrival.gate(shared).await {
        Gate::Drop => return arrival.drop_connection(shared, conn),
        Gate::Answer(response) => Err(Box::new(response)),
        Gate::Proceed => check(shared, &parts, &arrival.received.query),
    };
    let keep = match &verdict {
        Ok(Target::Object { .. }) => Some(MAX_KEPT_BYTES),
        Ok(Target::Part { keep, .. }) => *keep,
        Err(_) => None,
    };
    // Even a refused PUT is read to the end: closing on an unread body makes clients
    // see a broken pipe instead of the XML error OSS sends.
    let received = receive(body, keep, shared.options.oss_bytes_per_sec).await;
    arrival.received.body_len = received.upload.len;
    arrival.received.body_md5 = Some(received.upload.md5.clone());
    let response = match (verdict, received.error) {
        (Err(response), _) => *response,
        (Ok(_), Some(problem)) => error::oss(400, "IncompleteBody", &problem),
        (Ok(Target::Object { upload_key }), None) => store(shared, &upload_key, received.upload),
        (
            Ok(Target::Part {
                upload_key,
                part_number,
                ..
            }),
            None,
        ) => store_part(shared, &upload_key, part_number, received.upload),
    };
    arrival.finish(shared, conn, response)
}

/// Where an accepted PUT's bytes go.
enum Target {
    /// The one object of an uploadInfos ticket.
    Object { upload_key: String },
    /// One part of a multipart upload; `keep` is how many of its bytes may be kept.
    Part {
        upload_key: String,
        part_number: u32,
        keep: Option<u64>,
    },
}

/// Everything OSS decides from the request line and headers.
fn check(
    shared: &Shared,
    parts: &Parts,
    query: &BTreeMap<String, String>,
) -> Result<Target, Refusal> {
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
    let Some(upload_key) = state.objects.get(object_key) else {
        return Err(error::oss(
            403,
            "AccessDenied",
            "The bucket you access does not belong to you.",
        )
        .into());
    };
    if query.contains_key("partNumber") || query.contains_key("uploadId") {
        return check_part(&state, upload_key, headers, query);
    }
    let Some(ticket) = state.tickets.get(upload_key) else {
        // A multipart upload's object: its signatures cover a part's URL, not this one.
        return Err(signature_mismatch(
            "the URL lacks the partNumber and uploadId it was signed with",
        ));
    };
    if let Some(problem) = signature_problem(headers, &ticket.signed_headers) {
        return Err(signature_mismatch(&problem));
    }
    if state.now() >= ticket.expires_at {
        return Err(expired());
    }
    Ok(Target::Object {
        upload_key: ticket.upload_key.clone(),
    })
}

/// The checks of a part PUT (`?partNumber=N&uploadId=ID`).
fn check_part(
    state: &state::State,
    upload_key: &str,
    headers: &HeaderMap,
    query: &BTreeMap<String, String>,
) -> Result<Target, Refusal> {
    let Some(part_number) = query
        .get("partNumber")
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| (1..=MAX_PART_NUMBER).contains(n))
    else {
        return Err(error::oss(
            400,
            "InvalidArgument",
            "Part number must be an integer between 1 and 10000, inclusive.",
        )
        .into());
    };
    let Some(upload) = live_upload(state, upload_key)
        .filter(|upload| query.get("uploadId") == Some(&upload.upload_id))
    else {
        return Err(no_such_upload());
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let Some(signature) = authorization.and_then(|a| upload.signatures.get(a)) else {
        return Err(signature_mismatch(
            "Authorization is missing or was not issued for this upload",
        ));
    };
    if signature.part_number != part_number {
        return Err(signature_mismatch(&format!(
            "the signature was issued for part {}",
            signature.part_number
        )));
    }
    if let Some(problem) = signature_problem(headers, &signature.signed_headers) {
        return Err(signature_mismatch(&problem));
    }
    if state.now() >= signature.expires_at {
        return Err(expired());
    }
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or_default();
    if length > MAX_PART_BYTES {
        return Err(error::oss(
            400,
            "EntityTooLarge",
            "Your proposed upload exceeds the maximum allowed size.",
        )
        .into());
    }
    Ok(Target::Part {
        upload_key: upload_key.to_owned(),
        part_number,
        keep: upload.keep_budget(part_number),
    })
}

/// The multipart upload behind `upload_key` while parts may still be PUT.
fn live_upload<'a>(state: &'a state::State, upload_key: &str) -> Option<&'a Multipart> {
    state
        .multiparts
        .get(upload_key)
        .filter(|upload| !upload.committed)
}

fn no_such_upload() -> Refusal {
    error::oss(
        404,
        "NoSuchUpload",
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
    )
    .into()
}

fn signature_mismatch(problem: &str) -> Refusal {
    tracing::debug!("sandbox: oss signature mismatch: {problem}");
    error::oss(
        403,
        "SignatureDoesNotMatch",
        &format!("{SIGNATURE_MISMATCH} ({problem})"),
    )
    .into()
}

fn expired() -> Refusal {
    error::oss(403, "AccessDenied", "Request has expired.").into()
}

/// V1 header signatures cover the signed headers plus Content-Type, Content-MD5 and every
/// `x-oss-*` header, so any of those added (or a signed one changed) breaks the signature.
fn signature_problem(
    headers: &HeaderMap,
    signed_headers: &BTreeMap<String, String>,
) -> Option<String> {
    let signed: Vec<String> = signed_headers
        .keys()
        .map(|name| name.to_ascii_lowercase())
        .collect();
    for (name, value) in signed_headers {
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

/// Reads `body` to its end, keeping up to `keep` bytes of it (nothing when over, or when
/// `None`).
async fn receive(body: Body, keep: Option<u64>, bytes_per_sec: Option<u64>) -> Receipt {
    let started = tokio::time::Instant::now();
    let mut stream = body.into_data_stream();
    let mut hasher = Md5::new();
    let mut len: u64 = 0;
    let limit = keep.unwrap_or_default();
    let mut kept = keep.map(|_| BytesMut::new());
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
        if len > limit {
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
    let md5 = upload.md5.clone();
    ticket.upload = Some(upload);
    drop(state);
    stored(&md5)
}

/// Keeps a part's bytes (replacing an earlier PUT of the same part, as OSS does).
fn store_part(shared: &Shared, upload_key: &str, part_number: u32, upload: Upload) -> Response {
    let mut state = shared.lock();
    // Completed while the bytes streamed in: OSS no longer knows the upload.
    let Some(multipart) = state
        .multiparts
        .get_mut(upload_key)
        .filter(|upload| !upload.committed)
    else {
        return *no_such_upload();
    };
    let md5 = upload.md5.clone();
    multipart.store(part_number, upload);
    drop(state);
    stored(&md5)
}

/// OSS's answer to a stored PUT: 200, no body, the MD5 as an uppercase quoted ETag.
fn stored(md5: &str) -> Response {
    let etag = format!("\"{}\"", md5.to_uppercase());
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

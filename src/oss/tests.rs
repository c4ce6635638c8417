//! The PUT against fake OSS servers: headers sent, answers classified, files changing.

use super::error::xml_text;
use super::*;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap as AxumHeaders, StatusCode};
use axum::response::IntoResponse;
use futures_util::StreamExt;
use md5::{Digest, Md5};
use std::collections::BTreeSet;
use std::sync::Mutex;

const SIGNED_QUERY: &str = "Signature=SIG-SECRET-123";

/// What the fake OSS received.
#[derive(Clone)]
pub(super) struct Received {
    pub(super) headers: AxumHeaders,
    pub(super) body: Bytes,
}

pub(super) type Log = Arc<Mutex<Vec<Received>>>;

/// A fake OSS answering every PUT with `status` and `body` after recording it; its ETag is
/// the MD5 of what it received, as OSS's is for a simple PUT.
pub(super) async fn fake_oss(status: u16, body: &'static str) -> (String, Log) {
    let log: Log = Arc::default();
    let recorder = Arc::clone(&log);
    let app = Router::new().fallback(move |headers: AxumHeaders, body_bytes: Bytes| {
        let recorder = Arc::clone(&recorder);
        async move {
            let etag = format!("\"{}\"", md5_hex(&body_bytes).to_uppercase());
            recorder.lock().unwrap().push(Received {
                headers,
                body: body_bytes,
            });
            let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
            response
                .headers_mut()
                .insert("etag", HeaderValue::from_str(&etag).unwrap());
            response
                .headers_mut()
                .insert("x-oss-request-id", HeaderValue::from_static("HDR-REQ"));
            response
        }
    });
    (serve(app).await, log)
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/bucket/object.pdf?{SIGNED_QUERY}")
}

pub(super) fn ticket_headers_fixture() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("Authorization".to_owned(), "OSS id:signature=".to_owned()),
        (
            "x-oss-date".to_owned(),
            "Tue, 01 Sep 2026 00:00:00 GMT".to_owned(),
        ),
    ])
}

pub(super) fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

pub(super) fn temp_file(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut file, bytes).unwrap();
    file
}

pub(super) fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// PUTs all of `data`, which `file` holds, with no ticket headers.
async fn put_data(
    url: &str,
    file: &Path,
    data: &[u8],
    request_timeout: Duration,
) -> Result<PutReceipt, OssError> {
    oss(request_timeout)
        .put_file(
            url,
            &BTreeMap::new(),
            file,
            data.len() as u64,
            None,
            None,
            &SentBytes::default(),
        )
        .await
}

pub(super) fn oss(request_timeout: Duration) -> Oss {
    Oss::new(Duration::from_secs(2), request_timeout).unwrap()
}

#[tokio::test]
async fn sends_exactly_the_ticket_headers_and_the_bytes() {
    let (url, log) = fake_oss(200, "").await;
    let data = content(200 * 1024 + 7);
    let file = temp_file(&data);
    let sent = SentBytes::default();
    let receipt = oss(Duration::from_secs(5))
        .put_file(
            &url,
            &ticket_headers_fixture(),
            file.path(),
            data.len() as u64,
            None,
            Some(&md5_hex(&data).to_uppercase()),
            &sent,
        )
        .await
        .unwrap();
    assert_eq!(
        sent.get(),
        data.len() as u64,
        "the caller's count of bytes sent"
    );
    assert_eq!(
        receipt,
        PutReceipt {
            etag: Some(format!("\"{}\"", md5_hex(&data).to_uppercase())),
            bytes: data.len() as u64,
            md5: md5_hex(&data),
        }
    );

    let received = log.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let headers = &received[0].headers;
    let names: BTreeSet<&str> = headers.keys().map(|k| k.as_str()).collect();
    // Host and Content-Length are transport; Accept is added by reqwest and not signed.
    assert_eq!(
        names,
        BTreeSet::from([
            "accept",
            "authorization",
            "content-length",
            "host",
            "x-oss-date"
        ])
    );
    assert_eq!(headers["authorization"], "OSS id:signature=");
    assert_eq!(headers["x-oss-date"], "Tue, 01 Sep 2026 00:00:00 GMT");
    assert_eq!(headers["accept"], "*/*");
    assert_eq!(headers["content-length"], data.len().to_string().as_str());
    assert!(
        headers.get("transfer-encoding").is_none(),
        "must not be chunked"
    );
    assert!(headers.get("content-type").is_none());
    assert_eq!(received[0].body.as_ref(), data.as_slice());
}

#[tokio::test]
async fn empty_file_is_sent_with_zero_length() {
    let (url, log) = fake_oss(200, "").await;
    let file = temp_file(b"");
    let receipt = oss(Duration::from_secs(5))
        .put_file(
            &url,
            &BTreeMap::new(),
            file.path(),
            0,
            None,
            None,
            &SentBytes::default(),
        )
        .await
        .unwrap();
    assert_eq!(receipt.bytes, 0);
    assert_eq!(receipt.md5, md5_hex(b""));
    let received = log.lock().unwrap().clone();
    assert_eq!(received[0].headers["content-length"], "0");
}

#[tokio::test]
async fn a_file_of_the_wrong_size_is_not_sent() {
    let (url, log) = fake_oss(200, "").await;
    let file = temp_file(&content(100));
    let err = oss(Duration::from_secs(5))
        .put_file(
            &url,
            &ticket_headers_fixture(),
            file.path(),
            101,
            None,
            None,
            &SentBytes::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, OssError::FileChanged { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(log.lock().unwrap().is_empty());

    let missing = oss(Duration::from_secs(5))
        .put_file(
            &url,
            &BTreeMap::new(),
            Path::new("/nonexistent/x.pdf"),
            1,
            None,
            None,
            &SentBytes::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(missing, OssError::Io { .. }), "{missing:?}");
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_fifo_swapped_in_after_the_ticket_is_not_streamed_as_an_empty_file() {
    let (url, log) = fake_oss(200, "").await;
    let dir = tempfile::tempdir().unwrap();
    let path = std::fs::canonicalize(dir.path()).unwrap().join("pipe.pdf");
    use rustix::fs::{CWD, FileType, Mode};
    rustix::fs::mknodat(CWD, &path, FileType::Fifo, Mode::RUSR | Mode::WUSR, 0).unwrap();

    // A FIFO measures 0 bytes: a ticket for an empty file is the one its size would match.
    let err = oss(Duration::from_secs(5))
        .put_file(
            &url,
            &BTreeMap::new(),
            &path,
            0,
            None,
            None,
            &SentBytes::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OssError::FileChanged { detail, .. } if detail.contains("not a regular file")),
        "{err:?}"
    );
    assert!(log.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_streamed_file_written_since_its_ticket_is_not_sent() {
    let (url, log) = fake_oss(200, "").await;
    let data = content(1000);
    let file = temp_file(&data);
    let at_ticket = std::fs::metadata(file.path()).unwrap().modified().unwrap();
    std::fs::File::options()
        .write(true)
        .open(file.path())
        .unwrap()
        .set_modified(at_ticket + Duration::from_secs(1))
        .unwrap();
    let err = oss(Duration::from_secs(5))
        .put_file(
            &url,
            &BTreeMap::new(),
            file.path(),
            1000,
            Some(at_ticket),
            None,
            &SentBytes::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OssError::FileChanged { detail, .. } if detail.contains("written to since")),
        "{err:?}"
    );
    assert!(log.lock().unwrap().is_empty());
}

#[tokio::test]
async fn content_that_differs_from_the_expected_md5_is_file_changed() {
    let (url, log) = fake_oss(200, "").await;
    let data = content(1000);
    let err = put_with_ticket_md5(&url, &data, &md5_hex(b"something else"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OssError::FileChanged { detail, .. }
            if *detail == format!("read with MD5 {}, hashed as {}", md5_hex(&data), md5_hex(b"something else"))),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_streamed_file_is_hashed_as_it_is_sent_and_checked_against_the_etag() {
    let (url, log) = fake_oss(200, "").await;
    let data = content(3 * 256 * 1024 + 5);
    let file = temp_file(&data);
    let receipt = put_data(&url, file.path(), &data, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(receipt.md5, md5_hex(&data));
    assert_eq!(log.lock().unwrap()[0].body.as_ref(), data.as_slice());
}

#[tokio::test]
async fn an_etag_other_than_the_md5_sent_is_damage_on_the_way_and_transient() {
    let app = Router::new().fallback(|body: Bytes| async move {
        let mut damaged = body.to_vec();
        damaged[0] ^= 1;
        let etag = format!("\"{}\"", md5_hex(&damaged).to_uppercase());
        let mut response = StatusCode::OK.into_response();
        response
            .headers_mut()
            .insert("etag", HeaderValue::from_str(&etag).unwrap());
        response
    });
    let url = serve(app).await;
    let data = content(1000);
    let file = temp_file(&data);
    let err = put_data(&url, file.path(), &data, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OssError::Transient { detail, sent: true, .. }
            if detail.contains("OSS stored MD5") && detail.contains(&md5_hex(&data))),
        "{err:?}"
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn an_etag_that_is_not_an_md5_is_accepted_and_an_md5_etag_is_compared() {
    assert_eq!(
        etag_md5("\"5EB63BBBE01EEED093CB22BB8F5ACDC3\""),
        Some("5EB63BBBE01EEED093CB22BB8F5ACDC3")
    );
    assert_eq!(
        etag_md5("W/\"5eb63bbbe01eeed093cb22bb8f5acdc3\""),
        Some("5eb63bbbe01eeed093cb22bb8f5acdc3")
    );
    // Multipart uploads and other stores give ETags that say nothing about the content.
    assert_eq!(etag_md5("\"5EB63BBBE01EEED093CB22BB8F5ACDC3-3\""), None);
    assert_eq!(etag_md5("\"abc\""), None);

    let app = Router::new().fallback(|body: Bytes| async move {
        drop(body);
        let mut response = StatusCode::OK.into_response();
        response
            .headers_mut()
            .insert("etag", HeaderValue::from_static("\"opaque-etag-1\""));
        response
    });
    let url = serve(app).await;
    let data = content(1000);
    let file = temp_file(&data);
    let receipt = oss(Duration::from_secs(5))
        .put_file(
            &url,
            &BTreeMap::new(),
            file.path(),
            1000,
            None,
            None,
            &SentBytes::default(),
        )
        .await
        .unwrap();
    assert_eq!(receipt.etag.as_deref(), Some("\"opaque-etag-1\""));
}

#[tokio::test]
async fn an_invalid_digest_answer_is_file_changed_when_what_was_read_is_not_what_was_hashed() {
    let (url, _log) = fake_oss(400, INVALID_DIGEST).await;
    let err = put_with_ticket_md5(&url, &content(10), &md5_hex(b"the content when hashed"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OssError::FileChanged { detail, .. }
            if detail == "OSS InvalidDigest: The MD5 of the uploaded data does not match."),
        "{err:?}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn an_invalid_digest_answer_for_the_hashed_content_is_transient() {
    let err = put_against(400, INVALID_DIGEST).await;
    assert!(
        matches!(&err, OssError::Transient { detail, status: Some(400), .. }
            if detail == "OSS InvalidDigest: The MD5 of the uploaded data does not match."),
        "{err:?}"
    );
    assert!(err.is_retryable());
}

const INVALID_DIGEST: &str = "<Error><Code>InvalidDigest</Code><Message>The MD5 of the uploaded data does not match.</Message></Error>";

#[tokio::test]
async fn a_file_rewritten_in_place_while_streaming_is_file_changed() {
    // Same size, other bytes, never truncated: only the modification time tells.
    let err = put_while_the_server_tampers(|victim| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(victim)
            .unwrap();
        std::io::Write::write_all(&mut file, &vec![0_u8; 16 << 20]).unwrap();
    })
    .await;
    assert!(
        matches!(&err, OssError::FileChanged { detail, .. } if detail.contains("written to while uploading")),
        "{err:?}"
    );
}

/// PUTs a 16 MiB file to a fake OSS that runs `tamper` on it once the first chunk arrived
/// (the reader is then at most a few chunks ahead), then reads the rest; the PUT's error.
async fn put_while_the_server_tampers(tamper: fn(&Path)) -> OssError {
    let data = content(16 << 20);
    let file = temp_file(&data);
    let victim = file.path().to_owned();
    let app = Router::new().fallback(move |body: Body| {
        let victim = victim.clone();
        async move {
            let mut stream = body.into_data_stream();
            let mut tampered = false;
            while let Some(Ok(_)) = stream.next().await {
                if !tampered {
                    tamper(&victim);
                    tampered = true;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            StatusCode::OK
        }
    });
    let url = serve(app).await;
    put_data(&url, file.path(), &data, Duration::from_secs(5))
        .await
        .unwrap_err()
}

async fn put_against(status: u16, body: &'static str) -> OssError {
    let (url, _log) = fake_oss(status, body).await;
    let data = content(10);
    put_with_ticket_md5(&url, &data, &md5_hex(&data))
        .await
        .unwrap_err()
}

/// PUTs `data` from a file with the ticket's headers, as for a ticket asked for with
/// `ticket_md5`.
async fn put_with_ticket_md5(
    url: &str,
    data: &[u8],
    ticket_md5: &str,
) -> Result<PutReceipt, OssError> {
    let file = temp_file(data);
    oss(Duration::from_secs(5))
        .put_file(
            url,
            &ticket_headers_fixture(),
            file.path(),
            data.len() as u64,
            None,
            Some(ticket_md5),
            &SentBytes::default(),
        )
        .await
}

#[tokio::test]
async fn expired_signature_is_recognised() {
    let err = put_against(
        403,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Error>
  <Code>AccessDenied</Code>
  <Message>Request has expired.</Message>
  <RequestId>5C3D9175B6FC201293AD****</RequestId>
  <HostId>bucket.oss-cn-zhangjiakou.aliyuncs.com</HostId>
  <Expires>2026-09-01T00:15:00.000Z</Expires>
</Error>"#,
    )
    .await;
    assert!(
        matches!(&err, OssError::Expired { status: 403, code, message }
            if code == "AccessDenied" && message == "Request has expired."),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert!(err.is_expired());
    assert_eq!(err.http_status(), Some(403));

    let skewed = put_against(
        403,
        "<Error><Code>RequestTimeTooSkewed</Code><Message>The difference between the request time and the current time is too large.</Message></Error>",
    )
    .await;
    assert!(matches!(skewed, OssError::Expired { .. }), "{skewed:?}");
}

#[tokio::test]
async fn other_4xx_are_rejected_with_code_and_request_id() {
    let err = put_against(
        403,
        "<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided.</Message><RequestId>REQ-1</RequestId></Error>",
    )
    .await;
    assert_eq!(
        err.to_string(),
        "OSS PUT: HTTP 403 SignatureDoesNotMatch: The request signature we calculated does not match the signature you provided. (request id REQ-1)"
    );
    assert!(!err.is_retryable());

    let denied = put_against(
        403,
        "<Error><Code>AccessDenied</Code><Message>You have no right to access this object.</Message></Error>",
    )
    .await;
    assert!(
        matches!(&denied, OssError::Rejected { request_id: Some(id), .. } if id == "HDR-REQ"),
        "{denied:?}"
    );
}

#[tokio::test]
async fn server_errors_are_transient() {
    let err = put_against(
        503,
        "<Error><Code>ServiceUnavailable</Code><Message>busy</Message></Error>",
    )
    .await;
    assert!(
        matches!(
            &err,
            OssError::Transient {
                status: Some(503),
                sent: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    let html = put_against(502, "<html>Bad Gateway</html>").await;
    assert!(html.is_retryable());
}

#[tokio::test]
async fn a_silent_server_times_out_as_transient() {
    let app = Router::new().fallback(|body: Bytes| async move {
        drop(body);
        tokio::time::sleep(Duration::from_secs(30)).await;
        StatusCode::OK
    });
    let url = serve(app).await;
    let data = content(10);
    let file = temp_file(&data);
    let started = std::time::Instant::now();
    let err = oss(Duration::from_millis(300))
        .put_file(
            &url,
            &BTreeMap::new(),
            file.path(),
            10,
            None,
            None,
            &SentBytes::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            OssError::Transient {
                status: None,
                sent: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_outlives_the_request_timeout() {
    // The server stops reading for 200 ms after every 2.5 MiB, twelve times: the whole upload
    // takes longer than the 2 s timeout, while each stall leaves 1.8 s of room for a loaded
    // machine (a CI run once took 0.9 s more than a 600 ms pause to resume a stalled upload).
    // Server and client run on separate threads so one's slow poll does not stall the other.
    const PAUSE_EVERY_BYTES: usize = 5 << 19;
    let app = Router::new().fallback(|body: Body| async move {
        let mut stream = body.into_data_stream();
        let mut total = 0usize;
        let mut next_pause = PAUSE_EVERY_BYTES;
        while let Some(chunk) = stream.next().await {
            total += chunk.unwrap().len();
            if total >= next_pause {
                tokio::time::sleep(Duration::from_millis(200)).await;
                next_pause += PAUSE_EVERY_BYTES;
            }
        }
        (StatusCode::OK, total.to_string())
    });
    let url = serve(app).await;
    let data = content(32 << 20);
    let file = temp_file(&data);
    let started = std::time::Instant::now();
    let receipt = put_data(&url, file.path(), &data, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(receipt.bytes, 32 << 20);
    assert!(
        started.elapsed() > Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_file_that_shrinks_while_streaming_is_file_changed() {
    let err = put_while_the_server_tampers(|victim| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(victim)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
    })
    .await;
    assert!(
        matches!(&err, OssError::FileChanged { detail, .. } if detail.contains("while uploading")),
        "{err:?}"
    );
}

#[tokio::test]
async fn connect_errors_are_not_sent_and_hide_the_signed_url() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let data = content(10);
    let file = temp_file(&data);
    let err = oss(Duration::from_secs(2))
        .put_file(
            &format!("http://{closed}/o?{SIGNED_QUERY}"),
            &BTreeMap::new(),
            file.path(),
            10,
            None,
            None,
            &SentBytes::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, OssError::Transient { sent: false, .. }),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("SIG-SECRET"));
}

#[test]
fn bad_ticket_headers_are_rejected_before_sending() {
    let headers = BTreeMap::from([("bad header".to_owned(), "v".to_owned())]);
    assert!(matches!(
        ticket_headers(&headers, 1),
        Err(OssError::Rejected { status: 0, .. })
    ));
}

#[test]
fn xml_fields_are_extracted_and_unescaped() {
    let xml = "<Error><Code>X</Code><Message> a &lt;b&gt; &amp; c </Message></Error>";
    assert_eq!(xml_text(xml, "Code").as_deref(), Some("X"));
    assert_eq!(xml_text(xml, "Message").as_deref(), Some("a <b> & c"));
    assert_eq!(xml_text(xml, "RequestId"), None);
    assert_eq!(xml_text("<Code>unterminated", "Code"), None);
}

//! The PUT of one part of a file sent in parts: exactly its bytes, counted on top of the
//! earlier parts', and a file too short for the part refused before anything is sent.

use std::time::Duration;

use super::tests::{content, fake_oss, md5_hex, oss, temp_file, ticket_headers_fixture};
use super::{OssError, PutReceipt, SentBytes};

/// PUTs `len` bytes from `offset` of a file holding `data` to `url`, counting into `sent`.
async fn put_span(
    url: &str,
    data: &[u8],
    offset: u64,
    len: u64,
    sent: &SentBytes,
) -> Result<PutReceipt, OssError> {
    let file = temp_file(data);
    oss(Duration::from_secs(5))
        .put_part(
            url,
            &ticket_headers_fixture(),
            file.path(),
            data.len() as u64,
            None,
            offset,
            len,
            sent,
        )
        .await
}

#[tokio::test]
async fn a_part_sends_exactly_its_span_with_the_ticket_headers_and_counts_on_from_earlier_parts() {
    let (url, log) = fake_oss(200, "").await;
    let data = content(700 * 1024);
    let sent = SentBytes::starting_at(256 * 1024);
    let receipt = put_span(&url, &data, 256 * 1024, 256 * 1024, &sent)
        .await
        .unwrap();

    let middle = &data[256 * 1024..512 * 1024];
    let received = log.lock().unwrap().remove(0);
    assert_eq!(received.body.as_ref(), middle);
    assert_eq!(received.headers["authorization"], "OSS id:signature=");
    assert_eq!(received.headers["content-length"], "262144");
    assert_eq!(
        receipt.md5,
        md5_hex(middle),
        "the part's MD5, checked against the ETag"
    );
    assert_eq!(sent.get(), 512 * 1024, "the earlier part and this one");
}

#[tokio::test]
async fn the_last_part_carries_what_is_left_of_the_file() {
    let (url, log) = fake_oss(200, "").await;
    let data = content(600 * 1024);
    put_span(&url, &data, 512 * 1024, 88 * 1024, &SentBytes::default())
        .await
        .unwrap();
    assert_eq!(log.lock().unwrap()[0].body.as_ref(), &data[512 * 1024..]);
}

#[tokio::test]
async fn a_part_beyond_the_files_end_is_refused_as_a_changed_file_before_sending() {
    let (url, log) = fake_oss(200, "").await;
    let data = content(300 * 1024);
    let error = put_span(&url, &data, 256 * 1024, 256 * 1024, &SentBytes::default())
        .await
        .unwrap_err();
    assert!(matches!(error, OssError::FileChanged { .. }), "{error:?}");
    assert!(error.to_string().contains("too short"), "{error}");
    assert!(log.lock().unwrap().is_empty(), "nothing sent");
}

//! DingPan's multipart upload (dingtalk-api.md §5.7): opening an upload of a large file and
//! asking for the signed OSS targets of its parts. The parts' PUTs and the commit are the
//! same as a simple upload's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::DingTalk;
use super::call::{Host, Request};
use super::error::{DingTalkError, MULTIPART_QUERY_ENDPOINT};
use super::storage::UploadInfoRequest;
use super::wire::{HeaderSignatureInfo, UploadInfoOption};

/// Most part numbers one `multiPartUploadInfos/query` may ask for.
pub const MAX_PARTS_PER_QUERY: usize = 30;
/// Most parts one upload may have.
pub const MAX_PARTS: u64 = 10_000;
/// Smallest part OSS accepts, except the last.
pub const MIN_PART_BYTES: u64 = 100 * 1024;

/// Where and how to PUT one part. Stored in the job checkpoint (snake_case), not the wire
/// shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartTicket {
    /// Which part (from 1).
    pub part_number: u32,
    /// PUT targets, preferred first.
    pub resource_urls: Vec<String>,
    /// Headers to send with the PUT, verbatim.
    pub headers: BTreeMap<String, String>,
    /// Lifetime of the signature from the moment it was issued.
    pub(crate) expiration_secs: u64,
}

/// §5.7 init request: the same option as a simple upload's ticket.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InitBody<'a> {
    option: UploadInfoOption<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InitResponse {
    upload_key: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QueryBody<'a> {
    upload_key: &'a str,
    part_numbers: &'a [u32],
    option: QueryOption,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QueryOption {
    prefer_intranet: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryResponse {
    #[serde(default)]
    multipart_header_signature_infos: Vec<PartSignature>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartSignature {
    part_number: u32,
    header_signature_info: Option<HeaderSignatureInfo>,
}

impl DingTalk {
    /// §5.7 step 1: opens a multipart upload of `file` in the approval space for the user
    /// `union_id`, who must have been granted upload right; returns its uploadKey.
    pub(crate) async fn multipart_init(
        &self,
        space_id: i64,
        union_id: &str,
        file: &UploadInfoRequest,
    ) -> Result<String, DingTalkError> {
        let body = InitBody {
            option: UploadInfoOption::for_file(file),
        };
        // A repeated init only opens an upload nobody uses: harmless, so retried freely.
        let request = Request::post(
            super::error::MULTIPART_INIT_ENDPOINT,
            Host::Api,
            format!("/v1.0/storage/spaces/{space_id}/files/multiPartUploadInfos/init"),
            &body,
            true,
        )?
        .query("unionId", union_id);
        let response: InitResponse = self.call(&request).await?;
        Ok(response.upload_key)
    }

    /// §5.7 step 2: the signed targets of `parts` (at most [`MAX_PARTS_PER_QUERY`]) of the
    /// upload `upload_key`, one per part asked for, in the order asked.
    pub(crate) async fn multipart_urls(
        &self,
        union_id: &str,
        upload_key: &str,
        parts: &[u32],
    ) -> Result<Vec<PartTicket>, DingTalkError> {
        let body = QueryBody {
            upload_key,
            part_numbers: parts,
            option: QueryOption {
                prefer_intranet: false,
            },
        };
        let request = Request::post(
            MULTIPART_QUERY_ENDPOINT,
            Host::Api,
            "/v1.0/storage/spaces/files/multiPartUploadInfos/query",
            &body,
            true,
        )?
        .query("unionId", union_id);
        let response: QueryResponse = self.call(&request).await?;
        let missing = |detail: String| DingTalkError::Decode {
            endpoint: MULTIPART_QUERY_ENDPOINT,
            status: 200,
            detail,
        };
        let mut answered = response.multipart_header_signature_infos;
        let mut tickets = Vec::with_capacity(parts.len());
        for &part_number in parts {
            let found = answered
                .iter()
                .position(|signature| signature.part_number == part_number)
                .map(|at| answered.swap_remove(at))
                .and_then(|signature| signature.header_signature_info)
                .filter(|info| !info.resource_urls.is_empty())
                .ok_or_else(|| missing(format!("no signed target for part {part_number}")))?;
            tickets.push(PartTicket {
                part_number,
                resource_urls: found.resource_urls,
                headers: found.headers,
                expiration_secs: found.expiration_seconds,
            });
        }
        Ok(tickets)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::dingtalk::fake::{Fake, Reply};
    use serde_json::json;

    fn file() -> UploadInfoRequest {
        UploadInfoRequest {
            name: "scan.tiff".into(),
            size: 300 * 1024 * 1024,
            md5_hex: None,
        }
    }

    #[tokio::test]
    async fn init_sends_the_pre_check_to_the_spaces_multipart_path_and_returns_the_key() {
        let fake = Fake::start(|_| {
            Reply::json(
                200,
                json!({"uploadKey": "MUK-1", "storageDriver": "DINGTALK"}),
            )
        })
        .await;
        let key = fake
            .client()
            .multipart_init(77, "u1", &file())
            .await
            .unwrap();
        assert_eq!(key, "MUK-1");
        let seen = fake.last();
        assert_eq!(seen.method, "POST");
        assert_eq!(
            seen.path,
            "/v1.0/storage/spaces/77/files/multiPartUploadInfos/init"
        );
        assert_eq!(seen.query, "unionId=u1");
        seen.assert_api_json_headers();
        assert_eq!(
            seen.body_text(),
            r#"{"option":{"storageDriver":"DINGTALK","preCheckParam":{"size":314572800,"parentId":"0","name":"scan.tiff"},"preferIntranet":false}}"#
        );
    }

    #[tokio::test]
    async fn the_query_path_has_no_space_and_answers_are_matched_to_the_parts_asked() {
        let fake = Fake::start(|_| {
            Reply::json(
                200,
                json!({"multipartHeaderSignatureInfos": [
                    {"partNumber": 5, "headerSignatureInfo": {"resourceUrls": ["http://127.0.0.1:1/p5"],
                        "headers": {"Authorization": "OSS a:5"}, "expirationSeconds": 900}},
                    {"partNumber": 4, "headerSignatureInfo": {"resourceUrls": ["http://127.0.0.1:1/p4"],
                        "headers": {"Authorization": "OSS a:4"}, "expirationSeconds": 600, "region": "SHANGHAI"}}
                ]}),
            )
        })
        .await;
        let tickets = fake
            .client()
            .multipart_urls("u1", "MUK-1", &[4, 5])
            .await
            .unwrap();
        assert_eq!(
            tickets
                .iter()
                .map(|t| (
                    t.part_number,
                    t.resource_urls[0].as_str(),
                    t.expiration_secs
                ))
                .collect::<Vec<_>>(),
            [
                (4, "http://127.0.0.1:1/p4", 600),
                (5, "http://127.0.0.1:1/p5", 900)
            ]
        );
        assert_eq!(tickets[0].headers["Authorization"], "OSS a:4");
        let seen = fake.last();
        assert_eq!(
            seen.path,
            "/v1.0/storage/spaces/files/multiPartUploadInfos/query"
        );
        assert_eq!(seen.query, "unionId=u1");
        assert_eq!(
            seen.body_text(),
            r#"{"uploadKey":"MUK-1","partNumbers":[4,5],"option":{"preferIntranet":false}}"#
        );
    }

    #[tokio::test]
    async fn an_answer_missing_a_part_asked_for_is_a_decode_error_naming_it() {
        let fake = Fake::start(|_| {
            Reply::json(
                200,
                json!({"multipartHeaderSignatureInfos": [
                    {"partNumber": 1, "headerSignatureInfo": {"resourceUrls": ["http://127.0.0.1:1/p1"], "expirationSeconds": 900}}
                ]}),
            )
        })
        .await;
        let error = fake
            .client()
            .multipart_urls("u1", "MUK-1", &[1, 2])
            .await
            .unwrap_err();
        assert!(matches!(error, DingTalkError::Decode { .. }), "{error:?}");
        assert!(error.to_string().contains("part 2"), "{error}");
    }
}

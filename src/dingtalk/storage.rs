//! DingPan storage calls: the OSS upload ticket (§5.4) and the commit that turns an uploaded
//! object into a dentry (§5.6).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::DingTalk;
use super::call::{Host, Request};
use super::error::{COMMIT_ENDPOINT, DingTalkError};
use super::wire::{
    CommitBody, CommitOption, CommitResponse, PreCheckParam, UploadInfoBody, UploadInfoOption,
    UploadInfoResponse,
};

/// The file a ticket is requested for; DingTalk pre-checks name, size and, when given, MD5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfoRequest {
    /// File name with extension, as it will appear in the approval.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex MD5 of the content; optional in the API, and then OSS takes whatever
    /// content the PUT sends.
    pub md5_hex: Option<String>,
}

impl<'a> UploadInfoOption<'a> {
    /// DingPan's pre-check of `file` in the space root, on DingTalk's own storage.
    pub(super) fn for_file(file: &'a UploadInfoRequest) -> Self {
        UploadInfoOption {
            storage_driver: "DINGTALK",
            pre_check_param: PreCheckParam {
                md5: file.md5_hex.as_deref(),
                size: file.size,
                parent_id: "0",
                name: &file.name,
            },
            prefer_intranet: false,
        }
    }
}

/// Where and how to PUT the bytes. Stored in the job checkpoint (snake_case), not the wire shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadTicket {
    /// Needed by [`DingTalk::commit`].
    pub(crate) upload_key: String,
    /// PUT targets, preferred first.
    pub resource_urls: Vec<String>,
    /// Headers to send with the PUT, verbatim.
    pub headers: BTreeMap<String, String>,
    /// Lifetime of the signature from the moment the ticket was issued.
    pub(crate) expiration_secs: u64,
}

/// A committed file. Stored in the job checkpoint (snake_case), not the wire shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dentry {
    /// The fileId referenced by the DDAttachment value.
    pub(crate) id: String,
    /// The space holding the file (a string in the commit response).
    pub(crate) space_id: String,
    /// Final name (AUTO_RENAME may have changed it).
    pub(crate) name: String,
    /// Size in bytes.
    pub(crate) size: u64,
    /// Suffix without dot, e.g. `pdf`; empty for files without one.
    pub(crate) extension: String,
}

impl DingTalk {
    /// §5.4: asks for an upload ticket in the approval space for the user `union_id`, who must
    /// have been granted upload right by [`DingTalk::approval_space`].
    pub async fn upload_info(
        &self,
        space_id: i64,
        union_id: &str,
        file: &UploadInfoRequest,
    ) -> Result<UploadTicket, DingTalkError> {
        let body = UploadInfoBody {
            protocol: "HEADER_SIGNATURE",
            multipart: false,
            option: UploadInfoOption::for_file(file),
        };
        let request = Request::post(
            "storage/uploadInfos/query",
            Host::Api,
            format!("/v1.0/storage/spaces/{space_id}/files/uploadInfos/query"),
            &body,
            true,
        )?
        .query("unionId", union_id);
        let response: UploadInfoResponse = self.call(&request).await?;
        let missing = |what: &str| DingTalkError::Decode {
            endpoint: request.endpoint,
            status: 200,
            detail: format!("upload ticket without {what}"),
        };
        let info = response
            .header_signature_info
            .ok_or_else(|| missing("headerSignatureInfo"))?;
        if info.resource_urls.is_empty() {
            return Err(missing("resourceUrls"));
        }
        Ok(UploadTicket {
            upload_key: response.upload_key,
            resource_urls: info.resource_urls,
            headers: info.headers,
            expiration_secs: info.expiration_seconds,
        })
    }

    /// §5.6: commits the uploaded object as `name` in the space root. Not idempotent: after an
    /// error with [`DingTalkError::may_have_been_processed`] the file may exist already.
    pub(crate) async fn commit(
        &self,
        space_id: i64,
        union_id: &str,
        upload_key: &str,
        name: &str,
        size: u64,
    ) -> Result<Dentry, DingTalkError> {
        let body = CommitBody {
            upload_key,
            name,
            parent_id: "0",
            option: CommitOption {
                size,
                conflict_strategy: "AUTO_RENAME",
                app_properties: [],
            },
        };
        let request = Request::post(
            COMMIT_ENDPOINT,
            Host::Api,
            format!("/v1.0/storage/spaces/{space_id}/files/commit"),
            &body,
            false,
        )?
        .query("unionId", union_id);
        let response: CommitResponse = self.call(&request).await?;
        let dentry = response.dentry;
        Ok(Dentry {
            id: dentry.id,
            space_id: dentry.space_id,
            name: dentry.name,
            size: dentry.size,
            extension: dentry.extension,
        })
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
            name: "报销单据-2026-001.pdf".into(),
            size: 45,
            md5_hex: Some("0cc175b9c0f1b6a831c399e269772661".into()),
        }
    }

    #[tokio::test]
    async fn upload_info_wire_shape() {
        let fake = Fake::start(|_| {
            Reply::json(
                200,
                json!({
                    "uploadKey": "UK-1",
                    "storageDriver": "DINGTALK",
                    "protocol": "HEADER_SIGNATURE",
                    "headerSignatureInfo": {
                        "resourceUrls": ["http://127.0.0.1:1/oss/a", "http://127.0.0.1:1/oss/b"],
                        "headers": {"Authorization": "OSS id:sig", "x-oss-date": "Tue, 01 Sep 2026 00:00:00 GMT"},
                        "expirationSeconds": 900,
                        "region": "ZHANGJIAKOU",
                        "internalResourceUrls": []
                    }
                }),
            )
        })
        .await;
        let ticket = fake
            .client()
            .upload_info(3996960664, "union 1+", &file())
            .await
            .unwrap();
        assert_eq!(ticket.upload_key, "UK-1");
        assert_eq!(ticket.resource_urls.len(), 2);
        assert_eq!(ticket.headers["Authorization"], "OSS id:sig");
        assert_eq!(ticket.expiration_secs, 900);

        let seen = fake.last();
        assert_eq!(seen.method, "POST");
        assert_eq!(
            seen.path,
            "/v1.0/storage/spaces/3996960664/files/uploadInfos/query"
        );
        assert_eq!(seen.query, "unionId=union+1%2B");
        seen.assert_api_json_headers();
        assert_eq!(
            seen.body_text(),
            r#"{"protocol":"HEADER_SIGNATURE","multipart":false,"option":{"storageDriver":"DINGTALK","preCheckParam":{"md5":"0cc175b9c0f1b6a831c399e269772661","size":45,"parentId":"0","name":"报销单据-2026-001.pdf"},"preferIntranet":false}}"#
        );
    }

    #[tokio::test]
    async fn upload_info_without_urls_is_a_decode_error() {
        let fake = Fake::start(|_| {
            Reply::json(200, json!({"uploadKey": "UK", "headerSignatureInfo": {"resourceUrls": [], "expirationSeconds": 900}}))
        })
        .await;
        let err = fake
            .client()
            .upload_info(1, "u", &file())
            .await
            .unwrap_err();
        assert!(matches!(err, DingTalkError::Decode { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn commit_wire_shape_and_dentry_types() {
        let fake = Fake::start(|_| {
            Reply::json(
                200,
                json!({"dentry": {
                    "id": "120349587612", "spaceId": "3996960664", "parentId": "0", "type": "FILE",
                    "name": "报销单据-2026-001(1).pdf", "size": 45, "path": "/报销单据-2026-001(1).pdf",
                    "version": 1, "status": "NORMAL", "extension": "pdf", "creatorId": "u",
                    "createTime": "2022-07-29T14:55Z", "properties": {"readOnly": false},
                    "appProperties": [{"name": "n", "value": "v", "visibility": "PUBLIC"}]
                }}),
            )
        })
        .await;
        let dentry = fake
            .client()
            .commit(3996960664, "union1", "UK-1", "报销单据-2026-001.pdf", 45)
            .await
            .unwrap();
        assert_eq!(
            dentry,
            Dentry {
                id: "120349587612".into(),
                space_id: "3996960664".into(),
                name: "报销单据-2026-001(1).pdf".into(),
                size: 45,
                extension: "pdf".into(),
            }
        );
        let seen = fake.last();
        assert_eq!(seen.path, "/v1.0/storage/spaces/3996960664/files/commit");
        assert_eq!(seen.query, "unionId=union1");
        seen.assert_api_json_headers();
        assert_eq!(
            seen.body_text(),
            r#"{"uploadKey":"UK-1","name":"报销单据-2026-001.pdf","parentId":"0","option":{"size":45,"conflictStrategy":"AUTO_RENAME","appProperties":[]}}"#
        );
    }

    #[tokio::test]
    async fn numeric_dentry_id_is_rejected() {
        let fake = Fake::start(|_| {
            Reply::json(
                200,
                json!({"dentry": {"id": 1, "spaceId": "1", "name": "a", "size": 1}}),
            )
        })
        .await;
        let err = fake.client().commit(1, "u", "k", "a", 1).await.unwrap_err();
        assert!(
            matches!(err, DingTalkError::Decode { status: 200, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn checkpoint_types_serialise_snake_case() {
        let ticket = UploadTicket {
            upload_key: "k".into(),
            resource_urls: vec!["u".into()],
            headers: BTreeMap::from([("x-oss-date".to_owned(), "d".to_owned())]),
            expiration_secs: 900,
        };
        assert_eq!(
            serde_json::to_string(&ticket).unwrap(),
            r#"{"upload_key":"k","resource_urls":["u"],"headers":{"x-oss-date":"d"},"expiration_secs":900}"#
        );
        let dentry: Dentry = serde_json::from_str(
            r#"{"id":"1","space_id":"2","name":"a.pdf","size":3,"extension":"pdf"}"#,
        )
        .unwrap();
        assert_eq!(dentry.space_id, "2");
    }
}

//! The sandbox's public vocabulary: endpoint names and the records tests read back.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::process::{InstanceStatus, Outcome};

/// One DingTalk (or OSS) API the sandbox serves; faults and QPS limits are kept per endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /v1.0/oauth2/accessToken`
    Token,
    /// `GET /gettoken` (oapi style, the legacy token call)
    LegacyToken,
    /// `POST /topapi/v2/user/get` (oapi style)
    UserGet,
    /// `POST /v1.0/workflow/processInstances/spaces/infos/query`
    Space,
    /// `POST /v1.0/storage/spaces/{spaceId}/files/uploadInfos/query`
    UploadInfo,
    /// `POST /v1.0/storage/spaces/{spaceId}/files/multiPartUploadInfos/init`
    MultipartInit,
    /// `POST /v1.0/storage/spaces/files/multiPartUploadInfos/query` (no spaceId in the path)
    MultipartQuery,
    /// `PUT /oss/{objectKey}`, a whole file or one part of a multipart upload (the OSS
    /// side, not a DingTalk API)
    OssPut,
    /// `POST /v1.0/storage/spaces/{spaceId}/files/commit`
    Commit,
    /// `POST /v1.0/workflow/processInstances`
    CreateInstance,
    /// `GET /v1.0/workflow/processInstances`
    GetInstance,
    /// `POST /v1.0/workflow/processes/instanceIds/query`
    ListInstanceIds,
    /// `GET /v1.0/workflow/forms/schemas/processCodes`
    FormSchema,
    /// `POST /v1.0/gateway/connections/open` (Stream mode)
    OpenConnection,
}

impl Endpoint {
    /// Every endpoint, in the order a job meets them.
    pub fn all() -> &'static [Endpoint] {
        &[
            Endpoint::Token,
            Endpoint::LegacyToken,
            Endpoint::UserGet,
            Endpoint::Space,
            Endpoint::UploadInfo,
            Endpoint::MultipartInit,
            Endpoint::MultipartQuery,
            Endpoint::OssPut,
            Endpoint::Commit,
            Endpoint::CreateInstance,
            Endpoint::GetInstance,
            Endpoint::ListInstanceIds,
            Endpoint::FormSchema,
            Endpoint::OpenConnection,
        ]
    }

    /// The snake_case name used by `Display`, `FromStr` and serde.
    fn name(self) -> &'static str {
        match self {
            Endpoint::Token => "token",
            Endpoint::LegacyToken => "legacy_token",
            Endpoint::UserGet => "user_get",
            Endpoint::Space => "space",
            Endpoint::UploadInfo => "upload_info",
            Endpoint::MultipartInit => "multipart_init",
            Endpoint::MultipartQuery => "multipart_query",
            Endpoint::OssPut => "oss_put",
            Endpoint::Commit => "commit",
            Endpoint::CreateInstance => "create_instance",
            Endpoint::GetInstance => "get_instance",
            Endpoint::ListInstanceIds => "list_instance_ids",
            Endpoint::FormSchema => "form_schema",
            Endpoint::OpenConnection => "open_connection",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A string that names no [`Endpoint`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown sandbox endpoint `{0}` (expected one of token, legacy_token, user_get, space, upload_info, multipart_init, multipart_query, oss_put, commit, create_instance, get_instance, list_instance_ids, form_schema, open_connection)"
)]
pub struct UnknownEndpoint(pub(crate) String);

impl FromStr for Endpoint {
    type Err = UnknownEndpoint;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Endpoint::all()
            .iter()
            .copied()
            .find(|e| e.name() == s)
            .ok_or_else(|| UnknownEndpoint(s.to_owned()))
    }
}

/// One request as the sandbox received it, with what it answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Received {
    /// Which API was called.
    pub endpoint: Endpoint,
    /// HTTP method, e.g. `POST`.
    pub(crate) method: String,
    /// Path without the query string.
    pub(crate) path: String,
    /// Decoded query parameters.
    pub query: BTreeMap<String, String>,
    /// Request headers; names lowercased, repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The body, when it parsed as JSON.
    pub body: Option<serde_json::Value>,
    /// Body length in bytes as received.
    pub body_len: u64,
    /// Hex MD5 of the body (OSS PUT only).
    pub body_md5: Option<String>,
    /// The `partNumber` of a multipart upload's part PUT (from its URL), refused ones
    /// included; `None` for every other request.
    pub part_number: Option<u32>,
    /// HTTP status answered; 0 while in flight or when the connection was dropped
    /// before any work. Under `LoseResponse` it is the status of the answer that was lost.
    pub status: u16,
    /// The injected fault this request suffered, e.g. `server_error(503)`.
    pub fault: Option<String>,
}

/// An approval instance created through the sandbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Instance {
    /// The id returned to the client.
    pub instance_id: String,
    /// Template code (`PROC-…`).
    pub(crate) process_code: String,
    /// userId of the originator.
    pub(crate) originator_user_id: String,
    /// Department given on create, if any.
    pub dept_id: Option<i64>,
    /// `(name, value)` of each form component, as received.
    pub form: Vec<(String, String)>,
    /// The `approvers` array as received (`null` when absent).
    pub(crate) approvers: serde_json::Value,
    /// userIds copied.
    pub(crate) cc_list: Vec<String>,
    /// Creation time, unix milliseconds.
    pub(crate) created_at_ms: i64,
    /// Where it stands now.
    pub status: InstanceStatus,
    /// `agree` / `refuse` once completed.
    pub result: Option<Outcome>,
    /// When it was decided, unix milliseconds.
    pub finished_at_ms: Option<i64>,
}

/// A file committed to the approval space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredFile {
    /// Space id, decimal string as in the dentry.
    pub space_id: String,
    /// Dentry id (the DDAttachment `fileId`).
    pub file_id: String,
    /// Final name (after any auto-rename).
    pub(crate) name: String,
    /// Bytes.
    pub(crate) size: u64,
    /// Lowercase suffix without the dot; empty when the name has none.
    pub(crate) extension: String,
    /// Hex MD5 of the uploaded bytes. For a multipart upload too large to keep (over
    /// 64 MiB in all), OSS's multipart ETag form instead: the hex MD5 of the parts' binary
    /// MD5s concatenated in part order, then `-N` for N parts.
    pub md5: String,
    /// The upload ticket the file was committed from.
    pub(crate) upload_key: String,
}

/// One PUT of a multipart upload's part as the sandbox received it (see
/// [`Sandbox::part_puts`](super::Sandbox::part_puts)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartPut {
    /// The uploadKey from multiPartUploadInfos/init whose object the URL names; `None` when
    /// it names no object the sandbox issued.
    pub upload_key: Option<String>,
    /// `partNumber` from the URL.
    pub part_number: u32,
    /// Bytes received, refused PUTs included (OSS reads a refused body to its end too).
    pub body_len: u64,
    /// Hex MD5 of the bytes received.
    pub body_md5: Option<String>,
    /// HTTP status answered; 0 when the connection was dropped before any work.
    pub status: u16,
}

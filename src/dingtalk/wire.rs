//! Request and response bodies exactly as on the wire (dingtalk-api.md §5): camelCase keys,
//! DingTalk's JSON types, optional fields omitted when empty. Unknown response fields are
//! ignored because real answers carry many more than we read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// §5.1 request.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TokenRequest<'a> {
    pub app_key: &'a str,
    pub app_secret: &'a str,
}

/// §5.1 response.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TokenResponse {
    pub access_token: String,
    pub expire_in: u64,
}

/// §5.2 request (legacy oapi: lowercase key).
#[derive(Serialize)]
pub(super) struct UserGetRequest<'a> {
    pub userid: &'a str,
}

/// §5.2 response; `errcode` is checked generically before this is parsed.
#[derive(Deserialize)]
pub(super) struct UserGetResponse {
    pub result: UserGetResult,
}

#[derive(Deserialize)]
pub(super) struct UserGetResult {
    pub unionid: String,
}

/// §5.3 request.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SpaceRequest<'a> {
    pub user_id: &'a str,
    pub agent_id: i64,
}

/// §5.3 response.
#[derive(Deserialize)]
pub(super) struct SpaceResponse {
    pub result: SpaceResult,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SpaceResult {
    pub space_id: i64,
}

/// §5.4 request.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UploadInfoBody<'a> {
    pub protocol: &'static str,
    pub multipart: bool,
    pub option: UploadInfoOption<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UploadInfoOption<'a> {
    pub storage_driver: &'static str,
    pub pre_check_param: PreCheckParam<'a>,
    pub prefer_intranet: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PreCheckParam<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub md5: Option<&'a str>,
    pub size: u64,
    pub parent_id: &'static str,
    pub name: &'a str,
}

/// §5.4 response.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UploadInfoResponse {
    pub upload_key: String,
    pub header_signature_info: Option<HeaderSignatureInfo>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct HeaderSignatureInfo {
    #[serde(default)]
    pub resource_urls: Vec<String>,
    // The set of headers is not guaranteed; an absent map means "none".
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub expiration_seconds: u64,
}

/// §5.6 request.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CommitBody<'a> {
    pub upload_key: &'a str,
    pub name: &'a str,
    pub parent_id: &'static str,
    pub option: CommitOption,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CommitOption {
    pub size: u64,
    pub conflict_strategy: &'static str,
    /// Always `[]`, as the SDK sends it whenever `option` is present.
    pub app_properties: [(); 0],
}

/// §5.6 response.
#[derive(Deserialize)]
pub(super) struct CommitResponse {
    pub dentry: WireDentry,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireDentry {
    pub id: String,
    pub space_id: String,
    pub name: String,
    pub size: u64,
    // A file without a suffix may come back without `extension`.
    #[serde(default)]
    pub extension: String,
}

/// §5.8 request.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StartInstanceBody<'a> {
    pub originator_user_id: &'a str,
    pub process_code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dept_id: Option<i64>,
    pub microapp_agent_id: i64,
    pub form_component_values: Vec<FormComponentValue<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<WireApprover<'a>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub cc_list: &'a [String],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct FormComponentValue<'a> {
    pub name: &'a str,
    pub value: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component_type: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireApprover<'a> {
    pub action_type: &'a str,
    pub user_ids: &'a [String],
}

/// §5.8 response.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StartInstanceResponse {
    pub instance_id: String,
}

/// §5.9 response. `success` is a string there; we rely on `result` and do not read it.
#[derive(Deserialize)]
pub(super) struct GetInstanceResponse {
    pub result: InstanceResult,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InstanceResult {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub originator_user_id: String,
    #[serde(default)]
    pub create_time: String,
    #[serde(default)]
    pub form_component_values: Vec<InstanceFormValue>,
}

/// All strings on the wire; empty fields may be absent or null.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InstanceFormValue {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub component_type: Option<String>,
}

/// §5.10 request.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListIdsBody<'a> {
    pub process_code: &'a str,
    pub start_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    /// A number in the request although the response returns it as a string.
    pub next_token: i64,
    pub max_results: i64,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub user_ids: &'a [String],
}

/// §5.10 response.
#[derive(Deserialize)]
pub(super) struct ListIdsResponse {
    pub result: ListIdsResult,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListIdsResult {
    #[serde(default)]
    pub list: Vec<String>,
    pub next_token: Option<String>,
}

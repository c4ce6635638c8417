//! Request and response bodies exactly as on the wire (dingtalk-api.md §5): camelCase keys,
//! DingTalk's JSON types, optional fields omitted when empty. Unknown response fields are
//! ignored because real answers carry many more than we read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// §5.1 request.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TokenRequest<'a> {
    pub(crate) app_key: &'a str,
    pub(crate) app_secret: &'a str,
}

/// §5.1 response.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TokenResponse {
    pub(crate) access_token: String,
    pub(crate) expire_in: u64,
}

/// §5.2 request (legacy oapi: lowercase key).
#[derive(Serialize)]
pub(super) struct UserGetRequest<'a> {
    pub(crate) userid: &'a str,
}

/// §5.2 response; `errcode` is checked generically before this is parsed.
#[derive(Deserialize)]
pub(super) struct UserGetResponse {
    pub(crate) result: UserGetResult,
}

#[derive(Deserialize)]
pub(super) struct UserGetResult {
    pub(crate) unionid: String,
}

/// §5.3 request.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SpaceRequest<'a> {
    pub(crate) user_id: &'a str,
    pub(crate) agent_id: i64,
}

/// §5.3 response.
#[derive(Deserialize)]
pub(super) struct SpaceResponse {
    pub(crate) result: SpaceResult,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SpaceResult {
    pub(crate) space_id: i64,
}

/// §5.4 request.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UploadInfoBody<'a> {
    pub(crate) protocol: &'static str,
    pub(crate) multipart: bool,
    pub(crate) option: UploadInfoOption<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UploadInfoOption<'a> {
    pub(crate) storage_driver: &'static str,
    pub(crate) pre_check_param: PreCheckParam<'a>,
    pub(crate) prefer_intranet: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PreCheckParam<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) md5: Option<&'a str>,
    pub(crate) size: u64,
    pub(crate) parent_id: &'static str,
    pub(crate) name: &'a str,
}

/// §5.4 response.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UploadInfoResponse {
    pub(crate) upload_key: String,
    pub(crate) header_signature_info: Option<HeaderSignatureInfo>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct HeaderSignatureInfo {
    #[serde(default)]
    pub(crate) resource_urls: Vec<String>,
    // The set of headers is not guaranteed; an absent map means "none".
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) expiration_seconds: u64,
}

/// §5.6 request.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CommitBody<'a> {
    pub(crate) upload_key: &'a str,
    pub(crate) name: &'a str,
    pub(crate) parent_id: &'static str,
    pub(crate) option: CommitOption,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CommitOption {
    pub(crate) size: u64,
    pub(crate) conflict_strategy: &'static str,
    /// Always `[]`, as the SDK sends it whenever `option` is present.
    pub(crate) app_properties: [(); 0],
}

/// §5.6 response.
#[derive(Deserialize)]
pub(super) struct CommitResponse {
    pub(crate) dentry: WireDentry,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireDentry {
    pub(crate) id: String,
    pub(crate) space_id: String,
    pub(crate) name: String,
    pub(crate) size: u64,
    // A file without a suffix may come back without `extension`.
    #[serde(default)]
    pub(crate) extension: String,
}

/// §5.8 request.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StartInstanceBody<'a> {
    pub(crate) originator_user_id: &'a str,
    pub(crate) process_code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) dept_id: Option<i64>,
    pub(crate) microapp_agent_id: i64,
    pub(crate) form_component_values: Vec<FormComponentValue<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) approvers: Vec<WireApprover<'a>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub(crate) cc_list: &'a [String],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct FormComponentValue<'a> {
    pub(crate) name: &'a str,
    pub(crate) value: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) component_type: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireApprover<'a> {
    pub(crate) action_type: &'a str,
    pub(crate) user_ids: &'a [String],
}

/// §5.8 response.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StartInstanceResponse {
    pub(crate) instance_id: String,
}

/// §5.9 response. `success` is a string there; we rely on `result` and do not read it.
#[derive(Deserialize)]
pub(super) struct GetInstanceResponse {
    pub(crate) result: InstanceResult,
}

/// Fields read leniently: a missing or null one reads as empty, since a half-filled instance
/// (still running, started in the app instead of through the API) is still worth reading.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InstanceResult {
    #[serde(default)]
    pub(crate) status: String,
    /// Lowercase `agree` / `refuse`; empty while running.
    #[serde(default)]
    pub(crate) result: Option<String>,
    #[serde(default)]
    pub(crate) originator_user_id: String,
    #[serde(default)]
    pub(crate) create_time: String,
    /// Empty or absent while running.
    #[serde(default)]
    pub(crate) finish_time: Option<String>,
    #[serde(default)]
    pub(crate) form_component_values: Vec<InstanceFormValue>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub(crate) tasks: Vec<WireTask>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub(crate) operation_records: Vec<WireOperationRecord>,
}

/// One approval task of §5.9; statuses and results are uppercase there.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireTask {
    #[serde(default, deserialize_with = "lenient_i64")]
    pub(crate) task_id: Option<i64>,
    #[serde(default)]
    pub(crate) user_id: Option<String>,
    #[serde(default)]
    pub(crate) status: Option<String>,
    #[serde(default)]
    pub(crate) result: Option<String>,
    #[serde(default)]
    pub(crate) create_time: Option<String>,
    #[serde(default)]
    pub(crate) finish_time: Option<String>,
    #[serde(default)]
    pub(crate) activity_id: Option<String>,
}

/// One entry of §5.9's `operationRecords` (who did what, when, with which remark).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireOperationRecord {
    #[serde(default)]
    pub(crate) user_id: Option<String>,
    #[serde(default)]
    pub(crate) date: Option<String>,
    #[serde(default, rename = "type")]
    pub(crate) kind: Option<String>,
    #[serde(default)]
    pub(crate) result: Option<String>,
    #[serde(default)]
    pub(crate) remark: Option<String>,
    #[serde(default)]
    pub(crate) show_name: Option<String>,
}

/// A list that may arrive as `null`.
fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// An integer DingTalk may send as a number or as a string (its SDKs disagree between
/// endpoints, and event payloads mix both). Null, empty or unreadable reads as `None`: one odd
/// field must not make the whole answer unreadable.
pub(super) fn lenient_i64<'de, D>(deserializer: D) -> Result<Option<i64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(Option::<serde_json::Value>::deserialize(deserializer)?
        .as_ref()
        .and_then(value_as_i64))
}

/// The integer in a JSON number or numeric string, if there is one.
pub(super) fn value_as_i64(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| {
            // Whole floats (`1.66e12`) only; a fraction is not an id or a timestamp.
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        serde_json::Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// All strings on the wire; empty fields may be absent or null.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InstanceFormValue {
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) value: Option<String>,
    #[serde(default)]
    pub(crate) component_type: Option<String>,
}

/// §5.10 request.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListIdsBody<'a> {
    pub(crate) process_code: &'a str,
    pub(crate) start_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) end_time: Option<i64>,
    /// A number in the request although the response returns it as a string.
    pub(crate) next_token: i64,
    pub(crate) max_results: i64,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub(crate) user_ids: &'a [String],
}

/// §5.10 response.
#[derive(Deserialize)]
pub(super) struct ListIdsResponse {
    pub(crate) result: ListIdsResult,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListIdsResult {
    #[serde(default)]
    pub(crate) list: Vec<String>,
    pub(crate) next_token: Option<String>,
}

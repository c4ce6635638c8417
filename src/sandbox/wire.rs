//! Request bodies exactly as DingTalk's SDK sends them; anything else is refused.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Parses a JSON body strictly; the error text is serde's, which names the offending key.
pub(super) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    if body.is_empty() {
        return Err("request body is empty".to_owned());
    }
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

/// True for `application/json`, with or without parameters such as `charset`.
pub(super) fn is_json(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|m| m.eq_ignore_ascii_case("application/json"))
}

/// True for `application/x-www-form-urlencoded`.
pub(super) fn is_form(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|m| m.eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

fn media_type(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    value.split(';').next().map(str::trim)
}

/// Decodes `a=1&b=x+y` (query strings and form bodies); later duplicates win.
pub(super) fn decode_form(input: &str) -> BTreeMap<String, String> {
    input
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(input: &str) -> String {
    fn hex_digit(b: u8) -> Option<u8> {
        (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push(hi << 4 | lo);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `POST /v1.0/oauth2/accessToken`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct TokenRequest {
    pub app_key: String,
    pub app_secret: String,
}

/// `POST /topapi/v2/user/get`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UserGetRequest {
    pub userid: String,
    pub language: Option<String>,
}

/// `POST /v1.0/workflow/processInstances/spaces/infos/query`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct SpaceRequest {
    pub user_id: String,
    pub agent_id: Option<i64>,
}

/// `POST /v1.0/storage/spaces/{spaceId}/files/uploadInfos/query`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct UploadInfoRequest {
    pub protocol: String,
    pub multipart: bool,
    pub option: Option<UploadOption>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct UploadOption {
    pub storage_driver: Option<String>,
    pub pre_check_param: Option<PreCheckParam>,
    pub prefer_region: Option<String>,
    #[expect(
        dead_code,
        reason = "type-checked only; the sandbox has no intranet endpoints"
    )]
    pub prefer_intranet: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct PreCheckParam {
    pub md5: Option<String>,
    pub size: Option<i64>,
    pub parent_id: Option<String>,
    pub name: Option<String>,
}

/// `POST /v1.0/storage/spaces/{spaceId}/files/commit`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct CommitRequest {
    pub upload_key: String,
    pub name: String,
    pub parent_id: String,
    pub option: Option<CommitOption>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct CommitOption {
    pub size: Option<i64>,
    pub conflict_strategy: Option<String>,
    pub app_properties: Option<Vec<AppProperty>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct AppProperty {
    pub name: String,
    #[expect(dead_code, reason = "type-checked only; app properties are not stored")]
    pub value: String,
    pub visibility: Option<String>,
}

/// `POST /v1.0/workflow/processInstances`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct CreateInstanceRequest {
    pub originator_user_id: String,
    pub process_code: String,
    pub dept_id: Option<i64>,
    pub microapp_agent_id: Option<i64>,
    pub form_component_values: Vec<FormComponentValue>,
    pub approvers: Option<Vec<Approver>>,
    pub cc_list: Option<Vec<String>>,
    pub cc_position: Option<String>,
    pub target_select_actioners: Option<Vec<TargetSelectActioner>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FormComponentValue {
    pub name: String,
    pub value: String,
    pub id: Option<String>,
    pub biz_alias: Option<String>,
    pub ext_value: Option<String>,
    pub component_type: Option<String>,
    #[expect(dead_code, reason = "type-checked only; table rows are not validated")]
    pub details: Option<Vec<serde_json::Map<String, serde_json::Value>>>,
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct Approver {
    pub action_type: String,
    pub user_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct TargetSelectActioner {
    pub actioner_key: String,
    pub actioner_user_ids: Vec<String>,
}

/// `POST /v1.0/workflow/processes/instanceIds/query`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ListIdsRequest {
    pub process_code: String,
    pub start_time: i64,
    pub end_time: Option<i64>,
    pub next_token: i64,
    pub max_results: i64,
    pub user_ids: Option<Vec<String>>,
    pub statuses: Option<Vec<String>>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn form_decoding_handles_plus_and_percent_escapes() {
        let form = decode_form("userid=manager%204220&language=zh_CN&x=a+b&bad=%zz&tail=%4");
        assert_eq!(form["userid"], "manager 4220");
        assert_eq!(form["x"], "a b");
        assert_eq!(form["bad"], "%zz");
        assert_eq!(form["tail"], "%4");
    }

    #[test]
    fn a_wrong_key_or_type_is_refused_with_a_message_naming_it() {
        let err = parse::<TokenRequest>(br#"{"appkey":"a","appSecret":"b"}"#).unwrap_err();
        assert!(err.contains("appkey"), "{err}");
        let err = parse::<SpaceRequest>(br#"{"userId":"u","agentId":"1"}"#).unwrap_err();
        assert!(err.contains("invalid type"), "{err}");
    }
}

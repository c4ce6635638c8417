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
    pub(crate) app_key: String,
    pub(crate) app_secret: String,
}

/// `POST /topapi/v2/user/get`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UserGetRequest {
    pub(crate) userid: String,
    pub(crate) language: Option<String>,
}

/// `POST /v1.0/workflow/processInstances/spaces/infos/query`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct SpaceRequest {
    pub(crate) user_id: String,
    pub(crate) agent_id: Option<i64>,
}

/// `POST /v1.0/storage/spaces/{spaceId}/files/uploadInfos/query`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct UploadInfoRequest {
    pub(crate) protocol: String,
    pub(crate) multipart: bool,
    pub(crate) option: Option<UploadOption>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct UploadOption {
    pub(crate) storage_driver: Option<String>,
    pub(crate) pre_check_param: Option<PreCheckParam>,
    pub(crate) prefer_region: Option<String>,
    #[expect(
        dead_code,
        reason = "type-checked only; the sandbox has no intranet endpoints"
    )]
    prefer_intranet: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct PreCheckParam {
    pub(crate) md5: Option<String>,
    pub(crate) size: Option<i64>,
    pub(crate) parent_id: Option<String>,
    pub(crate) name: Option<String>,
}

/// `POST /v1.0/storage/spaces/{spaceId}/files/multiPartUploadInfos/init`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct MultipartInitRequest {
    pub(crate) option: Option<UploadOption>,
}

/// `POST /v1.0/storage/spaces/files/multiPartUploadInfos/query`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct MultipartQueryRequest {
    pub(crate) upload_key: String,
    pub(crate) part_numbers: Vec<i32>,
    #[expect(
        dead_code,
        reason = "type-checked only; the sandbox has no intranet endpoints"
    )]
    option: Option<MultipartQueryOption>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct MultipartQueryOption {
    #[expect(
        dead_code,
        reason = "type-checked only; the sandbox has no intranet endpoints"
    )]
    prefer_intranet: Option<bool>,
}

/// `POST /v1.0/storage/spaces/{spaceId}/files/commit`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct CommitRequest {
    pub(crate) upload_key: String,
    pub(crate) name: String,
    pub(crate) parent_id: String,
    pub(crate) option: Option<CommitOption>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct CommitOption {
    pub(crate) size: Option<i64>,
    pub(crate) conflict_strategy: Option<String>,
    pub(crate) app_properties: Option<Vec<AppProperty>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct AppProperty {
    pub(crate) name: String,
    #[expect(dead_code, reason = "type-checked only; app properties are not stored")]
    value: String,
    pub(crate) visibility: Option<String>,
}

/// `POST /v1.0/workflow/processInstances`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct CreateInstanceRequest {
    pub(crate) originator_user_id: String,
    pub(crate) process_code: String,
    pub(crate) dept_id: Option<i64>,
    pub(crate) microapp_agent_id: Option<i64>,
    pub(crate) form_component_values: Vec<FormComponentValue>,
    pub(crate) approvers: Option<Vec<Approver>>,
    pub(crate) cc_list: Option<Vec<String>>,
    pub(crate) cc_position: Option<String>,
    pub(crate) target_select_actioners: Option<Vec<TargetSelectActioner>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FormComponentValue {
    pub(crate) name: String,
    pub(crate) value: String,
    pub(crate) id: Option<String>,
    pub(crate) biz_alias: Option<String>,
    pub(crate) ext_value: Option<String>,
    pub(crate) component_type: Option<String>,
    #[expect(dead_code, reason = "type-checked only; table rows are not validated")]
    details: Option<Vec<serde_json::Map<String, serde_json::Value>>>,
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct Approver {
    pub(crate) action_type: String,
    pub(crate) user_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct TargetSelectActioner {
    pub(crate) actioner_key: String,
    pub(crate) actioner_user_ids: Vec<String>,
}

/// `POST /v1.0/workflow/processes/instanceIds/query`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ListIdsRequest {
    pub(crate) process_code: String,
    pub(crate) start_time: i64,
    pub(crate) end_time: Option<i64>,
    pub(crate) next_token: i64,
    pub(crate) max_results: i64,
    pub(crate) user_ids: Option<Vec<String>>,
    pub(crate) statuses: Option<Vec<String>>,
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

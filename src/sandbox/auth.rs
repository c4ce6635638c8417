//! Identity endpoints: the app access token (current and legacy) and the oapi
//! userId → unionId lookup against the directory.

use axum::response::Response;
use serde_json::json;

use super::error;
use super::pipeline::{self, Call};
use super::state::Shared;
use super::wire::{self, TokenRequest, UserGetRequest};

/// `POST /v1.0/oauth2/accessToken`
pub(super) fn token(shared: &Shared, call: &Call) -> Response {
    let request: TokenRequest = match pipeline::json_body(call, "invalidParameter") {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let options = &shared.options;
    if request.app_key != options.app_key || request.app_secret != options.app_secret {
        return error::api(
            400,
            "invalidClientIdOrSecret",
            "无效的clientId或者clientSecret",
        );
    }
    let token = shared.lock().issue_token(options.token_ttl);
    error::ok(&json!({"accessToken": token, "expireIn": options.token_ttl.as_secs()}))
}

/// errmsg of the legacy token call for an unknown appkey or a wrong appsecret (errcode
/// 40001, "bad secret" in dingtalk-api.md §3).
pub(super) const BAD_APP_CREDENTIALS: &str = "不合法的appkey或appsecret";

/// `GET /gettoken?appkey=K&appsecret=S` — oapi style: HTTP 200, `errcode` tells; the same
/// token as the v1.0 call (both are the app's access token).
pub(super) fn legacy_token(shared: &Shared, call: &Call) -> Response {
    let options = &shared.options;
    let param = |name: &str| call.query.get(name).filter(|v| !v.is_empty());
    let (Some(key), Some(secret)) = (param("appkey"), param("appsecret")) else {
        return error::oapi(400_002, "无效的参数: appkey and appsecret are required");
    };
    if *key != options.app_key || *secret != options.app_secret {
        return error::oapi(40001, BAD_APP_CREDENTIALS);
    }
    let token = shared.lock().issue_token(options.token_ttl);
    error::oapi_ok(json!({"access_token": token, "expires_in": options.token_ttl.as_secs()}))
}

/// `POST /topapi/v2/user/get?access_token=T` — oapi style: HTTP 200, `errcode` tells.
pub(super) fn user_get(shared: &Shared, call: &Call) -> Response {
    let token_ok = call
        .query
        .get("access_token")
        .is_some_and(|t| shared.lock().token_valid(t));
    if !token_ok {
        return error::oapi(40014, "不合法的access_token");
    }
    let request = match user_get_request(call) {
        Ok(request) => request,
        Err(message) => return error::oapi(400_002, &format!("无效的参数: {message}")),
    };
    if let Some(language) = &request.language
        && language != "zh_CN"
        && language != "en_US"
    {
        return error::oapi(400_002, "无效的参数: language must be zh_CN or en_US");
    }
    // A unionId passed as the userid is just as unknown here as a typo (DingTalk: 33012).
    let Some(user) = shared.options.directory.user(&request.userid) else {
        note_union_id(shared, "userid", &request.userid);
        return error::oapi(33012, "无效的userId");
    };
    error::oapi_ok(json!({"result": {
        "userid": user.user_id,
        "unionid": user.union_id,
        "name": user.name,
        "active": true,
        "dept_id_list": user.departments,
    }}))
}

/// Logs a hint when a refused user id is some user's unionId: DingTalk's answer only says
/// the user does not exist, which hides this common mix-up from whoever reads it.
pub(super) fn note_union_id(shared: &Shared, field: &str, id: &str) {
    if shared.options.directory.is_union_id(id) {
        tracing::info!(
            "sandbox: {field} {id:?} is a unionId, not a userId; refused as an unknown user, as DingTalk does"
        );
    }
}

/// DingTalk accepts both a JSON and a form-encoded body here.
fn user_get_request(call: &Call) -> Result<UserGetRequest, String> {
    if wire::is_json(&call.headers) {
        return wire::parse(&call.body);
    }
    if !wire::is_form(&call.headers) {
        return Err(
            "Content-Type must be application/json or application/x-www-form-urlencoded".into(),
        );
    }
    let text = std::str::from_utf8(&call.body).map_err(|e| e.to_string())?;
    let mut form = wire::decode_form(text);
    if let Some(unknown) = form.keys().find(|k| *k != "userid" && *k != "language") {
        return Err(format!("unknown field `{unknown}`"));
    }
    let userid = form
        .remove("userid")
        .ok_or_else(|| "missing field `userid`".to_owned())?;
    Ok(UserGetRequest {
        userid,
        language: form.remove("language"),
    })
}

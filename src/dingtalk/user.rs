//! userId → unionId through the legacy oapi `topapi/v2/user/get` (§5.2), cached per user.

use std::sync::PoisonError;

use super::DingTalk;
use super::call::{Host, Request};
use super::error::DingTalkError;
use super::wire::{UserGetRequest, UserGetResponse};

const ENDPOINT: &str = "topapi/v2/user/get";

impl DingTalk {
    /// The unionId of directory user `user_id` (storage calls identify the operator by it).
    /// Cached for the life of the client: the mapping never changes.
    pub async fn union_id(&self, user_id: &str) -> Result<String, DingTalkError> {
        if let Some(known) = self.cached_union_id(user_id) {
            return Ok(known);
        }
        let _single_flight = self.inner.union_lookup.lock().await;
        if let Some(known) = self.cached_union_id(user_id) {
            return Ok(known);
        }
        let request = Request::post(
            ENDPOINT,
            Host::Oapi,
            "/topapi/v2/user/get",
            &UserGetRequest { userid: user_id },
            true,
        )?;
        let response: UserGetResponse = self.call(&request).await?;
        let union_id = response.result.unionid;
        if union_id.is_empty() {
            return Err(DingTalkError::Decode {
                endpoint: ENDPOINT,
                status: 200,
                detail: "empty result.unionid".to_owned(),
            });
        }
        self.inner
            .union_ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(user_id.to_owned(), union_id.clone());
        Ok(union_id)
    }

    fn cached_union_id(&self, user_id: &str) -> Option<String> {
        self.inner
            .union_ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(user_id)
            .cloned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::dingtalk::ErrorClass;
    use crate::dingtalk::fake::{Fake, Reply};
    use serde_json::json;

    #[tokio::test]
    async fn wire_shape_and_cache() {
        let fake = Fake::start(|_| {
            Reply::json(
                200,
                json!({"errcode": 0, "errmsg": "ok", "request_id": "r",
                       "result": {"unionid": "UNION-1", "userid": "manager4220", "active": true}}),
            )
        })
        .await;
        let client = fake.client();
        assert_eq!(client.union_id("manager4220").await.unwrap(), "UNION-1");
        assert_eq!(
            client.clone().union_id("manager4220").await.unwrap(),
            "UNION-1"
        );
        assert_eq!(fake.count("/topapi/v2/user/get"), 1);

        let seen = fake.last();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.query, "access_token=tok-1");
        assert_eq!(seen.header("x-acs-dingtalk-access-token"), None);
        assert_eq!(
            seen.header("content-type").as_deref(),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(seen.body_text(), r#"{"userid":"manager4220"}"#);
    }

    #[tokio::test]
    async fn errcode_in_a_200_is_an_error() {
        let fake = Fake::start(|_| {
            Reply::json(
                200,
                json!({"errcode": 33012, "errmsg": "无效的userid", "request_id": "r"}),
            )
        })
        .await;
        let err = fake.client().union_id("nobody").await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert_eq!(
            err.to_string(),
            "topapi/v2/user/get: HTTP 200 33012: 无效的userid (request id r)"
        );
    }

    #[tokio::test]
    async fn stale_token_errcode_refreshes_and_retries_once() {
        let fake = Fake::start(|seen| {
            if seen.nth == 0 {
                Reply::json(
                    200,
                    json!({"errcode": 40014, "errmsg": "不合法的access_token"}),
                )
            } else {
                Reply::json(200, json!({"errcode": "0", "result": {"unionid": "U2"}}))
            }
        })
        .await;
        let client = fake.client();
        assert_eq!(client.union_id("u").await.unwrap(), "U2");
        assert_eq!(client.token_fetches(), 2);
        assert_eq!(fake.last().query, "access_token=tok-2");
    }
}

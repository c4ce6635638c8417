//! Tests that drive a started sandbox over loopback with reqwest, as a real client would.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod faults;
mod flow;
mod knobs;
mod multipart;
mod multipart_refusals;
mod process;
mod storage;
mod stream;
mod stream_client;
mod stream_faults;
mod strict;
mod workflow;

use reqwest::Method;
use serde_json::{Value, json};

use super::{DEFAULT_AGENT_ID, DEFAULT_APP_KEY, DEFAULT_APP_SECRET, DEFAULT_SPACE_ID};
use super::{Sandbox, SandboxOptions};

/// A started sandbox plus a client, with one helper per step of the job flow.
pub(super) struct Harness {
    sandbox: Sandbox,
    http: reqwest::Client,
    base: String,
}

/// The originator every test uses unless it says otherwise.
pub(super) const USER: &str = "manager4220";

/// What a JSON call answered.
pub(super) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Value,
}

impl Harness {
    pub(super) async fn start() -> Self {
        Self::with(SandboxOptions::default()).await
    }

    pub(super) async fn with(options: SandboxOptions) -> Self {
        let sandbox = Sandbox::start(options).await.unwrap();
        // No proxy: a developer's HTTP_PROXY must not capture loopback traffic.
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let base = sandbox.base_url();
        Self {
            sandbox,
            http,
            base,
        }
    }

    /// A request with the DingTalk token header (when given) and a JSON body (when given).
    pub(super) fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("x-acs-dingtalk-access-token", token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json; charset=utf-8")
                .body(body.to_string());
        }
        request
    }

    /// POST a JSON body and read the JSON answer.
    pub(super) async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        let response = self
            .request(Method::POST, path, token, Some(&body))
            .send()
            .await
            .unwrap();
        answer(response).await
    }

    pub(super) async fn get(&self, path: &str, token: &str) -> Answer {
        let response = self
            .request(Method::GET, path, Some(token), None)
            .send()
            .await
            .unwrap();
        answer(response).await
    }

    pub(super) async fn token(&self) -> String {
        let answer = self
            .post(
                "/v1.0/oauth2/accessToken",
                None,
                json!({"appKey": DEFAULT_APP_KEY, "appSecret": DEFAULT_APP_SECRET}),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body["accessToken"].as_str().unwrap().to_owned()
    }

    pub(super) async fn union_id(&self, token: &str, user: &str) -> String {
        let answer = self
            .post(
                &format!("/topapi/v2/user/get?access_token={token}"),
                None,
                json!({"userid": user}),
            )
            .await;
        assert_eq!(answer.body["errcode"], 0, "{}", answer.body);
        answer.body["result"]["unionid"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// spaces/infos/query for `user`: grants the upload right.
    pub(super) async fn grant(&self, token: &str, user: &str) -> Answer {
        self.post(
            "/v1.0/workflow/processInstances/spaces/infos/query",
            Some(token),
            json!({"userId": user, "agentId": DEFAULT_AGENT_ID}),
        )
        .await
    }

    /// uploadInfos/query with an optional preCheckParam.
    pub(super) async fn ticket(
        &self,
        token: &str,
        union_id: &str,
        pre_check: Option<Value>,
    ) -> Answer {
        let mut body = json!({"protocol": "HEADER_SIGNATURE", "multipart": false});
        if let Some(pre_check) = pre_check {
            body["option"] = json!({"storageDriver": "DINGTALK", "preCheckParam": pre_check, "preferIntranet": false});
        }
        self.post(
            &format!(
                "/v1.0/storage/spaces/{DEFAULT_SPACE_ID}/files/uploadInfos/query?unionId={union_id}"
            ),
            Some(token),
            body,
        )
        .await
    }

    /// The PUT exactly as the ticket says: its URL and headers, nothing more.
    pub(super) fn put(
        &self,
        ticket: &Value,
        bytes: impl Into<reqwest::Body>,
    ) -> reqwest::RequestBuilder {
        let info = &ticket["headerSignatureInfo"];
        let mut request = self.http.put(info["resourceUrls"][0].as_str().unwrap());
        for (name, value) in info["headers"].as_object().unwrap() {
            request = request.header(name.as_str(), value.as_str().unwrap());
        }
        request.body(bytes)
    }

    pub(super) async fn commit(&self, token: &str, union_id: &str, body: Value) -> Answer {
        self.post(
            &format!("/v1.0/storage/spaces/{DEFAULT_SPACE_ID}/files/commit?unionId={union_id}"),
            Some(token),
            body,
        )
        .await
    }

    /// Grant, ticket, PUT and commit `bytes` as `name` for [`USER`]; returns the dentry.
    pub(super) async fn upload(&self, token: &str, name: &str, bytes: &'static [u8]) -> Value {
        let union_id = self.union_id(token, USER).await;
        assert_eq!(self.grant(token, USER).await.status, 200);
        let ticket = self.ticket(token, &union_id, None).await.body;
        let put = self.put(&ticket, bytes).send().await.unwrap();
        assert_eq!(put.status(), 200);
        let committed = self
            .commit(
                token,
                &union_id,
                json!({"uploadKey": ticket["uploadKey"], "name": name, "parentId": "0"}),
            )
            .await;
        assert_eq!(committed.status, 200, "{}", committed.body);
        committed.body["dentry"].clone()
    }

    pub(super) async fn create(&self, token: &str, body: Value) -> Answer {
        self.post("/v1.0/workflow/processInstances", Some(token), body)
            .await
    }

    /// Uploads a file and creates an instance for [`USER`] on the template's flow; its id.
    pub(super) async fn instance(&self, token: &str) -> String {
        let dentry = self.upload(token, "a.pdf", b"%PDF-1.4 instance").await;
        let created = self.create(token, create_body(&attachment(&dentry))).await;
        assert_eq!(created.status, 200, "{}", created.body);
        created.body["instanceId"].as_str().unwrap().to_owned()
    }
}

pub(super) async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer { status, body }
}

/// The DDAttachment value for one dentry, all five fields as strings.
pub(super) fn attachment(dentry: &Value) -> String {
    json!([{
        "spaceId": dentry["spaceId"],
        "fileName": dentry["name"],
        "fileSize": dentry["size"].as_u64().unwrap().to_string(),
        "fileType": dentry["extension"],
        "fileId": dentry["id"],
    }])
    .to_string()
}

/// A StartProcessInstance body for [`USER`] with the given attachment value.
pub(super) fn create_body(attachment_value: &str) -> Value {
    json!({
        "originatorUserId": USER,
        "processCode": "PROC-SANDBOX-EXPENSE",
        "deptId": -1,
        "microappAgentId": DEFAULT_AGENT_ID,
        "formComponentValues": [
            {"name": "附件", "value": attachment_value, "componentType": "DDAttachment"},
            {"name": "说明", "value": "job-42", "componentType": "TextField"},
        ],
    })
}

//! OA approval (workflow) calls: the attachment space (§5.3), starting an instance (§5.8) and
//! listing instance ids for reconciliation (§5.10); reading one back is `instance.rs`.

use serde::{Deserialize, Serialize};

use super::DingTalk;
use super::call::{Host, Request};
use super::error::DingTalkError;
use super::wire::{
    FormComponentValue, ListIdsBody, ListIdsResponse, SpaceRequest, SpaceResponse,
    StartInstanceBody, StartInstanceResponse, WireApprover,
};

/// Page size of the id listing; DingTalk's maximum.
const LIST_PAGE_SIZE: i64 = 20;
/// DingTalk accepts at most this many originators per listing.
const LIST_MAX_USERS: usize = 10;
/// Guards against a server that keeps handing out next tokens (10 000 instances).
const LIST_MAX_PAGES: usize = 500;

/// One form field: `name` is the component label in the template (e.g. `附件`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FormValue {
    /// Component label.
    pub(crate) name: String,
    /// Always a string; structured values (DDAttachment, tables) are JSON inside it.
    pub(crate) value: String,
    /// e.g. `DDAttachment`; omitted on the wire when `None`.
    pub(crate) component_type: Option<String>,
}

/// One approval step replacing the template's flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Approver {
    /// `AND` (all must agree), `OR` (any one), `NONE` (single approver).
    pub(crate) action_type: String,
    /// Directory userIds.
    pub(crate) user_ids: Vec<String>,
}

/// What to start (§5.8); the client adds `microappAgentId`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CreateInstance {
    /// Template code, `PROC-…`.
    pub(crate) process_code: String,
    /// The originator's userId (not unionId).
    pub(crate) originator_user_id: String,
    /// Originator's department; `-1` is the root. Required by DingTalk without approvers.
    pub(crate) dept_id: Option<i64>,
    /// Form values, at most 150.
    pub(crate) form: Vec<FormValue>,
    /// Explicit approvers (replace the template's flow); empty = use the template's.
    pub(crate) approvers: Vec<Approver>,
    /// userIds to copy; empty = none.
    pub(crate) cc_list: Vec<String>,
}

impl DingTalk {
    /// §5.3: the organisation's approval-attachment space; also grants `user_id` upload right
    /// for a short, undocumented time, so call it right before uploading.
    pub async fn approval_space(&self, user_id: &str) -> Result<i64, DingTalkError> {
        let body = SpaceRequest {
            user_id,
            agent_id: self.agent_id(),
        };
        let request = Request::post(
            "workflow/spaces/infos/query",
            Host::Api,
            "/v1.0/workflow/processInstances/spaces/infos/query",
            &body,
            true,
        )?;
        let response: SpaceResponse = self.call(&request).await?;
        Ok(response.result.space_id)
    }

    /// §5.8: starts an approval instance and returns its id. Not idempotent and DingTalk has no
    /// dedup key: after an error with [`DingTalkError::may_have_been_processed`] the caller
    /// must reconcile (list + get) before submitting again.
    pub(crate) async fn create_instance(
        &self,
        request: &CreateInstance,
    ) -> Result<String, DingTalkError> {
        let body = StartInstanceBody {
            originator_user_id: &request.originator_user_id,
            process_code: &request.process_code,
            dept_id: request.dept_id,
            microapp_agent_id: self.agent_id(),
            form_component_values: request
                .form
                .iter()
                .map(|field| FormComponentValue {
                    name: &field.name,
                    value: &field.value,
                    component_type: field.component_type.as_deref(),
                })
                .collect(),
            approvers: request
                .approvers
                .iter()
                .map(|approver| WireApprover {
                    action_type: &approver.action_type,
                    user_ids: &approver.user_ids,
                })
                .collect(),
            cc_list: &request.cc_list,
        };
        let request = Request::post(
            "workflow/processInstances/create",
            Host::Api,
            "/v1.0/workflow/processInstances",
            &body,
            false,
        )?;
        let response: StartInstanceResponse = self.call(&request).await?;
        Ok(response.instance_id)
    }

    /// §5.10: ids of the instances of `process_code` started since `start_time_ms` (unix ms)
    /// by `user_ids` (at most 10; empty = anyone), following every page.
    pub(crate) async fn list_instance_ids(
        &self,
        process_code: &str,
        start_time_ms: i64,
        end_time_ms: Option<i64>,
        user_ids: &[String],
    ) -> Result<Vec<String>, DingTalkError> {
        const ENDPOINT: &str = "workflow/instanceIds/query";
        if user_ids.len() > LIST_MAX_USERS {
            return Err(DingTalkError::Config(format!(
                "{ENDPOINT}: at most {LIST_MAX_USERS} userIds per listing, got {}",
                user_ids.len()
            )));
        }
        let mut ids = Vec::new();
        let mut next_token = 0;
        for _ in 0..LIST_MAX_PAGES {
            let body = ListIdsBody {
                process_code,
                start_time: start_time_ms,
                end_time: end_time_ms,
                next_token,
                max_results: LIST_PAGE_SIZE,
                user_ids,
            };
            let request = Request::post(
                ENDPOINT,
                Host::Api,
                "/v1.0/workflow/processes/instanceIds/query",
                &body,
                true,
            )?;
            let response: ListIdsResponse = self.call(&request).await?;
            let page = response.result;
            let page_was_empty = page.list.is_empty();
            ids.extend(page.list);
            let next = match page.next_token.as_deref().map(str::trim) {
                None | Some("") => return Ok(ids),
                Some(text) => text.parse::<i64>().map_err(|e| DingTalkError::Decode {
                    endpoint: ENDPOINT,
                    status: 200,
                    detail: format!("nextToken {text:?}: {e}"),
                })?,
            };
            // A token that does not move forward, or an empty page, would loop forever.
            if page_was_empty || next <= next_token {
                return Ok(ids);
            }
            next_token = next;
        }
        Err(DingTalkError::Decode {
            endpoint: ENDPOINT,
            status: 200,
            detail: format!("more than {LIST_MAX_PAGES} pages of instance ids"),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::dingtalk::fake::{Fake, Reply};
    use crate::dingtalk::{Dentry, dd_attachment_value};
    use serde_json::json;

    #[tokio::test]
    async fn approval_space_wire_shape() {
        let fake = Fake::start(|_| {
            Reply::json(
                200,
                json!({"result": {"spaceId": 3996960664_i64}, "success": true}),
            )
        })
        .await;
        assert_eq!(
            fake.client().approval_space("manager4220").await.unwrap(),
            3996960664
        );
        let seen = fake.last();
        assert_eq!(
            (
                seen.method.as_str(),
                seen.path.as_str(),
                seen.query.as_str()
            ),
            (
                "POST",
                "/v1.0/workflow/processInstances/spaces/infos/query",
                ""
            )
        );
        seen.assert_api_json_headers();
        assert_eq!(
            seen.body_text(),
            r#"{"userId":"manager4220","agentId":3012345678}"#
        );
    }

    #[tokio::test]
    async fn space_id_as_string_is_rejected() {
        let fake =
            Fake::start(|_| Reply::json(200, json!({"result": {"spaceId": "3996960664"}}))).await;
        let err = fake.client().approval_space("u").await.unwrap_err();
        assert!(matches!(err, DingTalkError::Decode { .. }), "{err:?}");
    }

    fn full_request() -> CreateInstance {
        let dentry = Dentry {
            id: "120349587612".into(),
            space_id: "3996960664".into(),
            name: "报销单据-2026-001.pdf".into(),
            size: 45,
            extension: "pdf".into(),
        };
        CreateInstance {
            process_code: "PROC-1".into(),
            originator_user_id: "manager4220".into(),
            dept_id: Some(-1),
            form: vec![
                FormValue {
                    name: "报销事由".into(),
                    value: "出差".into(),
                    component_type: None,
                },
                FormValue {
                    name: "附件".into(),
                    value: dd_attachment_value(&[dentry]),
                    component_type: Some("DDAttachment".into()),
                },
            ],
            approvers: vec![Approver {
                action_type: "AND".into(),
                user_ids: vec!["a1".into(), "a2".into()],
            }],
            cc_list: vec!["c1".into()],
        }
    }

    #[tokio::test]
    async fn create_instance_wire_shape() {
        let fake = Fake::start(|_| Reply::json(200, json!({"instanceId": "INST-1"}))).await;
        let id = fake
            .client()
            .create_instance(&full_request())
            .await
            .unwrap();
        assert_eq!(id, "INST-1");
        let seen = fake.last();
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str()),
            ("POST", "/v1.0/workflow/processInstances")
        );
        seen.assert_api_json_headers();
        assert_eq!(
            seen.body_text(),
            r#"{"originatorUserId":"manager4220","processCode":"PROC-1","deptId":-1,"microappAgentId":3012345678,"formComponentValues":[{"name":"报销事由","value":"出差"},{"name":"附件","value":"[{\"spaceId\":\"3996960664\",\"fileName\":\"报销单据-2026-001.pdf\",\"fileSize\":\"45\",\"fileType\":\"pdf\",\"fileId\":\"120349587612\"}]","componentType":"DDAttachment"}],"approvers":[{"actionType":"AND","userIds":["a1","a2"]}],"ccList":["c1"]}"#
        );
    }

    #[tokio::test]
    async fn create_instance_omits_empty_optionals() {
        let fake = Fake::start(|_| Reply::json(200, json!({"instanceId": "INST-2"}))).await;
        let request = CreateInstance {
            dept_id: None,
            approvers: vec![],
            cc_list: vec![],
            form: vec![],
            ..full_request()
        };
        fake.client().create_instance(&request).await.unwrap();
        assert_eq!(
            fake.last().body_text(),
            r#"{"originatorUserId":"manager4220","processCode":"PROC-1","microappAgentId":3012345678,"formComponentValues":[]}"#
        );
    }

    #[tokio::test]
    async fn list_pages_through_all_results() {
        let fake = Fake::start(|seen| {
            let next = seen.json()["nextToken"].as_i64().unwrap_or(-1);
            let body = match next {
                0 => json!({"result": {"list": ["a", "b"], "nextToken": "20"}, "success": true}),
                20 => json!({"result": {"list": ["c"], "nextToken": "40"}, "success": true}),
                _ => json!({"result": {"list": []}, "success": true}),
            };
            Reply::json(200, body)
        })
        .await;
        let users = vec!["manager4220".to_owned()];
        let ids = fake
            .client()
            .list_instance_ids("PROC-1", 1_700_000_000_000, None, &users)
            .await
            .unwrap();
        assert_eq!(ids, ["a", "b", "c"]);
        let bodies: Vec<String> = fake.requests().iter().map(|s| s.body_text()).collect();
        assert_eq!(
            bodies,
            [
                r#"{"processCode":"PROC-1","startTime":1700000000000,"nextToken":0,"maxResults":20,"userIds":["manager4220"]}"#,
                r#"{"processCode":"PROC-1","startTime":1700000000000,"nextToken":20,"maxResults":20,"userIds":["manager4220"]}"#,
                r#"{"processCode":"PROC-1","startTime":1700000000000,"nextToken":40,"maxResults":20,"userIds":["manager4220"]}"#,
            ]
        );
        assert_eq!(
            fake.last().path,
            "/v1.0/workflow/processes/instanceIds/query"
        );
    }

    #[tokio::test]
    async fn list_sends_end_time_and_omits_empty_users() {
        let fake = Fake::start(|_| Reply::json(200, json!({"result": {"list": ["x"]}}))).await;
        let ids = fake
            .client()
            .list_instance_ids("PROC-1", 1, Some(2), &[])
            .await
            .unwrap();
        assert_eq!(ids, ["x"]);
        assert_eq!(
            fake.last().body_text(),
            r#"{"processCode":"PROC-1","startTime":1,"endTime":2,"nextToken":0,"maxResults":20}"#
        );
    }

    #[tokio::test]
    async fn list_rejects_too_many_users_without_calling() {
        let fake = Fake::start(|_| Reply::json(200, json!({}))).await;
        let users: Vec<String> = (0..11).map(|i| format!("u{i}")).collect();
        let err = fake
            .client()
            .list_instance_ids("P", 0, None, &users)
            .await
            .unwrap_err();
        assert!(matches!(err, DingTalkError::Config(_)));
        assert!(fake.requests().is_empty());
    }
}

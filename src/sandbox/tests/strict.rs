//! The sandbox is as strict as DingTalk about who and what exists: unknown users, unionIds
//! passed as userIds, departments the originator is not in, unknown process codes, and
//! templates' required fields; the schema and legacy token endpoints.

use std::path::Path;

use serde_json::{Value, json};

use super::super::{DEFAULT_APP_KEY, DEFAULT_APP_SECRET, Directory, Endpoint, SandboxOptions};
use super::{Harness, USER, attachment, create_body};

const BYTES: &[u8] = b"%PDF-1.4 strict";

/// The codes and statuses the sandbox recorded for calls to `endpoint`.
fn statuses(h: &Harness, endpoint: Endpoint) -> Vec<u16> {
    h.sandbox
        .requests()
        .iter()
        .filter(|r| r.endpoint == endpoint)
        .map(|r| r.status)
        .collect()
}

#[tokio::test]
async fn an_unknown_user_is_errcode_33012_on_the_lookup_and_user_not_exist_on_the_grant() {
    let h = Harness::start().await;
    let token = h.token().await;
    let lookup = h
        .post(
            &format!("/topapi/v2/user/get?access_token={token}"),
            None,
            json!({"userid": "manager9999"}),
        )
        .await;
    assert_eq!(
        lookup.status, 200,
        "oapi answers HTTP 200 and tells in errcode"
    );
    assert_eq!(lookup.body["errcode"], 33012, "{}", lookup.body);
    assert_eq!(lookup.body["errmsg"], "无效的userId");
    assert!(lookup.body.get("result").is_none());

    let grant = h.grant(&token, "manager9999").await;
    assert_eq!(grant.status, 400);
    assert_eq!(grant.body["code"], "userNotExist", "{}", grant.body);
    assert!(grant.body["requestid"].is_string());
    assert_eq!(statuses(&h, Endpoint::UserGet), [200]);
    assert_eq!(statuses(&h, Endpoint::Space), [400]);
}

#[tokio::test]
async fn the_lookup_answers_the_directorys_union_id_name_and_departments() {
    let h = Harness::start().await;
    let token = h.token().await;
    let answer = h
        .post(
            &format!("/topapi/v2/user/get?access_token={token}"),
            None,
            json!({"userid": USER}),
        )
        .await;
    let user = h.sandbox.options().directory.user(USER).unwrap().clone();
    assert_eq!(answer.body["result"]["unionid"], user.union_id);
    assert_eq!(answer.body["result"]["name"], "王经理");
    assert_eq!(answer.body["result"]["dept_id_list"], json!([1, 1001]));
}

#[tokio::test]
async fn a_union_id_passed_as_a_user_id_is_refused_as_an_unknown_user_everywhere() {
    let h = Harness::start().await;
    let token = h.token().await;
    let union_id = h.union_id(&token, USER).await;
    let dentry = h.upload(&token, "a.pdf", BYTES).await;

    let lookup = h
        .post(
            &format!("/topapi/v2/user/get?access_token={token}"),
            None,
            json!({"userid": union_id}),
        )
        .await;
    assert_eq!(lookup.body["errcode"], 33012, "{}", lookup.body);
    assert_eq!(
        h.grant(&token, &union_id).await.body["code"],
        "userNotExist"
    );
    let mut body = create_body(&attachment(&dentry));
    body["originatorUserId"] = json!(union_id);
    let created = h.create(&token, body).await;
    assert_eq!(created.status, 400);
    assert_eq!(
        created.body["code"], "processInstanceInvalidParameter",
        "{}",
        created.body
    );
    assert!(h.sandbox.instances().is_empty());
}

#[tokio::test]
async fn an_originator_outside_the_department_is_process_instance_invalid_parameter() {
    let h = Harness::start().await;
    let token = h.token().await;
    let dentry = h.upload(&token, "a.pdf", BYTES).await;
    let with = |user: &str, dept: i64| {
        let mut body = create_body(&attachment(&dentry));
        body["originatorUserId"] = json!(user);
        body["deptId"] = json!(dept);
        body
    };
    // manager4220 is in the root and 财务部 (1001), dev0001 only in 研发部 (1002).
    for (user, dept) in [(USER, 1002), ("dev0001", -1), ("dev0001", 1), (USER, 0)] {
        let answer = h.create(&token, with(user, dept)).await;
        assert_eq!(answer.status, 400, "{user} in {dept}: {}", answer.body);
        assert_eq!(answer.body["code"], "processInstanceInvalidParameter");
        assert!(
            answer.body["message"]
                .as_str()
                .unwrap()
                .contains(&format!("不在部门 {dept}")),
            "{}",
            answer.body
        );
    }
    assert!(h.sandbox.instances().is_empty());

    let created = h.create(&token, with(USER, 1001)).await;
    assert_eq!(created.status, 200, "{}", created.body);
    assert_eq!(h.create(&token, with("dev0001", 1002)).await.status, 200);
    let id = created.body["instanceId"].as_str().unwrap();
    let read = h
        .get(
            &format!("/v1.0/workflow/processInstances?processInstanceId={id}"),
            &token,
        )
        .await;
    assert_eq!(read.body["result"]["originatorDeptId"], "1001");
    assert_eq!(read.body["result"]["originatorDeptName"], "财务部");
    let instances = h.sandbox.instances();
    assert_eq!(
        instances.iter().map(|i| i.dept_id).collect::<Vec<_>>(),
        [Some(1001), Some(1002)]
    );
}

#[tokio::test]
async fn unknown_approvers_cc_and_actioners_are_process_instance_invalid_parameter() {
    let h = Harness::start().await;
    let token = h.token().await;
    let dentry = h.upload(&token, "a.pdf", BYTES).await;
    let good = create_body(&attachment(&dentry));
    let cases = [
        (
            "approvers",
            json!([{"actionType": "NONE", "userIds": ["boss9"]}]),
        ),
        ("ccList", json!(["boss1", "nobody"])),
        (
            "targetSelectActioners",
            json!([{"actionerKey": "manual_1", "actionerUserIds": ["ghost"]}]),
        ),
    ];
    for (key, value) in cases {
        let mut body = good.clone();
        body[key] = value;
        let answer = h.create(&token, body).await;
        assert_eq!(
            answer.body["code"], "processInstanceInvalidParameter",
            "{key}: {}",
            answer.body
        );
        assert!(
            answer.body["message"]
                .as_str()
                .unwrap()
                .contains("用户不存在")
        );
    }
    assert!(h.sandbox.instances().is_empty());
}

#[tokio::test]
async fn an_unknown_process_code_is_process_code_error_on_create_and_on_the_schema() {
    let h = Harness::start().await;
    let token = h.token().await;
    let dentry = h.upload(&token, "a.pdf", BYTES).await;
    let mut body = create_body(&attachment(&dentry));
    body["processCode"] = json!("PROC-NOT-IN-THE-DIRECTORY");
    let created = h.create(&token, body).await;
    assert_eq!(created.status, 400);
    assert_eq!(created.body["code"], "processCodeError", "{}", created.body);
    let schema = h
        .get(
            "/v1.0/workflow/forms/schemas/processCodes?processCode=PROC-NOT-IN-THE-DIRECTORY",
            &token,
        )
        .await;
    assert_eq!(schema.status, 400);
    assert_eq!(schema.body["code"], "processCodeError");
    assert!(h.sandbox.instances().is_empty());
    assert_eq!(statuses(&h, Endpoint::FormSchema), [400]);
}

/// A directory with one user outside the root and one template of its own.
fn contract_directory() -> Directory {
    Directory::parse(
        r#"
[[departments]]
id = 7
name = "法务部"

[[users]]
user_id = "lawyer1"
union_id = "uNi0nLawyer1"
name = "冯律师"
departments = [7]

[[templates]]
process_code = "PROC-CONTRACT"
name = "合同审批"
fields = [
  { label = "合同名称", component = "TextField", required = true },
  { label = "金额", component = "MoneyField" },
  { label = "合同文件", component = "DDAttachment", required = true, id = "DDAttachment_K1" },
]
"#,
        Path::new("contract.toml"),
    )
    .unwrap()
}

#[tokio::test]
async fn the_form_schema_is_the_directory_template_and_creates_follow_it() {
    let h = Harness::with(SandboxOptions {
        directory: contract_directory(),
        ..SandboxOptions::default()
    })
    .await;
    let token = h.token().await;
    let schema = h
        .get(
            "/v1.0/workflow/forms/schemas/processCodes?processCode=PROC-CONTRACT",
            &token,
        )
        .await;
    assert_eq!(schema.status, 200, "{}", schema.body);
    let result = &schema.body["result"];
    assert_eq!(result["name"], "合同审批");
    assert_eq!(result["formCode"], "PROC-CONTRACT");
    assert_eq!(
        result["schemaContent"]["items"],
        json!([
            {"componentName": "TextField",
             "props": {"id": "TextField-0", "label": "合同名称", "required": true}},
            {"componentName": "MoneyField",
             "props": {"id": "MoneyField-1", "label": "金额", "required": false}},
            {"componentName": "DDAttachment",
             "props": {"id": "DDAttachment_K1", "label": "合同文件", "required": true}},
        ])
    );
    // The default directory is gone: its people and templates are unknown here.
    assert_eq!(h.grant(&token, USER).await.body["code"], "userNotExist");

    // The whole flow for the directory's own user, under its own unionId.
    let union_id = h.union_id(&token, "lawyer1").await;
    assert_eq!(union_id, "uNi0nLawyer1");
    assert_eq!(h.grant(&token, "lawyer1").await.status, 200);
    let ticket = h.ticket(&token, &union_id, None).await.body;
    assert_eq!(h.put(&ticket, BYTES).send().await.unwrap().status(), 200);
    let dentry = h
        .commit(
            &token,
            &union_id,
            json!({"uploadKey": ticket["uploadKey"], "name": "合同.pdf", "parentId": "0"}),
        )
        .await
        .body["dentry"]
        .clone();
    let create = |values: Value| {
        json!({"originatorUserId": "lawyer1", "processCode": "PROC-CONTRACT", "deptId": 7,
               "microappAgentId": super::super::DEFAULT_AGENT_ID,
               "formComponentValues": values})
    };
    let file = json!({"name": "合同文件", "value": attachment(&dentry)});
    let missing = h.create(&token, create(json!([file]))).await;
    assert_eq!(
        missing.body["code"], "formConverterError",
        "{}",
        missing.body
    );
    assert!(
        missing.body["message"]
            .as_str()
            .unwrap()
            .contains("required component 「合同名称」 (TextField) is missing"),
        "{}",
        missing.body
    );
    let empty = h
        .create(
            &token,
            create(json!([{"name": "合同名称", "value": "  "}, file])),
        )
        .await;
    assert!(
        empty.body["message"]
            .as_str()
            .unwrap()
            .contains("「合同名称」 (TextField) is empty"),
        "{}",
        empty.body
    );
    let no_file = h
        .create(
            &token,
            create(json!([{"name": "合同名称", "value": "采购合同"}])),
        )
        .await;
    assert!(
        no_file.body["message"]
            .as_str()
            .unwrap()
            .contains("「合同文件」 (DDAttachment) is missing"),
        "{}",
        no_file.body
    );
    let created = h
        .create(
            &token,
            create(json!([{"name": "合同名称", "value": "采购合同"},
                          {"name": "金额", "value": "100.00"}, file])),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let id = created.body["instanceId"].as_str().unwrap();
    let read = h
        .get(
            &format!("/v1.0/workflow/processInstances?processInstanceId={id}"),
            &token,
        )
        .await;
    let kinds: Vec<&str> = read.body["result"]["formComponentValues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["componentType"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["TextField", "MoneyField", "DDAttachment"],
        "the template's component types"
    );
    assert_eq!(read.body["result"]["title"], "冯律师提交的审批");
    assert_eq!(read.body["result"]["originatorDeptName"], "法务部");
    assert_eq!(h.sandbox.instances().len(), 1);
}

#[tokio::test]
async fn the_legacy_gettoken_answers_oapi_style_with_the_apps_one_token() {
    let h = Harness::start().await;
    let path = format!("/gettoken?appkey={DEFAULT_APP_KEY}&appsecret={DEFAULT_APP_SECRET}");
    let response = h
        .http
        .get(format!("{}{path}", h.base))
        .send()
        .await
        .unwrap();
    let legacy = super::answer(response).await;
    assert_eq!(legacy.status, 200);
    assert_eq!(legacy.body["errcode"], 0, "{}", legacy.body);
    assert_eq!(legacy.body["errmsg"], "ok");
    assert_eq!(legacy.body["expires_in"], 7200);
    let token = legacy.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(token, h.token().await, "the same token as the v1.0 call");
    h.union_id(&token, USER).await;

    for query in [
        format!("appkey={DEFAULT_APP_KEY}&appsecret=wrong"),
        format!("appkey=dingother&appsecret={DEFAULT_APP_SECRET}"),
        format!("appkey={DEFAULT_APP_KEY}"),
    ] {
        let response = h
            .http
            .get(format!("{}/gettoken?{query}", h.base))
            .send()
            .await
            .unwrap();
        let refused = super::answer(response).await;
        assert_eq!(refused.status, 200, "{query}");
        assert!(refused.body.get("access_token").is_none(), "{query}");
        let expected = if query.contains("appsecret") {
            40001
        } else {
            400_002
        };
        assert_eq!(
            refused.body["errcode"], expected,
            "{query}: {}",
            refused.body
        );
    }
    let legacy_calls: Vec<_> = h
        .sandbox
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == Endpoint::LegacyToken)
        .collect();
    assert_eq!(legacy_calls.len(), 4);
    assert_eq!(legacy_calls[0].query["appkey"], DEFAULT_APP_KEY);
    assert_eq!(legacy_calls[0].method, "GET");
}

//! The whole job flow against the sandbox, checking each answer's shape and JSON types.

use reqwest::Method;
use serde_json::json;

use super::super::SandboxOptions;
use super::super::ids::md5_hex;
use super::super::{
    DEFAULT_AGENT_ID, DEFAULT_APP_KEY, DEFAULT_APP_SECRET, DEFAULT_SPACE_ID, Endpoint,
};
use super::{Harness, USER, attachment, create_body};

const PDF: &[u8] = b"%PDF-1.4 sandbox test file\n";

#[tokio::test]
async fn a_job_flows_from_token_to_listed_instance_with_wire_types_as_documented() {
    let h = Harness::start().await;

    // 1. token: same token while valid, expireIn a number.
    let first = h
        .post(
            "/v1.0/oauth2/accessToken",
            None,
            json!({"appKey": DEFAULT_APP_KEY, "appSecret": DEFAULT_APP_SECRET}),
        )
        .await;
    assert_eq!(first.status, 200);
    let token = first.body["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 32);
    assert_eq!(first.body["expireIn"], 7200);
    assert_eq!(h.token().await, token);

    // 2. userId → unionId on the oapi path.
    let user = h
        .post(
            &format!("/topapi/v2/user/get?access_token={token}"),
            None,
            json!({"userid": USER, "language": "zh_CN"}),
        )
        .await;
    assert_eq!(user.status, 200);
    assert_eq!(user.body["errcode"], 0);
    assert_eq!(user.body["result"]["userid"], USER);
    let union_id = user.body["result"]["unionid"].as_str().unwrap().to_owned();

    // 3. space: spaceId a number, success a bool.
    let space = h.grant(&token, USER).await;
    assert_eq!(space.status, 200, "{}", space.body);
    assert_eq!(
        space.body,
        json!({"result": {"spaceId": DEFAULT_SPACE_ID}, "success": true})
    );

    // 4. upload ticket with pre-checks.
    let name = "报销单据-2026-001.PDF";
    let pre = json!({"md5": md5_hex(PDF), "size": PDF.len(), "parentId": "0", "name": name});
    let ticket = h.ticket(&token, &union_id, Some(pre)).await;
    assert_eq!(ticket.status, 200, "{}", ticket.body);
    let t = &ticket.body;
    assert!(t["uploadKey"].is_string());
    assert_eq!(t["storageDriver"], "DINGTALK");
    assert_eq!(t["protocol"], "HEADER_SIGNATURE");
    let info = &t["headerSignatureInfo"];
    assert!(
        info["resourceUrls"][0]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/oss/", h.base))
    );
    assert!(
        info["headers"]["Authorization"]
            .as_str()
            .unwrap()
            .starts_with("OSS sandbox:")
    );
    assert!(
        info["headers"]["x-oss-date"]
            .as_str()
            .unwrap()
            .ends_with(" GMT")
    );
    assert_eq!(info["expirationSeconds"], 900);
    assert_eq!(info["region"], "ZHANGJIAKOU");
    assert_eq!(info["internalResourceUrls"], json!([]));

    // 5. PUT: 200, empty body, quoted uppercase MD5 ETag.
    let put = h.put(t, PDF).send().await.unwrap();
    assert_eq!(put.status(), 200);
    let etag = put.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{}\"", md5_hex(PDF).to_uppercase()));
    assert!(put.text().await.unwrap().is_empty());

    // 6. commit: ids and spaceId strings, size a number, extension lowercase.
    let commit = h
        .commit(
            &token,
            &union_id,
            json!({"uploadKey": t["uploadKey"], "name": name, "parentId": "0",
                   "option": {"size": PDF.len(), "conflictStrategy": "AUTO_RENAME", "appProperties": []}}),
        )
        .await;
    assert_eq!(commit.status, 200, "{}", commit.body);
    let dentry = &commit.body["dentry"];
    assert!(dentry["id"].as_str().unwrap().parse::<u64>().is_ok());
    assert_eq!(dentry["spaceId"], DEFAULT_SPACE_ID.to_string());
    assert_eq!(dentry["parentId"], "0");
    assert_eq!(dentry["type"], "FILE");
    assert_eq!(dentry["name"], name);
    assert_eq!(dentry["size"], PDF.len());
    assert_eq!(dentry["path"], format!("/{name}"));
    assert_eq!(dentry["version"], 1);
    assert_eq!(dentry["status"], "NORMAL");
    assert_eq!(dentry["extension"], "pdf");
    assert_eq!(dentry["creatorId"], union_id.as_str());
    assert_eq!(
        dentry["createTime"].as_str().unwrap().len(),
        "2026-11-29T12:00Z".len()
    );
    assert_eq!(dentry["properties"]["readOnly"], false);

    // 7. create with the DDAttachment built from the dentry.
    let created = h.create(&token, create_body(&attachment(dentry))).await;
    assert_eq!(created.status, 200, "{}", created.body);
    let instance_id = created.body["instanceId"].as_str().unwrap().to_owned();

    // 8. read back: success is the STRING "true", originatorDeptId a string.
    let read = h
        .get(
            &format!("/v1.0/workflow/processInstances?processInstanceId={instance_id}"),
            &token,
        )
        .await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body["success"], "true");
    let result = &read.body["result"];
    assert_eq!(result["status"], "RUNNING");
    assert_eq!(result["result"], "");
    assert_eq!(result["originatorUserId"], USER);
    assert_eq!(result["originatorDeptId"], "-1");
    assert!(result["businessId"].is_string() && result["title"].is_string());
    // A running flow: the start record, one task for the template's approver.
    let records = result["operationRecords"].as_array().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["type"], "START_PROCESS_INSTANCE");
    assert_eq!(records[0]["userId"], USER);
    assert_eq!(result["tasks"][0]["status"], "RUNNING");
    assert!(result.get("finishTime").is_none());
    let values = result["formComponentValues"].as_array().unwrap();
    assert_eq!(values.len(), 2);
    assert!(
        values
            .iter()
            .all(|v| v["name"].is_string() && v["value"].is_string())
    );
    assert_eq!(values[0]["componentType"], "DDAttachment");
    assert_eq!(values[1]["value"], "job-42");

    // 9. list ids for the originator.
    let listed = h
        .post(
            "/v1.0/workflow/processes/instanceIds/query",
            Some(&token),
            json!({"processCode": "PROC-SANDBOX-EXPENSE", "startTime": 0, "nextToken": 0,
                   "maxResults": 20, "userIds": [USER], "statuses": ["RUNNING"]}),
        )
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["success"], true);
    assert_eq!(listed.body["result"]["list"], json!([instance_id]));
    assert!(listed.body["result"].get("nextToken").is_none());

    // What the sandbox kept.
    let instances = h.sandbox.instances();
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].instance_id, instance_id);
    assert_eq!(instances[0].dept_id, Some(-1));
    assert_eq!(
        instances[0].form[1],
        ("说明".to_owned(), "job-42".to_owned())
    );
    let files = h.sandbox.files();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].md5, md5_hex(PDF));
    assert_eq!(h.sandbox.file_content(&files[0].file_id).unwrap(), PDF);
    let endpoints: Vec<Endpoint> = h.sandbox.requests().iter().map(|r| r.endpoint).collect();
    assert_eq!(
        endpoints,
        [
            Endpoint::Token,
            Endpoint::Token,
            Endpoint::UserGet,
            Endpoint::Space,
            Endpoint::UploadInfo,
            Endpoint::OssPut,
            Endpoint::Commit,
            Endpoint::CreateInstance,
            Endpoint::GetInstance,
            Endpoint::ListInstanceIds,
        ]
    );
    let put_record = &h.sandbox.requests()[5];
    assert_eq!(put_record.body_md5.as_deref(), Some(md5_hex(PDF).as_str()));
    assert_eq!(put_record.body_len, PDF.len() as u64);
    assert!(!put_record.headers.contains_key("content-type"));
}

#[tokio::test]
async fn instance_ids_are_paginated_with_a_string_next_token() {
    let h = Harness::start().await;
    let token = h.token().await;
    let dentry = h.upload(&token, "a.pdf", PDF).await;
    for _ in 0..3 {
        assert_eq!(
            h.create(&token, create_body(&attachment(&dentry)))
                .await
                .status,
            200
        );
    }
    let page = |next: i64| json!({"processCode": "PROC-SANDBOX-EXPENSE", "startTime": 0, "nextToken": next, "maxResults": 2});
    let first = h
        .post(
            "/v1.0/workflow/processes/instanceIds/query",
            Some(&token),
            page(0),
        )
        .await;
    assert_eq!(first.body["result"]["list"].as_array().unwrap().len(), 2);
    assert_eq!(first.body["result"]["nextToken"], "2");
    let second = h
        .post(
            "/v1.0/workflow/processes/instanceIds/query",
            Some(&token),
            page(2),
        )
        .await;
    assert_eq!(second.body["result"]["list"].as_array().unwrap().len(), 1);
    assert!(second.body["result"].get("nextToken").is_none());

    let too_many = h
        .post(
            "/v1.0/workflow/processes/instanceIds/query",
            Some(&token),
            json!({"processCode": "PROC-SANDBOX-EXPENSE", "startTime": 0, "nextToken": 0, "maxResults": 21}),
        )
        .await;
    assert_eq!(too_many.status, 400);
    assert_eq!(too_many.body["code"], "invalidParameter");
}

#[tokio::test]
async fn the_oapi_user_lookup_accepts_form_bodies_and_refuses_unknown_users_and_bad_tokens() {
    let h = Harness::start().await;
    let token = h.token().await;
    let form = h
        .http
        .post(format!(
            "{}/topapi/v2/user/get?access_token={token}",
            h.base
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("userid=manager4220")
        .send()
        .await
        .unwrap();
    let form = super::answer(form).await;
    assert_eq!(form.body["errcode"], 0, "{}", form.body);
    assert_eq!(
        form.body["result"]["unionid"],
        h.union_id(&token, USER).await
    );

    let ghost = h
        .post(
            &format!("/topapi/v2/user/get?access_token={token}"),
            None,
            json!({"userid": "ghost-1"}),
        )
        .await;
    assert_eq!(
        (ghost.status, ghost.body["errcode"].as_i64()),
        (200, Some(33012))
    );

    let bad = h
        .post(
            "/topapi/v2/user/get?access_token=nope",
            None,
            json!({"userid": USER}),
        )
        .await;
    assert_eq!(
        (bad.status, bad.body["errcode"].as_i64()),
        (200, Some(40014))
    );
}

#[tokio::test]
async fn unknown_paths_get_the_gateway_not_found_body() {
    let h = Harness::start().await;
    let response = h
        .request(Method::GET, "/v1.0/nothing/here", None, None)
        .send()
        .await
        .unwrap();
    let answer = super::answer(response).await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.body["code"], "InvalidAction.NotFound");
}

#[tokio::test]
async fn wrong_app_credentials_are_refused() {
    let h = Harness::start().await;
    let answer = h
        .post(
            "/v1.0/oauth2/accessToken",
            None,
            json!({"appKey": DEFAULT_APP_KEY, "appSecret": "guess"}),
        )
        .await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["code"], "invalidClientIdOrSecret");
    assert!(answer.body["requestid"].is_string());
}

#[tokio::test]
async fn the_space_query_needs_the_apps_agent_id_and_a_real_user() {
    let h = Harness::start().await;
    let token = h.token().await;
    let path = "/v1.0/workflow/processInstances/spaces/infos/query";
    let missing = h.post(path, Some(&token), json!({"userId": USER})).await;
    assert_eq!(
        (missing.status, missing.body["code"].as_str()),
        (400, Some("invalidAgentId"))
    );
    let wrong = h
        .post(path, Some(&token), json!({"userId": USER, "agentId": 1}))
        .await;
    assert_eq!(wrong.body["code"], "invalidAgentId");
    let ghost = h
        .post(
            path,
            Some(&token),
            json!({"userId": "ghost", "agentId": DEFAULT_AGENT_ID}),
        )
        .await;
    assert_eq!(ghost.body["code"], "userNotExist");
    let typed = h
        .post(
            path,
            Some(&token),
            json!({"userId": USER, "agentId": DEFAULT_AGENT_ID.to_string()}),
        )
        .await;
    assert_eq!(typed.body["code"], "invalidParameter");
    assert!(
        typed.body["message"]
            .as_str()
            .unwrap()
            .contains("invalid type")
    );
}

#[test]
fn endpoint_names_round_trip_through_display_and_from_str() {
    for endpoint in Endpoint::all() {
        assert_eq!(endpoint.to_string().parse::<Endpoint>().unwrap(), *endpoint);
        assert_eq!(
            serde_json::to_value(endpoint).unwrap(),
            endpoint.to_string()
        );
    }
    assert!("tokens".parse::<Endpoint>().is_err());
}

#[tokio::test]
async fn a_sandbox_without_a_request_log_still_checks_and_creates_but_records_nothing() {
    let h = Harness::with(SandboxOptions {
        record_requests: false,
        ..SandboxOptions::default()
    })
    .await;
    let token = h.token().await;
    let dentry = h.upload(&token, "a.pdf", PDF).await;
    let created = h.create(&token, create_body(&attachment(&dentry))).await;
    assert_eq!(created.status, 200, "{}", created.body);
    assert_eq!(h.sandbox.instances().len(), 1);
    // Its checks still run: a call without a token is refused.
    assert_eq!(h.grant("", USER).await.status, 401);
    assert!(h.sandbox.requests().is_empty());
}

#[tokio::test]
async fn shutdown_and_drop_stop_the_server() {
    let h = Harness::start().await;
    h.token().await;
    let base = h.base.clone();
    h.sandbox.shutdown().await;
    assert!(
        h.http
            .get(format!("{base}/v1.0/oauth2/accessToken"))
            .send()
            .await
            .is_err()
    );

    let dropped = super::super::Sandbox::start(Default::default())
        .await
        .unwrap();
    let base = dropped.base_url();
    drop(dropped);
    let mut refused = false;
    for _ in 0..50 {
        if h.http.get(format!("{base}/")).send().await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(refused, "a dropped sandbox must stop listening");
}

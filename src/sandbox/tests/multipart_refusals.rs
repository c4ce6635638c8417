//! Multipart uploads refused: grants, uploaders and keys, init's option, part URLs used
//! wrongly, faults and the per-API rate limit on the two multipart calls.

use std::time::Duration;

use serde_json::{Value, json};

use super::super::{DEFAULT_SPACE_ID, Endpoint, Fault, SandboxOptions};
use super::multipart::{
    MIN_PART, commit, granted, init, part_infos, pattern, put_part, query, upload_key,
};
use super::{Harness, USER};

/// `(status, code)` of a JSON answer.
fn refusal(answer: &super::Answer) -> (u16, Option<&str>) {
    (answer.status, answer.body["code"].as_str())
}

#[tokio::test]
async fn the_query_without_a_grant_is_refused() {
    let h = Harness::start().await;
    let (token, union_id) = granted(&h).await;
    let key = upload_key(&h, &token, &union_id).await;
    let options = h.sandbox.options().clone();
    h.sandbox
        .advance_clock(options.grant_ttl + Duration::from_secs(1));
    let refused = query(&h, &token, &union_id, &key, &[1]).await;
    assert_eq!(refusal(&refused), (403, Some("permissionDenied")));
    let refused = init(&h, &token, &union_id, Value::Null).await;
    assert_eq!(refusal(&refused), (403, Some("permissionDenied")));

    assert_eq!(h.grant(&token, USER).await.status, 200);
    assert_eq!(part_infos(&h, &token, &union_id, &key, &[1]).await.len(), 1);
}

#[tokio::test]
async fn the_query_refuses_other_users_unknown_simple_and_committed_keys() {
    let h = Harness::start().await;
    let (token, union_id) = granted(&h).await;
    let key = upload_key(&h, &token, &union_id).await;

    let other = "manager4221";
    let other_union = h.union_id(&token, other).await;
    assert_eq!(h.grant(&token, other).await.status, 200);
    let refused = query(&h, &token, &other_union, &key, &[1]).await;
    assert_eq!(refusal(&refused), (403, Some("permissionDenied")));

    let unknown = query(&h, &token, &union_id, "sbx-no-such-key", &[1]).await;
    assert_eq!(refusal(&unknown), (400, Some("paramError")));
    assert_eq!(unknown.body["message"], "uploadKey not found");

    let ticket = h.ticket(&token, &union_id, None).await.body;
    let simple = query(
        &h,
        &token,
        &union_id,
        ticket["uploadKey"].as_str().unwrap(),
        &[1],
    )
    .await;
    assert_eq!(refusal(&simple), (400, Some("paramError")));
    assert!(
        simple.body["message"]
            .as_str()
            .unwrap()
            .contains("not a multipart upload")
    );

    let infos = part_infos(&h, &token, &union_id, &key, &[1]).await;
    assert_eq!(put_part(&h, &infos[0], pattern(5, 1)).await.0, 200);
    assert_eq!(
        commit(&h, &token, &union_id, &key, "a.bin").await.status,
        200
    );
    let committed = query(&h, &token, &union_id, &key, &[2]).await;
    assert_eq!(refusal(&committed), (400, Some("paramError")));
    assert_eq!(committed.body["message"], "uploadKey already committed");
    // OSS no longer knows the upload either.
    let (status, text) = put_part(&h, &infos[0], pattern(5, 1)).await;
    assert_eq!(status, 404);
    assert!(text.contains("<Code>NoSuchUpload</Code>"), "{text}");
}

#[tokio::test]
async fn init_checks_its_option_as_upload_infos_does_and_the_space() {
    let h = Harness::start().await;
    let (token, union_id) = granted(&h).await;
    for (option, code) in [
        (
            json!({"preCheckParam": {"name": "bad|name.pdf"}}),
            "dentryNameIllegal",
        ),
        (json!({"preCheckParam": {"size": -1}}), "paramError"),
        (json!({"preCheckParam": {"md5": "abc"}}), "paramError"),
        (json!({"preCheckParam": {"parentId": "7"}}), "paramError"),
        (
            json!({"storageDriver": "ALIDOC"}),
            "paramError.storageDriver",
        ),
        (json!({"preferRegion": "MARS"}), "paramError"),
        (json!({"preferIntranet": "no"}), "paramError"),
    ] {
        let refused = init(&h, &token, &union_id, option.clone()).await;
        assert_eq!(refusal(&refused), (400, Some(code)), "{option}");
    }
    let wrong_space = h
        .post(
            &format!(
                "/v1.0/storage/spaces/{}/files/multiPartUploadInfos/init?unionId={union_id}",
                DEFAULT_SPACE_ID + 1
            ),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(refusal(&wrong_space), (404, Some("spaceNotExist")));
    let no_token = h
        .post(
            &format!(
                "/v1.0/storage/spaces/{DEFAULT_SPACE_ID}/files/multiPartUploadInfos/init?unionId={union_id}"
            ),
            None,
            json!({}),
        )
        .await;
    assert_eq!(no_token.status, 401);
}

#[tokio::test]
async fn a_parts_signature_fits_only_its_own_url_and_headers() {
    let h = Harness::start().await;
    let (token, union_id) = granted(&h).await;
    let key = upload_key(&h, &token, &union_id).await;
    let infos = part_infos(&h, &token, &union_id, &key, &[1, 2]).await;
    let url = |info: &Value| -> String {
        info["headerSignatureInfo"]["resourceUrls"][0]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let code = |text: &str| -> String {
        text.split("<Code>")
            .nth(1)
            .and_then(|rest| rest.split("</Code>").next())
            .unwrap_or_default()
            .to_owned()
    };

    // Part 2's headers on part 1's URL.
    let mut crossed = infos[1].clone();
    crossed["headerSignatureInfo"]["resourceUrls"][0] = json!(url(&infos[0]));
    let (status, text) = put_part(&h, &crossed, pattern(5, 1)).await;
    assert_eq!(
        (status, code(&text).as_str()),
        (403, "SignatureDoesNotMatch")
    );

    let with_type = h
        .put(&infos[0], pattern(5, 1))
        .header("content-type", "application/octet-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(with_type.status(), 403);

    let mut other_upload = infos[0].clone();
    other_upload["headerSignatureInfo"]["resourceUrls"][0] =
        json!(url(&infos[0]).replace("uploadId=", "uploadId=0"));
    let (status, text) = put_part(&h, &other_upload, pattern(5, 1)).await;
    assert_eq!((status, code(&text).as_str()), (404, "NoSuchUpload"));

    let mut no_part = infos[0].clone();
    no_part["headerSignatureInfo"]["resourceUrls"][0] =
        json!(url(&infos[0]).replace("partNumber=1", "partNumber=0"));
    let (status, text) = put_part(&h, &no_part, pattern(5, 1)).await;
    assert_eq!((status, code(&text).as_str()), (400, "InvalidArgument"));

    // Every refused PUT is recorded with its part number, and nothing was stored.
    let statuses: Vec<(u32, u16)> = h
        .sandbox
        .part_puts()
        .iter()
        .map(|p| (p.part_number, p.status))
        .collect();
    assert_eq!(statuses, [(1, 403), (1, 403), (1, 404), (0, 400)]);
    let refused = commit(&h, &token, &union_id, &key, "a.bin").await;
    assert_eq!(refused.body["message"], "file not uploaded");
}

#[tokio::test]
async fn a_multipart_query_fault_hits_the_next_query_only() {
    let h = Harness::with(SandboxOptions {
        faults: vec!["multipart_query:server_error(503):1".parse().unwrap()],
        ..SandboxOptions::default()
    })
    .await;
    let (token, union_id) = granted(&h).await;
    let key = upload_key(&h, &token, &union_id).await;
    let faulted = query(&h, &token, &union_id, &key, &[1]).await;
    assert_eq!(refusal(&faulted), (503, Some("systemError")));
    let infos = part_infos(&h, &token, &union_id, &key, &[1]).await;
    assert_eq!(put_part(&h, &infos[0], pattern(MIN_PART, 1)).await.0, 200);

    let recorded: Vec<(u16, Option<String>)> = h
        .sandbox
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == Endpoint::MultipartQuery)
        .map(|r| (r.status, r.fault))
        .collect();
    assert_eq!(
        recorded,
        [(503, Some("server_error(503)".to_owned())), (200, None)]
    );
}

#[tokio::test]
async fn every_answering_fault_kind_hits_multipart_init_as_any_json_api() {
    let h = Harness::start().await;
    let (token, union_id) = granted(&h).await;
    let cases = [
        (Fault::ServerError(502), 502, "systemError"),
        (
            Fault::Throttle { pascal_case: false },
            403,
            "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi",
        ),
        (Fault::TokenRevoked, 400, "InvalidAuthentication"),
    ];
    for (fault, status, code) in cases {
        h.sandbox.inject(Endpoint::MultipartInit, fault.clone(), 1);
        let answer = init(&h, &token, &union_id, Value::Null).await;
        assert_eq!(refusal(&answer), (status, Some(code)), "{fault}");
    }
    h.sandbox.inject(
        Endpoint::MultipartInit,
        Fault::Throttle { pascal_case: true },
        1,
    );
    let pascal = init(&h, &token, &union_id, Value::Null).await;
    assert_eq!(
        pascal.body["Code"],
        "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"
    );
    h.sandbox
        .inject(Endpoint::MultipartInit, Fault::ThrottlePage, 1);
    let page = init(&h, &token, &union_id, Value::Null).await;
    assert_eq!(page.status, 403);
    assert!(page.body.is_string(), "an HTML page, not JSON");

    h.sandbox
        .inject(Endpoint::MultipartInit, Fault::DropConnection, 1);
    let dropped = h
        .request(
            reqwest::Method::POST,
            &format!(
                "/v1.0/storage/spaces/{DEFAULT_SPACE_ID}/files/multiPartUploadInfos/init?unionId={union_id}"
            ),
            Some(&token),
            Some(&json!({})),
        )
        .send()
        .await;
    assert!(dropped.is_err());
    assert_eq!(init(&h, &token, &union_id, Value::Null).await.status, 200);
}

#[tokio::test]
async fn init_and_query_each_have_their_own_rate_limit() {
    let h = Harness::with(SandboxOptions {
        qps_limit: Some(2),
        ..SandboxOptions::default()
    })
    .await;
    let (token, union_id) = granted(&h).await;
    let key = upload_key(&h, &token, &union_id).await;
    assert_eq!(init(&h, &token, &union_id, Value::Null).await.status, 200);
    let throttled = init(&h, &token, &union_id, Value::Null).await;
    assert_eq!(
        refusal(&throttled),
        (403, Some("Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"))
    );
    for _ in 0..2 {
        assert_eq!(query(&h, &token, &union_id, &key, &[1]).await.status, 200);
    }
    assert_eq!(query(&h, &token, &union_id, &key, &[1]).await.status, 403);
    h.sandbox.advance_clock(Duration::from_secs(1));
    assert_eq!(init(&h, &token, &union_id, Value::Null).await.status, 200);
}

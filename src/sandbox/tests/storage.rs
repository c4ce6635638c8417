//! Upload tickets, the OSS PUT and commit: what a careless client gets refused for.

use futures_util::stream;
use serde_json::json;

use super::super::DEFAULT_SPACE_ID;
use super::super::ids::md5_hex;
use super::{Harness, USER};

const BYTES: &[u8] = b"attachment bytes";

/// Token, unionId, grant and a fresh ticket (optionally with pre-checks).
async fn ticketed(
    h: &Harness,
    pre_check: Option<serde_json::Value>,
) -> (String, String, serde_json::Value) {
    let token = h.token().await;
    let union_id = h.union_id(&token, USER).await;
    assert_eq!(h.grant(&token, USER).await.status, 200);
    let ticket = h.ticket(&token, &union_id, pre_check).await;
    assert_eq!(ticket.status, 200, "{}", ticket.body);
    (token, union_id, ticket.body)
}

async fn xml_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let code = text
        .split("<Code>")
        .nth(1)
        .and_then(|rest| rest.split("</Code>").next())
        .unwrap_or_default()
        .to_owned();
    (status, code)
}

#[tokio::test]
async fn an_extra_content_type_on_the_put_breaks_the_signature() {
    let h = Harness::start().await;
    let (token, union_id, ticket) = ticketed(&h, None).await;
    let put = h
        .put(&ticket, BYTES)
        .header("content-type", "application/octet-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(
        xml_code(put).await,
        (403, "SignatureDoesNotMatch".to_owned())
    );

    // Nothing was stored, so the commit has no bytes to commit.
    let commit = h
        .commit(
            &token,
            &union_id,
            json!({"uploadKey": ticket["uploadKey"], "name": "a.pdf", "parentId": "0"}),
        )
        .await;
    assert_eq!(commit.status, 400);
    assert_eq!(commit.body["code"], "paramError");
    assert_eq!(commit.body["message"], "file not uploaded");
}

#[tokio::test]
async fn a_dingtalk_token_or_a_changed_signed_header_on_the_put_is_refused() {
    let h = Harness::start().await;
    let (token, _, ticket) = ticketed(&h, None).await;
    let with_token = h
        .put(&ticket, BYTES)
        .header("x-acs-dingtalk-access-token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(xml_code(with_token).await.1, "SignatureDoesNotMatch");

    let url = ticket["headerSignatureInfo"]["resourceUrls"][0]
        .as_str()
        .unwrap();
    let unsigned = h.http.put(url).body(BYTES).send().await.unwrap();
    assert_eq!(xml_code(unsigned).await.1, "SignatureDoesNotMatch");
}

#[tokio::test]
async fn a_chunked_put_without_content_length_is_refused() {
    let h = Harness::start().await;
    let (_, _, ticket) = ticketed(&h, None).await;
    let chunks = stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(BYTES))]);
    let put = h
        .put(&ticket, reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(
        xml_code(put).await,
        (411, "MissingContentLength".to_owned())
    );
}

#[tokio::test]
async fn an_expired_tickets_put_is_denied_as_expired() {
    let h = Harness::start().await;
    let (_, _, ticket) = ticketed(&h, None).await;
    h.sandbox.expire_tickets();
    let put = h.put(&ticket, BYTES).send().await.unwrap();
    let status = put.status().as_u16();
    let text = put.text().await.unwrap();
    assert_eq!(status, 403);
    assert!(text.contains("<Code>AccessDenied</Code>"), "{text}");
    assert!(text.contains("Request has expired."), "{text}");
}

#[tokio::test]
async fn bytes_that_differ_from_the_pre_check_are_an_invalid_digest() {
    let h = Harness::start().await;
    let pre = json!({"md5": md5_hex(b"other bytes"), "size": BYTES.len()});
    let (_, _, ticket) = ticketed(&h, Some(pre)).await;
    let put = h.put(&ticket, BYTES).send().await.unwrap();
    assert_eq!(xml_code(put).await, (400, "InvalidDigest".to_owned()));
}

#[tokio::test]
async fn commit_refuses_unknown_and_reused_upload_keys() {
    let h = Harness::start().await;
    let (token, union_id, ticket) = ticketed(&h, None).await;
    let unknown = h
        .commit(
            &token,
            &union_id,
            json!({"uploadKey": "no-such-key", "name": "a.pdf", "parentId": "0"}),
        )
        .await;
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.body["code"], "paramError");
    assert_eq!(unknown.body["message"], "uploadKey not found");

    assert_eq!(h.put(&ticket, BYTES).send().await.unwrap().status(), 200);
    let body = json!({"uploadKey": ticket["uploadKey"], "name": "a.pdf", "parentId": "0"});
    let other_user = h.commit(&token, "union-someoneelse", body.clone()).await;
    assert_eq!(
        (other_user.status, other_user.body["code"].as_str()),
        (403, Some("permissionDenied"))
    );
    assert_eq!(h.commit(&token, &union_id, body.clone()).await.status, 200);
    let again = h.commit(&token, &union_id, body).await;
    assert_eq!(again.body["message"], "uploadKey already committed");
}

#[tokio::test]
async fn name_conflicts_follow_the_conflict_strategy() {
    let h = Harness::start().await;
    let token = h.token().await;
    let first = h.upload(&token, "a.pdf", BYTES).await;
    let renamed = h.upload(&token, "a.pdf", BYTES).await;
    assert_eq!(renamed["name"], "a(1).pdf");
    assert_ne!(renamed["id"], first["id"]);

    for (strategy, status, code) in [
        ("RETURN_DENTRY_IF_EXISTS", 200, None),
        ("RETURN_ERROR_IF_EXISTS", 400, Some("dentryNameConflict")),
    ] {
        let (_, union_id, ticket) = ticketed(&h, None).await;
        assert_eq!(h.put(&ticket, BYTES).send().await.unwrap().status(), 200);
        let answer = h
            .commit(
                &token,
                &union_id,
                json!({"uploadKey": ticket["uploadKey"], "name": "a.pdf", "parentId": "0",
                       "option": {"conflictStrategy": strategy}}),
            )
            .await;
        assert_eq!(answer.status, status, "{}", answer.body);
        assert_eq!(answer.body["code"].as_str(), code);
        if status == 200 {
            assert_eq!(answer.body["dentry"]["id"], first["id"]);
        }
    }
    assert_eq!(h.sandbox.files().len(), 2);
}

#[tokio::test]
async fn illegal_file_names_are_refused_on_ticket_and_commit() {
    let h = Harness::start().await;
    let (token, union_id, ticket) = ticketed(&h, None).await;
    let bad = h
        .ticket(&token, &union_id, Some(json!({"name": "bad|name.pdf"})))
        .await;
    assert_eq!(
        (bad.status, bad.body["code"].as_str()),
        (400, Some("dentryNameIllegal"))
    );
    assert_eq!(h.put(&ticket, BYTES).send().await.unwrap().status(), 200);
    for name in ["", " a.pdf", "a.", "dir/a.pdf", "a*b.pdf"] {
        let answer = h
            .commit(
                &token,
                &union_id,
                json!({"uploadKey": ticket["uploadKey"], "name": name, "parentId": "0"}),
            )
            .await;
        assert_eq!(answer.body["code"], "dentryNameIllegal", "{name:?}");
    }
}

#[tokio::test]
async fn tickets_need_a_live_grant_and_the_right_space() {
    let h = Harness::start().await;
    let token = h.token().await;
    let union_id = h.union_id(&token, USER).await;
    let ungranted = h.ticket(&token, &union_id, None).await;
    assert_eq!(
        (ungranted.status, ungranted.body["code"].as_str()),
        (403, Some("permissionDenied"))
    );

    h.grant(&token, USER).await;
    let wrong_space = h
        .post(
            &format!(
                "/v1.0/storage/spaces/{}/files/uploadInfos/query?unionId={union_id}",
                DEFAULT_SPACE_ID + 1
            ),
            Some(&token),
            json!({"protocol": "HEADER_SIGNATURE", "multipart": false}),
        )
        .await;
    assert_eq!(
        (wrong_space.status, wrong_space.body["code"].as_str()),
        (404, Some("spaceNotExist"))
    );

    let wrong_protocol = h
        .post(
            &format!(
                "/v1.0/storage/spaces/{DEFAULT_SPACE_ID}/files/uploadInfos/query?unionId={union_id}"
            ),
            Some(&token),
            json!({"protocol": "header_signature", "multipart": false}),
        )
        .await;
    assert_eq!(wrong_protocol.body["code"], "paramError.protocol");
    let missing_multipart = h
        .post(
            &format!(
                "/v1.0/storage/spaces/{DEFAULT_SPACE_ID}/files/uploadInfos/query?unionId={union_id}"
            ),
            Some(&token),
            json!({"protocol": "HEADER_SIGNATURE"}),
        )
        .await;
    assert_eq!(missing_multipart.body["code"], "paramError");
    assert!(
        missing_multipart.body["message"]
            .as_str()
            .unwrap()
            .contains("multipart")
    );
}

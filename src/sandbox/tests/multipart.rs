//! Multipart uploads end to end: init, part URLs in batches, part PUTs in any order,
//! commit of the assembled file, and what the sandbox records of each part.

use std::time::Duration;

use serde_json::{Value, json};

use super::super::ids::md5_hex;
use super::super::{DEFAULT_SPACE_ID, Endpoint, SandboxOptions};
use super::{Answer, Harness, USER};

/// The smallest part OSS accepts when it is not the last.
pub(super) const MIN_PART: usize = 100 * 1024;

/// `len` bytes of a pattern that differs with `seed`, so misplaced parts show.
pub(super) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ seed.wrapping_mul(37))
        .collect()
}

/// Token, unionId and grant for [`USER`].
pub(super) async fn granted(h: &Harness) -> (String, String) {
    let token = h.token().await;
    let union_id = h.union_id(&token, USER).await;
    assert_eq!(h.grant(&token, USER).await.status, 200);
    (token, union_id)
}

/// multiPartUploadInfos/init with the given `option` (none when `Value::Null`).
pub(super) async fn init(h: &Harness, token: &str, union_id: &str, option: Value) -> Answer {
    let body = if option.is_null() {
        json!({})
    } else {
        json!({"option": option})
    };
    h.post(
        &format!(
            "/v1.0/storage/spaces/{DEFAULT_SPACE_ID}/files/multiPartUploadInfos/init?unionId={union_id}"
        ),
        Some(token),
        body,
    )
    .await
}

/// An accepted init's uploadKey.
pub(super) async fn upload_key(h: &Harness, token: &str, union_id: &str) -> String {
    let answer = init(h, token, union_id, Value::Null).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["uploadKey"].as_str().unwrap().to_owned()
}

/// multiPartUploadInfos/query for `parts`.
pub(super) async fn query(
    h: &Harness,
    token: &str,
    union_id: &str,
    upload_key: &str,
    parts: &[i32],
) -> Answer {
    h.post(
        &format!("/v1.0/storage/spaces/files/multiPartUploadInfos/query?unionId={union_id}"),
        Some(token),
        json!({"uploadKey": upload_key, "partNumbers": parts, "option": {"preferIntranet": false}}),
    )
    .await
}

/// The accepted query's infos, one per part asked for.
pub(super) async fn part_infos(
    h: &Harness,
    token: &str,
    union_id: &str,
    upload_key: &str,
    parts: &[i32],
) -> Vec<Value> {
    let answer = query(h, token, union_id, upload_key, parts).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["multipartHeaderSignatureInfos"]
        .as_array()
        .unwrap()
        .clone()
}

/// The PUT of one part exactly as its info says; status and the body's text.
pub(super) async fn put_part(h: &Harness, info: &Value, bytes: Vec<u8>) -> (u16, String) {
    let response = h.put(info, bytes).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

pub(super) async fn commit(
    h: &Harness,
    token: &str,
    union_id: &str,
    upload_key: &str,
    name: &str,
) -> Answer {
    h.commit(
        token,
        union_id,
        json!({"uploadKey": upload_key, "name": name, "parentId": "0"}),
    )
    .await
}

#[tokio::test]
async fn parts_queried_in_two_batches_and_put_out_of_order_commit_as_their_concatenation() {
    let h = Harness::start().await;
    let (token, union_id) = granted(&h).await;
    let parts = [
        pattern(MIN_PART + 5_000, 1),
        pattern(MIN_PART, 2),
        pattern(7_000, 3),
    ];
    let whole = parts.concat();
    let pre =
        json!({"md5": md5_hex(&whole), "size": whole.len(), "parentId": "0", "name": "big.bin"});
    let initiated = init(
        &h,
        &token,
        &union_id,
        json!({"storageDriver": "DINGTALK", "preCheckParam": pre, "preferRegion": "ZHANGJIAKOU", "preferIntranet": false}),
    )
    .await;
    assert_eq!(initiated.status, 200, "{}", initiated.body);
    assert_eq!(initiated.body["storageDriver"], "DINGTALK");
    let key = initiated.body["uploadKey"].as_str().unwrap().to_owned();

    let mut infos = part_infos(&h, &token, &union_id, &key, &[2, 1]).await;
    infos.extend(part_infos(&h, &token, &union_id, &key, &[3]).await);
    let numbers: Vec<&Value> = infos.iter().map(|i| &i["partNumber"]).collect();
    assert_eq!(numbers, [2, 1, 3], "in request order");
    let info = &infos[0]["headerSignatureInfo"];
    let url = info["resourceUrls"][0].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/oss/", h.base)) && url.contains("?partNumber=2&uploadId="),
        "{url}"
    );
    assert!(url.contains("&Expires="), "{url}");
    assert_eq!(info["expirationSeconds"], 900);
    assert_eq!(info["region"], "ZHANGJIAKOU");
    assert_eq!(info["internalResourceUrls"], json!([]));
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

    for (info, part) in [
        (&infos[2], &parts[2]),
        (&infos[1], &parts[0]),
        (&infos[0], &parts[1]),
    ] {
        let response = h.put(info, part.clone()).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let etag = response.headers()["etag"].to_str().unwrap().to_owned();
        assert_eq!(etag, format!("\"{}\"", md5_hex(part).to_uppercase()));
        assert!(response.text().await.unwrap().is_empty());
    }

    let committed = h
        .commit(
            &token,
            &union_id,
            json!({"uploadKey": key, "name": "big.bin", "parentId": "0", "option": {"size": whole.len()}}),
        )
        .await;
    assert_eq!(committed.status, 200, "{}", committed.body);
    let dentry = &committed.body["dentry"];
    assert_eq!(dentry["size"], whole.len());
    assert_eq!(dentry["name"], "big.bin");
    let file_id = dentry["id"].as_str().unwrap();
    assert_eq!(h.sandbox.file_content(file_id).unwrap(), whole);
    let file = h.sandbox.files().pop().unwrap();
    assert_eq!((file.size, file.md5), (whole.len() as u64, md5_hex(&whole)));

    // The same dentry as a simple upload's, field for field.
    let simple = h.upload(&token, "small.bin", b"small").await;
    let fields = |v: &Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(fields(dentry), fields(&simple));

    let puts = h.sandbox.part_puts();
    let received: Vec<(u32, u64, u16)> = puts
        .iter()
        .map(|p| (p.part_number, p.body_len, p.status))
        .collect();
    assert_eq!(
        received,
        [
            (3, parts[2].len() as u64, 200),
            (1, parts[0].len() as u64, 200),
            (2, parts[1].len() as u64, 200),
        ]
    );
    assert!(
        puts.iter()
            .all(|p| p.upload_key.as_deref() == Some(key.as_str()))
    );
    assert_eq!(
        puts[0].body_md5.as_deref(),
        Some(md5_hex(&parts[2]).as_str())
    );
}

#[tokio::test]
async fn a_query_of_31_parts_is_refused_naming_the_limit() {
    let h = Harness::start().await;
    let (token, union_id) = granted(&h).await;
    let key = upload_key(&h, &token, &union_id).await;
    let many: Vec<i32> = (1..=31).collect();
    let refused = query(&h, &token, &union_id, &key, &many).await;
    assert_eq!(
        (refused.status, refused.body["code"].as_str()),
        (400, Some("paramError"))
    );
    let message = refused.body["message"].as_str().unwrap();
    assert!(message.contains("at most 30"), "{message}");
    assert_eq!(
        part_infos(&h, &token, &union_id, &key, &many[..30])
            .await
            .len(),
        30
    );
}

#[tokio::test]
async fn empty_repeated_or_out_of_range_part_numbers_are_refused_naming_the_problem() {
    let h = Harness::start().await;
    let (token, union_id) = granted(&h).await;
    let key = upload_key(&h, &token, &union_id).await;
    for (parts, expected) in [
        (&[][..], "must not be empty"),
        (&[0], "partNumber 0 is outside 1..=10000"),
        (&[10_001], "partNumber 10001 is outside 1..=10000"),
        (&[-1], "partNumber -1 is outside"),
        (&[4, 5, 4], "partNumber 4 is repeated"),
    ] {
        let refused = query(&h, &token, &union_id, &key, parts).await;
        assert_eq!(refused.status, 400, "{parts:?}");
        assert_eq!(refused.body["code"], "paramError");
        let message = refused.body["message"].as_str().unwrap();
        assert!(message.contains(expected), "{parts:?}: {message}");
    }
    assert_eq!(
        part_infos(&h, &token, &union_id, &key, &[10_000])
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn a_part_url_past_its_ttl_is_denied_as_expired_and_a_fresh_query_gives_one_that_works() {
    let h = Harness::with(SandboxOptions {
        ticket_ttl: Duration::from_secs(60),
        ..SandboxOptions::default()
    })
    .await;
    let (token, union_id) = granted(&h).await;
    let key = upload_key(&h, &token, &union_id).await;
    let first = part_infos(&h, &token, &union_id, &key, &[1])
        .await
        .remove(0);
    assert_eq!(first["headerSignatureInfo"]["expirationSeconds"], 60);
    h.sandbox.advance_clock(Duration::from_secs(30));
    let second = part_infos(&h, &token, &union_id, &key, &[1])
        .await
        .remove(0);
    assert_ne!(
        first["headerSignatureInfo"]["headers"]["Authorization"],
        second["headerSignatureInfo"]["headers"]["Authorization"],
        "every query signs anew"
    );
    // Querying again does not revoke the older URL.
    assert_eq!(put_part(&h, &first, pattern(10, 1)).await.0, 200);

    h.sandbox.advance_clock(Duration::from_secs(31));
    let (status, text) = put_part(&h, &first, pattern(10, 1)).await;
    assert_eq!(status, 403);
    assert!(text.contains("<Code>AccessDenied</Code>"), "{text}");
    assert!(text.contains("Request has expired."), "{text}");
    assert_eq!(put_part(&h, &second, pattern(10, 2)).await.0, 200);

    h.sandbox.advance_clock(Duration::from_secs(30));
    assert_eq!(put_part(&h, &second, pattern(10, 2)).await.0, 403);
    let fresh = part_infos(&h, &token, &union_id, &key, &[1])
        .await
        .remove(0);
    assert_eq!(put_part(&h, &fresh, pattern(10, 3)).await.0, 200);
    // Expiring every ticket expires part URLs too.
    h.sandbox.expire_tickets();
    assert_eq!(put_part(&h, &fresh, pattern(10, 4)).await.0, 403);
    let statuses: Vec<u16> = h.sandbox.part_puts().iter().map(|p| p.status).collect();
    assert_eq!(statuses, [200, 403, 200, 403, 200, 403]);

    let committed = commit(&h, &token, &union_id, &key, "a.bin").await;
    assert_eq!(committed.status, 200, "{}", committed.body);
    let file_id = committed.body["dentry"]["id"].as_str().unwrap();
    assert_eq!(h.sandbox.file_content(file_id).unwrap(), pattern(10, 3));
}

#[tokio::test]
async fn a_commit_with_a_missing_part_is_refused_naming_it_and_can_follow_the_part() {
    let h = Harness::start().await;
    let (token, union_id) = granted(&h).await;
    let key = upload_key(&h, &token, &union_id).await;
    let infos = part_infos(&h, &token, &union_id, &key, &[1, 2, 3]).await;
    assert_eq!(put_part(&h, &infos[0], pattern(MIN_PART, 1)).await.0, 200);
    assert_eq!(put_part(&h, &infos[2], pattern(50, 3)).await.0, 200);

    let refused = commit(&h, &token, &union_id, &key, "a.bin").await;
    assert_eq!(
        (refused.status, refused.body["code"].as_str()),
        (400, Some("paramError"))
    );
    let message = refused.body["message"].as_str().unwrap();
    assert!(message.starts_with("part 2 is missing"), "{message}");

    assert_eq!(put_part(&h, &infos[1], pattern(MIN_PART, 2)).await.0, 200);
    let committed = commit(&h, &token, &union_id, &key, "a.bin").await;
    assert_eq!(committed.status, 200, "{}", committed.body);
    assert_eq!(committed.body["dentry"]["size"], 2 * MIN_PART + 50);
}

#[tokio::test]
async fn a_part_under_100_kb_that_is_not_the_last_is_refused_at_commit() {
    let h = Harness::start().await;
    let (token, union_id) = granted(&h).await;
    let key = upload_key(&h, &token, &union_id).await;
    let infos = part_infos(&h, &token, &union_id, &key, &[1, 2]).await;
    assert_eq!(
        put_part(&h, &infos[0], pattern(MIN_PART - 1, 1)).await.0,
        200
    );
    assert_eq!(put_part(&h, &infos[1], pattern(10, 2)).await.0, 200);
    let refused = commit(&h, &token, &union_id, &key, "a.bin").await;
    assert_eq!(
        (refused.status, refused.body["code"].as_str()),
        (400, Some("paramError"))
    );
    let message = refused.body["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("part 1 is {} bytes", MIN_PART - 1))
            && message.contains("102400"),
        "{message}"
    );
    assert!(h.sandbox.files().is_empty());
}

#[tokio::test]
async fn a_part_put_twice_counts_both_receipts_but_the_file_holds_the_second() {
    let h = Harness::start().await;
    let (token, union_id) = granted(&h).await;
    let key = upload_key(&h, &token, &union_id).await;
    let infos = part_infos(&h, &token, &union_id, &key, &[1, 2]).await;
    let (first, second, tail) = (
        pattern(MIN_PART + 9, 1),
        pattern(MIN_PART, 2),
        pattern(3, 3),
    );
    assert_eq!(put_part(&h, &infos[0], first.clone()).await.0, 200);
    assert_eq!(put_part(&h, &infos[1], tail.clone()).await.0, 200);
    assert_eq!(put_part(&h, &infos[0], second.clone()).await.0, 200);

    let puts = h.sandbox.part_puts();
    let part_one: u64 = puts
        .iter()
        .filter(|p| p.part_number == 1)
        .map(|p| p.body_len)
        .sum();
    assert_eq!(part_one, (first.len() + second.len()) as u64);
    let requests = h.sandbox.requests();
    let recorded: Vec<Option<u32>> = requests
        .iter()
        .filter(|r| r.endpoint == Endpoint::OssPut)
        .map(|r| r.part_number)
        .collect();
    assert_eq!(recorded, [Some(1), Some(2), Some(1)]);

    let committed = commit(&h, &token, &union_id, &key, "a.bin").await;
    assert_eq!(committed.status, 200, "{}", committed.body);
    let file_id = committed.body["dentry"]["id"].as_str().unwrap();
    assert_eq!(
        h.sandbox.file_content(file_id).unwrap(),
        [second, tail].concat()
    );
}

#[tokio::test]
async fn an_upload_over_64_mib_keeps_no_bytes_and_its_md5_is_the_multipart_etag() {
    let h = Harness::start().await;
    let (token, union_id) = granted(&h).await;
    let key = upload_key(&h, &token, &union_id).await;
    let infos = part_infos(&h, &token, &union_id, &key, &[1, 2]).await;
    let parts = [pattern(40 << 20, 1), pattern(30 << 20, 2)];
    for (info, part) in infos.iter().zip(&parts) {
        assert_eq!(put_part(&h, info, part.clone()).await.0, 200);
    }
    let committed = commit(&h, &token, &union_id, &key, "huge.bin").await;
    assert_eq!(committed.status, 200, "{}", committed.body);
    assert_eq!(committed.body["dentry"]["size"], 70 << 20);
    let file_id = committed.body["dentry"]["id"].as_str().unwrap();
    assert_eq!(h.sandbox.file_content(file_id), None);
    let binary: Vec<u8> = parts
        .iter()
        .flat_map(|p| hex::decode(md5_hex(p)).unwrap())
        .collect();
    assert_eq!(
        h.sandbox.files().pop().unwrap().md5,
        format!("{}-2", md5_hex(&binary))
    );
}

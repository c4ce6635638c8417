//! Storage v1.0 endpoints: upload tickets (uploadInfos/query) and file commit, for simple
//! and multipart uploads alike (the multipart calls themselves are in `multipart.rs`).

use std::collections::BTreeMap;

use axum::response::Response;
use serde_json::{Value, json};

use super::error::{self, Refusal};
use super::ids;
use super::multipart;
use super::pipeline::{self, Call};
use super::records::StoredFile;
use super::state::{FileRecord, Shared, State, Ticket, Upload};
use super::wire::{CommitRequest, UploadInfoRequest, UploadOption};

const REGIONS: [&str; 5] = [
    "ZHANGJIAKOU",
    "SHENZHEN",
    "SHANGHAI",
    "SINGAPORE",
    "UNKNOWN",
];

/// Checks the `{spaceId}` path segment and the `unionId` query parameter shared by
/// the storage calls addressed to a space; returns the unionId.
pub(super) fn space_and_operator<'a>(shared: &Shared, call: &'a Call) -> Result<&'a str, Refusal> {
    // Path: /v1.0/storage/spaces/{spaceId}/files/...
    let space = call.path.split('/').nth(4).unwrap_or_default();
    if space != shared.options.space_id.to_string() {
        return Err(error::api(
            404,
            "spaceNotExist",
            format!("space {space} does not exist"),
        )
        .into());
    }
    operator(call)
}

/// The `unionId` query parameter every storage call needs.
pub(super) fn operator(call: &Call) -> Result<&str, Refusal> {
    match call.query.get("unionId").filter(|u| !u.is_empty()) {
        Some(union_id) => Ok(union_id),
        None => Err(error::api(400, "paramError", "unionId is required").into()),
    }
}

/// 403 for a user without a live upload grant (spaces/infos/query gives one).
pub(super) fn no_upload_grant() -> Response {
    error::api(
        403,
        "permissionDenied",
        "没有权限: the user has no upload grant on this space; call spaces/infos/query first",
    )
}

/// The headers of a fresh OSS header signature (V1) made at `now_ms`: a new Authorization
/// every time, so a client that sends an older one is told apart.
pub(super) fn signed_headers(now_ms: i64) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "Authorization".to_owned(),
            format!("OSS sandbox:{}", ids::random_hex(20)),
        ),
        ("x-oss-date".to_owned(), ids::rfc1123(now_ms)),
    ])
}

/// The `Expires` (unix seconds) of a URL signed at `now_ms` that lives `ttl`.
pub(super) fn expires_param(now_ms: i64, ttl: std::time::Duration) -> i64 {
    now_ms / 1000 + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2)
}

/// The checks uploadInfos/query and multiPartUploadInfos/init make of their `option`.
pub(super) fn check_option(option: Option<&UploadOption>) -> Result<(), Refusal> {
    let Some(option) = option else {
        return Ok(());
    };
    if option
        .storage_driver
        .as_deref()
        .is_some_and(|d| d != "DINGTALK")
    {
        return Err(error::api(
            400,
            "paramError.storageDriver",
            "storageDriver must be DINGTALK",
        )
        .into());
    }
    if option
        .prefer_region
        .as_deref()
        .is_some_and(|r| !REGIONS.contains(&r))
    {
        return Err(error::api(400, "paramError", "preferRegion is not a known region").into());
    }
    let Some(pre) = option.pre_check_param.as_ref() else {
        return Ok(());
    };
    if let Some(problem) = pre.name.as_deref().and_then(name_problem) {
        return Err(illegal_name(problem).into());
    }
    if pre.size.is_some_and(|s| s < 0) {
        return Err(
            error::api(400, "paramError", "preCheckParam.size must not be negative").into(),
        );
    }
    if pre
        .md5
        .as_deref()
        .is_some_and(|m| m.len() != 32 || hex::decode(m).is_err())
    {
        return Err(
            error::api(400, "paramError", "preCheckParam.md5 must be 32 hex digits").into(),
        );
    }
    if pre.parent_id.as_deref().is_some_and(|p| p != "0") {
        return Err(error::api(400, "paramError", "preCheckParam.parentId does not exist").into());
    }
    Ok(())
}

/// DingPan's name rules; `None` when the name is acceptable.
pub(super) fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("name must not be empty")
    } else if name.chars().count() > 255 {
        Some("name must not exceed 255 characters")
    } else if name.starts_with(' ') || name.ends_with(' ') {
        Some("name must not start or end with a space")
    } else if name.ends_with('.') {
        Some("name must not end with '.'")
    } else if name.contains(['\t', '*', '"', '<', '>', '|', '/', '\\']) {
        Some("name must not contain TAB * \" < > | / \\")
    } else {
        None
    }
}

fn illegal_name(problem: &str) -> Response {
    error::api(400, "dentryNameIllegal", format!("文件名不合法: {problem}"))
}

/// `POST /v1.0/storage/spaces/{spaceId}/files/uploadInfos/query?unionId=U`
pub(super) fn upload_info(shared: &Shared, call: &Call) -> Response {
    if let Err(response) = pipeline::require_token(shared, call) {
        return *response;
    }
    let union_id = match space_and_operator(shared, call) {
        Ok(union_id) => union_id.to_owned(),
        Err(response) => return *response,
    };
    let request: UploadInfoRequest = match pipeline::json_body(call, "paramError") {
        Ok(request) => request,
        Err(response) => return *response,
    };
    if request.protocol != "HEADER_SIGNATURE" {
        return error::api(
            400,
            "paramError.protocol",
            "protocol must be HEADER_SIGNATURE",
        );
    }
    if request.multipart {
        return error::api(
            400,
            "dentryUploadProtocolNotSupport",
            "multipart upload is not supported by this call; use multiPartUploadInfos",
        );
    }
    if let Err(response) = check_option(request.option.as_ref()) {
        return *response;
    }
    let pre_check = request
        .option
        .as_ref()
        .and_then(|o| o.pre_check_param.as_ref());

    let mut state = shared.lock();
    if !state.may_upload(&union_id) {
        return no_upload_grant();
    }
    let ttl = shared.options.ticket_ttl;
    let upload_key = format!("sbx{}", ids::random_hex(24));
    let object_key = format!("{}/{}", shared.options.space_id, ids::random_hex(16));
    let now_ms = ids::now_ms();
    let expires = expires_param(now_ms, ttl);
    let signed_headers = signed_headers(now_ms);
    let ticket = Ticket {
        upload_key: upload_key.clone(),
        union_id,
        expires_at: state.now() + ttl,
        signed_headers: signed_headers.clone(),
        pre_md5: pre_check
            .and_then(|p| p.md5.as_deref())
            .map(str::to_lowercase),
        pre_size: pre_check.and_then(|p| p.size),
        upload: None,
        committed: false,
    };
    state.tickets.insert(upload_key.clone(), ticket);
    state.objects.insert(object_key.clone(), upload_key.clone());
    drop(state);

    error::ok(&json!({
        "uploadKey": upload_key,
        "storageDriver": "DINGTALK",
        "protocol": "HEADER_SIGNATURE",
        "headerSignatureInfo": {
            "resourceUrls": [format!("{}/oss/{object_key}?Expires={expires}", shared.base_url)],
            "headers": signed_headers,
            "expirationSeconds": ttl.as_secs(),
            "region": "ZHANGJIAKOU",
            "internalResourceUrls": [],
        },
    }))
}

/// `POST /v1.0/storage/spaces/{spaceId}/files/commit?unionId=U`
pub(super) fn commit(shared: &Shared, call: &Call) -> Response {
    if let Err(response) = pipeline::require_token(shared, call) {
        return *response;
    }
    let union_id = match space_and_operator(shared, call) {
        Ok(union_id) => union_id.to_owned(),
        Err(response) => return *response,
    };
    let request: CommitRequest = match pipeline::json_body(call, "paramError") {
        Ok(request) => request,
        Err(response) => return *response,
    };
    if let Some(problem) = name_problem(&request.name) {
        return illegal_name(problem);
    }
    if request.parent_id != "0" {
        return error::api(400, "paramError", "parentId does not exist in this space");
    }
    let option = request.option.as_ref();
    let strategy = option
        .and_then(|o| o.conflict_strategy.as_deref())
        .unwrap_or("AUTO_RENAME");
    if ![
        "AUTO_RENAME",
        "OVERWRITE",
        "RETURN_DENTRY_IF_EXISTS",
        "RETURN_ERROR_IF_EXISTS",
    ]
    .contains(&strategy)
    {
        return error::api(
            400,
            "paramError.conflictStrategy",
            "unknown conflictStrategy",
        );
    }
    let properties = option
        .and_then(|o| o.app_properties.as_deref())
        .unwrap_or_default();
    if properties.len() > 3 {
        return error::api(400, "paramError", "appProperties allows at most 3 entries");
    }
    if properties.iter().any(|p| {
        p.name.is_empty()
            || p.visibility
                .as_deref()
                .is_some_and(|v| v != "PUBLIC" && v != "PRIVATE")
    }) {
        return error::api(
            400,
            "paramError",
            "appProperties need a name and visibility PUBLIC or PRIVATE",
        );
    }

    let mut state = shared.lock();
    // Writing the file into the space needs the upload right as much as asking for its
    // ticket did: a grant that lapsed during a long PUT refuses the commit.
    if !state.may_upload(&union_id) {
        return error::api(
            403,
            "permissionDenied",
            "没有权限: the user has no upload grant on this space; call spaces/infos/query again",
        );
    }
    let upload = match uploaded(&state, &request.upload_key, &union_id) {
        Ok(upload) => upload,
        Err(response) => return *response,
    };
    if option
        .and_then(|o| o.size)
        .is_some_and(|size| u64::try_from(size).ok() != Some(upload.len))
    {
        return error::api(
            400,
            "paramError",
            "option.size does not match the uploaded file",
        );
    }

    let existing = state.files.position_of_name(&request.name);
    let now_ms = ids::now_ms();
    let index = match (existing, strategy) {
        (Some(_), "RETURN_ERROR_IF_EXISTS") => {
            return error::api(
                400,
                "dentryNameConflict",
                format!("文件名冲突: {} already exists", request.name),
            );
        }
        (Some(index), "RETURN_DENTRY_IF_EXISTS") => index,
        (Some(index), "OVERWRITE") => {
            let record = state.files.get_mut(index);
            record.file.size = upload.len;
            record.file.md5 = upload.md5.clone();
            record.file.upload_key = request.upload_key.clone();
            record.content = upload.content.clone();
            record.version += 1;
            record.modified_ms = now_ms;
            index
        }
        (existing, _) => {
            let name = match existing {
                Some(_) => state.files.free_name(&request.name),
                None => request.name.clone(),
            };
            let file_id = state.next_dentry_id();
            state.files.push(FileRecord {
                file: StoredFile {
                    space_id: shared.options.space_id.to_string(),
                    file_id,
                    extension: extension(&name),
                    name,
                    size: upload.len,
                    md5: upload.md5.clone(),
                    upload_key: request.upload_key.clone(),
                },
                content: upload.content.clone(),
                version: 1,
                creator: union_id.clone(),
                created_ms: now_ms,
                modified_ms: now_ms,
                uuid: ids::uuid_like(),
            })
        }
    };
    if let Some(ticket) = state.tickets.get_mut(&request.upload_key) {
        ticket.committed = true;
    } else if let Some(upload) = state.multiparts.get_mut(&request.upload_key) {
        upload.mark_committed();
    }
    let body = json!({"dentry": dentry(state.files.get(index), &union_id)});
    drop(state);
    error::ok(&body)
}

/// The bytes `upload_key` stands for, a simple upload's or a multipart upload's assembled
/// parts, when `union_id` may commit them.
fn uploaded(state: &State, upload_key: &str, union_id: &str) -> Result<Upload, Refusal> {
    let (uploader, committed) = match (
        state.tickets.get(upload_key),
        state.multiparts.get(upload_key),
    ) {
        (Some(ticket), _) => (&ticket.union_id, ticket.committed),
        (None, Some(upload)) => (&upload.union_id, upload.committed),
        (None, None) => return Err(error::api(400, "paramError", "uploadKey not found").into()),
    };
    if *uploader != union_id {
        return Err(error::api(
            403,
            "permissionDenied",
            "没有权限: unionId is not the uploader of this uploadKey",
        )
        .into());
    }
    if committed {
        return Err(error::api(400, "paramError", "uploadKey already committed").into());
    }
    if let Some(upload) = state.multiparts.get(upload_key) {
        return multipart::assemble(upload);
    }
    state
        .tickets
        .get(upload_key)
        .and_then(|ticket| ticket.upload.clone())
        .ok_or_else(|| error::api(400, "paramError", "file not uploaded").into())
}

/// Lowercase suffix without the dot; empty when there is none.
pub(super) fn extension(name: &str) -> String {
    match name.rfind('.') {
        Some(dot) if dot > 0 => name[dot + 1..].to_lowercase(),
        _ => String::new(),
    }
}

fn dentry(record: &FileRecord, modifier: &str) -> Value {
    let file = &record.file;
    json!({
        "id": file.file_id,
        "spaceId": file.space_id,
        "parentId": "0",
        "type": "FILE",
        "name": file.name,
        "size": file.size,
        "path": format!("/{}", file.name),
        "version": record.version,
        "status": "NORMAL",
        "extension": file.extension,
        "creatorId": record.creator,
        "modifierId": modifier,
        "createTime": ids::iso_minute(record.created_ms),
        "modifiedTime": ids::iso_minute(record.modified_ms),
        "uuid": record.uuid,
        "partitionType": "PUBLIC_OSS_PARTITION",
        "storageDriver": "DINGTALK",
        "properties": {"readOnly": false},
    })
}

//! Storage v1.0 endpoints: upload tickets (uploadInfos/query) and file commit.

use std::collections::BTreeMap;

use axum::response::Response;
use serde_json::{Value, json};

use super::error::{self, Refusal};
use super::ids;
use super::pipeline::{self, Call};
use super::records::StoredFile;
use super::state::{FileRecord, Shared, Ticket};
use super::wire::{CommitRequest, UploadInfoRequest};

const REGIONS: [&str; 5] = [
    "ZHANGJIAKOU",
    "SHENZHEN",
    "SHANGHAI",
    "SINGAPORE",
    "UNKNOWN",
];

/// Checks the `{spaceId}` path segment and the `unionId` query parameter shared by
/// both storage calls; returns the unionId.
fn space_and_operator<'a>(shared: &Shared, call: &'a Call) -> Result<&'a str, Refusal> {
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
    match call.query.get("unionId").filter(|u| !u.is_empty()) {
        Some(union_id) => Ok(union_id),
        None => Err(error::api(400, "paramError", "unionId is required").into()),
    }
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
    let option = request.option;
    let pre_check = option.as_ref().and_then(|o| o.pre_check_param.as_ref());
    if let Some(option) = &option {
        if option
            .storage_driver
            .as_deref()
            .is_some_and(|d| d != "DINGTALK")
        {
            return error::api(
                400,
                "paramError.storageDriver",
                "storageDriver must be DINGTALK",
            );
        }
        if option
            .prefer_region
            .as_deref()
            .is_some_and(|r| !REGIONS.contains(&r))
        {
            return error::api(400, "paramError", "preferRegion is not a known region");
        }
    }
    if let Some(pre) = pre_check {
        if let Some(problem) = pre.name.as_deref().and_then(name_problem) {
            return illegal_name(problem);
        }
        if pre.size.is_some_and(|s| s < 0) {
            return error::api(400, "paramError", "preCheckParam.size must not be negative");
        }
        if pre
            .md5
            .as_deref()
            .is_some_and(|m| m.len() != 32 || hex::decode(m).is_err())
        {
            return error::api(400, "paramError", "preCheckParam.md5 must be 32 hex digits");
        }
        if pre.parent_id.as_deref().is_some_and(|p| p != "0") {
            return error::api(400, "paramError", "preCheckParam.parentId does not exist");
        }
    }

    let mut state = shared.lock();
    if !state.may_upload(&union_id) {
        return error::api(
            403,
            "permissionDenied",
            "没有权限: the user has no upload grant on this space; call spaces/infos/query first",
        );
    }
    let ttl = shared.options.ticket_ttl;
    let upload_key = format!("sbx{}", ids::random_hex(24));
    let object_key = format!("{}/{}", shared.options.space_id, ids::random_hex(16));
    let now_ms = ids::now_ms();
    let expires = now_ms / 1000 + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2);
    let signed_headers = BTreeMap::from([
        (
            "Authorization".to_owned(),
            format!("OSS sandbox:{}", ids::random_hex(20)),
        ),
        ("x-oss-date".to_owned(), ids::rfc1123(now_ms)),
    ]);
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
    let Some(ticket) = state.tickets.get(&request.upload_key) else {
        return error::api(400, "paramError", "uploadKey not found");
    };
    if ticket.union_id != union_id {
        return error::api(
            403,
            "permissionDenied",
            "没有权限: unionId is not the uploader of this uploadKey",
        );
    }
    if ticket.committed {
        return error::api(400, "paramError", "uploadKey already committed");
    }
    let Some(upload) = ticket.upload.clone() else {
        return error::api(400, "paramError", "file not uploaded");
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
    }
    let body = json!({"dentry": dentry(state.files.get(index), &union_id)});
    drop(state);
    error::ok(&body)
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

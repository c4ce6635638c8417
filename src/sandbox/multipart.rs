//! Multipart uploads on the DingTalk side: multiPartUploadInfos/init and /query, the part
//! signatures they issue, the parts OSS received, and assembling them at commit.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use axum::response::Response;
use bytes::BytesMut;
use md5::{Digest, Md5};
use serde_json::{Value, json};

use super::error::{self, Refusal};
use super::ids;
use super::oss::MAX_KEPT_BYTES;
use super::pipeline::{self, Call};
use super::records::{Endpoint, PartPut};
use super::state::{Shared, State, Upload};
use super::storage;
use super::wire::{MultipartInitRequest, MultipartQueryRequest};

/// At most this many part numbers per multiPartUploadInfos/query.
const MAX_PARTS_PER_QUERY: usize = 30;
/// OSS numbers parts 1 to this.
pub(super) const MAX_PART_NUMBER: u32 = 10_000;
/// OSS refuses to complete an upload with a part smaller than this that is not the last
/// (`EntityTooSmall`).
const MIN_PART_BYTES: u64 = 100 * 1024;

/// A multipart upload from multiPartUploadInfos/init and what became of its parts.
pub(super) struct Multipart {
    pub(crate) union_id: String,
    /// Where every part is PUT (`/oss/{object_key}?partNumber=…`).
    pub(crate) object_key: String,
    /// OSS's id of the upload, in every part URL.
    pub(crate) upload_id: String,
    pub(crate) pre_md5: Option<String>,
    pub(crate) pre_size: Option<i64>,
    /// Every part signature issued, by its `Authorization` value: querying a part again
    /// signs it anew, and the older signature stays good until it expires, as OSS's do.
    pub(crate) signatures: HashMap<String, PartSignature>,
    /// Each part's last successful PUT, by part number.
    pub(crate) parts: BTreeMap<u32, Upload>,
    /// Whether every part's bytes are kept: while the parts stay within `MAX_KEPT_BYTES`
    /// in all. Once over, only lengths and MD5s are, so a multi-GiB upload costs no memory.
    kept: bool,
    pub(crate) committed: bool,
}

/// One part URL's signature.
pub(super) struct PartSignature {
    /// The part it was issued for: OSS signs the part number with the URL.
    pub(crate) part_number: u32,
    /// Headers the PUT must carry verbatim (names as given to the client).
    pub(crate) signed_headers: BTreeMap<String, String>,
    pub(crate) expires_at: Instant,
}

impl Multipart {
    /// How many bytes of a PUT of `part_number` may be kept while it streams in: what the
    /// other parts leave of the cap; `None` once the upload keeps no bytes.
    pub(crate) fn keep_budget(&self, part_number: u32) -> Option<u64> {
        if !self.kept {
            return None;
        }
        let others: u64 = self
            .parts
            .iter()
            .filter(|(number, _)| **number != part_number)
            .map(|(_, part)| part.len)
            .sum();
        Some(MAX_KEPT_BYTES.saturating_sub(others))
    }

    /// Keeps `upload` as part `part_number`, replacing an earlier PUT of that part.
    pub(crate) fn store(&mut self, part_number: u32, upload: Upload) {
        self.parts.insert(part_number, upload);
        let total: u64 = self.parts.values().map(|part| part.len).sum();
        // A part whose bytes were not kept (over the budget as it streamed) makes the
        // whole unassemblable as much as the total going over does.
        if total > MAX_KEPT_BYTES || self.parts.values().any(|part| part.content.is_none()) {
            self.kept = false;
        }
        if !self.kept {
            for part in self.parts.values_mut() {
                part.content = None;
            }
        }
    }

    /// After the commit the file holds the assembled bytes; the parts' copies can go.
    pub(crate) fn mark_committed(&mut self) {
        self.committed = true;
        for part in self.parts.values_mut() {
            part.content = None;
        }
    }
}

/// `POST /v1.0/storage/spaces/{spaceId}/files/multiPartUploadInfos/init?unionId=U`
pub(super) fn init(shared: &Shared, call: &Call) -> Response {
    if let Err(response) = pipeline::require_token(shared, call) {
        return *response;
    }
    let union_id = match storage::space_and_operator(shared, call) {
        Ok(union_id) => union_id.to_owned(),
        Err(response) => return *response,
    };
    let request: MultipartInitRequest = match pipeline::json_body(call, "paramError") {
        Ok(request) => request,
        Err(response) => return *response,
    };
    if let Err(response) = storage::check_option(request.option.as_ref()) {
        return *response;
    }
    let pre_check = request
        .option
        .as_ref()
        .and_then(|o| o.pre_check_param.as_ref());

    let mut state = shared.lock();
    if !state.may_upload(&union_id) {
        return storage::no_upload_grant();
    }
    let upload_key = format!("sbx{}", ids::random_hex(24));
    let object_key = format!("{}/{}", shared.options.space_id, ids::random_hex(16));
    let upload = Multipart {
        union_id,
        object_key: object_key.clone(),
        // OSS upload ids are 32 uppercase hex digits.
        upload_id: ids::random_hex(16).to_uppercase(),
        pre_md5: pre_check
            .and_then(|p| p.md5.as_deref())
            .map(str::to_lowercase),
        pre_size: pre_check.and_then(|p| p.size),
        signatures: HashMap::new(),
        parts: BTreeMap::new(),
        kept: true,
        committed: false,
    };
    state.multiparts.insert(upload_key.clone(), upload);
    state.objects.insert(object_key, upload_key.clone());
    drop(state);

    error::ok(&json!({"uploadKey": upload_key, "storageDriver": "DINGTALK"}))
}

/// `POST /v1.0/storage/spaces/files/multiPartUploadInfos/query?unionId=U`
pub(super) fn query(shared: &Shared, call: &Call) -> Response {
    if let Err(response) = pipeline::require_token(shared, call) {
        return *response;
    }
    let union_id = match storage::operator(call) {
        Ok(union_id) => union_id.to_owned(),
        Err(response) => return *response,
    };
    let request: MultipartQueryRequest = match pipeline::json_body(call, "paramError") {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let part_numbers = match part_numbers(&request.part_numbers) {
        Ok(part_numbers) => part_numbers,
        Err(response) => return *response,
    };

    let mut guard = shared.lock();
    let state = &mut *guard;
    if !state.may_upload(&union_id) {
        return storage::no_upload_grant();
    }
    let now = state.now();
    let Some(upload) = state.multiparts.get_mut(&request.upload_key) else {
        if state.tickets.contains_key(&request.upload_key) {
            return error::api(
                400,
                "paramError",
                "uploadKey is not a multipart upload (it comes from uploadInfos/query)",
            );
        }
        return error::api(400, "paramError", "uploadKey not found");
    };
    if upload.union_id != union_id {
        return error::api(
            403,
            "permissionDenied",
            "没有权限: unionId is not the uploader of this uploadKey",
        );
    }
    if upload.committed {
        return error::api(400, "paramError", "uploadKey already committed");
    }
    let ttl = shared.options.ticket_ttl;
    let now_ms = ids::now_ms();
    let expires = storage::expires_param(now_ms, ttl);
    let infos: Vec<Value> = part_numbers
        .into_iter()
        .map(|part_number| {
            let headers = storage::signed_headers(now_ms);
            let authorization = headers.get("Authorization").cloned().unwrap_or_default();
            upload.signatures.insert(
                authorization,
                PartSignature {
                    part_number,
                    signed_headers: headers.clone(),
                    expires_at: now + ttl,
                },
            );
            let url = format!(
                "{}/oss/{}?partNumber={part_number}&uploadId={}&Expires={expires}",
                shared.base_url, upload.object_key, upload.upload_id
            );
            json!({
                "partNumber": part_number,
                "headerSignatureInfo": {
                    "resourceUrls": [url],
                    "headers": headers,
                    "expirationSeconds": ttl.as_secs(),
                    "region": "ZHANGJIAKOU",
                    "internalResourceUrls": [],
                },
            })
        })
        .collect();
    drop(guard);

    error::ok(&json!({"multipartHeaderSignatureInfos": infos}))
}

/// The part numbers of a query, checked: 1 to 30 of them, each in 1..=10000, none twice.
fn part_numbers(asked: &[i32]) -> Result<Vec<u32>, Refusal> {
    let refuse = |message: String| -> Refusal { error::api(400, "paramError", message).into() };
    if asked.is_empty() {
        return Err(refuse("partNumbers must not be empty".to_owned()));
    }
    if asked.len() > MAX_PARTS_PER_QUERY {
        return Err(refuse(format!(
            "partNumbers has {} entries; at most {MAX_PARTS_PER_QUERY} per call",
            asked.len()
        )));
    }
    let mut seen = BTreeSet::new();
    let mut checked = Vec::with_capacity(asked.len());
    for &asked in asked {
        let Some(part_number) = u32::try_from(asked)
            .ok()
            .filter(|n| (1..=MAX_PART_NUMBER).contains(n))
        else {
            return Err(refuse(format!(
                "partNumber {asked} is outside 1..={MAX_PART_NUMBER}"
            )));
        };
        if !seen.insert(part_number) {
            return Err(refuse(format!("partNumber {part_number} is repeated")));
        }
        checked.push(part_number);
    }
    Ok(checked)
}

/// The file a commit makes of the parts, or why it cannot: as OSS's
/// CompleteMultipartUpload, the parts must be 1..=N without a gap and all but the last at
/// least 100 KB; the total must match the init's pre-check.
pub(super) fn assemble(upload: &Multipart) -> Result<Upload, Refusal> {
    let refuse = |message: String| -> Refusal { error::api(400, "paramError", message).into() };
    let Some(&last) = upload.parts.keys().next_back() else {
        return Err(refuse("file not uploaded".to_owned()));
    };
    // Keys are sorted and at least 1: the first one out of step with 1, 2, 3… marks a gap.
    if let Some((_, missing)) = upload
        .parts
        .keys()
        .zip(1..)
        .find(|(number, expected)| **number != *expected)
    {
        return Err(refuse(format!(
            "part {missing} is missing: parts must be numbered 1 to {last} without a gap"
        )));
    }
    if let Some((number, part)) = upload
        .parts
        .iter()
        .find(|(number, part)| **number != last && part.len < MIN_PART_BYTES)
    {
        return Err(refuse(format!(
            "part {number} is {} bytes: every part but the last must be at least {MIN_PART_BYTES} bytes (EntityTooSmall)",
            part.len
        )));
    }
    let len: u64 = upload.parts.values().map(|part| part.len).sum();
    if let Some(size) = upload
        .pre_size
        .filter(|size| u64::try_from(*size).ok() != Some(len))
    {
        return Err(refuse(format!(
            "the parts hold {len} bytes, not the {size} of preCheckParam.size"
        )));
    }
    if !upload.kept {
        return Ok(Upload {
            len,
            md5: etag_md5(upload.parts.values()),
            content: None,
        });
    }
    let mut content = BytesMut::with_capacity(usize::try_from(len).unwrap_or_default());
    for part in upload.parts.values() {
        // `kept` holds only while every part has its bytes (see `Multipart::store`).
        content.extend_from_slice(part.content.as_deref().unwrap_or_default());
    }
    let md5 = ids::md5_hex(&content);
    if upload.pre_md5.as_deref().is_some_and(|pre| pre != md5) {
        return Err(refuse(
            "the MD5 of the parts does not match preCheckParam.md5".to_owned(),
        ));
    }
    Ok(Upload {
        len,
        md5,
        content: Some(content.freeze()),
    })
}

/// OSS's ETag of a multipart object: the MD5 of the parts' binary MD5s, then `-N`.
fn etag_md5<'a>(parts: impl ExactSizeIterator<Item = &'a Upload>) -> String {
    let count = parts.len();
    let mut hasher = Md5::new();
    for part in parts {
        // Always 32 hex digits: `oss::receive` writes them.
        hasher.update(hex::decode(&part.md5).unwrap_or_default());
    }
    format!("{}-{count}", hex::encode(hasher.finalize()))
}

/// Every part PUT in the request log, in arrival order.
pub(super) fn part_puts(state: &State) -> Vec<PartPut> {
    state
        .requests
        .iter()
        .filter(|r| r.endpoint == Endpoint::OssPut)
        .filter_map(|r| {
            let part_number = r.part_number?;
            let object_key = r.path.strip_prefix("/oss/").unwrap_or_default();
            Some(PartPut {
                upload_key: state.objects.get(object_key).cloned(),
                part_number,
                body_len: r.body_len,
                body_md5: r.body_md5.clone(),
                status: r.status,
            })
        })
        .collect()
}

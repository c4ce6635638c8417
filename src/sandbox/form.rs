//! The template's form: its schema (§5.12) and the validation of StartProcessInstance's
//! values, above all the DDAttachment value.

use axum::response::Response;
use serde_json::{Value, json};

use super::error::{self, Refusal};
use super::pipeline::{self, Call};
use super::state::{Files, Shared};
use super::wire::FormComponentValue;

/// The fields every `PROC-…` template of the sandbox has besides its attachment field:
/// (label, component). None is required; the attachment field is.
const TEMPLATE_FIELDS: [(&str, &str); 3] = [
    ("报销事由", "TextField"),
    ("说明", "TextareaField"),
    ("金额", "MoneyField"),
];

/// `GET /v1.0/workflow/forms/schemas/processCodes`: the sandbox's one form, under any
/// `PROC-…` code, with its attachment field labelled as configured.
pub(super) fn schema(shared: &Shared, call: &Call) -> Response {
    if let Err(response) = pipeline::require_token(shared, call) {
        return *response;
    }
    let Some(code) = call.query.get("processCode").filter(|c| !c.is_empty()) else {
        return error::api(400, "invalidParameter", "processCode is required");
    };
    if !code.starts_with("PROC-") {
        return error::api(400, "processCodeError", format!("审批模板不存在: {code}"));
    }
    let mut items: Vec<Value> = TEMPLATE_FIELDS
        .iter()
        .enumerate()
        .map(|(n, (label, component))| {
            json!({"componentName": component,
                   "props": {"id": format!("{component}-{n}"), "label": label, "required": false}})
        })
        .collect();
    items.push(json!({"componentName": "DDAttachment",
                      "props": {"id": "DDAttachment-1", "label": shared.options.attachment_label,
                                "required": true}}));
    error::ok(&json!({"result": {
        "name": "报销", "formCode": code, "memo": "", "status": "PUBLISHED",
        "schemaContent": {"title": "报销", "icon": "expense", "items": items}
    }}))
}

/// The five keys of a DDAttachment item, all JSON strings.
const ATTACHMENT_KEYS: [&str; 5] = ["spaceId", "fileName", "fileSize", "fileType", "fileId"];

/// componentType values the create call accepts.
const COMPONENT_TYPES: [&str; 18] = [
    "TextField",
    "TextareaField",
    "NumberField",
    "DDSelectField",
    "DDMultiSelectField",
    "DDDateField",
    "DDDateRangeField",
    "TextNote",
    "PhoneField",
    "DDPhotoField",
    "MoneyField",
    "TableField",
    "DDAttachment",
    "InnerContactField",
    "RelateField",
    "AddressField",
    "StarRatingField",
    "DepartmentField",
];

const MAX_VALUE_CHARS: usize = 65_535;

fn converter_error(message: String) -> Refusal {
    error::api(
        400,
        "formConverterError",
        format!("表单校验失败: {message}"),
    )
    .into()
}

/// True when this component is the template's attachment field.
pub(super) fn is_attachment(shared: &Shared, value: &FormComponentValue) -> bool {
    value.name == shared.options.attachment_label
        || value.component_type.as_deref() == Some("DDAttachment")
}

/// Validates all components against the sandbox's template: its attachment field is
/// required and must point at committed files of this space.
pub(super) fn validate(
    shared: &Shared,
    files: &Files,
    values: &[FormComponentValue],
) -> Result<(), Refusal> {
    if values.len() > 150 {
        return Err(error::api(
            400,
            "invalidParameter",
            "formComponentValues allows at most 150 items",
        )
        .into());
    }
    for value in values {
        if value.name.is_empty() {
            return Err(converter_error("a component has an empty name".to_owned()));
        }
        if let Some(kind) = value.component_type.as_deref()
            && !COMPONENT_TYPES.contains(&kind)
        {
            return Err(error::api(
                400,
                "illegalComponent",
                format!(
                    "component 「{}」 has unknown componentType {kind}",
                    value.name
                ),
            )
            .into());
        }
        let too_long = |s: &str| s.chars().count() > MAX_VALUE_CHARS;
        if too_long(&value.value) || value.ext_value.as_deref().is_some_and(too_long) {
            return Err(converter_error(format!(
                "component 「{}」 value exceeds {MAX_VALUE_CHARS} characters",
                value.name
            )));
        }
    }
    let attachments: Vec<&FormComponentValue> =
        values.iter().filter(|v| is_attachment(shared, v)).collect();
    if attachments.is_empty() {
        return Err(converter_error(format!(
            "required component 「{}」 (DDAttachment) is missing",
            shared.options.attachment_label
        )));
    }
    for component in attachments {
        attachment_problem(shared, files, &component.value).map_err(|problem| {
            converter_error(format!("component 「{}」 {problem}", component.name))
        })?;
    }
    Ok(())
}

/// Checks one DDAttachment value: a JSON array of five-string-key objects naming
/// committed files whose name, size and type match.
fn attachment_problem(shared: &Shared, files: &Files, raw: &str) -> Result<(), String> {
    let parsed: Value =
        serde_json::from_str(raw).map_err(|e| format!("value is not valid JSON: {e}"))?;
    let Value::Array(items) = parsed else {
        return Err(format!(
            "value must be a JSON array of files, got {}",
            type_name(&parsed)
        ));
    };
    if items.is_empty() {
        return Err("is required but lists no file".to_owned());
    }
    let space_id = shared.options.space_id.to_string();
    for (i, item) in items.iter().enumerate() {
        let Value::Object(fields) = item else {
            return Err(format!(
                "item {i} must be an object, got {}",
                type_name(item)
            ));
        };
        if let Some(extra) = fields
            .keys()
            .find(|k| !ATTACHMENT_KEYS.contains(&k.as_str()))
        {
            return Err(format!("item {i} has unexpected key `{extra}`"));
        }
        let mut strings = [""; 5];
        for (slot, key) in strings.iter_mut().zip(ATTACHMENT_KEYS) {
            *slot = match fields.get(key) {
                Some(Value::String(s)) => s,
                Some(other) => {
                    return Err(format!(
                        "item {i}: `{key}` must be a JSON string, got {}",
                        type_name(other)
                    ));
                }
                None => return Err(format!("item {i} is missing `{key}`")),
            };
        }
        let [space, name, size, kind, file_id] = strings;
        if space != space_id {
            return Err(format!(
                "item {i}: spaceId {space} is not the approval space"
            ));
        }
        let Some(record) = files.by_id(file_id) else {
            return Err(format!(
                "item {i}: fileId {file_id} is not a committed file"
            ));
        };
        let file = &record.file;
        if name != file.name {
            return Err(format!(
                "item {i}: fileName {name:?} does not match the file's name {:?}",
                file.name
            ));
        }
        if size != file.size.to_string() {
            return Err(format!(
                "item {i}: fileSize {size:?} does not match the file's size {}",
                file.size
            ));
        }
        if kind != file.extension {
            return Err(format!(
                "item {i}: fileType {kind:?} does not match the file's extension {:?}",
                file.extension
            ));
        }
    }
    Ok(())
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

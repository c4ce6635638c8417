//! Templates' forms: the schema endpoint (§5.12) serving the directory's templates, and the
//! validation of StartProcessInstance's values against a template, above all DDAttachment
//! values.

use axum::response::Response;
use serde_json::{Value, json};

use super::directory::{COMPONENT_TYPES, Template};
use super::error::{self, Refusal};
use super::pipeline::{self, Call};
use super::state::{Files, Shared};
use super::wire::FormComponentValue;

/// `GET /v1.0/workflow/forms/schemas/processCodes?processCode=CODE`: the directory's
/// template under that code, `processCodeError` for a code it does not have.
pub(super) fn schema(shared: &Shared, call: &Call) -> Response {
    if let Err(response) = pipeline::require_token(shared, call) {
        return *response;
    }
    let Some(code) = call.query.get("processCode").filter(|c| !c.is_empty()) else {
        return error::api(400, "invalidParameter", "processCode is required");
    };
    let Some(template) = shared.options.directory.template(code) else {
        return error::api(400, "processCodeError", format!("审批模板不存在: {code}"));
    };
    let items: Vec<Value> = template
        .fields
        .iter()
        .map(|field| {
            json!({"componentName": field.component,
                   "props": {"id": field.id, "label": field.label, "required": field.required}})
        })
        .collect();
    error::ok(&json!({"result": {
        "name": template.name, "formCode": code, "memo": "", "status": "PUBLISHED",
        "schemaContent": {"title": template.name, "icon": "common", "items": items}
    }}))
}

/// The five keys of a DDAttachment item, all JSON strings.
const ATTACHMENT_KEYS: [&str; 5] = ["spaceId", "fileName", "fileSize", "fileType", "fileId"];

const MAX_VALUE_CHARS: usize = 65_535;

fn converter_error(message: String) -> Refusal {
    error::api(
        400,
        "formConverterError",
        format!("表单校验失败: {message}"),
    )
    .into()
}

/// Validates all components against `template`: every required field present and not
/// empty, and each value of a DDAttachment field pointing at committed files of this space.
/// Labels the template does not have are stored as sent.
pub(super) fn validate(
    shared: &Shared,
    template: &Template,
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
    for field in template.fields.iter().filter(|f| f.required) {
        match values.iter().find(|v| v.name == field.label) {
            None => {
                return Err(converter_error(format!(
                    "required component 「{}」 ({}) is missing",
                    field.label, field.component
                )));
            }
            Some(value) if value.value.trim().is_empty() => {
                return Err(converter_error(format!(
                    "required component 「{}」 ({}) is empty",
                    field.label, field.component
                )));
            }
            Some(_) => {}
        }
    }
    for value in values {
        let Some(field) = template
            .field(&value.name)
            .filter(|f| f.component == "DDAttachment")
        else {
            continue;
        };
        attachment_problem(shared, files, &value.value, field.required).map_err(|problem| {
            converter_error(format!("component 「{}」 {problem}", value.name))
        })?;
    }
    Ok(())
}

/// Checks one DDAttachment value: a JSON array of five-string-key objects naming
/// committed files whose name, size and type match.
fn attachment_problem(
    shared: &Shared,
    files: &Files,
    raw: &str,
    required: bool,
) -> Result<(), String> {
    let parsed: Value =
        serde_json::from_str(raw).map_err(|e| format!("value is not valid JSON: {e}"))?;
    let Value::Array(items) = parsed else {
        return Err(format!(
            "value must be a JSON array of files, got {}",
            type_name(&parsed)
        ));
    };
    if items.is_empty() && required {
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

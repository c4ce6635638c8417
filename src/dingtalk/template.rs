//! A template's form schema (§5.12): which fields its form has, of which component, and which
//! are required.

use serde::Deserialize;

use super::DingTalk;
use super::call::{Host, Request};
use super::error::DingTalkError;

/// An approval template's form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormSchema {
    /// The template's name, e.g. `报销`.
    pub name: String,
    /// Its top-level fields in form order (a table's columns are not listed apart).
    pub fields: Vec<FormField>,
}

/// One field of a template's form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormField {
    /// The label a form value names it by.
    pub label: String,
    /// The component, e.g. `TextField`, `DDAttachment`, `TableField`.
    pub component: String,
    /// Whether the form must have a value for it.
    pub required: bool,
}

impl FormSchema {
    /// The field labelled `label`.
    pub fn field(&self, label: &str) -> Option<&FormField> {
        self.fields.iter().find(|field| field.label == label)
    }
}

#[derive(Deserialize)]
struct SchemaResponse {
    result: SchemaResult,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaResult {
    #[serde(default)]
    name: String,
    schema_content: SchemaContent,
}

#[derive(Deserialize)]
struct SchemaContent {
    #[serde(default)]
    items: Vec<SchemaItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaItem {
    component_name: String,
    #[serde(default)]
    props: SchemaProps,
}

#[derive(Deserialize, Default)]
struct SchemaProps {
    #[serde(default)]
    label: String,
    #[serde(default)]
    required: bool,
}

impl DingTalk {
    /// §5.12: the form schema of the template `process_code`.
    pub async fn form_schema(&self, process_code: &str) -> Result<FormSchema, DingTalkError> {
        let request = Request::get(
            "workflow/forms/schemas/processCodes",
            Host::Api,
            "/v1.0/workflow/forms/schemas/processCodes",
        )
        .query("processCode", process_code);
        let response: SchemaResponse = self.call(&request).await?;
        let result = response.result;
        Ok(FormSchema {
            name: result.name,
            fields: result
                .schema_content
                .items
                .into_iter()
                .filter(|item| !item.props.label.is_empty())
                .map(|item| FormField {
                    label: item.props.label,
                    component: item.component_name,
                    required: item.props.required,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::{FormField, FormSchema};
    use crate::dingtalk::fake::{Fake, Reply};

    #[tokio::test]
    async fn the_schema_lists_each_field_with_its_component_and_whether_it_is_required() {
        let fake = Fake::start(|_| {
            Reply::json(
                200,
                json!({"result": {"name": "报销", "formCode": "PROC-1", "schemaContent": {
                    "title": "报销", "items": [
                        {"componentName": "TextField", "props": {"id": "TextField-1", "label": "报销事由", "required": true}},
                        {"componentName": "TextNote", "props": {"id": "TextNote-1"}},
                        {"componentName": "TableField", "props": {"id": "TableField-1", "label": "明细", "required": false},
                         "children": [{"componentName": "MoneyField", "props": {"label": "金额"}}]},
                        {"componentName": "DDAttachment", "props": {"id": "DDAttachment-1", "label": "附件", "required": true}}
                    ]}}}),
            )
        })
        .await;
        let schema = fake.client().form_schema("PROC-1").await.unwrap();
        let seen = fake.last();
        assert_eq!(
            (
                seen.method.as_str(),
                seen.path.as_str(),
                seen.query.as_str()
            ),
            (
                "GET",
                "/v1.0/workflow/forms/schemas/processCodes",
                "processCode=PROC-1"
            )
        );
        let field = |label: &str, component: &str, required| FormField {
            label: label.into(),
            component: component.into(),
            required,
        };
        assert_eq!(
            schema,
            FormSchema {
                name: "报销".into(),
                fields: vec![
                    field("报销事由", "TextField", true),
                    field("明细", "TableField", false),
                    field("附件", "DDAttachment", true),
                ],
            },
            "a note without a label is no field; a table's columns are its own"
        );
    }
}

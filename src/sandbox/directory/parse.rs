//! Reading a directory file: the TOML shape (unknown keys refused) and the checks that
//! make it consistent, each problem named by its key path.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Deserialize;

use super::super::ids;
use super::{
    COMPONENT_TYPES, Department, Directory, DirectoryError, Field, ROOT_DEPARTMENT, Template, User,
};

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirectory {
    #[serde(default)]
    departments: Vec<RawDepartment>,
    #[serde(default)]
    users: Vec<RawUser>,
    #[serde(default)]
    templates: Vec<RawTemplate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDepartment {
    id: i64,
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    user_id: String,
    /// Default: derived from the userId (stable, so clients may cache it).
    union_id: Option<String>,
    /// Default: `测试用户<userId>`.
    name: Option<String>,
    /// Default: the root department only.
    departments: Option<Vec<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    process_code: String,
    name: String,
    fields: Vec<RawField>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    label: String,
    component: String,
    #[serde(default)]
    required: bool,
    /// Default: `<component>-<position>`.
    id: Option<String>,
}

/// Parses and checks `text`; every problem found is reported at once.
pub(super) fn parse(text: &str, origin: &Path) -> Result<Directory, DirectoryError> {
    let raw: RawDirectory = toml::from_str(text).map_err(|e| DirectoryError::Parse {
        path: origin.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    let mut problems = Vec::new();
    let departments = departments(raw.departments, &mut problems);
    let known: HashSet<i64> = departments.iter().map(|d| d.id).collect();
    let users = users(raw.users, &known, &mut problems);
    let templates = templates(raw.templates, &mut problems);
    if problems.is_empty() {
        Ok(Directory::new(departments, users, templates))
    } else {
        Err(DirectoryError::Invalid {
            path: origin.to_owned(),
            problems,
        })
    }
}

/// The listed departments, with the root added (named 根部门) unless listed.
fn departments(raw: Vec<RawDepartment>, problems: &mut Vec<String>) -> Vec<Department> {
    let mut out: Vec<Department> = Vec::with_capacity(raw.len() + 1);
    for (i, department) in raw.into_iter().enumerate() {
        let key = format!("departments[{i}]");
        if department.id < 1 {
            problems.push(format!(
                "{key}.id: {} is not a department id (ids are 1 or more; 1 is the root)",
                department.id
            ));
        } else if out.iter().any(|d| d.id == department.id) {
            problems.push(format!("{key}.id: {} is listed twice", department.id));
        }
        if department.name.trim().is_empty() {
            problems.push(format!("{key}.name: must not be empty"));
        }
        out.push(Department {
            id: department.id,
            name: department.name,
        });
    }
    if !out.iter().any(|d| d.id == ROOT_DEPARTMENT) {
        out.insert(
            0,
            Department {
                id: ROOT_DEPARTMENT,
                name: "根部门".to_owned(),
            },
        );
    }
    out
}

fn users(raw: Vec<RawUser>, known: &HashSet<i64>, problems: &mut Vec<String>) -> Vec<User> {
    let mut out: Vec<User> = Vec::with_capacity(raw.len());
    for (i, user) in raw.into_iter().enumerate() {
        let key = format!("users[{i}]");
        if user.user_id.trim().is_empty() || user.user_id != user.user_id.trim() {
            problems.push(format!(
                "{key}.user_id: {:?} must be non-empty without surrounding spaces",
                user.user_id
            ));
        }
        let union_id = user
            .union_id
            .unwrap_or_else(|| ids::union_id(&user.user_id));
        if union_id.trim().is_empty() {
            problems.push(format!("{key}.union_id: must not be empty"));
        }
        let departments = user.departments.unwrap_or_else(|| vec![ROOT_DEPARTMENT]);
        if departments.is_empty() {
            problems.push(format!(
                "{key}.departments: a user is a member of at least one department"
            ));
        }
        for (k, id) in departments.iter().enumerate() {
            if !known.contains(id) {
                problems.push(format!(
                    "{key}.departments[{k}]: department {id} is not listed under [[departments]]"
                ));
            }
        }
        let name = user
            .name
            .unwrap_or_else(|| format!("测试用户{}", user.user_id));
        out.push(User {
            user_id: user.user_id,
            union_id,
            name,
            departments,
        });
    }
    // Ids must be unambiguous across both kinds: a unionId equal to some userId would make
    // "a unionId passed as a userId" succeed, which DingTalk never lets happen.
    let mut seen: HashMap<&str, String> = HashMap::new();
    for (i, user) in out.iter().enumerate() {
        for (field, id) in [("user_id", &user.user_id), ("union_id", &user.union_id)] {
            let key = format!("users[{i}].{field}");
            if let Some(first) = seen.get(id.as_str()) {
                problems.push(format!("{key}: {id:?} is already {first}"));
                // A repeated userId repeats its derived unionId too: one message is enough.
                break;
            }
            seen.insert(id, key);
        }
    }
    out
}

fn templates(raw: Vec<RawTemplate>, problems: &mut Vec<String>) -> Vec<Template> {
    let mut out: Vec<Template> = Vec::with_capacity(raw.len());
    for (i, template) in raw.into_iter().enumerate() {
        let key = format!("templates[{i}]");
        let code = template.process_code;
        if code.trim().is_empty() || code != code.trim() {
            problems.push(format!(
                "{key}.process_code: {code:?} must be non-empty without surrounding spaces"
            ));
        } else if out.iter().any(|t| t.process_code == code) {
            problems.push(format!("{key}.process_code: {code} is listed twice"));
        }
        if template.name.trim().is_empty() {
            problems.push(format!("{key}.name: must not be empty"));
        }
        if template.fields.is_empty() {
            problems.push(format!("{key}.fields: a template has at least one field"));
        }
        let mut fields: Vec<Field> = Vec::with_capacity(template.fields.len());
        for (k, field) in template.fields.into_iter().enumerate() {
            let field_key = format!("{key}.fields[{k}]");
            if field.label.trim().is_empty() {
                problems.push(format!("{field_key}.label: must not be empty"));
            } else if fields.iter().any(|f| f.label == field.label) {
                problems.push(format!(
                    "{field_key}.label: 「{}」 is already a field of {code}",
                    field.label
                ));
            }
            if !COMPONENT_TYPES.contains(&field.component.as_str()) {
                problems.push(format!(
                    "{field_key}.component: unknown component {:?} (expected one of {})",
                    field.component,
                    COMPONENT_TYPES.join(", ")
                ));
            }
            let id = field
                .id
                .unwrap_or_else(|| format!("{}-{k}", field.component));
            fields.push(Field {
                id,
                label: field.label,
                component: field.component,
                required: field.required,
            });
        }
        out.push(Template {
            process_code: code,
            name: template.name,
            fields,
        });
    }
    out
}

//! The organisation the sandbox pretends to be: its departments, users (userId, unionId,
//! departments) and approval templates (process code, form schema), from a TOML file or the
//! built-in default. DingTalk refuses ids it does not know; so does the sandbox, from here.

mod parse;
mod summary;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

/// The root department's id; StartProcessInstance's `deptId: -1` means it.
pub(crate) const ROOT_DEPARTMENT: i64 = 1;

/// componentType values StartProcessInstance accepts (dingtalk-api.md §7), which are also
/// the `componentName`s a template's schema may use.
pub(crate) const COMPONENT_TYPES: [&str; 18] = [
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

/// The built-in directory's source: what `demo`, the tests and `sandbox` without
/// `--directory` use.
const BUILTIN_TOML: &str = include_str!("default.toml");

static BUILTIN: LazyLock<Directory> = LazyLock::new(|| {
    // Invariant: the embedded file is valid; `the_built_in_directory_parses` proves it.
    #[allow(
        clippy::expect_used,
        reason = "a compile-time constant checked by a test"
    )]
    Directory::parse(BUILTIN_TOML, Path::new("<built-in>")).expect("built-in directory")
});

/// Users, departments and templates, with lookups by id.
#[derive(Debug, Clone, PartialEq)]
pub struct Directory {
    pub(crate) departments: Vec<Department>,
    pub(crate) users: Vec<User>,
    pub(crate) templates: Vec<Template>,
    user_index: HashMap<String, usize>,
    template_index: HashMap<String, usize>,
}

/// A department; the root (id 1) is always there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Department {
    pub(crate) id: i64,
    pub(crate) name: String,
}

/// A member of the organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The 员工 userid (what StartProcessInstance and spaces/infos/query take).
    pub(crate) user_id: String,
    /// What topapi/v2/user/get answers as `unionid` (what storage calls take).
    pub(crate) union_id: String,
    pub(crate) name: String,
    /// Department ids the user is a member of (at least one).
    pub(crate) departments: Vec<i64>,
}

/// An approval template: its code and its form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub(crate) process_code: String,
    pub(crate) name: String,
    pub(crate) fields: Vec<Field>,
}

/// One component of a template's form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Component id, e.g. `DDAttachment-3`.
    pub(crate) id: String,
    /// What a form value names it by.
    pub(crate) label: String,
    /// The component type (`componentName` in the schema), e.g. `DDAttachment`.
    pub(crate) component: String,
    pub(crate) required: bool,
}

/// A directory file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The file could not be read.
    #[error("cannot read sandbox directory {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not TOML, or an unknown key or a wrong type (toml's message names key and line).
    #[error("sandbox directory {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What toml said.
        message: String,
    },
    /// Parses, but cannot work: one message per bad key.
    #[error("sandbox directory {}:\n  {}", .path.display(), .problems.join("\n  "))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// One line per bad key, each starting with the key's path.
        problems: Vec<String>,
    },
}

impl Default for Directory {
    fn default() -> Self {
        Directory::builtin()
    }
}

impl Directory {
    /// The built-in organisation (see `src/sandbox/directory/default.toml`).
    pub fn builtin() -> Directory {
        BUILTIN.clone()
    }

    /// Reads a directory file.
    pub fn load(path: &Path) -> Result<Directory, DirectoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| DirectoryError::Read {
            path: path.to_owned(),
            source,
        })?;
        Directory::parse(&text, path)
    }

    /// Parses a directory from TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Directory, DirectoryError> {
        parse::parse(text, origin)
    }

    /// Builds the lookups; the parts must have passed `parse`'s checks.
    fn new(departments: Vec<Department>, users: Vec<User>, templates: Vec<Template>) -> Self {
        let user_index = users
            .iter()
            .enumerate()
            .map(|(i, u)| (u.user_id.clone(), i))
            .collect();
        let template_index = templates
            .iter()
            .enumerate()
            .map(|(i, t)| (t.process_code.clone(), i))
            .collect();
        Self {
            departments,
            users,
            templates,
            user_index,
            template_index,
        }
    }

    /// The user with this userId.
    pub(crate) fn user(&self, user_id: &str) -> Option<&User> {
        self.user_index.get(user_id).map(|&i| &self.users[i])
    }

    /// Whether `id` is some user's unionId (to tell a unionId passed as a userId apart).
    pub(crate) fn is_union_id(&self, id: &str) -> bool {
        self.users.iter().any(|u| u.union_id == id)
    }

    /// The template with this process code.
    pub(crate) fn template(&self, process_code: &str) -> Option<&Template> {
        self.template_index
            .get(process_code)
            .map(|&i| &self.templates[i])
    }

    /// The department with this id (`-1` is the root).
    pub(crate) fn department(&self, id: i64) -> Option<&Department> {
        let id = if id == -1 { ROOT_DEPARTMENT } else { id };
        self.departments.iter().find(|d| d.id == id)
    }

    /// Members of department `id` (`-1`: the root), in file order.
    pub(crate) fn members_of(&self, id: i64) -> impl Iterator<Item = &User> {
        self.users.iter().filter(move |u| u.in_department(id))
    }

    /// Users in file order.
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.iter()
    }

    /// Templates in file order.
    pub fn templates(&self) -> impl Iterator<Item = &Template> {
        self.templates.iter()
    }
}

impl User {
    /// Whether the user is a member of department `id` (`-1` is the root).
    pub(crate) fn in_department(&self, id: i64) -> bool {
        let id = if id == -1 { ROOT_DEPARTMENT } else { id };
        self.departments.contains(&id)
    }

    /// The userId.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }
}

impl Template {
    /// The form field labelled `label`.
    pub(crate) fn field(&self, label: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.label == label)
    }

    /// The label of its first DDAttachment field.
    pub(crate) fn attachment_label(&self) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.component == "DDAttachment")
            .map(|f| f.label.as_str())
    }

    /// The process code.
    pub fn process_code(&self) -> &str {
        &self.process_code
    }
}

#[cfg(test)]
mod tests;

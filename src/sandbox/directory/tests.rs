//! Reading directory files: the built-in one, a file of one's own, and bad ones refused
//! with the bad key named.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::path::Path;

use super::{Directory, DirectoryError};

fn problems(text: &str) -> Vec<String> {
    match Directory::parse(text, Path::new("sandbox.toml")) {
        Err(DirectoryError::Invalid { problems, .. }) => problems,
        other => panic!("expected an invalid directory, got {other:?}"),
    }
}

#[test]
fn the_built_in_directory_parses_and_has_what_the_docs_demo_and_tests_use() {
    let directory = Directory::parse(super::BUILTIN_TOML, Path::new("<built-in>")).unwrap();
    for user in ["manager4220", "manager0001", "boss1", "boss2"] {
        assert!(directory.user(user).is_some(), "{user}");
    }
    for code in [
        "PROC-EXPENSE",
        "PROC-DEMO-EXPENSE",
        "PROC-TEST",
        "PROC-BENCH",
        "PROC-1",
    ] {
        let template = directory.template(code).unwrap();
        assert_eq!(template.attachment_label(), Some("附件"), "{code}");
    }
    assert!(
        directory.members_of(-1).count() >= 8,
        "the demo's originators"
    );
    assert!(!directory.user("dev0001").unwrap().in_department(-1));
}

#[test]
fn a_directory_file_is_loaded_with_defaults_for_what_it_leaves_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sandbox.toml");
    std::fs::write(
        &path,
        r#"
[[departments]]
id = 7
name = "法务部"

[[users]]
user_id = "lawyer1"
union_id = "uNi0nLawyer1"
name = "冯律师"
departments = [7]

[[users]]
user_id = "clerk1"

[[templates]]
process_code = "PROC-CONTRACT"
name = "合同审批"
fields = [
  { label = "合同名称", component = "TextField", required = true },
  { label = "合同文件", component = "DDAttachment", required = true, id = "DDAttachment_K1" },
]
"#,
    )
    .unwrap();
    let directory = Directory::load(&path).unwrap();
    let lawyer = directory.user("lawyer1").unwrap();
    assert_eq!(lawyer.union_id, "uNi0nLawyer1");
    assert_eq!(lawyer.departments, [7]);
    assert!(lawyer.in_department(7) && !lawyer.in_department(-1));
    let clerk = directory.user("clerk1").unwrap();
    assert_eq!(clerk.departments, [1], "the root by default");
    assert_eq!(clerk.name, "测试用户clerk1");
    assert_eq!(clerk.union_id, super::super::ids::union_id("clerk1"));
    assert_eq!(directory.department(-1).unwrap().name, "根部门");
    let template = directory.template("PROC-CONTRACT").unwrap();
    assert_eq!(template.attachment_label(), Some("合同文件"));
    assert_eq!(template.fields[0].id, "TextField-0");
    assert_eq!(template.fields[1].id, "DDAttachment_K1");
    assert!(
        directory.template("PROC-EXPENSE").is_none(),
        "a file replaces the default"
    );
}

#[test]
fn an_unknown_key_is_refused_naming_it_and_its_line() {
    let err = Directory::parse(
        "[[users]]\nuser_id = \"a\"\ndepartment = [1]\n",
        Path::new("sandbox.toml"),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("sandbox directory sandbox.toml: "),
        "{text}"
    );
    assert!(text.contains("unknown field `department`"), "{text}");
    assert!(text.contains("line 3"), "{text}");
}

#[test]
fn a_wrong_type_is_refused_naming_the_key() {
    let text = Directory::parse(
        "[[templates]]\nprocess_code = \"P\"\nname = \"n\"\nfields = [{ label = \"x\", component = \"TextField\", required = \"yes\" }]\n",
        Path::new("sandbox.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(text.contains("required"), "{text}");
    assert!(text.contains("invalid type"), "{text}");
}

#[test]
fn inconsistent_entries_are_each_named_by_their_key() {
    let found = problems(
        r#"
[[departments]]
id = 0
name = "零"

[[users]]
user_id = "a"
departments = [1, 99]

[[users]]
user_id = "b"
union_id = "a"

[[users]]
user_id = "a"
departments = []

[[templates]]
process_code = "PROC-X"
name = "X"
fields = [
  { label = "附件", component = "Attachment" },
  { label = "附件", component = "DDAttachment" },
]

[[templates]]
process_code = "PROC-X"
name = ""
fields = []
"#,
    );
    let expected = [
        "departments[0].id: 0 is not a department id (ids are 1 or more; 1 is the root)",
        "users[0].departments[1]: department 99 is not listed under [[departments]]",
        "users[2].departments: a user is a member of at least one department",
        "users[1].union_id: \"a\" is already users[0].user_id",
        "users[2].user_id: \"a\" is already users[0].user_id",
        "templates[0].fields[0].component: unknown component \"Attachment\" (expected one of TextField,",
        "templates[0].fields[1].label: 「附件」 is already a field of PROC-X",
        "templates[1].process_code: PROC-X is listed twice",
        "templates[1].name: must not be empty",
        "templates[1].fields: a template has at least one field",
    ];
    for line in expected {
        assert!(
            found.iter().any(|p| p.starts_with(line)),
            "missing {line:?} in {found:#?}"
        );
    }
    assert_eq!(found.len(), expected.len(), "{found:#?}");
}

#[test]
fn an_unreadable_file_is_a_read_error_naming_it() {
    let err = Directory::load(Path::new("/nonexistent/sandbox.toml")).unwrap_err();
    assert!(matches!(err, DirectoryError::Read { .. }));
    assert!(
        err.to_string()
            .starts_with("cannot read sandbox directory /nonexistent/sandbox.toml: "),
        "{err}"
    );
}

#[test]
fn the_summary_lists_users_with_union_ids_and_templates_with_required_fields() {
    let directory = Directory::parse(
        "[[users]]\nuser_id = \"a\"\nunion_id = \"U-a\"\nname = \"甲\"\n\n\
         [[templates]]\nprocess_code = \"PROC-A\"\nname = \"报销\"\n\
         fields = [{ label = \"事由\", component = \"TextField\" },\
                   { label = \"附件\", component = \"DDAttachment\", required = true }]\n",
        Path::new("a.toml"),
    )
    .unwrap();
    assert_eq!(
        directory.summary("  "),
        "  Users (1; userId, unionId, name, departments):\n\
         \x20   a  U-a  甲  根部门(1)\n\
         \x20 Templates (1; process code, name: fields, * = required):\n\
         \x20   PROC-A  报销: 事由 (TextField), 附件* (DDAttachment)\n"
    );
}

#[test]
fn the_documented_example_directory_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/sandbox-directory.toml");
    let directory = Directory::load(&path).unwrap();
    assert_eq!(directory.department(-1).unwrap().name, "示例公司");
    assert!(!directory.user("lawyer01").unwrap().in_department(-1));
    assert_eq!(
        directory
            .template("PROC-CONTRACT")
            .unwrap()
            .attachment_label(),
        Some("合同文件")
    );
}

//! The DDAttachment form value (§5.8): building it from committed dentries and reading the
//! fileIds back out of an instance's form during reconciliation.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::storage::Dentry;

/// One attachment exactly as DingTalk's examples write it: five string fields in this order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AttachmentEntry<'a> {
    space_id: &'a str,
    file_name: &'a str,
    file_size: String,
    file_type: &'a str,
    file_id: &'a str,
}

/// The `value` of a DDAttachment field: a JSON array (even for one file) of
/// `{"spaceId","fileName","fileSize","fileType","fileId"}`, all strings.
pub(crate) fn dd_attachment_value(files: &[Dentry]) -> String {
    let entries: Vec<AttachmentEntry<'_>> = files
        .iter()
        .map(|file| AttachmentEntry {
            space_id: &file.space_id,
            file_name: &file.name,
            file_size: file.size.to_string(),
            file_type: &file.extension,
            file_id: &file.id,
        })
        .collect();
    // Invariant: a Vec of structs with only string fields always serialises (serde_json fails
    // only on non-string map keys or failing custom Serialize impls, neither present here).
    #[allow(clippy::expect_used)]
    serde_json::to_string(&entries).expect("attachment entries are plain strings")
}

/// The fileIds in a DDAttachment value, or `None` if `value` is not such a value. Lenient about
/// the fileId's JSON type because attachments added by the DingTalk client carry numbers.
pub fn dd_attachment_file_ids(value: &str) -> Option<Vec<String>> {
    #[derive(Deserialize)]
    struct Entry {
        #[serde(rename = "fileId")]
        file_id: Value,
    }
    let entries: Vec<Entry> = serde_json::from_str(value).ok()?;
    entries
        .into_iter()
        .map(|entry| match entry.file_id {
            Value::String(id) if !id.is_empty() => Some(id),
            Value::Number(id) => Some(id.to_string()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn dentry(id: &str, name: &str, size: u64, extension: &str) -> Dentry {
        Dentry {
            id: id.into(),
            space_id: "3996960664".into(),
            name: name.into(),
            size,
            extension: extension.into(),
        }
    }

    #[test]
    fn value_matches_the_documented_example_exactly() {
        let value =
            dd_attachment_value(&[dentry("120349587612", "报销单据-2026-001.pdf", 45, "pdf")]);
        assert_eq!(
            value,
            r#"[{"spaceId":"3996960664","fileName":"报销单据-2026-001.pdf","fileSize":"45","fileType":"pdf","fileId":"120349587612"}]"#
        );
    }

    #[test]
    fn several_files_and_special_characters() {
        let value = dd_attachment_value(&[
            dentry("1", "a \"quoted\".txt", 0, "txt"),
            dentry("2", "b", 1_073_741_824, ""),
        ]);
        assert_eq!(
            value,
            r#"[{"spaceId":"3996960664","fileName":"a \"quoted\".txt","fileSize":"0","fileType":"txt","fileId":"1"},{"spaceId":"3996960664","fileName":"b","fileSize":"1073741824","fileType":"","fileId":"2"}]"#
        );
        assert_eq!(dd_attachment_value(&[]), "[]");
    }

    #[test]
    fn file_ids_round_trip_and_reject_other_values() {
        let value = dd_attachment_value(&[
            dentry("11", "a.pdf", 1, "pdf"),
            dentry("22", "b.pdf", 2, "pdf"),
        ]);
        assert_eq!(
            dd_attachment_file_ids(&value),
            Some(vec!["11".into(), "22".into()])
        );
        assert_eq!(
            dd_attachment_file_ids(r#"[{"fileId":33,"fileName":"x","fileSize":5}]"#),
            Some(vec!["33".into()])
        );
        assert_eq!(dd_attachment_file_ids("[]"), Some(vec![]));
        assert_eq!(dd_attachment_file_ids(""), None);
        assert_eq!(dd_attachment_file_ids("出差"), None);
        assert_eq!(dd_attachment_file_ids(r#"{"fileId":"1"}"#), None);
        assert_eq!(dd_attachment_file_ids(r#"[{"fileName":"x"}]"#), None);
        assert_eq!(dd_attachment_file_ids(r#"[{"fileId":null}]"#), None);
    }
}

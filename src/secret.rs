//! `Secret`: a string that never shows itself in logs, errors or debug output; and the check
//! that a file holding one is not open to other users.

use std::fmt;
use std::path::Path;

/// A credential (app secret, access token). `Debug` and `Display` print `[redacted]`; the
/// value is only reachable through `Secret::expose`, so every use is easy to find.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The credential itself, for the one place that must send it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// What a redacted credential reads as.
pub(crate) const REDACTED: &str = "[redacted]";

/// Names under which a token travels and is echoed back: the oapi query parameter, the JSON
/// member of the token answer, the api header. Compared without regard to case.
const TOKEN_NAMES: [&str; 3] = ["access_token", "accesstoken", "access-token"];

/// `text` with every credential of `known` replaced by [`REDACTED`], as is and as a query
/// string carries it (servers and proxies echo request URLs, headers and bodies in their
/// error messages), and with the value of any `access_token=…` parameter, `"accessToken":
/// "…"` member or `x-acs-dingtalk-access-token: …` header replaced too, whichever token it
/// is: an old one, or one nobody here knows yet.
pub(crate) fn redact(text: &str, known: &[&str]) -> String {
    let mut text = text.to_owned();
    for secret in known.iter().filter(|s| !s.is_empty()) {
        for form in [(*secret).to_owned(), query_encoded(secret)] {
            if text.contains(&form) {
                text = text.replace(&form, REDACTED);
            }
        }
    }
    redact_named_tokens(&text)
}

/// Replaces the value after each token name followed by `=` or `:` (JSON quotes, escaped
/// or not, and spaces allowed around it).
fn redact_named_tokens(text: &str) -> String {
    // ASCII lowercasing keeps every byte offset, so positions found in it hold in `text`.
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some((name_at, name)) = TOKEN_NAMES
        .iter()
        .filter_map(|name| lower[from..].find(name).map(|at| (from + at, name)))
        .min_by_key(|(at, _)| *at)
    {
        from = name_at + name.len();
        let Some((start, end)) = value_after(text, from) else {
            continue;
        };
        if &text[start..end] != REDACTED {
            out.push_str(&text[copied..start]);
            out.push_str(REDACTED);
            copied = end;
        }
        from = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// The byte range of the value that follows a token name ending at `at`, if a separator
/// and a non-empty value follow it.
fn value_after(text: &str, at: usize) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let skip = |mut i: usize, what: &[u8]| {
        while i < bytes.len() && what.contains(&bytes[i]) {
            i += 1;
        }
        i
    };
    let i = skip(at, b"\\\"' \t");
    if !matches!(bytes.get(i), Some(b'=' | b':')) {
        return None;
    }
    let start = skip(i + 1, b"\\\"' \t");
    let end = start
        + bytes[start..]
            .iter()
            .position(|b| b.is_ascii_whitespace() || b"&\"'\\,;#()<>[]{}".contains(b))
            .unwrap_or(bytes.len() - start);
    (end > start).then_some((start, end))
}

/// `value` as a form-encoded query string carries it (what reqwest sends): unreserved
/// characters as they are, a space as `+`, every other byte as `%XX`.
fn query_encoded(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                encoded.push(char::from(byte));
            }
            b' ' => encoded.push('+'),
            other => encoded.push_str(&format!("%{other:02X}")),
        }
    }
    encoded
}

/// A warning when the file at `path`, which holds a secret, is open to its group or to
/// other users (any of the mode bits `0o077`), naming the file and its mode and saying how
/// to fix it. `None` when only its owner has access, and when it cannot be examined: reading
/// the secret reports that.
pub(crate) fn file_mode_warning(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
        (mode & 0o077 != 0).then(|| {
            format!(
                "secret file {} is accessible to its group or others (mode {mode:04o}); \
                 run `chmod 600 {}`",
                path.display(),
                path.display()
            )
        })
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn a_known_token_is_redacted_as_is_and_as_a_query_string_encodes_it() {
        let text = "token tok+/= sent as access-tok tok%2B%2F%3D and secret S3";
        assert_eq!(
            super::redact(text, &["tok+/=", "S3", ""]),
            "token [redacted] sent as access-tok [redacted] and secret [redacted]"
        );
    }

    #[test]
    fn any_token_after_its_name_is_redacted_in_urls_json_and_headers() {
        let cases = [
            (
                "GET /topapi/v2/user/get?access_token=abc123&userid=u",
                "GET /topapi/v2/user/get?access_token=[redacted]&userid=u",
            ),
            (
                r#"{"accessToken":"abc123","expireIn":7200}"#,
                r#"{"accessToken":"[redacted]","expireIn":7200}"#,
            ),
            (
                r#"body {\"accessToken\" : \"abc123\"} end"#,
                r#"body {\"accessToken\" : \"[redacted]\"} end"#,
            ),
            (
                "x-acs-dingtalk-access-token: abc123\nnext",
                "x-acs-dingtalk-access-token: [redacted]\nnext",
            ),
            ("ACCESS_TOKEN=abc123", "ACCESS_TOKEN=[redacted]"),
            // A name without a value, as in DingTalk's own message, stays as it is.
            ("不合法的access_token", "不合法的access_token"),
            ("access_token= ", "access_token= "),
            ("access_token=[redacted]", "access_token=[redacted]"),
        ];
        for (text, expected) in cases {
            assert_eq!(super::redact(text, &[]), expected, "{text}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_file_others_can_read_gets_a_warning_naming_it_and_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app_secret");
        std::fs::write(&path, "s3cr3t").unwrap();
        let chmod = |mode| {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };

        chmod(0o644);
        let warning = super::file_mode_warning(&path).unwrap();
        assert!(warning.contains(&path.display().to_string()), "{warning}");
        assert!(warning.contains("0644"), "{warning}");
        assert!(warning.contains("chmod 600"), "{warning}");

        chmod(0o600);
        assert_eq!(super::file_mode_warning(&path), None);
        chmod(0o400);
        assert_eq!(super::file_mode_warning(&path), None);
        chmod(0o620);
        assert!(super::file_mode_warning(&path).is_some(), "group may write");
        assert_eq!(super::file_mode_warning(&dir.path().join("missing")), None);
    }

    #[test]
    fn a_secret_never_prints_its_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "[redacted] [redacted]");
        assert_eq!(secret.expose(), "hunter2");
    }
}

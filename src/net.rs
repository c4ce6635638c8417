//! What the two HTTP clients (`dingtalk`, `oss`) share: the text of a failed request.

/// `error` and its causes, joined with ": ", without the request URL: oapi URLs carry the
/// access token and OSS URLs the signature.
pub(crate) fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    detail
}

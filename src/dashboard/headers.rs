//! Headers on every answer: a Content-Security-Policy that allows nothing but the embedded
//! stylesheet and inline SVG (no script at all, no framing, forms posting only here), no
//! MIME sniffing, no referrer, and no caching of pages that show jobs.

use axum::http::{HeaderValue, header};
use axum::response::Response;

/// The policy. No `script-src`: the dashboard ships no script, so `default-src 'none'`
/// forbids every script, inline or not. `data:` images only for the empty favicon.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; \
     img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers to `response`.
pub(crate) async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

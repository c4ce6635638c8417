//! The HTML pages, rendered on the server with maud (which escapes every value it prints).
//! Forms are plain HTML; no page carries script or an inline style, as the
//! Content-Security-Policy allows neither.

mod bulk;
mod chart;
mod job;
mod jobs;
mod login;
mod overview;
mod queues;

use axum::http::StatusCode;
use maud::{DOCTYPE, Markup, html};

pub(crate) use bulk::{bulk_confirm, bulk_perform};
pub(crate) use job::{job, job_action};
pub(crate) use jobs::{PAGE_SIZE, jobs};
pub(crate) use login::{login_form, login_submit, logout};
pub(crate) use overview::overview;
pub(crate) use queues::{paused_marker, queue_action};

use super::DashboardSettings;
use super::access::Viewer;

/// Which part of the site a page belongs to, for the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Overview,
    Jobs,
}

/// A whole page around `body`.
pub(crate) fn layout(
    title: &str,
    section: Section,
    viewer: &Viewer,
    settings: &DashboardSettings,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · approval-worker" }
                link rel="stylesheet" href="/static/style.css";
                // No favicon request: the browser would ask for /favicon.ico on every page.
                link rel="icon" href="data:,";
            }
            body {
                header.top {
                    a.brand href="/" { "approval-worker" }
                    nav {
                        a.current[section == Section::Overview] href="/" { "Overview" }
                        a.current[section == Section::Jobs] href="/jobs" { "Jobs" }
                        a href="/jobs?status=failed" { "Failed" }
                        a href="/jobs?status=queued" { "Queued" }
                        a href="/jobs?status=running" { "Running" }
                    }
                    span.spacer {}
                    @if settings.read_only {
                        span.badge.readonly title="[dashboard] read_only = true" { "read-only" }
                    }
                    @if viewer.can_sign_out {
                        form.inline method="post" action="/logout" {
                            (csrf_field(viewer))
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The hidden field carrying the session's CSRF token.
pub(crate) fn csrf_field(viewer: &Viewer) -> Markup {
    html! {
        @if let Some(csrf) = &viewer.csrf {
            input type="hidden" name="csrf" value=(csrf);
        }
    }
}

/// A page for a failure, without the navigation (it may be shown to someone not signed in).
pub(crate) fn failure_page(status: StatusCode, message: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (status.as_u16()) " · approval-worker" }
                link rel="stylesheet" href="/static/style.css";
                link rel="icon" href="data:,";
            }
            body {
                main.narrow {
                    h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                    p.error { (message) }
                    p { a href="/" { "Overview" } " · " a href="/jobs" { "Jobs" } }
                }
            }
        }
    }
}

/// A status as a coloured badge.
pub(crate) fn status_badge(status: &str) -> Markup {
    html! { span class={ "badge status-" (status) } { (status) } }
}

/// Unix ms as `YYYY-MM-DD HH:MM:SS UTC`.
pub(crate) fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = crate::clock::civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A time as an element showing how long ago (or ahead) it is, the exact time on hover.
pub(crate) fn when(ms: i64, now_ms: i64) -> Markup {
    let text = if ms <= now_ms {
        format!("{} ago", span(now_ms - ms))
    } else {
        format!("in {}", span(ms - now_ms))
    };
    html! { time title=(utc(ms)) { (text) } }
}

/// A length of time in the largest units that matter: `850 ms`, `4.2 s`, `3 min 4 s`.
pub(crate) fn span(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
        3_600_000..=172_799_999 => format!("{} h {} min", ms / 3_600_000, ms % 3_600_000 / 60_000),
        _ => format!("{} d {} h", ms / 86_400_000, ms % 86_400_000 / 3_600_000),
    }
}

/// `count` with thin spaces between thousands: `12 345`.
pub(crate) fn number(count: i64) -> String {
    let digits = count.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{2009}');
        }
        out.push(c);
    }
    if count < 0 { format!("-{out}") } else { out }
}

/// The first `max` characters of `text`, with an ellipsis when cut.
pub(crate) fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let kept: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{kept}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_spans_read_as_people_write_them() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_764_775_084_000), "2025-12-03 15:18:04 UTC");
        assert_eq!(span(850), "850 ms");
        assert_eq!(span(4_200), "4.2 s");
        assert_eq!(span(184_000), "3 min 4 s");
        assert_eq!(span(7_500_000), "2 h 5 min");
        assert_eq!(number(12_345), "12\u{2009}345");
        assert_eq!(number(999), "999");
        assert_eq!(cut("abcdef", 4), "abc…");
    }
}

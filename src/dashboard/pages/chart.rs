//! Charts drawn on the server as inline SVG: shapes with attributes and classes only (the
//! stylesheet colours them), since the Content-Security-Policy allows no inline style and
//! no script.

use maud::{Markup, html};

use super::{number, utc};
use crate::queue::FinishedBucket;

const WIDTH: i64 = 720;
const HEIGHT: i64 = 180;
/// Room for the axis labels.
const LEFT: i64 = 40;
const BOTTOM: i64 = 22;
const TOP: i64 = 8;

/// Succeeded and failed jobs per bucket as stacked bars, oldest left.
pub(crate) fn finished_bars(buckets: &[FinishedBucket], bucket_ms: i64) -> Markup {
    let highest = buckets
        .iter()
        .map(|b| b.succeeded + b.failed)
        .max()
        .unwrap_or(0)
        .max(1);
    let count = i64::try_from(buckets.len()).unwrap_or(1).max(1);
    let plot_width = WIDTH - LEFT;
    let plot_height = HEIGHT - BOTTOM - TOP;
    let slot = plot_width / count;
    let bar = (slot - 4).max(2);
    let scale = |jobs: i64| jobs * plot_height / highest;
    let base = HEIGHT - BOTTOM;
    html! {
        svg.chart viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img"
            aria-label="Jobs finished per hour: succeeded and failed" {
            line.axis x1=(LEFT) y1=(base) x2=(WIDTH) y2=(base) {}
            text.label x=(LEFT - 6) y=(TOP + 10) text-anchor="end" { (number(highest)) }
            text.label x=(LEFT - 6) y=(base) text-anchor="end" { "0" }
            @for (i, bucket) in buckets.iter().enumerate() {
                @let x = LEFT + i64::try_from(i).unwrap_or(0) * slot + 2;
                @let ok = scale(bucket.succeeded);
                @let bad = scale(bucket.failed);
                g {
                    title {
                        (utc(bucket.from_ms)) " to " (hour_of(bucket.from_ms + bucket_ms)) ": "
                        (bucket.succeeded) " succeeded, " (bucket.failed) " failed"
                    }
                    // A transparent column, so the whole hour shows its numbers on hover.
                    rect.hover x=(x) y=(TOP) width=(bar) height=(plot_height) {}
                    @if ok > 0 {
                        rect.ok x=(x) y=(base - ok) width=(bar) height=(ok) {}
                    }
                    @if bad > 0 {
                        rect.bad x=(x) y=(base - ok - bad) width=(bar) height=(bad) {}
                    }
                }
                @if i % 3 == 0 {
                    text.label x=(x + bar / 2) y=(HEIGHT - 6) text-anchor="middle" {
                        (hour_of(bucket.from_ms))
                    }
                }
            }
        }
    }
}

/// How much of a budget is used, as a bar.
pub(crate) fn meter(used: i64, budget: i64) -> Markup {
    let budget = budget.max(1);
    let filled = (used.clamp(0, budget) * 300) / budget;
    let class = if used * 10 >= budget * 9 { "bad" } else { "ok" };
    html! {
        svg.meter viewBox="0 0 300 12" role="img"
            aria-label={ (used) " of " (budget) " calls" } {
            rect.track x="0" y="0" width="300" height="12" {}
            rect class=(class) x="0" y="0" width=(filled) height="12" {}
        }
    }
}

/// `HH:MM` of a time, UTC.
fn hour_of(ms: i64) -> String {
    let minutes = ms.div_euclid(60_000);
    format!(
        "{:02}:{:02}",
        minutes.div_euclid(60).rem_euclid(24),
        minutes.rem_euclid(60)
    )
}

//! How `show` and `--json` present a job's approval outcome: the decision, the approvers'
//! steps as DingTalk recorded them, and the notifications sent to the producer.

use serde_json::{Value, json};

use super::table::{render, time};
use crate::queue::{DeliveryRow, OutcomeRow};

/// The outcome and its notifications as JSON (records parsed, not a string).
pub(crate) fn outcome_json(outcome: &OutcomeRow, deliveries: &[DeliveryRow]) -> Value {
    let records = outcome
        .records
        .as_deref()
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .unwrap_or(Value::Null);
    json!({
        "instance_id": outcome.instance_id,
        "outcome": outcome.outcome,
        "submitted_at": outcome.submitted_at,
        "decided_at": outcome.decided_at,
        "learned_at": outcome.learned_at,
        "learned_from": outcome.learned_from,
        "checks": outcome.checks,
        "next_check_at": outcome.next_check_at,
        "last_error": outcome.last_error,
        "callback_url": outcome.callback_url,
        "records": records,
        "deliveries": deliveries,
    })
}

/// The human form: a line with the decision, the approvers' timeline, the deliveries.
pub(crate) fn print_outcome(outcome: &OutcomeRow, deliveries: &[DeliveryRow]) {
    println!(
        "\noutcome: {}  instance {}",
        outcome.outcome, outcome.instance_id
    );
    match (outcome.outcome.as_str(), outcome.decided_at) {
        ("pending", _) => {
            let next = outcome
                .next_check_at
                .map(|at| format!(", next read {}", time(at)))
                .unwrap_or_default();
            println!("  undecided; read {} time(s){next}", outcome.checks);
        }
        (_, Some(at)) => println!(
            "  decided {} (learned from {})",
            time(at),
            outcome.learned_from.as_deref().unwrap_or("?")
        ),
        _ => {}
    }
    if let Some(error) = &outcome.last_error {
        println!("  last read failed: {error}");
    }
    let records: Value = outcome
        .records
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or(Value::Null);
    let rows: Vec<Vec<String>> = records["operation_records"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|record| {
            vec![
                text(&record["date"]),
                text(&record["user_id"]),
                text(&record["kind"]),
                text(&record["result"]),
                text(&record["remark"]),
            ]
        })
        .collect();
    if !rows.is_empty() {
        println!("\napprovers:");
        print!(
            "{}",
            render(&["AT", "USER", "ACTION", "RESULT", "REMARK"], &rows)
        );
    }
    if !deliveries.is_empty() {
        let rows: Vec<Vec<String>> = deliveries
            .iter()
            .map(|d| {
                vec![
                    d.delivery_id.clone(),
                    d.url.clone(),
                    d.status.clone(),
                    d.attempts.to_string(),
                    d.last_status.map(|s| s.to_string()).unwrap_or_default(),
                    d.delivered_at
                        .or(d.next_attempt_at)
                        .map(time)
                        .unwrap_or_default(),
                    d.last_error.clone().unwrap_or_default(),
                ]
            })
            .collect();
        println!("\nnotifications:");
        print!(
            "{}",
            render(
                &[
                    "DELIVERY",
                    "URL",
                    "STATUS",
                    "SENDS",
                    "HTTP",
                    "DELIVERED / NEXT",
                    "ERROR"
                ],
                &rows
            )
        );
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

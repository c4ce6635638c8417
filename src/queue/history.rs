//! A job's history as people read it: the `put_part` events of a large file's parts, one
//! per part, folded into one entry per run of them, so 512 parts read as one line.

use super::EventRow;

/// The step label of one part's PUT in events.
const PART_STEP: &str = "put_part";

/// One entry of a job's history: an event, or a run of parts folded into its last event.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    /// The event; for a run of parts the last one, with the run's summed duration.
    pub event: EventRow,
    /// How many events it stands for (parts, for a run of them; else 1).
    pub count: u32,
}

/// `events` (oldest first) with each run of consecutive `put_part` steps done in one
/// attempt folded into one entry.
pub fn history(events: &[EventRow]) -> Vec<HistoryEntry> {
    let mut entries: Vec<HistoryEntry> = Vec::with_capacity(events.len());
    for event in events {
        if let Some(last) = entries.last_mut()
            && is_part(&last.event)
            && is_part(event)
            && last.event.attempt == event.attempt
        {
            let duration = last.event.duration_ms.unwrap_or(0) + event.duration_ms.unwrap_or(0);
            last.event = event.clone();
            last.event.duration_ms = Some(duration);
            last.count += 1;
            continue;
        }
        entries.push(HistoryEntry {
            event: event.clone(),
            count: 1,
        });
    }
    entries
}

fn is_part(event: &EventRow) -> bool {
    event.kind == "step_done" && event.step.as_deref() == Some(PART_STEP)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64, kind: &str, step: &str, attempt: i64, duration_ms: i64) -> EventRow {
        EventRow {
            id,
            job_id: 1,
            at: id * 100,
            kind: kind.into(),
            step: Some(step.into()),
            attempt: Some(attempt),
            duration_ms: Some(duration_ms),
            error: None,
            http_status: None,
        }
    }

    #[test]
    fn a_run_of_parts_in_one_attempt_reads_as_one_entry_with_their_count_and_time() {
        let events = [
            event(1, "step_done", "upload_info", 1, 5),
            event(2, "step_done", "put_part", 1, 90),
            event(3, "step_done", "put_part", 1, 80),
            event(4, "retry_scheduled", "put_part", 1, 10),
            event(5, "step_done", "put_part", 2, 70),
            event(6, "step_done", "put_part", 2, 60),
            event(7, "step_done", "commit", 2, 3),
        ];
        let entries = history(&events);
        let shape: Vec<(i64, Option<&str>, u32, Option<i64>)> = entries
            .iter()
            .map(|e| {
                (
                    e.event.id,
                    e.event.step.as_deref(),
                    e.count,
                    e.event.duration_ms,
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                (1, Some("upload_info"), 1, Some(5)),
                (3, Some("put_part"), 2, Some(170)),
                (4, Some("put_part"), 1, Some(10)),
                (6, Some("put_part"), 2, Some(130)),
                (7, Some("commit"), 1, Some(3)),
            ]
        );
        assert_eq!(entries[1].event.at, 300, "the run ends with its last part");
    }
}

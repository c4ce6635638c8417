//! Routing events to connections: delivery round robin over the event-subscribed
//! connections, ack timeouts, and redelivery of what was not handled.

use tokio::time::Instant;

use super::super::super::ids;
use super::super::frames::{self, EventHead};
use super::super::{AckStatus, StreamDelivery};
use super::{Conn, Flight, Gateway, Inner, Outbound, Sent};

impl Gateway {
    /// Redelivers what timed out and delivers what is due; returns when to come back
    /// (`None`: only when woken).
    pub(crate) fn pump_once(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut inner = self.lock();
        let inner = &mut *inner;
        let expired: Vec<String> = inner
            .in_flight
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        let mut changed = !expired.is_empty();
        let requeue_at = now + inner.delay;
        for message_id in expired {
            inner.settle(&message_id, AckStatus::TimedOut, None, requeue_at);
        }
        if inner.next_receiver().is_some() {
            let mut due = Vec::new();
            inner.waiting.retain(|&(event, at)| {
                let ready = at <= now;
                if ready {
                    due.push(event);
                }
                !ready
            });
            changed |= !due.is_empty();
            for event in due {
                let copies = if inner.duplicate_next > 0 {
                    inner.duplicate_next -= 1;
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    self.deliver(inner, event, now);
                }
            }
        }
        let flights = inner.in_flight.values().map(|f| f.deadline);
        let waiting = inner
            .waiting
            .iter()
            .map(|&(_, at)| at)
            .filter(|_| inner.next_receiver().is_some());
        let next = flights.chain(waiting).min();
        if changed {
            self.touch();
        }
        next
    }

    /// Sends `event` to the next connection, or puts it back when none is left.
    fn deliver(&self, inner: &mut Inner, event: usize, now: Instant) {
        while let Some(key) = inner.next_receiver() {
            let message_id = ids::uuid_like();
            let record = &inner.events[event];
            let head = EventHead {
                event_id: &record.view.event_id,
                event_type: &record.view.event_type,
                born_ms: record.born_ms,
                corp_id: &self.corp_id,
                app_id: &self.app_id,
                data: &record.data_text,
            };
            let Some(conn) = inner.conns.get(&key) else {
                break;
            };
            let frame = frames::event(&head, &message_id, &conn.connection_id, ids::now_ms());
            let connection_id = conn.connection_id.clone();
            inner.last_receiver = key;
            if conn.tx.send(Outbound::Frame(frame)).is_err() {
                // Its task has ended and will report it; stop choosing it meanwhile.
                inner.remove_conn(key, now);
                continue;
            }
            let record = &mut inner.events[event];
            record.in_flight += 1;
            record.view.deliveries.push(StreamDelivery {
                message_id: message_id.clone(),
                connection_id,
                status: AckStatus::Pending,
                ack_code: None,
            });
            let delivery = record.view.deliveries.len() - 1;
            inner.in_flight.insert(
                message_id.clone(),
                Flight {
                    event,
                    delivery,
                    conn: key,
                    deadline: now + self.options.ack_timeout,
                },
            );
            inner.sent.insert(message_id, Sent::Event);
            return;
        }
        inner.waiting.push((event, now));
    }
}

impl Inner {
    /// The event-subscribed, non-draining connection after the last one used, round robin.
    fn next_receiver(&self) -> Option<u64> {
        let eligible = |(key, conn): (&u64, &Conn)| (conn.events && !conn.draining).then_some(*key);
        let after = self.last_receiver.saturating_add(1);
        self.conns
            .range(after..)
            .find_map(eligible)
            .or_else(|| self.conns.range(..after).find_map(eligible))
    }

    pub(super) fn remove_conn(&mut self, conn: u64, now: Instant) {
        if self.conns.remove(&conn).is_none() {
            return;
        }
        let lost: Vec<String> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.conn == conn)
            .map(|(id, _)| id.clone())
            .collect();
        let requeue_at = now + self.delay;
        for message_id in lost {
            self.settle(&message_id, AckStatus::Lost, None, requeue_at);
        }
    }

    /// Ends a delivery. An event not yet handled, with no other delivery outstanding, waits
    /// for redelivery from `requeue_at`.
    pub(super) fn settle(
        &mut self,
        message_id: &str,
        status: AckStatus,
        code: Option<i64>,
        requeue_at: Instant,
    ) {
        let Some(flight) = self.in_flight.remove(message_id) else {
            return;
        };
        let event = &mut self.events[flight.event];
        let delivery = &mut event.view.deliveries[flight.delivery];
        delivery.status = status;
        delivery.ack_code = code;
        event.in_flight -= 1;
        if status == AckStatus::Success {
            event.view.acked = true;
        } else if !event.view.acked && event.in_flight == 0 {
            self.waiting.push((flight.event, requeue_at));
        }
    }
}

//! Stream frames on the wire: the EVENT and SYSTEM frames the gateway sends, and the acks
//! clients answer with, read as leniently as the official SDKs write them.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// The protocol version every frame carries.
const SPEC_VERSION: &str = "1.0";
const JSON: &str = "application/json";

/// A downstream frame; every header value is a string, `data` is JSON inside a string.
fn frame(kind: &str, headers: &BTreeMap<&str, String>, data: &str) -> String {
    json!({"specVersion": SPEC_VERSION, "type": kind, "headers": headers, "data": data}).to_string()
}

fn system(topic: &str, message_id: &str, now_ms: i64, data: &str) -> String {
    let headers = BTreeMap::from([
        ("topic", topic.to_owned()),
        ("messageId", message_id.to_owned()),
        ("contentType", JSON.to_owned()),
        ("time", now_ms.to_string()),
    ]);
    frame("SYSTEM", &headers, data)
}

/// SYSTEM `ping`; the Java SDK parses its data as a JSON object, so it is one.
pub(super) fn ping(message_id: &str, opaque: &str, now_ms: i64) -> (String, String) {
    let data = json!({"opaque": opaque}).to_string();
    (system("ping", message_id, now_ms, &data), data)
}

/// SYSTEM `disconnect`: the client should open a new connection; this one closes soon.
pub(super) fn disconnect(message_id: &str, reason: &str, now_ms: i64) -> String {
    system(
        "disconnect",
        message_id,
        now_ms,
        &json!({"reason": reason}).to_string(),
    )
}

/// The parts of an EVENT frame that stay the same across deliveries.
pub(super) struct EventHead<'a> {
    pub(super) event_id: &'a str,
    pub(super) event_type: &'a str,
    pub(super) born_ms: i64,
    pub(super) corp_id: &'a str,
    pub(super) app_id: &'a str,
    pub(super) data: &'a str,
}

/// One delivery of an event.
pub(super) fn event(
    head: &EventHead<'_>,
    message_id: &str,
    connection_id: &str,
    now_ms: i64,
) -> String {
    let headers = BTreeMap::from([
        ("topic", "*".to_owned()),
        ("messageId", message_id.to_owned()),
        ("contentType", JSON.to_owned()),
        ("time", now_ms.to_string()),
        ("eventType", head.event_type.to_owned()),
        ("eventId", head.event_id.to_owned()),
        ("eventCorpId", head.corp_id.to_owned()),
        ("eventBornTime", head.born_ms.to_string()),
        ("eventUnifiedAppId", head.app_id.to_owned()),
        ("appId", head.app_id.to_owned()),
        ("connectionId", connection_id.to_owned()),
    ]);
    frame("EVENT", &headers, head.data)
}

/// An upstream ack: `{"code", "headers": {"messageId", …}, "message", "data"}`.
#[derive(Debug, PartialEq)]
pub(super) struct Ack {
    pub(super) message_id: String,
    pub(super) code: Option<i64>,
    /// `data` parsed as JSON when it is a string holding JSON, else as sent.
    pub(super) data: Value,
}

/// Reads an ack; `None` for anything that is not one.
pub(super) fn parse_ack(text: &str) -> Option<Ack> {
    let value: Value = serde_json::from_str(text).ok()?;
    let message_id = value.get("headers")?.get("messageId")?.as_str()?.to_owned();
    let data = match value.get("data") {
        Some(Value::String(raw)) => {
            serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.clone()))
        }
        Some(other) => other.clone(),
        None => Value::Null,
    };
    Some(Ack {
        message_id,
        code: value.get("code").and_then(Value::as_i64),
        data,
    })
}

impl Ack {
    /// Whether an EVENT ack means the event is handled. `data.status` decides when present
    /// (`SUCCESS`; anything else, `LATER` included, asks for redelivery). Without one the
    /// code does: the Python SDK acks events with code 200 and the event's own data echoed.
    pub(super) fn succeeded(&self) -> bool {
        match self.data.get("status").and_then(Value::as_str) {
            Some(status) => status == "SUCCESS",
            None => self.code == Some(200),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn acks_decode_a_json_string_data_and_tolerate_an_object_or_none() {
        let ack = parse_ack(
            r#"{"code":200,"headers":{"messageId":"m1","contentType":"application/json"},"message":"OK","data":"{\"status\":\"SUCCESS\"}"}"#,
        )
        .unwrap();
        assert_eq!(ack.message_id, "m1");
        assert!(ack.succeeded());

        let later =
            parse_ack(r#"{"code":500,"headers":{"messageId":"m2"},"data":{"status":"LATER"}}"#)
                .unwrap();
        assert!(!later.succeeded());

        let echoed = parse_ack(
            r#"{"code":200,"headers":{"messageId":"m3"},"data":"{\"processInstanceId\":\"x\"}"}"#,
        )
        .unwrap();
        assert!(echoed.succeeded(), "code 200 without a status is success");
        let not_found =
            parse_ack(r#"{"code":404,"headers":{"messageId":"m4"},"data":""}"#).unwrap();
        assert!(!not_found.succeeded());
        assert_eq!(not_found.data, Value::String(String::new()));
    }

    #[test]
    fn anything_without_a_message_id_is_not_an_ack() {
        for text in [
            "",
            "not json",
            "[]",
            r#"{"headers":{}}"#,
            r#"{"headers":{"messageId":7}}"#,
        ] {
            assert_eq!(parse_ack(text), None, "{text}");
        }
    }

    #[test]
    fn every_header_of_an_event_frame_is_a_string() {
        let head = EventHead {
            event_id: "e1",
            event_type: "bpms_instance_change",
            born_ms: 1_700_000_000_000,
            corp_id: "dingcorp",
            app_id: "app",
            data: r#"{"type":"start"}"#,
        };
        let frame: Value =
            serde_json::from_str(&event(&head, "m1", "c1", 1_700_000_000_500)).unwrap();
        assert_eq!(frame["type"], "EVENT");
        assert_eq!(frame["specVersion"], "1.0");
        assert_eq!(frame["data"], r#"{"type":"start"}"#);
        let headers = frame["headers"].as_object().unwrap();
        assert!(headers.values().all(Value::is_string));
        assert_eq!(headers["eventBornTime"], "1700000000000");
        assert_eq!(headers["topic"], "*");
    }
}

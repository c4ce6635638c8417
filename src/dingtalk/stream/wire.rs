//! Stream mode on the wire (§5.13): the connections/open body and answer, the frames DingTalk
//! sends, the acks we send back, and the `bpms_instance_change` payload. Lenient on input
//! (header values and numbers arrive as strings or numbers), exact on output.

use std::collections::HashMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use super::{Ack, ChangeKind, InstanceChange};
use crate::dingtalk::wire::{lenient_i64, value_as_i64};

/// The event type of an approval instance's start, finish, withdrawal or deletion.
pub(super) const INSTANCE_CHANGE: &str = "bpms_instance_change";

/// Frames are quoted in logs only this far.
const EXCERPT_CHARS: usize = 120;

/// connections/open request.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OpenBody<'a> {
    pub(super) client_id: &'a str,
    pub(super) client_secret: &'a str,
    pub(super) subscriptions: [Subscription; 2],
    pub(super) ua: &'static str,
    pub(super) local_ip: String,
}

#[derive(Serialize)]
pub(super) struct Subscription {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) topic: &'static str,
}

/// Every event, and the gateway's pings (the SDKs subscribe to them explicitly).
pub(super) const SUBSCRIPTIONS: [Subscription; 2] = [
    Subscription {
        kind: "EVENT",
        topic: "*",
    },
    Subscription {
        kind: "SYSTEM",
        topic: "ping",
    },
];

/// connections/open answer.
#[derive(Deserialize)]
pub(super) struct OpenResponse {
    pub(super) endpoint: String,
    pub(super) ticket: String,
}

/// One frame from the gateway. Header values are documented as strings; numbers are
/// accepted too and kept as their text.
#[derive(Debug, Deserialize)]
pub(super) struct Frame {
    #[serde(default, rename = "type")]
    pub(super) kind: String,
    #[serde(default, deserialize_with = "text_map")]
    pub(super) headers: HashMap<String, String>,
    /// JSON inside a string; kept as the text that came, since a ping's ack echoes it.
    #[serde(default, deserialize_with = "text")]
    pub(super) data: String,
}

impl Frame {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// The ack of one frame: code 200, the frame's messageId, and `data` as a JSON string.
pub(super) fn ack(message_id: &str, data: &str) -> String {
    json!({
        "code": 200,
        "headers": {"messageId": message_id, "contentType": "application/json"},
        "message": "OK",
        "data": data,
    })
    .to_string()
}

/// The ack of an EVENT frame; DingTalk redelivers on `LATER` (the status is what counts).
pub(super) fn event_ack(message_id: &str, answer: Ack) -> String {
    let status = match answer {
        Ack::Success => "SUCCESS",
        Ack::Later => "LATER",
    };
    ack(message_id, &json!({ "status": status }).to_string())
}

/// The reason in a SYSTEM `disconnect` frame's data, if it names one.
pub(super) fn disconnect_reason(data: &str) -> String {
    serde_json::from_str::<Value>(data)
        .ok()
        .and_then(|v| v.get("reason").map(value_text))
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "no reason given".to_owned())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireInstanceChange {
    #[serde(default, deserialize_with = "optional_text")]
    process_instance_id: Option<String>,
    #[serde(default, deserialize_with = "optional_text")]
    process_code: Option<String>,
    #[serde(default, rename = "type", deserialize_with = "optional_text")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "optional_text")]
    result: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    finish_time: Option<i64>,
}

/// A `bpms_instance_change` event from its frame, or why it cannot be read.
pub(super) fn instance_change(frame: &Frame) -> Result<InstanceChange, String> {
    let wire: WireInstanceChange =
        serde_json::from_str(&frame.data).map_err(|e| format!("data is not the payload: {e}"))?;
    let instance_id = wire
        .process_instance_id
        .ok_or("data names no processInstanceId")?;
    let kind = match wire.kind.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("start") => ChangeKind::Start,
        Some("finish") => ChangeKind::Finish,
        Some("terminate") => ChangeKind::Terminate,
        Some("delete") => ChangeKind::Delete,
        Some(other) => ChangeKind::Other(other.to_owned()),
        None => ChangeKind::Other(String::new()),
    };
    // Redeliveries keep the eventId; without one, an instance has one change of each kind,
    // which is the next best key to deduplicate on.
    let event_id = frame
        .header("eventId")
        .map_or_else(|| format!("{instance_id}:{}", kind.as_str()), str::to_owned);
    Ok(InstanceChange {
        event_id,
        instance_id,
        process_code: wire.process_code,
        kind,
        result: wire.result,
        finish_time_ms: wire.finish_time,
        born_at_ms: frame
            .header("eventBornTime")
            .and_then(|t| t.trim().parse().ok()),
    })
}

/// The start of `text` for a log line, on a character boundary.
pub(super) fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// A string as it is; a number or boolean as its JSON text; anything else as its JSON.
fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Number(_) => {
            value_as_i64(value).map_or_else(|| value.to_string(), |n| n.to_string())
        }
        other => other.to_string(),
    }
}

fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Option::<Value>::deserialize(deserializer)?
        .as_ref()
        .map(value_text)
        .unwrap_or_default())
}

fn optional_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Value>::deserialize(deserializer)?
        .as_ref()
        .map(value_text)
        .filter(|t| !t.is_empty()))
}

fn text_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<HashMap<String, String>, D::Error> {
    let map = Option::<HashMap<String, Value>>::deserialize(deserializer)?.unwrap_or_default();
    Ok(map
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k, value_text(&v)))
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn frame(value: Value) -> Frame {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_finish_event_reads_with_string_headers_and_numeric_times() {
        let frame = frame(json!({
            "specVersion": "1.0", "type": "EVENT",
            "headers": {"topic": "*", "messageId": "m-1", "contentType": "application/json",
                "time": "1661946725000", "eventType": "bpms_instance_change", "eventId": "ev-1",
                "eventCorpId": "ding123", "eventBornTime": "1661946720500", "eventUnifiedAppId": "u",
                "appId": "a", "connectionId": "c", "somethingNew": "x"},
            "data": json!({"processInstanceId": "INST-1", "processCode": "PROC-1", "type": "finish",
                "result": "agree", "title": "t", "staffId": "s", "businessId": "b",
                "createTime": 1661946000000_i64, "finishTime": 1661946720000_i64, "url": "https://x"}).to_string()
        }));
        assert_eq!(
            instance_change(&frame).unwrap(),
            InstanceChange {
                event_id: "ev-1".into(),
                instance_id: "INST-1".into(),
                process_code: Some("PROC-1".into()),
                kind: ChangeKind::Finish,
                result: Some("agree".into()),
                finish_time_ms: Some(1_661_946_720_000),
                born_at_ms: Some(1_661_946_720_500),
            }
        );
    }

    #[test]
    fn numbers_as_strings_and_headers_as_numbers_are_accepted() {
        let frame = frame(json!({
            "type": "EVENT",
            "headers": {"messageId": "m", "eventId": 42, "eventBornTime": 1661946720500_i64, "x": null},
            "data": r#"{"processInstanceId":"I","type":"TERMINATE","finishTime":"1661946720000"}"#
        }));
        let change = instance_change(&frame).unwrap();
        assert_eq!(change.event_id, "42");
        assert_eq!(change.kind, ChangeKind::Terminate);
        assert_eq!(change.finish_time_ms, Some(1_661_946_720_000));
        assert_eq!(change.born_at_ms, Some(1_661_946_720_500));
        assert_eq!((change.result, change.process_code), (None, None));
    }

    #[test]
    fn an_event_without_an_event_id_is_keyed_by_instance_and_kind() {
        let frame = frame(json!({
            "type": "EVENT", "headers": {"messageId": "m"},
            "data": r#"{"processInstanceId":"I","type":"start","finishTime":""}"#
        }));
        let change = instance_change(&frame).unwrap();
        assert_eq!(change.event_id, "I:start");
        assert_eq!(change.finish_time_ms, None);
    }

    #[test]
    fn unknown_kinds_are_kept_and_unreadable_data_is_an_error() {
        let unknown =
            frame(json!({"headers": {}, "data": r#"{"processInstanceId":"I","type":"redirect"}"#}));
        assert_eq!(
            instance_change(&unknown).unwrap().kind,
            ChangeKind::Other("redirect".into())
        );
        for data in ["", "not json", "[]", r#"{"type":"finish"}"#] {
            let bad = frame(json!({"headers": {}, "data": data}));
            assert!(instance_change(&bad).is_err(), "{data:?}");
        }
    }

    #[test]
    fn acks_carry_the_message_id_and_data_as_a_json_string() {
        let ack: Value = serde_json::from_str(&event_ack("m-1", Ack::Later)).unwrap();
        assert_eq!(
            ack,
            json!({"code": 200, "headers": {"messageId": "m-1", "contentType": "application/json"},
                "message": "OK", "data": "{\"status\":\"LATER\"}"})
        );
        let ping: Value = serde_json::from_str(&super::ack("p", r#"{"opaque": 1}"#)).unwrap();
        assert_eq!(ping["data"], r#"{"opaque": 1}"#);
    }

    #[test]
    fn data_sent_as_an_object_instead_of_a_string_is_read_as_its_json() {
        let frame = frame(json!({"type": "SYSTEM", "headers": {"topic": "disconnect"},
            "data": {"reason": "server restart"}}));
        assert_eq!(disconnect_reason(&frame.data), "server restart");
        assert_eq!(disconnect_reason("{}"), "no reason given");
    }

    #[test]
    fn excerpts_stop_on_a_character_boundary() {
        let long = "审".repeat(200);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert_eq!(excerpt("short"), "short");
    }
}

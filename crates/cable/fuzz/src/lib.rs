//! Properties of the cable's wire format that the fuzz targets share. Each
//! check panics when its property breaks, which libFuzzer reports as a crash.

use cable::protocol::{self, ActionData, HistoryRequest, Identifier, Position};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// A `{"identifier":…,"message":…}` frame read back, with its optional
/// position (extended protocol) and nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriptionFrame<'a> {
    identifier: String,
    #[serde(borrow)]
    message: &'a RawValue,
    stream_id: Option<String>,
    epoch: Option<String>,
    offset: Option<i64>,
}

/// A `{"type":…,"identifier":…}` frame read back, with nothing else in it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlFrame {
    r#type: String,
    identifier: String,
}

/// `json` as a JSON object, the way a client library would load it.
fn object(json: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str(json) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    }
}

/// Splits a JSON object into its string `key` and the other keys; `None` when
/// it is not an object or `key` is missing or not a string.
fn split_off(json: &str, key: &str) -> Option<(String, Map<String, Value>)> {
    let mut rest = object(json)?;
    match rest.remove(key)? {
        Value::String(value) => Some((value, rest)),
        _ => None,
    }
}

/// `Identifier::parse` accepts exactly the JSON objects with a string
/// `channel`, and its `params` are every other key, never `channel` itself
/// (not even when the key is repeated).
pub fn check_identifier(identifier: &str) {
    let parsed = Identifier::parse(identifier).map(|id| {
        assert!(
            !id.params.contains_key("channel"),
            "params kept `channel`: {identifier:?}"
        );
        (id.channel, id.params)
    });
    assert_eq!(
        parsed,
        split_off(identifier, "channel"),
        "Identifier::parse({identifier:?})"
    );
}

/// `ActionData::parse` accepts exactly the JSON objects with a string
/// `action`, and its `args` are every other key, never `action` itself.
pub fn check_action_data(data: &str) {
    let parsed = ActionData::parse(data).map(|action| {
        assert!(
            !action.args.contains_key("action"),
            "args kept `action`: {data:?}"
        );
        (action.action, action.args)
    });
    assert_eq!(
        parsed,
        split_off(data, "action"),
        "ActionData::parse({data:?})"
    );
}

/// `to_subscription` (or, given a position, `to_subscription_at`) writes a
/// JSON frame that echoes the identifier string exactly, carries the message
/// byte for byte and the position exactly; when the message loads as a
/// `serde_json::Value`, the whole frame does too and holds the same value.
pub fn check_to_subscription(identifier: &str, message: &RawValue, position: Option<Position>) {
    let frame = match position {
        None => protocol::to_subscription(identifier, message),
        Some(position) => protocol::to_subscription_at(identifier, message, position),
    };
    let read: SubscriptionFrame = serde_json::from_str(frame.as_str())
        .unwrap_or_else(|e| panic!("unreadable subscription frame ({e}): {frame}"));
    assert_eq!(read.identifier, identifier, "identifier not echoed exactly");
    assert_eq!(
        read.message.get(),
        message.get(),
        "message not carried byte for byte"
    );
    // The position, all three parts or none of them, exactly as given.
    let written = (
        read.stream_id.as_deref(),
        read.epoch.as_deref(),
        read.offset,
    );
    let given = (
        position.map(|p| p.stream),
        position.map(|p| p.epoch),
        position.map(|p| p.offset),
    );
    assert_eq!(written, given, "position not carried exactly");
    if let Ok(expected) = serde_json::from_str::<Value>(message.get()) {
        let whole: Value = serde_json::from_str(frame.as_str())
            .unwrap_or_else(|e| panic!("frame of a loadable message does not load ({e}): {frame}"));
        assert_eq!(whole["message"], expected, "message changed in the frame");
    }
}

/// A parsed history request holds exactly what the frame's `history` object
/// says: `since` and every stream's epoch and offset.
pub fn check_history(history: &HistoryRequest, sent: &Value) {
    let sent = sent
        .as_object()
        .expect("history parsed from something not an object");
    assert_eq!(
        history.since,
        sent.get("since").and_then(Value::as_i64),
        "since differs"
    );
    let streams = sent.get("streams").and_then(Value::as_object);
    assert_eq!(
        history.streams.len(),
        streams.map_or(0, Map::len),
        "stream count differs"
    );
    for (stream, position) in &history.streams {
        let sent = &streams.expect("streams parsed from nothing")[stream];
        assert_eq!(
            Some(position.epoch.as_str()),
            sent["epoch"].as_str(),
            "epoch of {stream:?} differs"
        );
        assert_eq!(
            Some(position.offset),
            sent["offset"].as_i64(),
            "offset of {stream:?} differs"
        );
    }
}

/// The confirm and reject frames of subscriptions and of history requests
/// are exactly `{"type":…,"identifier":…}`, the identifier echoed exactly.
pub fn check_control_frames(identifier: &str) {
    for (frame, kind) in [
        (
            protocol::confirm_subscription(identifier),
            "confirm_subscription",
        ),
        (
            protocol::reject_subscription(identifier),
            "reject_subscription",
        ),
    ] {
        let read: ControlFrame = serde_json::from_str(frame.as_str())
            .unwrap_or_else(|e| panic!("{kind} wrote an unreadable frame ({e}): {frame}"));
        assert_eq!(read.r#type, kind);
        assert_eq!(
            read.identifier, identifier,
            "{kind} did not echo the identifier exactly"
        );
    }
}

//! Any bytes as a client text frame: `Command::parse`, then everything the
//! session does with a parsed command's strings.
//!
//! Checks that a frame is only accepted when it is a JSON object whose
//! `command` names the variant and whose `identifier`, `data` and `history`
//! are what was parsed; that the identifier and data parsers keep their
//! invariants; and that the frames answering this identifier echo it exactly.
#![no_main]

use cable::protocol::Command;
use cable_fuzz::{
    check_action_data, check_control_frames, check_history, check_identifier, check_to_subscription,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use serde_json::value::RawValue;

fuzz_target!(|bytes: &[u8]| {
    // WebSocket text frames are UTF-8; anything else never reaches the parser.
    let Ok(frame) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(command) = Command::parse(frame) else {
        return;
    };
    let (name, identifier, data, history) = match &command {
        Command::Subscribe {
            identifier,
            history,
        } => ("subscribe", Some(identifier), None, history.as_ref()),
        Command::Unsubscribe { identifier } => ("unsubscribe", Some(identifier), None, None),
        Command::Message { identifier, data } => ("message", Some(identifier), Some(data), None),
        Command::History {
            identifier,
            history,
        } => ("history", Some(identifier), None, Some(history)),
        Command::Pong => ("pong", None, None, None),
    };

    // Accepted only from a JSON object that says this, in these very strings.
    let object: Value = serde_json::from_str(frame).expect("accepted a frame that is not JSON");
    let object = object
        .as_object()
        .expect("accepted a frame that is not a JSON object");
    let field = |key: &str| object.get(key).and_then(Value::as_str);
    assert_eq!(
        field("command"),
        Some(name),
        "command name differs from the frame's"
    );
    if let Some(identifier) = identifier {
        assert_eq!(
            field("identifier"),
            Some(identifier.as_str()),
            "identifier differs from the frame's"
        );
    }
    if let Some(data) = data {
        assert_eq!(
            field("data"),
            Some(data.as_str()),
            "data differs from the frame's"
        );
    }
    match history {
        Some(history) => check_history(history, &object["history"]),
        None => assert!(name != "subscribe" || object.get("history").is_none_or(Value::is_null)),
    }

    let Some(identifier) = identifier else { return };
    check_identifier(identifier);
    check_control_frames(identifier);
    if let Some(data) = data {
        check_action_data(data);
    }
    // A channel's reply to this subscription: here the data (or the identifier
    // itself) whenever it is JSON.
    let reply = data.unwrap_or(identifier);
    if let Ok(reply) = RawValue::from_string(reply.clone()) {
        check_to_subscription(identifier, &reply, None);
    }
});

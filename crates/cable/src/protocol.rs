//! The Action Cable wire format: client commands in, server frames out.
//!
//! Everything that reads or writes the cable's JSON lives here, so the rest of
//! the engine deals in typed values and pre-encoded frames only.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The sub-protocol that Action Cable clients offer and servers echo.
pub const PROTOCOL_V1_JSON: &str = "actioncable-v1-json";
/// AnyCable's extended protocol: session ids, restore, stream positions, history.
pub const PROTOCOL_V1_EXT_JSON: &str = "actioncable-v1-ext-json";

/// Which dialect a connection speaks, chosen by sub-protocol at the upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Plain Action Cable, as Rails speaks it.
    V1,
    /// AnyCable's `actioncable-v1-ext-json`.
    Extended,
}

/// Where a client left off in one stream (extended protocol).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StreamPosition {
    /// The history the offset belongs to; a different epoch means a different history.
    pub epoch: String,
    /// The last offset the client saw.
    pub offset: i64,
}

/// A history request (extended protocol): what the client missed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct HistoryRequest {
    /// Unix seconds: streams without a known position are replayed from here.
    #[serde(default)]
    pub since: Option<i64>,
    /// Known positions by stream name.
    #[serde(default)]
    pub streams: std::collections::HashMap<String, StreamPosition>,
}

/// A command sent by a client, as Action Cable's `subscriptions.js` writes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Subscribe to the channel named inside `identifier` (itself a JSON
    /// string); extended clients may ask for history at the same time.
    Subscribe {
        identifier: String,
        #[serde(default)]
        history: Option<HistoryRequest>,
    },
    /// Drop the subscription registered under exactly this `identifier`.
    Unsubscribe { identifier: String },
    /// Perform an action: `data` is a JSON string holding `{"action": …, …}`.
    Message { identifier: String, data: String },
    /// Replay what a subscription missed (extended protocol).
    History {
        identifier: String,
        history: HistoryRequest,
    },
    /// An answer to a ping (extended protocol); nothing to do.
    Pong,
}

/// Why a client frame could not be turned into a [`Command`].
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("frame is not a JSON object with a known command: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("frame is not shaped as the protocol says: {0}")]
    Shape(&'static str),
}

impl Command {
    /// Parses one text frame. Only the documented shapes pass: serde's derive
    /// alone also takes arrays in place of objects (`["pong"]`), which the
    /// fuzzer found, so the shape is checked first.
    pub fn parse(frame: &str) -> Result<Self, CommandError> {
        let value: serde_json::Value = serde_json::from_str(frame)?;
        if !value.is_object() {
            return Err(CommandError::Shape("a command must be a JSON object"));
        }
        if let Some(history) = value.get("history") {
            let streams_ok = match history.get("streams") {
                None => true,
                Some(streams) => streams
                    .as_object()
                    .is_some_and(|s| s.values().all(serde_json::Value::is_object)),
            };
            if !history.is_object() || !streams_ok {
                return Err(CommandError::Shape(
                    "history and its streams must be objects",
                ));
            }
        }
        Ok(serde_json::from_value(value)?)
    }
}

/// The parsed contents of an identifier: `{"channel": "...", ...params}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Identifier {
    /// The channel class name, e.g. `ChatroomChannel`.
    pub channel: String,
    /// Every other key of the identifier object.
    pub params: serde_json::Map<String, serde_json::Value>,
}

impl Identifier {
    /// Parses the identifier string a client sent; `None` when it is not an
    /// object with a string `channel`.
    pub fn parse(identifier: &str) -> Option<Self> {
        let serde_json::Value::Object(mut params) = serde_json::from_str(identifier).ok()? else {
            return None;
        };
        let serde_json::Value::String(channel) = params.remove("channel")? else {
            return None;
        };
        Some(Self { channel, params })
    }
}

/// The `data` of a `message` command: an action name and its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionData {
    /// The `action` key, e.g. `speak`.
    pub action: String,
    /// Every other key.
    pub args: serde_json::Map<String, serde_json::Value>,
}

impl ActionData {
    /// Parses the `data` string of a `message` command.
    pub fn parse(data: &str) -> Option<Self> {
        let serde_json::Value::Object(mut args) = serde_json::from_str(data).ok()? else {
            return None;
        };
        let serde_json::Value::String(action) = args.remove("action")? else {
            return None;
        };
        Some(Self { action, args })
    }
}

/// A control frame sent by the server.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Control<'a> {
    Welcome {
        #[serde(skip_serializing_if = "Option::is_none")]
        sid: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        restored: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        restored_ids: Option<&'a [Arc<str>]>,
    },
    Ping {
        message: i64,
    },
    ConfirmSubscription {
        identifier: &'a str,
    },
    RejectSubscription {
        identifier: &'a str,
    },
    ConfirmHistory {
        identifier: &'a str,
    },
    RejectHistory {
        identifier: &'a str,
    },
    Disconnect {
        reason: &'a str,
        reconnect: bool,
    },
}

/// A message for one subscription: `{"identifier": …, "message": …}`, plus
/// its place in the stream for extended clients.
#[derive(Serialize)]
struct ToSubscription<'a> {
    identifier: &'a str,
    message: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<i64>,
}

/// A message's place in its stream: the stream, its history's epoch, the offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position<'a> {
    /// The stream name.
    pub stream: &'a str,
    /// The history's epoch.
    pub epoch: &'a str,
    /// The offset within the stream (Hearth: the room's `seq`).
    pub offset: i64,
}

fn encode<T: Serialize>(value: &T) -> String {
    // Serialising these plain structs cannot fail: every field is a string,
    // a number, a bool or already-valid JSON.
    serde_json::to_string(value).expect("cable frames always serialise")
}

/// `{"type":"welcome"}`
pub fn welcome() -> String {
    encode(&Control::Welcome {
        sid: None,
        restored: None,
        restored_ids: None,
    })
}

/// `{"type":"welcome","sid":…}`, with `restored` and `restored_ids` after a
/// session restore (extended protocol).
pub fn welcome_extended(sid: &str, restored_ids: Option<&[Arc<str>]>) -> String {
    encode(&Control::Welcome {
        sid: Some(sid),
        restored: restored_ids.map(|_| true),
        restored_ids,
    })
}

/// `{"type":"confirm_history","identifier":…}`
pub fn confirm_history(identifier: &str) -> String {
    encode(&Control::ConfirmHistory { identifier })
}

/// `{"type":"reject_history","identifier":…}`
pub fn reject_history(identifier: &str) -> String {
    encode(&Control::RejectHistory { identifier })
}

/// `{"type":"ping","message":<unix seconds>}`
pub fn ping(unix_seconds: i64) -> String {
    encode(&Control::Ping {
        message: unix_seconds,
    })
}

/// `{"type":"confirm_subscription","identifier":…}`
pub fn confirm_subscription(identifier: &str) -> String {
    encode(&Control::ConfirmSubscription { identifier })
}

/// `{"type":"reject_subscription","identifier":…}`
pub fn reject_subscription(identifier: &str) -> String {
    encode(&Control::RejectSubscription { identifier })
}

/// `{"type":"disconnect","reason":…,"reconnect":…}`
pub fn disconnect(reason: DisconnectReason) -> String {
    encode(&Control::Disconnect {
        reason: reason.as_str(),
        reconnect: reason.reconnect(),
    })
}

/// `{"identifier":…,"message":…}` — a broadcast or a reply to one subscription.
/// The identifier is echoed exactly as the client sent it.
pub fn to_subscription(identifier: &str, message: &RawValue) -> String {
    encode(&ToSubscription {
        identifier,
        message,
        stream_id: None,
        epoch: None,
        offset: None,
    })
}

/// The same with `stream_id`, `epoch` and `offset`, for extended clients.
pub fn to_subscription_at(identifier: &str, message: &RawValue, position: Position<'_>) -> String {
    encode(&ToSubscription {
        identifier,
        message,
        stream_id: Some(position.stream),
        epoch: Some(position.epoch),
        offset: Some(position.offset),
    })
}

/// The reasons the server gives when it closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// No valid session: the client must not retry.
    Unauthorized,
    /// The server is restarting: the client should come back.
    ServerRestart,
    /// The client did not read fast enough and its queue filled up.
    TooSlow,
}

impl DisconnectReason {
    /// The `reason` string on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::ServerRestart => "server_restart",
            Self::TooSlow => "too_slow",
        }
    }

    /// Whether the client is invited to reconnect.
    pub fn reconnect(self) -> bool {
        !matches!(self, Self::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_commands() {
        assert_eq!(
            Command::parse(r#"{"command":"subscribe","identifier":"{\"channel\":\"A\"}"}"#)
                .unwrap(),
            Command::Subscribe {
                identifier: r#"{"channel":"A"}"#.into(),
                history: None,
            }
        );
        assert_eq!(
            Command::parse(r#"{"command":"unsubscribe","identifier":"x"}"#).unwrap(),
            Command::Unsubscribe {
                identifier: "x".into()
            }
        );
        assert_eq!(
            Command::parse(r#"{"command":"message","identifier":"x","data":"{}"}"#).unwrap(),
            Command::Message {
                identifier: "x".into(),
                data: "{}".into()
            }
        );
    }

    #[test]
    fn parses_extended_commands() {
        let command = Command::parse(
            r#"{"command":"history","identifier":"x","history":{"since":10,"streams":{"s":{"epoch":"e","offset":4}}}}"#,
        )
        .unwrap();
        let Command::History { history, .. } = command else {
            panic!("not a history command")
        };
        assert_eq!(history.since, Some(10));
        assert_eq!(history.streams["s"].offset, 4);
        assert_eq!(
            Command::parse(r#"{"command":"pong"}"#).unwrap(),
            Command::Pong
        );
        let subscribe =
            Command::parse(r#"{"command":"subscribe","identifier":"x","history":{"since":5}}"#)
                .unwrap();
        assert!(matches!(
            subscribe,
            Command::Subscribe {
                history: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn extended_frames_carry_sid_and_positions() {
        let ids: Vec<Arc<str>> = vec![Arc::from("a")];
        assert_eq!(
            welcome_extended("s1", None).as_str(),
            r#"{"type":"welcome","sid":"s1"}"#
        );
        assert_eq!(
            welcome_extended("s2", Some(&ids)).as_str(),
            r#"{"type":"welcome","sid":"s2","restored":true,"restored_ids":["a"]}"#
        );
        let message = RawValue::from_string("1".into()).unwrap();
        let position = Position {
            stream: "s",
            epoch: "e",
            offset: 7,
        };
        assert_eq!(
            to_subscription_at("x", &message, position).as_str(),
            r#"{"identifier":"x","message":1,"stream_id":"s","epoch":"e","offset":7}"#
        );
    }

    #[test]
    fn rejects_unknown_commands_and_garbage() {
        assert!(Command::parse(r#"{"command":"dance","identifier":"x"}"#).is_err());
        assert!(Command::parse("not json").is_err());
        assert!(Command::parse(r#"{"command":"subscribe"}"#).is_err());
        assert!(Command::parse("[]").is_err());
        assert!(Command::parse(r#"["pong"]"#).is_err());
        assert!(Command::parse(r#"["subscribe","{}"]"#).is_err());
        assert!(
            Command::parse(r#"{"command":"history","identifier":"x","history":[1,{}]}"#).is_err()
        );
        assert!(
            Command::parse(
                r#"{"command":"history","identifier":"x","history":{"streams":{"s":["e",1]}}}"#
            )
            .is_err()
        );
    }

    #[test]
    fn identifier_keeps_params_and_needs_a_channel() {
        let id = Identifier::parse(r#"{"channel":"ChatroomChannel","id":"7"}"#).unwrap();
        assert_eq!(id.channel, "ChatroomChannel");
        assert_eq!(id.params["id"], "7");
        assert!(Identifier::parse(r#"{"id":7}"#).is_none());
        assert!(Identifier::parse(r#"{"channel":7}"#).is_none());
        assert!(Identifier::parse("nope").is_none());
    }

    #[test]
    fn broadcast_frame_echoes_the_identifier_string() {
        let identifier = r#"{"id": 1, "channel":"ChatroomChannel"}"#;
        let message = RawValue::from_string(r#"{"a":1}"#.into()).unwrap();
        let frame = to_subscription(identifier, &message);
        let parsed: serde_json::Value = serde_json::from_str(frame.as_str()).unwrap();
        assert_eq!(parsed["identifier"], identifier);
        assert_eq!(parsed["message"]["a"], 1);
    }

    #[test]
    fn control_frames_match_rails() {
        assert_eq!(welcome().as_str(), r#"{"type":"welcome"}"#);
        assert_eq!(ping(42).as_str(), r#"{"type":"ping","message":42}"#);
        assert_eq!(
            disconnect(DisconnectReason::Unauthorized).as_str(),
            r#"{"type":"disconnect","reason":"unauthorized","reconnect":false}"#
        );
        assert_eq!(
            confirm_subscription("x").as_str(),
            r#"{"type":"confirm_subscription","identifier":"x"}"#
        );
    }
}

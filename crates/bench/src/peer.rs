//! The Action Cable subset the reference peers in `src/bin/` serve, seen
//! from the server: the commands they read and the frames they answer with.
//! Both peers speak it alike, so the comparison measures only how they move
//! bytes (the client side is [`protocol`](crate::protocol)).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::Value;

use crate::protocol::SUBPROTOCOL;

/// A client command: `subscribe`, `unsubscribe` or `message`.
#[derive(Deserialize)]
pub struct Command {
    /// What the client asks for.
    pub command: String,
    /// The subscription it is about, as the client's string.
    pub identifier: String,
    /// A `message`'s JSON-encoded data.
    pub data: Option<String>,
}

#[derive(Deserialize)]
struct Speak {
    action: String,
    content: Option<Value>,
}

impl Command {
    /// Reads one text frame; `None` if it is not a command.
    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// The content of a `speak` message (null when it has none); `None` for
    /// any other action or data that does not parse.
    pub fn spoken(&self) -> Option<Value> {
        let speak = serde_json::from_str::<Speak>(self.data.as_deref()?).ok()?;
        (speak.action == "speak").then(|| speak.content.unwrap_or_default())
    }
}

/// Whether a `Sec-WebSocket-Protocol` header offers Action Cable's v1.
pub fn offers_subprotocol(header: &str) -> bool {
    header.split(',').any(|p| p.trim() == SUBPROTOCOL)
}

/// `{"type":"ping","message":<unix seconds now>}`
pub fn ping() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(r#"{{"type":"ping","message":{}}}"#, now.as_secs())
}

/// `{"identifier":…,"type":"confirm_subscription"}`
pub fn confirm(identifier: &str) -> String {
    serde_json::json!({"identifier": identifier, "type": "confirm_subscription"}).to_string()
}

/// `{"identifier":…,"message":{"content":…}}`: what every subscriber of
/// `identifier` is sent when one of them speaks `content`.
pub fn broadcast(identifier: &str, content: Value) -> String {
    serde_json::json!({"identifier": identifier, "message": {"content": content}}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_speak_action_is_spoken() {
        let speak = |data: &str| Command {
            command: "message".into(),
            identifier: "{}".into(),
            data: Some(data.into()),
        };
        assert_eq!(
            speak(r#"{"action":"speak","content":"hi"}"#).spoken(),
            Some(Value::from("hi"))
        );
        assert_eq!(speak(r#"{"action":"speak"}"#).spoken(), Some(Value::Null));
        assert_eq!(speak(r#"{"action":"catch_up","after":1}"#).spoken(), None);
        assert_eq!(speak("not json").spoken(), None);
    }

    #[test]
    fn a_broadcast_carries_the_identifier_and_the_content() {
        assert_eq!(
            broadcast(r#"{"id":1}"#, Value::from("hi")),
            r#"{"identifier":"{\"id\":1}","message":{"content":"hi"}}"#
        );
        assert!(offers_subprotocol("foo, actioncable-v1-json"));
        assert!(!offers_subprotocol("actioncable-unsupported"));
    }
}

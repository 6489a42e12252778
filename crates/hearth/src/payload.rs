//! What a room's subscribers receive for a message: its fields and its
//! rendered element, one JSON object. The broadcast, the history replays
//! and the JSON answer to a post all carry this same payload.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::db::messages::Message;
use crate::templates::MessagePartial;

/// The payload every subscriber of the room receives for a new message.
#[derive(Debug, Serialize)]
pub struct MessagePayload<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: i64,
    chatroom_id: i64,
    seq: i64,
    user_id: i64,
    nickname: &'a str,
    content: &'a str,
    created_at: String,
    html: String,
}

impl MessagePayload<'_> {
    /// The broadcast payload of `message`, encoded once.
    pub fn encode(message: &Message) -> Box<RawValue> {
        serde_json::value::to_raw_value(&MessagePayload::new(message))
            .expect("strings and integers always encode as JSON")
    }
}

impl<'a> MessagePayload<'a> {
    /// The payload of a stored message, with its rendered element.
    pub fn new(message: &'a Message) -> Self {
        let html = askama::Template::render(&MessagePartial { message }).unwrap_or_default();
        Self {
            kind: "message",
            id: message.id,
            chatroom_id: message.chatroom_id,
            seq: message.seq,
            user_id: message.user_id,
            nickname: &message.nickname,
            content: &message.content,
            created_at: message.created_rfc3339(),
            html,
        }
    }
}

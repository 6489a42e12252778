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
    /// The id the sender's page gave the message while it was pending, so
    /// that page can swap its pending copy for this one; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
}

impl MessagePayload<'_> {
    /// The broadcast payload of `message`, encoded once.
    pub fn encode(message: &Message) -> Box<RawValue> {
        Self::encode_for(message, None)
    }

    /// The same, carrying the sender's `client_id` for its pending copy.
    pub fn encode_for(message: &Message, client_id: Option<&str>) -> Box<RawValue> {
        let payload = MessagePayload {
            client_id,
            ..MessagePayload::new(message)
        };
        serde_json::value::to_raw_value(&payload)
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
            client_id: None,
        }
    }
}

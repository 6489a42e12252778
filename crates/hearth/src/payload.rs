//! What a room's subscribers receive for each place in its sequence: a
//! message's fields and its rendered element, one JSON object, typed
//! `message` for a post, `message_edited` for an edit and `message_deleted`
//! for a deletion. The broadcast, the history replays and the JSON answers
//! to posts, edits and deletions all carry these same payloads.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::db::messages::{EventKind, Message, RoomEvent};
use crate::templates::MessagePartial;

/// The payload every subscriber of the room receives for a new message.
#[derive(Debug, Serialize)]
pub struct MessagePayload<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: i64,
    chatroom_id: i64,
    /// The place in the room's sequence: the message's own for a post, the
    /// edit's for an edit.
    seq: i64,
    /// For an edit, the message's own `seq` (where it is shown).
    #[serde(skip_serializing_if = "Option::is_none")]
    message_seq: Option<i64>,
    user_id: i64,
    nickname: &'a str,
    content: &'a str,
    created_at: String,
    /// When it was last edited; absent if never.
    #[serde(skip_serializing_if = "Option::is_none")]
    edited_at: Option<String>,
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
        to_json(&payload)
    }
}

/// The payload of a deleted message: which one, and where.
#[derive(Debug, Serialize)]
struct DeletedPayload {
    #[serde(rename = "type")]
    kind: &'static str,
    id: i64,
    chatroom_id: i64,
    /// The deletion's place in the room's sequence (or the post's, when a
    /// replay reaches a message deleted since).
    seq: i64,
    /// The message's own `seq`.
    message_seq: i64,
    user_id: i64,
}

/// The payload of one place in a room's sequence, as broadcast and replayed.
pub fn encode_event(event: &RoomEvent) -> Box<RawValue> {
    encode_event_for(event, None)
}

/// The same, carrying the sender's `client_id` for its pending copy.
pub fn encode_event_for(event: &RoomEvent, client_id: Option<&str>) -> Box<RawValue> {
    let message = &event.message;
    if message.deleted_at.is_some() {
        return to_json(&DeletedPayload {
            kind: "message_deleted",
            id: message.id,
            chatroom_id: message.chatroom_id,
            seq: event.seq,
            message_seq: message.seq,
            user_id: message.user_id,
        });
    }
    match event.kind {
        EventKind::Posted => MessagePayload::encode_for(message, client_id),
        EventKind::Edited | EventKind::Deleted => to_json(&MessagePayload {
            kind: "message_edited",
            seq: event.seq,
            message_seq: Some(message.seq),
            ..MessagePayload::new(message)
        }),
    }
}

fn to_json(payload: &impl Serialize) -> Box<RawValue> {
    serde_json::value::to_raw_value(payload).expect("strings and integers always encode as JSON")
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
            message_seq: None,
            user_id: message.user_id,
            nickname: &message.nickname,
            content: &message.content,
            created_at: message.created_rfc3339(),
            edited_at: message.edited_rfc3339(),
            html,
            client_id: None,
        }
    }
}

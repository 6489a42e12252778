//! What a room's subscribers receive for each place in its sequence: a
//! message's fields and its rendered element, one JSON object, typed
//! `message` for a post, `message_edited` for an edit and `message_deleted`
//! for a deletion. The broadcast, the history replays and the JSON answers
//! to posts, edits and deletions all carry these same payloads.
//!
//! A subscriber chooses how much of a message it takes ([`Format`]): the
//! fields and the rendered HTML (the default), only the HTML and what a
//! page needs beside it, or only the fields. Each broadcast encodes each
//! format at most once, and only if a subscriber takes it ([`Encoded`]).

use std::sync::OnceLock;

use cable::{Formats, Params};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::db::messages::{EventKind, Message, RoomEvent};
use crate::templates::MessagePartial;

/// How much of each message a subscription takes, from its identifier's
/// `"format"`: `"full"` (or none), `"html"` or `"json"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// Every field and the rendered element: what Action Cable clients
    /// written before formats existed get.
    #[default]
    Full,
    /// The rendered element, with only the fields a page needs beside it
    /// (`type`, `id`, `seq`, `message_seq`, `user_id`, `edited_at`,
    /// `client_id`): the room page's choice, a fifth smaller for a short message.
    Html,
    /// Every field but the rendered element, for clients that render
    /// messages themselves.
    Json,
}

impl Format {
    /// Every format, in the order of their codes.
    const ALL: [Format; 3] = [Format::Full, Format::Html, Format::Json];

    /// The format an identifier's params ask for; an unknown one is an error
    /// (the subscription is rejected, not served a format it did not ask for).
    pub fn of(params: &Params) -> Result<Self, &'static str> {
        match params.get("format") {
            None => Ok(Self::Full),
            Some(serde_json::Value::String(name)) => Self::named(name),
            Some(_) => Err("format must be \"full\", \"html\" or \"json\""),
        }
    }

    /// The format called `name`, as in identifiers and query strings.
    pub fn named(name: &str) -> Result<Self, &'static str> {
        match name {
            "full" => Ok(Self::Full),
            "html" => Ok(Self::Html),
            "json" => Ok(Self::Json),
            _ => Err("format must be \"full\", \"html\" or \"json\""),
        }
    }

    /// Its code for the engine ([`cable::Subscription::format`]).
    pub fn code(self) -> u8 {
        self as u8
    }

    fn from_code(code: u8) -> Self {
        Self::ALL
            .get(usize::from(code))
            .copied()
            .unwrap_or_default()
    }

    fn fields(self) -> bool {
        self != Self::Html
    }

    fn html(self) -> bool {
        self != Self::Json
    }
}

/// The payload of a message, posted or edited; which fields are present
/// depends on the [`Format`].
#[derive(Debug, Serialize)]
struct MessagePayload<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    chatroom_id: Option<i64>,
    /// The place in the room's sequence: the message's own for a post, the
    /// edit's for an edit.
    seq: i64,
    /// For an edit, the message's own `seq` (where it is shown).
    #[serde(skip_serializing_if = "Option::is_none")]
    message_seq: Option<i64>,
    user_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nickname: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    /// When it was last edited; absent if never.
    #[serde(skip_serializing_if = "Option::is_none")]
    edited_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    html: Option<&'a str>,
    /// The id the sender's page gave the message while it was pending, so
    /// that page can swap its pending copy for this one; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
}

/// The payload of a deleted message: which one, and where. The same in
/// every format.
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

/// One place in a room's sequence, encoded in each [`Format`] on first
/// use, at most once each; the rendered element is made once for all.
#[derive(Debug)]
pub struct Encoded {
    event: RoomEvent,
    /// The sender page's id for its pending copy (a new post only).
    client_id: Option<String>,
    html: OnceLock<String>,
    formats: [OnceLock<Box<RawValue>>; 3],
}

impl Encoded {
    /// A new post, carrying the sender's `client_id` for its pending copy.
    pub fn post(message: Message, client_id: Option<String>) -> Self {
        let event = RoomEvent {
            seq: message.seq,
            kind: EventKind::Posted,
            message,
        };
        Self {
            client_id,
            ..Self::event(event)
        }
    }

    /// A place in the room's sequence, as broadcast and replayed.
    pub fn event(event: RoomEvent) -> Self {
        Self {
            event,
            client_id: None,
            html: OnceLock::new(),
            formats: Default::default(),
        }
    }

    /// The message, as it is now.
    pub fn message(&self) -> &Message {
        &self.event.message
    }

    /// Its place in the room's sequence.
    pub fn seq(&self) -> i64 {
        self.event.seq
    }

    /// The payload in `format`.
    pub fn get(&self, format: Format) -> &RawValue {
        self.formats[format.code() as usize].get_or_init(|| self.encode(format))
    }

    /// Every field and the element: what posters, Redis and older clients get.
    pub fn full(&self) -> &RawValue {
        self.get(Format::Full)
    }

    fn encode(&self, format: Format) -> Box<RawValue> {
        let RoomEvent { seq, kind, message } = &self.event;
        let place = Place {
            seq: *seq,
            kind: *kind,
            message,
            client_id: self.client_id.as_deref(),
        };
        place.encode(format, &self.html)
    }
}

/// A message at a place in its room's sequence, with what its encoding needs.
struct Place<'a> {
    seq: i64,
    kind: EventKind,
    message: &'a Message,
    client_id: Option<&'a str>,
}

impl Place<'_> {
    /// The payload in `format`; the rendered element is taken from `html`,
    /// rendered there first if it is empty.
    fn encode(&self, format: Format, html: &OnceLock<String>) -> Box<RawValue> {
        let message = self.message;
        if message.deleted_at.is_some() {
            return to_json(&DeletedPayload {
                kind: "message_deleted",
                id: message.id,
                chatroom_id: message.chatroom_id,
                seq: self.seq,
                message_seq: message.seq,
                user_id: message.user_id,
            });
        }
        let (kind, message_seq) = match self.kind {
            EventKind::Posted => ("message", None),
            EventKind::Edited | EventKind::Deleted => ("message_edited", Some(message.seq)),
        };
        let fields = format.fields();
        let html = format.html().then(|| {
            html.get_or_init(|| {
                askama::Template::render(&MessagePartial { message }).unwrap_or_default()
            })
            .as_str()
        });
        to_json(&MessagePayload {
            kind,
            id: message.id,
            chatroom_id: fields.then_some(message.chatroom_id),
            seq: self.seq,
            message_seq,
            user_id: message.user_id,
            nickname: fields.then_some(message.nickname.as_str()),
            content: fields.then_some(message.content.as_str()),
            created_at: fields.then(|| message.created_rfc3339()),
            edited_at: message.edited_rfc3339(),
            html,
            client_id: self.client_id,
        })
    }
}

impl Formats for Encoded {
    fn format(&self, format: u8) -> &RawValue {
        self.get(Format::from_code(format))
    }
}

/// The payload of a stored message as posted, as a history page carries it.
pub fn encode(message: &Message, format: Format) -> Box<RawValue> {
    let place = Place {
        seq: message.seq,
        kind: EventKind::Posted,
        message,
        client_id: None,
    };
    place.encode(format, &OnceLock::new())
}

/// The payload of one place in a room's sequence in `format`, for a replay.
pub fn encode_event(event: &RoomEvent, format: Format) -> Box<RawValue> {
    let place = Place {
        seq: event.seq,
        kind: event.kind,
        message: &event.message,
        client_id: None,
    };
    place.encode(format, &OnceLock::new())
}

fn to_json(payload: &impl Serialize) -> Box<RawValue> {
    serde_json::value::to_raw_value(payload).expect("strings and integers always encode as JSON")
}

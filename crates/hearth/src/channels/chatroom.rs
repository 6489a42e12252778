//! `ChatroomChannel`: streams one room; `speak` posts to it; `catch_up`
//! replays what a reconnecting client missed. Every subscription is present
//! in the room; one whose identifier says `"presence":true` also gets the
//! room's presence and typing frames; `typing` and `presence` are its actions.

use std::collections::HashSet;
use std::sync::RwLock;

use async_trait::async_trait;
use cable::channel::{HistoryFrom, HistoryItem};
use cable::{ActionData, Channel, Params, Rejection, Replay, Reply, Subscription};
use serde_json::json;
use serde_json::value::{RawValue, to_raw_value};

use crate::auth::CurrentUser;
use crate::db::messages::RoomEvent;
use crate::db::{self, Db};
use crate::domain::{MessageContent, PresenceStream, RoomStream};
use crate::payload::{self, Format};
use crate::presence::PresenceHandle;
use crate::relay::RelayHandle;
use crate::writer::{MessageWriter, NewMessage, PostError, ROOM_MENTION_REFUSED, addressed};

/// Most messages one `catch_up` or history request replays; a client that
/// missed more asks again from where the answer ended.
pub const REPLAY_LIMIT: i64 = 1000;

/// Messages read from the database per page of a replay. The engine asks
/// for the next page only once this one is written, so a client that stops
/// reading holds one page rather than the whole replay: at most 25 × ~9 KB
/// (the longest message, as JSON and HTML, beside a 1 KB identifier).
const REPLAY_PAGE: i64 = 25;

/// Identifier `{"channel":"ChatroomChannel","id":<room id>}`.
pub struct ChatroomChannel {
    db: Db,
    writer: MessageWriter,
    relay: RelayHandle,
    presence: PresenceHandle,
    /// Public rooms already found and handed to the relay on this node.
    /// Rooms are never deleted, never stop being public, and the relay
    /// keeps following a room once told, so only a public room's first
    /// subscriber here needs the database: the lookup was half of the
    /// server's work per connection (BENCHMARKS.md). A private room or a
    /// direct conversation is never listed: each of its subscriptions, and
    /// each `catch_up` or `history` in it, asks the database whether the
    /// user is a member still.
    known: RwLock<HashSet<i64>>,
}

impl ChatroomChannel {
    /// A channel reading rooms from `db`, posting through `writer`,
    /// telling `relay` which rooms this node follows and `presence` who is
    /// in them.
    pub fn new(
        db: Db,
        writer: MessageWriter,
        relay: RelayHandle,
        presence: PresenceHandle,
    ) -> Self {
        Self {
            db,
            writer,
            relay,
            presence,
            known: RwLock::default(),
        }
    }

    async fn speak(&self, user: &CurrentUser, room: i64, action: &ActionData) -> Vec<Reply> {
        let content = action
            .args
            .get("content")
            .and_then(|c| c.as_str())
            .unwrap_or("");
        let content = match MessageContent::parse(content) {
            Ok(content) => content,
            Err(invalid) => return error_reply("invalid_content", invalid.0),
        };
        // Only a message to the whole room needs the room, to ask whether
        // its author may.
        let mentions = crate::markup::mentions(content.as_str());
        let (mentions, here) = if mentions.is_broadcast() {
            let found = match db::chatrooms::find(&self.db, room).await {
                Ok(Some(found)) => found,
                Ok(None) => return error_reply("not_found", "no such room"),
                Err(error) => {
                    tracing::error!(%error, "speak failed");
                    return error_reply("internal", "the message could not be stored");
                }
            };
            match addressed(&found, user, &mentions, &self.presence) {
                Some(here) => (mentions, here),
                None => return error_reply("room_mention_not_allowed", ROOM_MENTION_REFUSED),
            }
        } else {
            (mentions, Vec::new())
        };
        let submitted = self
            .writer
            .submit(NewMessage {
                chatroom_id: room,
                user_id: user.id,
                nickname: user.nickname.clone(),
                content,
                mentions,
                here,
                client_id: action
                    .args
                    .get("client_id")
                    .and_then(|id| id.as_str())
                    .and_then(crate::writer::client_id),
            })
            .await;
        match submitted {
            // The broadcast carries the message to this subscriber too, once stored.
            Ok(()) => Vec::new(),
            Err(PostError::RateLimited(wait)) => reply(json!({
                "type": "error",
                "error": "rate_limited",
                "message": "too many messages",
                "retry_after": wait.as_secs_f64(),
            }))
            .into_iter()
            .map(Reply::Transmit)
            .collect(),
            Err(error) => {
                tracing::error!(%error, "speak failed");
                error_reply("internal", "the message could not be stored")
            }
        }
    }

    /// Whether `user` may read `room` now: a public room known here, or
    /// a room the database says is public or has them as a member.
    async fn may_read(&self, user: &CurrentUser, room: i64) -> Result<bool, Rejection> {
        if self.is_known_public(room) {
            return Ok(true);
        }
        match db::chatrooms::access(&self.db, room, user.id).await {
            Ok(access) => Ok(access.is_some_and(|access| access.may_read())),
            Err(error) => Err(Rejection(format!("database error: {error}"))),
        }
    }

    fn is_known_public(&self, room: i64) -> bool {
        self.known
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&room)
    }

    /// Every message after `after`, then `{"type":"caught_up",…}`, read
    /// page by page as the client drains them.
    fn catch_up(&self, room: i64, format: Format, action: &ActionData) -> Vec<Reply> {
        let Some(after) = action.args.get("after").and_then(serde_json::Value::as_i64) else {
            return error_reply("invalid_request", "catch_up needs a numeric `after`");
        };
        let replay = RoomReplay::new(self.db.clone(), room, format, Start::AfterSeq(after), true);
        vec![Reply::Replay(Box::new(replay))]
    }
}

/// Where a [`RoomReplay`] starts.
enum Start {
    /// The first event with a greater `seq`.
    AfterSeq(i64),
    /// The first event at or after this Unix time in milliseconds.
    SinceMillis(i64),
}

/// A room's events (posts, edits, deletions; see [`RoomEvent`]) from a
/// starting point, at most [`REPLAY_LIMIT`],
/// fetched [`REPLAY_PAGE`] at a time; for `catch_up`, closed by a
/// `caught_up` frame saying where it stopped and whether more remain.
struct RoomReplay {
    db: Db,
    room: i64,
    /// The format the subscription takes.
    format: Format,
    start: Start,
    /// The `seq` of the last message sent (or `after` before the first).
    last_seq: i64,
    /// How many more messages this replay may send.
    remaining: i64,
    /// Whether the database may hold more after the last page read.
    more: bool,
    /// Whether to end with `caught_up`.
    report: bool,
    finished: bool,
}

impl RoomReplay {
    fn new(db: Db, room: i64, format: Format, start: Start, report: bool) -> Self {
        let last_seq = match start {
            Start::AfterSeq(after) => after,
            Start::SinceMillis(_) => 0,
        };
        Self {
            db,
            room,
            format,
            start,
            last_seq,
            remaining: REPLAY_LIMIT,
            more: true,
            report,
            finished: false,
        }
    }

    async fn fetch(&mut self, limit: i64) -> sqlx::Result<Vec<RoomEvent>> {
        if let Start::SinceMillis(millis) = self.start {
            // Find where `since` begins; the rest follows by seq.
            let first = db::messages::first_seq_since(&self.db, self.room, millis).await?;
            let Some(first) = first else {
                return Ok(Vec::new());
            };
            self.last_seq = first - 1;
            self.start = Start::AfterSeq(self.last_seq);
        }
        db::messages::events_between(&self.db, self.room, self.last_seq, i64::MAX, limit).await
    }
}

#[async_trait]
impl Replay for RoomReplay {
    async fn next_page(&mut self) -> Result<Option<Vec<HistoryItem>>, Rejection> {
        if self.finished {
            return Ok(None);
        }
        let mut items = Vec::new();
        if self.more && self.remaining > 0 {
            let limit = self.remaining.min(REPLAY_PAGE);
            let page = self.fetch(limit).await.map_err(|error| {
                tracing::error!(%error, room = self.room, "a replay page failed");
                Rejection(format!("database error: {error}"))
            })?;
            self.remaining -= page.len() as i64;
            self.more = page.len() as i64 == limit;
            if let Some(last) = page.last() {
                self.last_seq = last.seq;
            }
            items.extend(page.iter().map(|event| HistoryItem {
                offset: event.seq,
                message: payload::encode_event(event, self.format),
            }));
            if self.more && self.remaining > 0 {
                return Ok(Some(items));
            }
        }
        self.finished = true;
        if self.report {
            let caught_up =
                json!({ "type": "caught_up", "last_seq": self.last_seq, "more": self.more });
            items.extend(reply(caught_up).map(|message| HistoryItem {
                offset: self.last_seq,
                message,
            }));
        }
        Ok(Some(items))
    }
}

/// Whether an identifier asks for presence and typing frames (`"presence":true`).
fn watches_presence(params: &Params) -> bool {
    params.get("presence") == Some(&serde_json::Value::Bool(true))
}

/// A replay with nothing in it: the presence stream keeps no history.
struct NoHistory;

#[async_trait]
impl Replay for NoHistory {
    async fn next_page(&mut self) -> Result<Option<Vec<HistoryItem>>, Rejection> {
        Ok(None)
    }
}

/// The room id of an identifier: a number or a string of digits.
fn room_id(params: &Params) -> Option<i64> {
    match params.get("id")? {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn reply(value: serde_json::Value) -> Option<Box<RawValue>> {
    to_raw_value(&value).ok()
}

fn error_reply(error: &str, detail: &str) -> Vec<Reply> {
    reply(json!({ "type": "error", "error": error, "message": detail }))
        .into_iter()
        .map(Reply::Transmit)
        .collect()
}

#[async_trait]
impl Channel<CurrentUser> for ChatroomChannel {
    async fn subscribe(
        &self,
        user: &CurrentUser,
        params: &Params,
    ) -> Result<Subscription, Rejection> {
        let id = room_id(params).ok_or_else(|| Rejection("missing or malformed room id".into()))?;
        let watching = watches_presence(params);
        let mut streams = vec![RoomStream(id).to_string()];
        if watching {
            streams.push(PresenceStream(id).to_string());
        }
        let format = Format::of(params).map_err(|why| Rejection(why.to_owned()))?;
        let subscription = Subscription {
            streams,
            format: format.code(),
        };
        if self.is_known_public(id) {
            self.relay.subscribe_ahead(id).await;
            self.presence.join(id, user, watching).await;
            return Ok(subscription);
        }
        // A room nobody may know of unless a member answers as a missing one.
        let access = match db::chatrooms::access(&self.db, id, user.id).await {
            Ok(Some(access)) if access.may_read() => access,
            Ok(_) => return Err(Rejection(format!("no chatroom {id}"))),
            Err(error) => return Err(Rejection(format!("database error: {error}"))),
        };
        self.relay.track(id, access.last_seq);
        if !access.room.is_closed() {
            self.known
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(id);
        }
        self.relay.subscribe_ahead(id).await;
        self.presence.join(id, user, watching).await;
        Ok(subscription)
    }

    async fn perform(&self, user: &CurrentUser, params: &Params, action: ActionData) -> Vec<Reply> {
        let Some(room) = room_id(params) else {
            return Vec::new();
        };
        // Speaking and replaying read the room as it is now: a member
        // removed since subscribing gets nothing (their subscription is
        // ended too, but a command may already be on its way).
        if matches!(action.action.as_str(), "speak" | "catch_up") {
            match self.may_read(user, room).await {
                Ok(true) => {}
                Ok(false) => return error_reply("not_found", "no such chatroom"),
                Err(Rejection(error)) => {
                    tracing::error!(error, "checking a room's members failed");
                    return error_reply("internal", "the room could not be checked");
                }
            }
        }
        match action.action.as_str() {
            "speak" => self.speak(user, room, &action).await,
            "catch_up" => self.catch_up(room, Format::of(params).unwrap_or_default(), &action),
            // Passed on at most once per typing interval; extra ones are dropped unanswered.
            "typing" => {
                self.presence.typing(room, user);
                Vec::new()
            }
            "presence" => self
                .presence
                .frame(room)
                .into_iter()
                .map(Reply::Transmit)
                .collect(),
            other => {
                tracing::warn!(action = other, "ChatroomChannel has no such action");
                error_reply(
                    "unknown_action",
                    "ChatroomChannel knows speak, catch_up, typing and presence",
                )
            }
        }
    }

    async fn unsubscribed(&self, user: &CurrentUser, params: &Params) {
        if let Some(room) = room_id(params) {
            self.presence.leave(room, user.id, watches_presence(params));
        }
    }

    async fn history(
        &self,
        user: &CurrentUser,
        params: &Params,
        stream: &str,
        from: HistoryFrom,
    ) -> Result<Box<dyn Replay>, Rejection> {
        if stream.parse::<PresenceStream>().is_ok() {
            return Ok(Box::new(NoHistory));
        }
        let room = stream
            .parse::<RoomStream>()
            .map_err(|_| Rejection(format!("{stream} is not a room")))?
            .room();
        if !self.may_read(user, room).await? {
            return Err(Rejection(format!("no chatroom {room}")));
        }
        let start = match from {
            HistoryFrom::After(offset) => Start::AfterSeq(offset),
            HistoryFrom::Since(seconds) => Start::SinceMillis(seconds.saturating_mul(1000)),
        };
        Ok(Box::new(RoomReplay::new(
            self.db.clone(),
            room,
            Format::of(params).unwrap_or_default(),
            start,
            false,
        )))
    }
}

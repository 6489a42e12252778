//! `ChatroomChannel`: streams one room; `speak` posts to it; `catch_up`
//! replays what a reconnecting client missed.

use std::collections::HashSet;
use std::sync::RwLock;

use async_trait::async_trait;
use cable::channel::{HistoryFrom, HistoryItem};
use cable::{ActionData, Channel, Params, Rejection, Subscription};
use serde_json::json;
use serde_json::value::{RawValue, to_raw_value};

use crate::db::messages::Message;
use crate::db::{self, Db};
use crate::domain::MessageContent;
use crate::http::auth::CurrentUser;
use crate::relay::RelayHandle;
use crate::writer::{MessagePayload, MessageWriter, NewMessage, PostError, room_stream};

/// Most messages one `catch_up` or history request replays; a client that
/// missed more asks again from where the answer ended.
pub const REPLAY_LIMIT: i64 = 1000;

/// Identifier `{"channel":"ChatroomChannel","id":<room id>}`.
pub struct ChatroomChannel {
    db: Db,
    writer: MessageWriter,
    relay: RelayHandle,
    /// Rooms already found and handed to the relay on this node. Rooms are
    /// never deleted and the relay keeps following a room once told, so
    /// only a room's first subscriber here needs the database: the lookup
    /// was half of the server's work per connection (BENCHMARKS.md).
    known: RwLock<HashSet<i64>>,
}

impl ChatroomChannel {
    /// A channel reading rooms from `db`, posting through `writer` and
    /// telling `relay` which rooms this node follows.
    pub fn new(db: Db, writer: MessageWriter, relay: RelayHandle) -> Self {
        Self {
            db,
            writer,
            relay,
            known: RwLock::default(),
        }
    }

    async fn speak(
        &self,
        user: &CurrentUser,
        room: i64,
        action: &ActionData,
    ) -> Vec<Box<RawValue>> {
        let content = action
            .args
            .get("content")
            .and_then(|c| c.as_str())
            .unwrap_or("");
        let content = match MessageContent::parse(content) {
            Ok(content) => content,
            Err(invalid) => return error_reply("invalid_content", invalid.0),
        };
        let submitted = self
            .writer
            .submit(NewMessage {
                chatroom_id: room,
                user_id: user.id,
                nickname: user.nickname.clone(),
                content,
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
            .collect(),
            Err(error) => {
                tracing::error!(%error, "speak failed");
                error_reply("internal", "the message could not be stored")
            }
        }
    }

    /// Every message after `after`, then `{"type":"caught_up",…}`.
    async fn catch_up(&self, room: i64, action: &ActionData) -> Vec<Box<RawValue>> {
        let Some(after) = action.args.get("after").and_then(|a| a.as_i64()) else {
            return error_reply("invalid_request", "catch_up needs a numeric `after`");
        };
        let missed =
            match db::messages::between(&self.db, room, after, i64::MAX, REPLAY_LIMIT).await {
                Ok(missed) => missed,
                Err(error) => {
                    tracing::error!(%error, "catch_up failed");
                    return error_reply("internal", "history is unavailable");
                }
            };
        let last_seq = missed.last().map_or(after, |m| m.seq);
        let more = missed.len() as i64 == REPLAY_LIMIT;
        let mut replies: Vec<Box<RawValue>> = missed.iter().filter_map(payload).collect();
        replies.extend(reply(
            json!({ "type": "caught_up", "last_seq": last_seq, "more": more }),
        ));
        replies
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

fn payload(message: &Message) -> Option<Box<RawValue>> {
    MessagePayload::encode(message)
}

fn reply(value: serde_json::Value) -> Option<Box<RawValue>> {
    to_raw_value(&value).ok()
}

fn error_reply(error: &str, detail: &str) -> Vec<Box<RawValue>> {
    reply(json!({ "type": "error", "error": error, "message": detail }))
        .into_iter()
        .collect()
}

#[async_trait]
impl Channel<CurrentUser> for ChatroomChannel {
    async fn subscribe(
        &self,
        _user: &CurrentUser,
        params: &Params,
    ) -> Result<Subscription, Rejection> {
        let id = room_id(params).ok_or_else(|| Rejection("missing or malformed room id".into()))?;
        let subscription = Subscription {
            streams: vec![room_stream(id)],
        };
        if self
            .known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id)
        {
            self.relay.subscribe_ahead(id).await;
            return Ok(subscription);
        }
        match db::chatrooms::last_seq(&self.db, id).await {
            Ok(Some(last_seq)) => {
                self.relay.track(id, last_seq);
                self.known
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id);
                self.relay.subscribe_ahead(id).await;
                Ok(subscription)
            }
            Ok(None) => Err(Rejection(format!("no chatroom {id}"))),
            Err(error) => Err(Rejection(format!("database error: {error}"))),
        }
    }

    async fn perform(
        &self,
        user: &CurrentUser,
        params: &Params,
        action: ActionData,
    ) -> Vec<Box<RawValue>> {
        let Some(room) = room_id(params) else {
            return Vec::new();
        };
        match action.action.as_str() {
            "speak" => self.speak(user, room, &action).await,
            "catch_up" => self.catch_up(room, &action).await,
            other => {
                tracing::warn!(action = other, "ChatroomChannel has no such action");
                error_reply("unknown_action", "ChatroomChannel knows speak and catch_up")
            }
        }
    }

    async fn history(
        &self,
        _user: &CurrentUser,
        stream: &str,
        from: HistoryFrom,
    ) -> Result<Vec<HistoryItem>, Rejection> {
        let room = stream
            .strip_prefix("chatrooms:")
            .and_then(|id| id.parse::<i64>().ok())
            .ok_or_else(|| Rejection(format!("{stream} is not a room")))?;
        let messages = match from {
            HistoryFrom::After(offset) => {
                db::messages::between(&self.db, room, offset, i64::MAX, REPLAY_LIMIT).await
            }
            HistoryFrom::Since(seconds) => {
                db::messages::since(&self.db, room, seconds.saturating_mul(1000), REPLAY_LIMIT)
                    .await
            }
        }
        .map_err(|error| Rejection(format!("database error: {error}")))?;
        Ok(messages
            .iter()
            .filter_map(|m| {
                payload(m).map(|message| HistoryItem {
                    offset: m.seq,
                    message,
                })
            })
            .collect())
    }
}

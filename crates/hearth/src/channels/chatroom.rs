//! `ChatroomChannel`: streams one room; `speak` posts to it.

use async_trait::async_trait;
use cable::{ActionData, Channel, Params, Rejection, Subscription};
use serde_json::json;
use serde_json::value::{RawValue, to_raw_value};

use crate::db::{self, Db};
use crate::domain::MessageContent;
use crate::http::auth::CurrentUser;
use crate::relay::RelayHandle;
use crate::writer::{MessageWriter, NewMessage, PostError, room_stream};

/// Identifier `{"channel":"ChatroomChannel","id":<room id>}`.
pub struct ChatroomChannel {
    db: Db,
    writer: MessageWriter,
    relay: RelayHandle,
}

impl ChatroomChannel {
    /// A channel reading rooms from `db` and posting through `writer`.
    pub fn new(db: Db, writer: MessageWriter, relay: RelayHandle) -> Self {
        Self { db, writer, relay }
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

fn error_reply(error: &str, detail: &str) -> Option<Box<RawValue>> {
    reply(json!({ "type": "error", "error": error, "message": detail }))
}

#[async_trait]
impl Channel<CurrentUser> for ChatroomChannel {
    async fn subscribe(
        &self,
        _user: &CurrentUser,
        params: &Params,
    ) -> Result<Subscription, Rejection> {
        let id = room_id(params).ok_or_else(|| Rejection("missing or malformed room id".into()))?;
        match db::chatrooms::last_seq(&self.db, id).await {
            Ok(Some(last_seq)) => {
                self.relay.track(id, last_seq);
                Ok(Subscription {
                    streams: vec![room_stream(id)],
                })
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
    ) -> Option<Box<RawValue>> {
        if action.action != "speak" {
            tracing::warn!(action = %action.action, "ChatroomChannel has no such action");
            return error_reply("unknown_action", "ChatroomChannel only knows speak");
        }
        let room = room_id(params)?;
        let content = action
            .args
            .get("content")
            .and_then(|c| c.as_str())
            .unwrap_or("");
        let content = match MessageContent::parse(content) {
            Ok(content) => content,
            Err(invalid) => return error_reply("invalid_content", invalid.0),
        };
        let posted = self
            .writer
            .post(NewMessage {
                chatroom_id: room,
                user_id: user.id,
                nickname: user.nickname.clone(),
                content,
            })
            .await;
        match posted {
            // The broadcast carries the message to this subscriber too.
            Ok(_) => None,
            Err(PostError::RoomNotFound) => {
                error_reply("not_found", "the chatroom no longer exists")
            }
            Err(error) => {
                tracing::error!(%error, "speak failed");
                error_reply("internal", "the message could not be stored")
            }
        }
    }
}

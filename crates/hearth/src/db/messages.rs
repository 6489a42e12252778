//! The `messages` table.

use sqlx::{AnyConnection, FromRow};

use super::Db;

/// A stored message with its author's nickname, ready to show.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Message {
    /// Primary key.
    pub id: i64,
    /// The room.
    pub chatroom_id: i64,
    /// Position within the room: 1, 2, 3 …
    pub seq: i64,
    /// The author.
    pub user_id: i64,
    /// The author's nickname.
    pub nickname: String,
    /// The text, unescaped.
    pub content: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// The newest `limit` messages of a room, oldest first.
pub async fn latest(db: &Db, chatroom_id: i64, limit: i64) -> sqlx::Result<Vec<Message>> {
    let mut messages: Vec<Message> = sqlx::query_as(
        "SELECT m.id, m.chatroom_id, m.seq, m.user_id, u.nickname, m.content, m.created_at
         FROM messages m JOIN users u ON u.id = m.user_id
         WHERE m.chatroom_id = $1
         ORDER BY m.seq DESC LIMIT $2",
    )
    .bind(chatroom_id)
    .bind(limit)
    .fetch_all(db)
    .await?;
    messages.reverse();
    Ok(messages)
}

/// Takes the room's next sequence number; `None` when the room does not exist.
/// Run inside the transaction that inserts the message.
pub async fn next_seq(conn: &mut AnyConnection, chatroom_id: i64) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "UPDATE chatrooms SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq",
    )
    .bind(chatroom_id)
    .fetch_optional(conn)
    .await
}

/// Stores one message under a sequence number taken with [`next_seq`]; returns its id.
pub async fn insert(
    conn: &mut AnyConnection,
    chatroom_id: i64,
    seq: i64,
    user_id: i64,
    content: &str,
    created_at: i64,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO messages (chatroom_id, seq, user_id, content, created_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(chatroom_id)
    .bind(seq)
    .bind(user_id)
    .bind(content)
    .bind(created_at)
    .fetch_one(conn)
    .await
}

/// A room's messages with `after < seq < before`, oldest first, at most `limit`.
pub async fn between(
    db: &Db,
    chatroom_id: i64,
    after: i64,
    before: i64,
    limit: i64,
) -> sqlx::Result<Vec<Message>> {
    sqlx::query_as(
        "SELECT m.id, m.chatroom_id, m.seq, m.user_id, u.nickname, m.content, m.created_at
         FROM messages m JOIN users u ON u.id = m.user_id
         WHERE m.chatroom_id = $1 AND m.seq > $2 AND m.seq < $3
         ORDER BY m.seq LIMIT $4",
    )
    .bind(chatroom_id)
    .bind(after)
    .bind(before)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// A room's messages created at or after `since_millis`, oldest first, at most `limit`.
pub async fn since(
    db: &Db,
    chatroom_id: i64,
    since_millis: i64,
    limit: i64,
) -> sqlx::Result<Vec<Message>> {
    sqlx::query_as(
        "SELECT m.id, m.chatroom_id, m.seq, m.user_id, u.nickname, m.content, m.created_at
         FROM messages m JOIN users u ON u.id = m.user_id
         WHERE m.chatroom_id = $1 AND m.created_at >= $2
         ORDER BY m.seq LIMIT $3",
    )
    .bind(chatroom_id)
    .bind(since_millis)
    .bind(limit)
    .fetch_all(db)
    .await
}

//! The `chatrooms` table.

use sqlx::FromRow;

use super::{Db, is_unique_violation, memberships, now_millis};
use crate::domain::{RoomName, RoomSearch, RoomTopic};

/// The room every instance starts with.
pub const GENERAL: &str = "general";

/// A room.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Chatroom {
    /// Primary key.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// One line about the room; empty for none.
    pub topic: String,
}

/// A room and its newest place in its sequence, read in one query: a page
/// catches up from that `seq`, so it is read before the page's messages.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct RoomAtSeq {
    #[sqlx(flatten)]
    pub room: Chatroom,
    /// The `seq` of the room's newest post, edit or deletion.
    pub last_seq: i64,
}

/// Why a room could not be created.
#[derive(Debug, thiserror::Error)]
pub enum InsertChatroomError {
    #[error("A room with that name already exists")]
    NameTaken,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The `limit` rooms with the newest messages, newest first: the sidebar,
/// bounded whatever the number of rooms.
pub async fn recent(db: &Db, limit: i64) -> sqlx::Result<Vec<Chatroom>> {
    sqlx::query_as(
        "SELECT id, name, topic FROM chatrooms ORDER BY active_at DESC, id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await
}

/// A room as the directory lists it.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct DirectoryRoom {
    pub id: i64,
    pub name: String,
    pub topic: String,
    /// When its newest message was stored, or it was created (Unix ms).
    pub active_at: i64,
    /// How many messages it has had; 0 means none yet.
    pub last_seq: i64,
}

/// One page of the room directory, by folded name: up to `limit` rooms
/// after the first `offset`, only those whose folded name or topic contains
/// `search` (a scan of the rooms' keys: rooms are few beside messages).
pub async fn directory(
    db: &Db,
    search: &RoomSearch,
    offset: i64,
    limit: i64,
) -> sqlx::Result<Vec<DirectoryRoom>> {
    const COLUMNS: &str = "SELECT id, name, topic, active_at, last_seq FROM chatrooms";
    const ORDER: &str = "ORDER BY name_key, id LIMIT $1 OFFSET $2";
    if search.is_empty() {
        return sqlx::query_as(&format!("{COLUMNS} {ORDER}"))
            .bind(limit)
            .bind(offset)
            .fetch_all(db)
            .await;
    }
    sqlx::query_as(&format!(
        "{COLUMNS} WHERE name_key LIKE $3 ESCAPE '\\' OR topic_key LIKE $3 ESCAPE '\\' {ORDER}"
    ))
    .bind(limit)
    .bind(offset)
    .bind(search.like_pattern())
    .fetch_all(db)
    .await
}

/// One room.
pub async fn find(db: &Db, id: i64) -> sqlx::Result<Option<Chatroom>> {
    sqlx::query_as("SELECT id, name, topic FROM chatrooms WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The room to land in: "general", else the oldest.
pub async fn landing(db: &Db) -> sqlx::Result<Option<Chatroom>> {
    sqlx::query_as(
        "SELECT id, name, topic FROM chatrooms \
         ORDER BY CASE WHEN name = $1 THEN 0 ELSE 1 END, id LIMIT 1",
    )
    .bind(GENERAL)
    .fetch_optional(db)
    .await
}

/// Creates a room with its creator as its first member, in one transaction.
pub async fn insert(
    db: &Db,
    name: &RoomName,
    topic: &RoomTopic,
    creator: i64,
) -> Result<Chatroom, InsertChatroomError> {
    let now = now_millis();
    let mut tx = db.begin().await?;
    let room: Chatroom = sqlx::query_as(
        "INSERT INTO chatrooms (name, name_key, topic, topic_key, created_at, active_at) \
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING id, name, topic",
    )
    .bind(name.as_str())
    .bind(name.key())
    .bind(topic.as_str())
    .bind(topic.key())
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(|error| {
        if is_unique_violation(&error) {
            InsertChatroomError::NameTaken
        } else {
            error.into()
        }
    })?;
    memberships::add(&mut tx, [(room.id, creator)], now).await?;
    tx.commit().await?;
    Ok(room)
}

/// Creates "general" unless it exists. Several nodes may start at once: the
/// loser of that race sees a unique violation, which means "exists" too.
pub async fn ensure_general(db: &Db) -> sqlx::Result<()> {
    let created = sqlx::query(
        "INSERT INTO chatrooms (name, name_key, created_at, active_at) SELECT $1, $1, $2, $2
         WHERE NOT EXISTS (SELECT 1 FROM chatrooms WHERE name_key = $1)",
    )
    .bind(GENERAL)
    .bind(now_millis())
    .execute(db)
    .await;
    match created {
        Err(error) if !is_unique_violation(&error) => Err(error),
        _ => Ok(()),
    }
}

/// Gives rooms stored before migration 0002 their folded-name key. Two old
/// rooms whose names fold alike (allowed then) both stay: the later one's
/// key gets `#<id>` appended, so it stays unique, and a warning is logged.
pub async fn backfill_name_keys(db: &Db) -> sqlx::Result<()> {
    let rooms: Vec<Chatroom> =
        sqlx::query_as("SELECT id, name, topic FROM chatrooms WHERE name_key IS NULL ORDER BY id")
            .fetch_all(db)
            .await?;
    for room in rooms {
        let key = crate::domain::fold_room_name(&room.name);
        let set = |key: String| {
            sqlx::query("UPDATE chatrooms SET name_key = $1 WHERE id = $2")
                .bind(key)
                .bind(room.id)
                .execute(db)
        };
        match set(key.clone()).await {
            Err(error) if is_unique_violation(&error) => {
                tracing::warn!(chatroom_id = room.id, name = %room.name, "room name folds like another's; keyed by its id");
                set(format!("{key}#{}", room.id)).await?;
            }
            other => {
                other?;
            }
        }
    }
    Ok(())
}

/// The newest sequence of each room: `(id, last_seq)`.
pub async fn last_seqs(db: &Db) -> sqlx::Result<Vec<(i64, i64)>> {
    sqlx::query_as("SELECT id, last_seq FROM chatrooms")
        .fetch_all(db)
        .await
}

/// One room with its newest `seq`, if it exists.
pub async fn find_at_seq(db: &Db, id: i64) -> sqlx::Result<Option<RoomAtSeq>> {
    sqlx::query_as("SELECT id, name, topic, last_seq FROM chatrooms WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The newest sequence of one room.
pub async fn last_seq(db: &Db, id: i64) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar("SELECT last_seq FROM chatrooms WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

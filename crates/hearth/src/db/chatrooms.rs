//! The `chatrooms` table.

use sqlx::FromRow;

use super::{Db, is_unique_violation, memberships, now_millis};
use crate::domain::{RoomName, RoomSearch, RoomTopic};

/// The room every instance starts with.
pub const GENERAL: &str = "general";

/// The columns of a [`Chatroom`], for queries that read one.
const ROOM: &str = "id, name, topic, kind, created_by, archived_at, room_mentions";

/// Who may read a room and how one joins it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoomKind {
    /// Anyone signed in may read it; a first post (or Join) makes one a member.
    Public,
    /// Only its members may read it, or learn that it exists; members invite.
    Private,
    /// A conversation between its members (up to [`MAX_DIRECT_MEMBERS`]),
    /// one per set of people; nobody else may read it or join it.
    Direct,
}

impl RoomKind {
    /// The value stored in `chatrooms.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Direct => "direct",
        }
    }
}

impl TryFrom<String> for RoomKind {
    type Error = String;

    fn try_from(kind: String) -> Result<Self, String> {
        match kind.as_str() {
            "public" => Ok(Self::Public),
            "private" => Ok(Self::Private),
            "direct" => Ok(Self::Direct),
            _ => Err(format!("unknown room kind {kind:?}")),
        }
    }
}

/// Most people in one direct conversation, its starter included.
pub const MAX_DIRECT_MEMBERS: usize = 8;

/// A room.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Chatroom {
    /// Primary key.
    pub id: i64,
    /// Unique name; for a direct conversation, its members' nicknames when
    /// it began (not unique, and shown only where members are not listed).
    pub name: String,
    /// One line about the room; empty for none.
    pub topic: String,
    /// Who may read it.
    #[sqlx(try_from = "String")]
    pub kind: RoomKind,
    /// Who created it; `None` for "general" and rooms older than migration 0006.
    pub created_by: Option<i64>,
    /// When it was archived (Unix ms): read-only and listed nowhere.
    pub archived_at: Option<i64>,
    /// Who may mention the whole room (`@channel`, `@here`).
    #[sqlx(try_from = "String")]
    pub room_mentions: RoomMentions,
}

/// Who may notify a whole room with `@channel` or `@here`
/// (`chatrooms.room_mentions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomMentions {
    /// Any member.
    Everyone,
    /// The room's creator and the instance's admins.
    Admins,
}

impl RoomMentions {
    /// The stored and posted value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Everyone => "everyone",
            Self::Admins => "admins",
        }
    }

    /// Parses a stored or posted value.
    pub fn parse(value: &str) -> Option<Self> {
        [Self::Everyone, Self::Admins]
            .into_iter()
            .find(|m| m.as_str() == value)
    }
}

impl TryFrom<String> for RoomMentions {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value).ok_or_else(|| format!("unknown room_mentions {value:?}"))
    }
}

impl Chatroom {
    /// Whether only its members may read it.
    pub fn is_closed(&self) -> bool {
        self.kind != RoomKind::Public
    }

    /// Whether it is "general", which everyone is in and nobody leaves.
    pub fn is_general(&self) -> bool {
        self.kind == RoomKind::Public && self.name == GENERAL
    }

    /// Whether `user` (an instance admin if `admin`) may manage it: rename,
    /// archive, remove members, say who may mention everyone.
    pub fn managed_by(&self, user: i64, admin: bool) -> bool {
        admin || self.created_by == Some(user)
    }

    /// Whether `user` may use `@channel` and `@here` in it.
    pub fn may_mention_everyone(&self, user: i64, admin: bool) -> bool {
        self.room_mentions == RoomMentions::Everyone || self.managed_by(user, admin)
    }
}

/// A room as one user may see it: the room, its newest `seq`, and whether
/// the user is a member. Read in one query before a page's messages, which
/// catch up from that `seq`.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct RoomAccess {
    #[sqlx(flatten)]
    pub room: Chatroom,
    /// The `seq` of the room's newest post, edit or deletion.
    pub last_seq: i64,
    /// The user's id when they are a member, else `None`.
    member_id: Option<i64>,
    /// The user's read cursor in the room (0 for a non-member).
    pub last_read_seq: Option<i64>,
}

impl RoomAccess {
    /// Whether the user is a member of the room.
    pub fn is_member(&self) -> bool {
        self.member_id.is_some()
    }

    /// Whether the user may read the room: it is public, or they are a
    /// member. Everything about a room someone may not read answers as if
    /// it did not exist.
    pub fn may_read(&self) -> bool {
        !self.room.is_closed() || self.is_member()
    }
}

/// Why a room could not be created.
#[derive(Debug, thiserror::Error)]
pub enum InsertChatroomError {
    #[error("A room with that name already exists")]
    NameTaken,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl InsertChatroomError {
    /// A unique violation on writing a room is its name taken; anything
    /// else is a database error.
    fn from_write(error: sqlx::Error) -> Self {
        if is_unique_violation(&error) {
            Self::NameTaken
        } else {
            error.into()
        }
    }
}

/// The sidebar's rooms for `user`: the `limit` public and private rooms
/// with the newest messages among those they may read (not archived, not
/// direct), newest first; bounded whatever the number of rooms.
pub async fn recent(db: &Db, user: i64, limit: i64) -> sqlx::Result<Vec<Chatroom>> {
    sqlx::query_as(&format!(
        "SELECT {ROOM} FROM chatrooms WHERE archived_at IS NULL AND (kind = 'public' \
         OR (kind = 'private' AND id IN (SELECT chatroom_id FROM memberships WHERE user_id = $2))) \
         ORDER BY active_at DESC, id DESC LIMIT $1"
    ))
    .bind(limit)
    .bind(user)
    .fetch_all(db)
    .await
}

/// The direct conversations `user` is in, most recently active first, at
/// most `limit`.
pub async fn directs(db: &Db, user: i64, limit: i64) -> sqlx::Result<Vec<Chatroom>> {
    sqlx::query_as(&format!(
        "SELECT {ROOM} FROM chatrooms WHERE kind = 'direct' AND archived_at IS NULL \
         AND id IN (SELECT chatroom_id FROM memberships WHERE user_id = $1) \
         ORDER BY active_at DESC, id DESC LIMIT $2"
    ))
    .bind(user)
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
    /// Public or private.
    #[sqlx(try_from = "String")]
    pub kind: RoomKind,
    /// When its newest message was stored, or it was created (Unix ms).
    pub active_at: i64,
    /// How many messages it has had; 0 means none yet.
    pub last_seq: i64,
}

/// One page of the room directory for `user`, by folded name: up to
/// `limit` rooms after the first `offset` among the public rooms and the
/// private rooms they are in (never archived or direct ones), only those
/// whose folded name or topic contains `search` (a scan of the rooms'
/// keys: rooms are few beside messages).
pub async fn directory(
    db: &Db,
    user: i64,
    search: &RoomSearch,
    offset: i64,
    limit: i64,
) -> sqlx::Result<Vec<DirectoryRoom>> {
    const COLUMNS: &str = "SELECT id, name, topic, kind, active_at, last_seq FROM chatrooms \
        WHERE archived_at IS NULL AND (kind = 'public' OR (kind = 'private' AND id IN \
        (SELECT chatroom_id FROM memberships WHERE user_id = $3)))";
    const ORDER: &str = "ORDER BY name_key, id LIMIT $1 OFFSET $2";
    if search.is_empty() {
        return sqlx::query_as(&format!("{COLUMNS} {ORDER}"))
            .bind(limit)
            .bind(offset)
            .bind(user)
            .fetch_all(db)
            .await;
    }
    sqlx::query_as(&format!(
        "{COLUMNS} AND (name_key LIKE $4 ESCAPE '\\' OR topic_key LIKE $4 ESCAPE '\\') {ORDER}"
    ))
    .bind(limit)
    .bind(offset)
    .bind(user)
    .bind(search.like_pattern())
    .fetch_all(db)
    .await
}

/// One room.
pub async fn find(db: &Db, id: i64) -> sqlx::Result<Option<Chatroom>> {
    sqlx::query_as(&format!("SELECT {ROOM} FROM chatrooms WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The room to land in: "general", else the oldest.
pub async fn landing(db: &Db) -> sqlx::Result<Option<Chatroom>> {
    sqlx::query_as(&format!(
        "SELECT {ROOM} FROM chatrooms WHERE kind = 'public' AND archived_at IS NULL \
         ORDER BY CASE WHEN name = $1 THEN 0 ELSE 1 END, id LIMIT 1"
    ))
    .bind(GENERAL)
    .fetch_optional(db)
    .await
}

/// Creates a public or private room with its creator as its first member,
/// in one transaction.
pub async fn insert(
    db: &Db,
    name: &RoomName,
    topic: &RoomTopic,
    kind: RoomKind,
    creator: i64,
) -> Result<Chatroom, InsertChatroomError> {
    debug_assert!(kind != RoomKind::Direct, "direct rooms come from `direct`");
    let now = now_millis();
    let mut tx = db.begin().await?;
    let room: Chatroom = sqlx::query_as(&format!(
        "INSERT INTO chatrooms (name, name_key, topic, topic_key, kind, created_by, created_at, \
         active_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {ROOM}"
    ))
    .bind(name.as_str())
    .bind(name.key())
    .bind(topic.as_str())
    .bind(topic.key())
    .bind(kind.as_str())
    .bind(creator)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(InsertChatroomError::from_write)?;
    memberships::add(&mut tx, [(room.id, creator)], now).await?;
    tx.commit().await?;
    Ok(room)
}

/// Creates "general" unless it exists. Several nodes may start at once: the
/// loser of that race sees a unique violation, which means "exists" too.
pub async fn ensure_general(db: &Db) -> sqlx::Result<()> {
    let created = sqlx::query(
        "INSERT INTO chatrooms (name, name_key, created_at, active_at, room_mentions) \
         SELECT $1, $1, $2, $2, 'admins' WHERE NOT EXISTS (SELECT 1 FROM chatrooms WHERE name_key = $1)",
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
    let rooms: Vec<Chatroom> = sqlx::query_as(&format!(
        "SELECT {ROOM} FROM chatrooms WHERE name_key IS NULL AND kind <> 'direct' ORDER BY id"
    ))
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

/// Room `id` as `user` may see it, if it exists (whether they may read it
/// is [`RoomAccess::may_read`]).
pub async fn access(db: &Db, id: i64, user: i64) -> sqlx::Result<Option<RoomAccess>> {
    sqlx::query_as(
        "SELECT c.id, c.name, c.topic, c.kind, c.created_by, c.archived_at, c.room_mentions, c.last_seq, \
         m.user_id AS member_id, m.last_read_seq FROM chatrooms c \
         LEFT JOIN memberships m ON m.chatroom_id = c.id AND m.user_id = $2 WHERE c.id = $1",
    )
    .bind(id)
    .bind(user)
    .fetch_optional(db)
    .await
}

/// The direct conversation between exactly `members` (ids, the starter
/// among them), created with all of them as members unless it exists:
/// one conversation per set of people, found again rather than duplicated,
/// even when two of them start it at once on two nodes. `name` is what it
/// is called where its members are not listed.
pub async fn direct(db: &Db, members: &[i64], name: &str, starter: i64) -> sqlx::Result<Chatroom> {
    let members: std::collections::BTreeSet<i64> = members.iter().copied().collect();
    let key = members
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let select = format!("SELECT {ROOM} FROM chatrooms WHERE direct_key = $1");
    let find = || {
        sqlx::query_as::<_, Chatroom>(&select)
            .bind(key.clone())
            .fetch_optional(db)
    };
    if let Some(room) = find().await? {
        return Ok(room);
    }
    let now = now_millis();
    let mut tx = db.begin().await?;
    let created: Option<Chatroom> = sqlx::query_as(&format!(
        "INSERT INTO chatrooms (name, kind, direct_key, created_by, created_at, active_at) \
         VALUES ($1, 'direct', $2, $3, $4, $4) ON CONFLICT (direct_key) DO NOTHING RETURNING {ROOM}"
    ))
    .bind(name)
    .bind(key.clone())
    .bind(starter)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(room) = created else {
        // Someone else created it between the two statements.
        tx.rollback().await?;
        return find().await?.ok_or(sqlx::Error::RowNotFound);
    };
    memberships::add(&mut tx, members.iter().map(|user| (room.id, *user)), now).await?;
    tx.commit().await?;
    Ok(room)
}

/// Archives a room: read-only, listed nowhere. Returns whether it changed.
pub async fn archive(db: &Db, id: i64) -> sqlx::Result<bool> {
    let done =
        sqlx::query("UPDATE chatrooms SET archived_at = $1 WHERE id = $2 AND archived_at IS NULL")
            .bind(now_millis())
            .bind(id)
            .execute(db)
            .await?;
    Ok(done.rows_affected() > 0)
}

/// Renames a room and sets its topic; a taken name is
/// [`InsertChatroomError::NameTaken`].
pub async fn update(
    db: &Db,
    id: i64,
    name: &RoomName,
    topic: &RoomTopic,
) -> Result<(), InsertChatroomError> {
    sqlx::query(
        "UPDATE chatrooms SET name = $1, name_key = $2, topic = $3, topic_key = $4 WHERE id = $5",
    )
    .bind(name.as_str())
    .bind(name.key())
    .bind(topic.as_str())
    .bind(topic.key())
    .bind(id)
    .execute(db)
    .await
    .map_err(InsertChatroomError::from_write)?;
    Ok(())
}

/// Sets who may mention the whole of room `id`.
pub async fn set_room_mentions(db: &Db, id: i64, who: RoomMentions) -> sqlx::Result<()> {
    sqlx::query("UPDATE chatrooms SET room_mentions = $1 WHERE id = $2")
        .bind(who.as_str())
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

//! The `memberships` table: who is in which room, and how far each member
//! has read. Posting in a public room, joining it, creating a room, being
//! invited to a private one or starting a direct conversation makes someone
//! a member; leaving or being removed ends it.

use std::collections::{BTreeSet, HashMap, HashSet};

use sqlx::AnyConnection;

use super::Db;

/// Most members in one INSERT: 3 parameters each stays far below both
/// engines' limits on parameters per statement.
const MEMBERS_PER_INSERT: usize = 300;

/// Makes each `(chatroom_id, user_id)` a member since `joined_at`, unless it
/// is one already (then its `joined_at` stays), its read cursor at the
/// room's newest `seq`: someone who joins starts with nothing unread.
/// Idempotent. Pairs are deduplicated and inserted in key order, so two
/// writers on two nodes take their row locks in the same order and cannot
/// deadlock each other.
pub async fn add(
    conn: &mut AnyConnection,
    members: impl IntoIterator<Item = (i64, i64)>,
    joined_at: i64,
) -> sqlx::Result<()> {
    let members: Vec<(i64, i64)> = members
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    for chunk in members.chunks(MEMBERS_PER_INSERT) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let (room, user, at) = (3 * i + 1, 3 * i + 2, 3 * i + 3);
                format!(
                    "(${room}, ${user}, ${at}, (SELECT last_seq FROM chatrooms WHERE id = ${room}))"
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO memberships (chatroom_id, user_id, joined_at, last_read_seq) VALUES {} \
             ON CONFLICT (chatroom_id, user_id) DO NOTHING",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for (chatroom_id, user_id) in chunk {
            query = query.bind(*chatroom_id).bind(*user_id).bind(joined_at);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The posters of a batch of stored messages: each `(chatroom_id,
/// user_id, seq)` a member since `joined_at` unless one already, with their
/// read cursor moved up to their newest post (posting reads what came
/// before it, as in Slack). One statement per few hundred posters, in the
/// writer's transaction: a message is never stored without its author being
/// a member. In key order, as [`add`].
pub async fn add_posters(
    conn: &mut AnyConnection,
    posters: impl IntoIterator<Item = (i64, i64, i64)>,
    joined_at: i64,
) -> sqlx::Result<()> {
    let mut newest: std::collections::BTreeMap<(i64, i64), i64> = Default::default();
    for (room, user, seq) in posters {
        let entry = newest.entry((room, user)).or_insert(seq);
        *entry = (*entry).max(seq);
    }
    let posters: Vec<((i64, i64), i64)> = newest.into_iter().collect();
    for chunk in posters.chunks(MEMBERS_PER_INSERT) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                format!(
                    "(${}, ${}, ${}, ${})",
                    4 * i + 1,
                    4 * i + 2,
                    4 * i + 3,
                    4 * i + 4
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO memberships (chatroom_id, user_id, joined_at, last_read_seq) VALUES {} \
             ON CONFLICT (chatroom_id, user_id) DO UPDATE SET last_read_seq = CASE \
             WHEN excluded.last_read_seq > memberships.last_read_seq \
             THEN excluded.last_read_seq ELSE memberships.last_read_seq END",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for ((chatroom_id, user_id), seq) in chunk {
            query = query
                .bind(*chatroom_id)
                .bind(*user_id)
                .bind(joined_at)
                .bind(*seq);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Moves `user`'s read cursor in `room` up to `seq` (never down, never past
/// the room's newest event); returns where it is now, or `None` for a
/// non-member.
pub async fn mark_read(db: &Db, room: i64, user: i64, seq: i64) -> sqlx::Result<Option<i64>> {
    sqlx::query(
        "UPDATE memberships SET last_read_seq = \
         (SELECT CASE WHEN $3 > c.last_seq THEN c.last_seq ELSE $3 END FROM chatrooms c WHERE c.id = $1) \
         WHERE chatroom_id = $1 AND user_id = $2 AND last_read_seq < $3",
    )
    .bind(room)
    .bind(user)
    .bind(seq)
    .execute(db)
    .await?;
    sqlx::query_scalar(
        "SELECT last_read_seq FROM memberships WHERE chatroom_id = $1 AND user_id = $2",
    )
    .bind(room)
    .bind(user)
    .fetch_optional(db)
    .await
}

/// What a member's pages notify them of, in a browser notification while
/// the tab is hidden (`memberships.notify`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Notify {
    /// Every message in a direct conversation, mentions elsewhere.
    #[default]
    Default,
    /// Every message.
    All,
    /// Mentions of them (by name, `@here`, `@channel`) only.
    Mentions,
    /// Nothing.
    Nothing,
}

impl Notify {
    /// Every setting, for forms.
    pub const ALL: [Self; 4] = [Self::Default, Self::All, Self::Mentions, Self::Nothing];

    /// The stored and posted value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::All => "all",
            Self::Mentions => "mentions",
            Self::Nothing => "nothing",
        }
    }

    /// Parses a stored or posted value.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|n| n.as_str() == value)
    }

    /// What a person choosing it reads.
    pub fn label(self) -> &'static str {
        match self {
            Self::Default => "Default (every message in a conversation, mentions in a room)",
            Self::All => "Every message",
            Self::Mentions => "Mentions only",
            Self::Nothing => "Nothing",
        }
    }
}

/// A member's state in one room: what they have not read, and what they
/// are notified of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unread {
    /// Messages from others after their read cursor, not deleted.
    pub messages: i64,
    /// Those of them that mention the member (by name, `@here` or
    /// `@channel`), each message once.
    pub mentions: i64,
    pub notify: Notify,
}

/// `user`'s [`Unread`] state in each of `rooms` they are a member of: the
/// messages after their read cursor, by `seq` (one range of the
/// `(chatroom_id, seq)` index per room), and the mentions after it (one
/// range of the `mentions` key per room, for them and for `@channel`).
/// Rooms they are not a member of are absent.
pub async fn unread(db: &Db, user: i64, rooms: &[i64]) -> sqlx::Result<HashMap<i64, Unread>> {
    if rooms.is_empty() {
        return Ok(HashMap::new());
    }
    let ids = super::placeholders(2, rooms.len());
    let sql = format!(
        "SELECT m.chatroom_id, \
         (SELECT COUNT(*) FROM messages msg WHERE msg.chatroom_id = m.chatroom_id \
         AND msg.seq > m.last_read_seq AND msg.user_id <> m.user_id AND msg.deleted_at IS NULL), \
         (SELECT COUNT(DISTINCT mn.seq) FROM mentions mn JOIN messages msg \
         ON msg.chatroom_id = mn.chatroom_id AND msg.seq = mn.seq \
         WHERE mn.chatroom_id = m.chatroom_id AND mn.user_id IN (m.user_id, 0) \
         AND mn.seq > m.last_read_seq AND mn.author_id <> m.user_id AND msg.deleted_at IS NULL), \
         m.notify \
         FROM memberships m WHERE m.user_id = $1 AND m.chatroom_id IN ({})",
        ids
    );
    let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(&sql).bind(user);
    for room in rooms {
        query = query.bind(*room);
    }
    Ok(query
        .fetch_all(db)
        .await?
        .into_iter()
        .map(|(room, messages, mentions, notify)| {
            let notify = Notify::parse(&notify).unwrap_or_default();
            (
                room,
                Unread {
                    messages,
                    mentions,
                    notify,
                },
            )
        })
        .collect())
}

/// Sets what `user` is notified of in `room`; false if they are not a member.
pub async fn set_notify(db: &Db, room: i64, user: i64, notify: Notify) -> sqlx::Result<bool> {
    let changed =
        sqlx::query("UPDATE memberships SET notify = $1 WHERE chatroom_id = $2 AND user_id = $3")
            .bind(notify.as_str())
            .bind(room)
            .bind(user)
            .execute(db)
            .await?;
    Ok(changed.rows_affected() > 0)
}

/// How many members each of `rooms` has, in one grouped query over the
/// primary key; a room without members is absent from the map.
pub async fn counts(db: &Db, rooms: &[i64]) -> sqlx::Result<HashMap<i64, i64>> {
    if rooms.is_empty() {
        return Ok(HashMap::new());
    }
    let ids = super::placeholders(1, rooms.len());
    let sql = format!(
        "SELECT chatroom_id, COUNT(*) FROM memberships WHERE chatroom_id IN ({}) \
         GROUP BY chatroom_id",
        ids
    );
    let mut query = sqlx::query_as::<_, (i64, i64)>(&sql);
    for room in rooms {
        query = query.bind(*room);
    }
    Ok(query.fetch_all(db).await?.into_iter().collect())
}

/// Which of `rooms` `user_id` is a member of.
pub async fn joined(db: &Db, user_id: i64, rooms: &[i64]) -> sqlx::Result<HashSet<i64>> {
    if rooms.is_empty() {
        return Ok(HashSet::new());
    }
    let ids = super::placeholders(2, rooms.len());
    let sql = format!(
        "SELECT chatroom_id FROM memberships WHERE user_id = $1 AND chatroom_id IN ({})",
        ids
    );
    let mut query = sqlx::query_scalar::<_, i64>(&sql).bind(user_id);
    for room in rooms {
        query = query.bind(*room);
    }
    Ok(query.fetch_all(db).await?.into_iter().collect())
}

/// Makes `user` a member of `room` (idempotent).
pub async fn join(db: &Db, room: i64, user: i64) -> sqlx::Result<()> {
    let mut conn = db.acquire().await?;
    add(&mut conn, [(room, user)], super::now_millis()).await
}

/// Ends `user`'s membership of `room`; returns whether they were a member.
pub async fn remove(db: &Db, room: i64, user: i64) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM memberships WHERE chatroom_id = $1 AND user_id = $2")
        .bind(room)
        .bind(user)
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Whether `user` is a member of `room`.
pub async fn is_member(db: &Db, room: i64, user: i64) -> sqlx::Result<bool> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT user_id FROM memberships WHERE chatroom_id = $1 AND user_id = $2",
    )
    .bind(room)
    .bind(user)
    .fetch_optional(db)
    .await?;
    Ok(found.is_some())
}

/// A member as a room's member list shows them.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Member {
    pub user_id: i64,
    pub nickname: String,
}

/// Up to `limit` members of `room`, by nickname.
pub async fn members(db: &Db, room: i64, limit: i64) -> sqlx::Result<Vec<Member>> {
    sqlx::query_as(
        "SELECT u.id AS user_id, u.nickname FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.chatroom_id = $1 ORDER BY lower(u.nickname) LIMIT $2",
    )
    .bind(room)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// The members of each of `rooms`, as `(chatroom_id, member)`: the names a
/// direct conversation is listed under.
pub async fn members_of(db: &Db, rooms: &[i64]) -> sqlx::Result<Vec<(i64, Member)>> {
    if rooms.is_empty() {
        return Ok(Vec::new());
    }
    let ids = super::placeholders(1, rooms.len());
    let sql = format!(
        "SELECT m.chatroom_id, u.id, u.nickname FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.chatroom_id IN ({}) ORDER BY lower(u.nickname)",
        ids
    );
    let mut query = sqlx::query_as::<_, (i64, i64, String)>(&sql);
    for room in rooms {
        query = query.bind(*room);
    }
    Ok(query
        .fetch_all(db)
        .await?
        .into_iter()
        .map(|(room, user_id, nickname)| (room, Member { user_id, nickname }))
        .collect())
}

/// The rooms `user` is a member of, not archived, the most recently active
/// first, at most `limit`.
pub async fn rooms_of(db: &Db, user: i64, limit: i64) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar(
        "SELECT c.id FROM memberships m JOIN chatrooms c ON c.id = m.chatroom_id \
         WHERE m.user_id = $1 AND c.archived_at IS NULL ORDER BY c.active_at DESC LIMIT $2",
    )
    .bind(user)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// The people `user` shares a direct conversation with (not archived),
/// those of the most recently active conversations first, at most `limit`.
pub async fn direct_partners(db: &Db, user: i64, limit: i64) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar(
        "SELECT o.user_id FROM memberships m \
         JOIN chatrooms c ON c.id = m.chatroom_id AND c.kind = 'direct' AND c.archived_at IS NULL \
         JOIN memberships o ON o.chatroom_id = c.id AND o.user_id <> m.user_id \
         WHERE m.user_id = $1 GROUP BY o.user_id ORDER BY MAX(c.active_at) DESC LIMIT $2",
    )
    .bind(user)
    .bind(limit)
    .fetch_all(db)
    .await
}

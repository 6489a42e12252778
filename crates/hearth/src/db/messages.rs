//! The `messages` table.

use sqlx::{AnyConnection, FromRow};

use super::Db;

/// The columns of a [`Message`], from `messages m JOIN users u`.
macro_rules! message_columns {
    () => {
        "m.id, m.chatroom_id, m.seq, m.user_id, u.nickname, m.content, m.created_at, \
         m.edited_at, m.deleted_at"
    };
}

/// A query for [`Message`] rows (with the author's nickname) and `$where`.
macro_rules! select_messages {
    ($where:expr) => {
        concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m JOIN users u ON u.id = m.user_id WHERE ",
            $where
        )
    };
}

/// What history pages show: messages not deleted.
macro_rules! shown {
    ($where:literal) => {
        select_messages!(concat!("m.deleted_at IS NULL AND ", $where))
    };
}

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
    /// When it was last edited, Unix milliseconds; `None` if never.
    pub edited_at: Option<i64>,
    /// When it was deleted, Unix milliseconds; its text is erased then.
    pub deleted_at: Option<i64>,
}

/// Where a page of a room's history is taken from, by `seq`: the room's
/// sequence has no gaps, so paging by it never skips or repeats a message
/// (paging by time would, for messages stored in the same millisecond).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// The newest messages.
    Latest,
    /// Those just before this `seq`.
    Before(i64),
    /// Those just after this `seq`.
    After(i64),
    /// This `seq` and those around it, about half on each side.
    Around(i64),
}

/// A page of a room's history, oldest first, and whether the room holds
/// more on either side of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// The messages, oldest first.
    pub messages: Vec<Message>,
    /// Whether older messages exist.
    pub more_before: bool,
    /// Whether newer messages exist.
    pub more_after: bool,
}

/// Up to `limit` (at least 1) messages newest-first with `seq < before`, and
/// whether there were more.
async fn newest_below(
    db: &Db,
    chatroom_id: i64,
    before: i64,
    limit: i64,
) -> sqlx::Result<(Vec<Message>, bool)> {
    let mut messages: Vec<Message> = sqlx::query_as(shown!(
        "m.chatroom_id = $1 AND m.seq < $2
         ORDER BY m.seq DESC LIMIT $3"
    ))
    .bind(chatroom_id)
    .bind(before)
    .bind(limit + 1)
    .fetch_all(db)
    .await?;
    let more = messages.len() as i64 > limit;
    messages.truncate(limit as usize);
    messages.reverse();
    Ok((messages, more))
}

/// Up to `limit` messages oldest-first with `seq > after`, and whether there
/// were more.
async fn oldest_above(
    db: &Db,
    chatroom_id: i64,
    after: i64,
    limit: i64,
) -> sqlx::Result<(Vec<Message>, bool)> {
    let mut messages: Vec<Message> = sqlx::query_as(shown!(
        "m.chatroom_id = $1 AND m.seq > $2
         ORDER BY m.seq LIMIT $3"
    ))
    .bind(chatroom_id)
    .bind(after)
    .bind(limit + 1)
    .fetch_all(db)
    .await?;
    let more = messages.len() as i64 > limit;
    messages.truncate(limit as usize);
    Ok((messages, more))
}

/// Whether the room shows a message with `seq` in `low..=high`.
async fn any_between(db: &Db, chatroom_id: i64, low: i64, high: i64) -> sqlx::Result<bool> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT seq FROM messages \
         WHERE chatroom_id = $1 AND seq >= $2 AND seq <= $3 AND deleted_at IS NULL LIMIT 1",
    )
    .bind(chatroom_id)
    .bind(low)
    .bind(high)
    .fetch_optional(db)
    .await?;
    Ok(found.is_some())
}

/// A page of at most `limit` (at least 1) messages of a room at `anchor`.
pub async fn page(
    db: &Db,
    chatroom_id: i64,
    anchor: Anchor,
    limit: i64,
) -> sqlx::Result<HistoryPage> {
    let limit = limit.max(1);
    let (messages, more_before, more_after) = match anchor {
        Anchor::Latest => {
            let (messages, more_before) = newest_below(db, chatroom_id, i64::MAX, limit).await?;
            (messages, more_before, false)
        }
        Anchor::Before(before) => {
            let (messages, more_before) = newest_below(db, chatroom_id, before, limit).await?;
            let after = any_between(db, chatroom_id, before, i64::MAX).await?;
            (messages, more_before, after)
        }
        Anchor::After(after) => {
            let (messages, more_after) = oldest_above(db, chatroom_id, after, limit).await?;
            let before = any_between(db, chatroom_id, i64::MIN, after).await?;
            (messages, before, more_after)
        }
        Anchor::Around(seq) => {
            // About half on each side; where one side runs out, the other
            // fills the page.
            let half = limit / 2;
            let (mut older, mut more_before) = if half > 0 {
                newest_below(db, chatroom_id, seq, half).await?
            } else {
                let below = seq.saturating_sub(1);
                (
                    Vec::new(),
                    any_between(db, chatroom_id, i64::MIN, below).await?,
                )
            };
            let newer_wanted = limit - older.len() as i64;
            let (newer, more_after) =
                oldest_above(db, chatroom_id, seq.saturating_sub(1), newer_wanted).await?;
            if (newer.len() as i64) < newer_wanted && more_before {
                (older, more_before) =
                    newest_below(db, chatroom_id, seq, limit - newer.len() as i64).await?;
            }
            older.extend(newer);
            (older, more_before, more_after)
        }
    };
    Ok(HistoryPage {
        messages,
        more_before,
        more_after,
    })
}

/// Most rooms in one sequence UPDATE: 3 parameters each.
const ROOMS_PER_UPDATE: usize = 256;

/// Takes each room's next `count` sequence numbers; returns the last of them
/// by room, without the rooms that do not exist. Run inside the transaction
/// that inserts the messages: the row locks order writers across nodes.
/// One statement per [`ROOMS_PER_UPDATE`] rooms, not one per room: a batch
/// spoken into 100 rooms was 100 round trips to SQLite's worker thread.
pub async fn take_seqs(
    conn: &mut AnyConnection,
    counts: &[(i64, i64)],
) -> sqlx::Result<std::collections::HashMap<i64, i64>> {
    let mut last = std::collections::HashMap::with_capacity(counts.len());
    for chunk in counts.chunks(ROOMS_PER_UPDATE) {
        let cases: String = (0..chunk.len())
            .map(|i| format!(" WHEN ${} THEN ${}", 2 * i + 1, 2 * i + 2))
            .collect();
        let ids: Vec<String> = (0..chunk.len())
            .map(|i| format!("${}", 2 * chunk.len() + i + 1))
            .collect();
        // The rooms' activity time, for the sidebar, in the same statement.
        let sql = format!(
            "UPDATE chatrooms SET last_seq = last_seq + CASE id{cases} END, active_at = ${} \
             WHERE id IN ({}) RETURNING id, last_seq",
            3 * chunk.len() + 1,
            ids.join(", ")
        );
        let mut query = sqlx::query_as::<_, (i64, i64)>(&sql);
        for (room, count) in chunk {
            query = query.bind(*room).bind(*count);
        }
        for (room, _) in chunk {
            query = query.bind(*room);
        }
        query = query.bind(super::now_millis());
        last.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(last)
}

/// A message to insert, its sequence already taken.
#[derive(Debug, Clone, Copy)]
pub struct NewRow<'a> {
    pub chatroom_id: i64,
    pub seq: i64,
    pub user_id: i64,
    pub content: &'a str,
    pub created_at: i64,
}

/// Most rows in one INSERT: 5 parameters each stays far below both
/// engines' limits on parameters per statement.
const ROWS_PER_INSERT: usize = 200;

/// Stores rows with multi-row INSERTs; returns their ids, in the order given.
/// Ids are matched by (room, seq), so the order RETURNING yields them in
/// does not matter.
pub async fn insert_rows(conn: &mut AnyConnection, rows: &[NewRow<'_>]) -> sqlx::Result<Vec<i64>> {
    let mut ids = std::collections::HashMap::with_capacity(rows.len());
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p = i * 5;
                format!(
                    "(${}, ${}, ${}, ${}, ${})",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO messages (chatroom_id, seq, user_id, content, created_at) VALUES {} \
             RETURNING id, chatroom_id, seq",
            values.join(", ")
        );
        let mut query = sqlx::query_as::<_, (i64, i64, i64)>(&sql);
        for row in chunk {
            query = query
                .bind(row.chatroom_id)
                .bind(row.seq)
                .bind(row.user_id)
                .bind(row.content)
                .bind(row.created_at);
        }
        for (id, chatroom_id, seq) in query.fetch_all(&mut *conn).await? {
            ids.insert((chatroom_id, seq), id);
        }
    }
    rows.iter()
        .map(|row| {
            ids.get(&(row.chatroom_id, row.seq))
                .copied()
                .ok_or_else(|| sqlx::Error::Protocol("an inserted message returned no id".into()))
        })
        .collect()
}

/// What happened at one place in a room's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The message was posted (its own `seq`).
    Posted,
    /// The message was edited.
    Edited,
    /// The message was deleted.
    Deleted,
}

impl EventKind {
    /// The name stored in `message_events.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Posted => "posted",
            EventKind::Edited => "edited",
            EventKind::Deleted => "deleted",
        }
    }
}

/// One place in a room's sequence: a message posted, or a later edit or
/// deletion of one. Each `seq` of a room is exactly one of these, so a
/// client that counts them finds gaps as before edits existed. The message
/// is as it is now, not as it was then: a replayed post of a message edited
/// since shows the edit, and one deleted since is a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomEvent {
    /// Its place in the room's sequence.
    pub seq: i64,
    /// What happened.
    pub kind: EventKind,
    /// The message it happened to, as it is now.
    pub message: Message,
}

#[derive(FromRow)]
struct EventRow {
    event_seq: i64,
    kind: String,
    #[sqlx(flatten)]
    message: Message,
}

impl From<EventRow> for RoomEvent {
    fn from(row: EventRow) -> Self {
        let kind = match row.kind.as_str() {
            "edited" => EventKind::Edited,
            "deleted" => EventKind::Deleted,
            _ => EventKind::Posted,
        };
        Self {
            seq: row.event_seq,
            kind,
            message: row.message,
        }
    }
}

/// A room's events with `after < seq < before`, oldest first, at most
/// `limit`: posts from `messages`, edits and deletions from
/// `message_events`, merged by `seq`.
pub async fn events_between(
    db: &Db,
    chatroom_id: i64,
    after: i64,
    before: i64,
    limit: i64,
) -> sqlx::Result<Vec<RoomEvent>> {
    let rows: Vec<EventRow> = sqlx::query_as(concat!(
        "SELECT m.seq AS event_seq, 'posted' AS kind, ",
        message_columns!(),
        " FROM messages m JOIN users u ON u.id = m.user_id \
         WHERE m.chatroom_id = $1 AND m.seq > $2 AND m.seq < $3 \
         UNION ALL \
         SELECT e.seq AS event_seq, e.kind AS kind, ",
        message_columns!(),
        " FROM message_events e JOIN messages m ON m.id = e.message_id \
         JOIN users u ON u.id = m.user_id \
         WHERE e.chatroom_id = $1 AND e.seq > $2 AND e.seq < $3 \
         ORDER BY event_seq LIMIT $4"
    ))
    .bind(chatroom_id)
    .bind(after)
    .bind(before)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(RoomEvent::from).collect())
}

/// The first `seq` of a room's events at or after `since_millis`, if any:
/// where a replay "since a time" starts. An edit of an older message made
/// after that time counts, so both tables are asked.
pub async fn first_seq_since(
    db: &Db,
    chatroom_id: i64,
    since_millis: i64,
) -> sqlx::Result<Option<i64>> {
    let mut first = None;
    for table in ["messages", "message_events"] {
        let sql = format!(
            "SELECT seq FROM {table} WHERE chatroom_id = $1 AND created_at >= $2 \
             ORDER BY seq LIMIT 1"
        );
        let seq: Option<i64> = sqlx::query_scalar(&sql)
            .bind(chatroom_id)
            .bind(since_millis)
            .fetch_optional(db)
            .await?;
        first = first.into_iter().chain(seq).min();
    }
    Ok(first)
}

/// One message of a room, deleted or not.
pub async fn find_in_room<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    chatroom_id: i64,
    id: i64,
) -> sqlx::Result<Option<Message>> {
    sqlx::query_as(select_messages!("m.id = $1 AND m.chatroom_id = $2"))
        .bind(id)
        .bind(chatroom_id)
        .fetch_optional(executor)
        .await
}

/// Takes the room's next `seq` for an edit or a deletion; `None` if the
/// room does not exist. The room's activity time is left alone: an edit is
/// not news for the sidebar.
pub async fn take_seq(conn: &mut AnyConnection, chatroom_id: i64) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "UPDATE chatrooms SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq",
    )
    .bind(chatroom_id)
    .fetch_optional(conn)
    .await
}

/// Replaces a message's text, marking it edited at `at`.
pub async fn record_edit(
    conn: &mut AnyConnection,
    id: i64,
    content: &str,
    at: i64,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE messages SET content = $1, edited_at = $2 WHERE id = $3")
        .bind(content)
        .bind(at)
        .bind(id)
        .execute(conn)
        .await
        .map(drop)
}

/// Marks a message deleted at `at` and erases its text; the row stays, as
/// its `seq` is part of the room's sequence.
pub async fn record_delete(conn: &mut AnyConnection, id: i64, at: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE messages SET content = '', deleted_at = $1 WHERE id = $2")
        .bind(at)
        .bind(id)
        .execute(conn)
        .await
        .map(drop)
}

/// Records that `kind` happened to a message at the room's `seq`.
pub async fn insert_event(
    conn: &mut AnyConnection,
    message: &Message,
    seq: i64,
    kind: EventKind,
    at: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO message_events (chatroom_id, seq, message_id, kind, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(message.chatroom_id)
    .bind(seq)
    .bind(message.id)
    .bind(kind.as_str())
    .bind(at)
    .execute(conn)
    .await
    .map(drop)
}

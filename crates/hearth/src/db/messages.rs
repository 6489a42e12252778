//! The `messages` table.

use sqlx::{AnyConnection, FromRow};

use super::Db;

/// A query for [`Message`] rows (with the author's nickname) and `$where`.
macro_rules! select_messages {
    ($where:literal) => {
        concat!(
            "SELECT m.id, m.chatroom_id, m.seq, m.user_id, u.nickname, m.content, m.created_at \
             FROM messages m JOIN users u ON u.id = m.user_id WHERE ",
            $where
        )
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
}

/// The newest `limit` messages of a room, oldest first.
pub async fn latest(db: &Db, chatroom_id: i64, limit: i64) -> sqlx::Result<Vec<Message>> {
    let mut messages: Vec<Message> = sqlx::query_as(select_messages!(
        "m.chatroom_id = $1
         ORDER BY m.seq DESC LIMIT $2"
    ))
    .bind(chatroom_id)
    .bind(limit)
    .fetch_all(db)
    .await?;
    messages.reverse();
    Ok(messages)
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

/// A room's messages with `after < seq < before`, oldest first, at most `limit`.
pub async fn between(
    db: &Db,
    chatroom_id: i64,
    after: i64,
    before: i64,
    limit: i64,
) -> sqlx::Result<Vec<Message>> {
    sqlx::query_as(select_messages!(
        "m.chatroom_id = $1 AND m.seq > $2 AND m.seq < $3
         ORDER BY m.seq LIMIT $4"
    ))
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
    sqlx::query_as(select_messages!(
        "m.chatroom_id = $1 AND m.created_at >= $2
         ORDER BY m.seq LIMIT $3"
    ))
    .bind(chatroom_id)
    .bind(since_millis)
    .bind(limit)
    .fetch_all(db)
    .await
}

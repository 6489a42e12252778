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
/// is one already (then its `joined_at` stays). Idempotent, so the message
/// writer calls it for every batch of posts, inside the batch's transaction:
/// a message is never stored without its author being a member. Pairs are
/// deduplicated and inserted in key order, so two writers on two nodes take
/// their row locks in the same order and cannot deadlock each other.
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
            .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
            .collect();
        let sql = format!(
            "INSERT INTO memberships (chatroom_id, user_id, joined_at) VALUES {} \
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

/// How many members each of `rooms` has, in one grouped query over the
/// primary key; a room without members is absent from the map.
pub async fn counts(db: &Db, rooms: &[i64]) -> sqlx::Result<HashMap<i64, i64>> {
    if rooms.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<String> = (1..=rooms.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT chatroom_id, COUNT(*) FROM memberships WHERE chatroom_id IN ({}) \
         GROUP BY chatroom_id",
        ids.join(", ")
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
    let ids: Vec<String> = (2..=rooms.len() + 1).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT chatroom_id FROM memberships WHERE user_id = $1 AND chatroom_id IN ({})",
        ids.join(", ")
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
    let ids: Vec<String> = (1..=rooms.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT m.chatroom_id, u.id, u.nickname FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.chatroom_id IN ({}) ORDER BY lower(u.nickname)",
        ids.join(", ")
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

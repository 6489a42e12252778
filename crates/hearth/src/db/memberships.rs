//! The `memberships` table: who is in which room. Posting in a room or
//! creating it makes someone a member; nothing removes one yet.

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

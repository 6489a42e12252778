//! The `mentions` table: whom each message mentioned (migration 0007).
//! Rows are written in the writer's transaction, with the message they
//! belong to, and read only by [`super::memberships::unread`].

use sqlx::AnyConnection;

use crate::markup::Mentions;

/// The `user_id` standing for `@channel`: every member of the room.
pub const CHANNEL: i64 = 0;

/// Records whom message `seq` of `room`, by `author`, mentions: the members
/// named in `mentions` (by nickname, ignoring case) and the members among
/// `here` (those present, for `@here`), never the author; and one
/// [`CHANNEL`] row for `@channel`. Returns the members mentioned by name or
/// as present, ascending. Non-members named are not recorded: they cannot
/// read the room.
pub async fn record(
    conn: &mut AnyConnection,
    room: i64,
    seq: i64,
    author: i64,
    mentions: &Mentions,
    here: &[i64],
) -> sqlx::Result<Vec<i64>> {
    if mentions.channel {
        sqlx::query(
            "INSERT INTO mentions (chatroom_id, seq, user_id, author_id) VALUES ($1, $2, $3, $4)",
        )
        .bind(room)
        .bind(seq)
        .bind(CHANNEL)
        .bind(author)
        .execute(&mut *conn)
        .await?;
    }
    let here: &[i64] = if mentions.here { here } else { &[] };
    if mentions.nicknames.is_empty() && here.is_empty() {
        return Ok(Vec::new());
    }
    let names = super::placeholders(4, mentions.nicknames.len());
    let present = super::placeholders(4 + mentions.nicknames.len(), here.len());
    let mut wanted = Vec::new();
    if !mentions.nicknames.is_empty() {
        wanted.push(format!("lower(u.nickname) IN ({names})"));
    }
    if !here.is_empty() {
        wanted.push(format!("u.id IN ({present})"));
    }
    let sql = format!(
        "INSERT INTO mentions (chatroom_id, seq, user_id, author_id) \
         SELECT $1, $2, u.id, $3 FROM users u \
         JOIN memberships m ON m.user_id = u.id AND m.chatroom_id = $1 \
         WHERE u.id <> $3 AND ({}) RETURNING user_id",
        wanted.join(" OR ")
    );
    let mut query = sqlx::query_scalar::<_, i64>(&sql)
        .bind(room)
        .bind(seq)
        .bind(author);
    for name in &mentions.nicknames {
        query = query.bind(name.as_str());
    }
    for user in here {
        query = query.bind(*user);
    }
    let mut mentioned = query.fetch_all(&mut *conn).await?;
    mentioned.sort_unstable();
    Ok(mentioned)
}

/// Forgets whom message `seq` of `room` mentioned, before an edit records
/// them again from its new text.
pub async fn forget(conn: &mut AnyConnection, room: i64, seq: i64) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM mentions WHERE chatroom_id = $1 AND seq = $2")
        .bind(room)
        .bind(seq)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

//! Writing seeded rows in bulk: multi-row INSERTs in large transactions on
//! SQLite (the search index is built after, from the rows), `COPY` on
//! PostgreSQL (the secondary indexes of `messages` are dropped first and
//! built again, the same definitions, once the rows are in: building a
//! trigram index once is far faster than growing it row by row).

use std::str::FromStr;

use anyhow::Context;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, Executor};

/// One value of a row.
pub enum Value<'a> {
    Int(i64),
    Text(&'a str),
    Null,
}

impl From<i64> for Value<'_> {
    fn from(value: i64) -> Self {
        Value::Int(value)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(value: &'a str) -> Self {
        Value::Text(value)
    }
}

impl From<Option<i64>> for Value<'_> {
    fn from(value: Option<i64>) -> Self {
        value.map_or(Value::Null, Value::Int)
    }
}

impl<'a> From<&'a Option<String>> for Value<'a> {
    fn from(value: &'a Option<String>) -> Self {
        value.as_deref().map_or(Value::Null, Value::Text)
    }
}

/// A row of one table.
pub trait Row {
    /// The table.
    const TABLE: &'static str;
    /// Its columns, in the order of [`Row::values`].
    const COLUMNS: &'static [&'static str];
    /// The values, one per column.
    fn values(&self) -> Vec<Value<'_>>;
}

/// A `users` row.
pub struct UserRow {
    pub id: i64,
    pub email: String,
    pub nickname: String,
    pub password_hash: String,
    pub created_at: i64,
    pub role: &'static str,
}

impl Row for UserRow {
    const TABLE: &'static str = "users";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "email",
        "nickname",
        "password_hash",
        "created_at",
        "role",
    ];
    fn values(&self) -> Vec<Value<'_>> {
        vec![
            self.id.into(),
            self.email.as_str().into(),
            self.nickname.as_str().into(),
            self.password_hash.as_str().into(),
            self.created_at.into(),
            self.role.into(),
        ]
    }
}

/// A `chatrooms` row.
#[derive(Clone)]
pub struct RoomRow {
    pub id: i64,
    pub name: String,
    pub name_key: Option<String>,
    pub topic: String,
    pub topic_key: String,
    pub kind: &'static str,
    pub created_by: Option<i64>,
    pub direct_key: Option<String>,
    pub created_at: i64,
    pub last_seq: i64,
    pub active_at: i64,
}

impl Row for RoomRow {
    const TABLE: &'static str = "chatrooms";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "name",
        "name_key",
        "topic",
        "topic_key",
        "kind",
        "created_by",
        "direct_key",
        "created_at",
        "last_seq",
        "active_at",
    ];
    fn values(&self) -> Vec<Value<'_>> {
        vec![
            self.id.into(),
            self.name.as_str().into(),
            (&self.name_key).into(),
            self.topic.as_str().into(),
            self.topic_key.as_str().into(),
            self.kind.into(),
            self.created_by.into(),
            (&self.direct_key).into(),
            self.created_at.into(),
            self.last_seq.into(),
            self.active_at.into(),
        ]
    }
}

/// A `messages` row, as it is after its edits and deletion.
pub struct MessageRow {
    pub id: i64,
    pub chatroom_id: i64,
    pub seq: i64,
    pub user_id: i64,
    pub content: String,
    pub created_at: i64,
    pub edited_at: Option<i64>,
    pub deleted_at: Option<i64>,
}

impl Row for MessageRow {
    const TABLE: &'static str = "messages";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "chatroom_id",
        "seq",
        "user_id",
        "content",
        "created_at",
        "edited_at",
        "deleted_at",
    ];
    fn values(&self) -> Vec<Value<'_>> {
        vec![
            self.id.into(),
            self.chatroom_id.into(),
            self.seq.into(),
            self.user_id.into(),
            self.content.as_str().into(),
            self.created_at.into(),
            self.edited_at.into(),
            self.deleted_at.into(),
        ]
    }
}

/// A `mentions` row: message `seq` of a room names member `user_id`.
pub struct MentionRow {
    pub chatroom_id: i64,
    pub seq: i64,
    pub user_id: i64,
    pub author_id: i64,
}

impl Row for MentionRow {
    const TABLE: &'static str = "mentions";
    const COLUMNS: &'static [&'static str] = &["chatroom_id", "seq", "user_id", "author_id"];
    fn values(&self) -> Vec<Value<'_>> {
        vec![
            self.chatroom_id.into(),
            self.seq.into(),
            self.user_id.into(),
            self.author_id.into(),
        ]
    }
}

/// A `message_events` row: an edit or a deletion at its own `seq`.
pub struct EventRow {
    pub id: i64,
    pub chatroom_id: i64,
    pub seq: i64,
    pub message_id: i64,
    pub kind: &'static str,
    pub created_at: i64,
}

impl Row for EventRow {
    const TABLE: &'static str = "message_events";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "chatroom_id",
        "seq",
        "message_id",
        "kind",
        "created_at",
    ];
    fn values(&self) -> Vec<Value<'_>> {
        vec![
            self.id.into(),
            self.chatroom_id.into(),
            self.seq.into(),
            self.message_id.into(),
            self.kind.into(),
            self.created_at.into(),
        ]
    }
}

/// A `memberships` row with its read cursor.
pub struct MemberRow {
    pub chatroom_id: i64,
    pub user_id: i64,
    pub joined_at: i64,
    pub last_read_seq: i64,
}

impl Row for MemberRow {
    const TABLE: &'static str = "memberships";
    const COLUMNS: &'static [&'static str] =
        &["chatroom_id", "user_id", "joined_at", "last_read_seq"];
    fn values(&self) -> Vec<Value<'_>> {
        vec![
            self.chatroom_id.into(),
            self.user_id.into(),
            self.joined_at.into(),
            self.last_read_seq.into(),
        ]
    }
}

/// Where rows go.
pub enum Sink {
    Sqlite(SqliteConnection),
    Postgres {
        conn: PgConnection,
        /// `CREATE INDEX` statements of the indexes dropped for the load.
        dropped: Vec<String>,
    },
}

/// Most parameters in one SQLite statement (its limit is 32,766).
const SQLITE_PARAMETERS: usize = 8_000;

impl Sink {
    /// One connection to the migrated database at `url`. SQLite skips its
    /// fsyncs while seeding (a crash means seeding again); WAL stays.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("postgres") {
            let mut conn = PgConnection::connect(url).await?;
            conn.execute("SET synchronous_commit = off; SET maintenance_work_mem = '512MB'")
                .await?;
            Ok(Sink::Postgres {
                conn,
                dropped: Vec::new(),
            })
        } else {
            let options = SqliteConnectOptions::from_str(url)?
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Off)
                .pragma("cache_size", "-262144");
            Ok(Sink::Sqlite(
                SqliteConnection::connect_with(&options).await?,
            ))
        }
    }

    /// Writes `rows` in one transaction.
    async fn write<R: Row>(&mut self, rows: &[R]) -> anyhow::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        match self {
            Sink::Sqlite(conn) => {
                let mut tx = conn.begin().await?;
                insert_sqlite(&mut tx, rows).await?;
                tx.commit().await?;
            }
            Sink::Postgres { conn, .. } => copy_postgres(conn, rows).await?,
        }
        Ok(())
    }

    /// The users.
    pub async fn users(&mut self, rows: &[UserRow]) -> anyhow::Result<()> {
        self.write(rows).await
    }

    /// Rooms (their sequences are set by [`Sink::finish`]). On PostgreSQL,
    /// also drops the secondary indexes of `messages` for the load.
    pub async fn rooms(&mut self, rows: &[RoomRow]) -> anyhow::Result<()> {
        self.write(rows).await?;
        if let Sink::Postgres { conn, dropped } = self {
            let indexes: Vec<(String, String)> = sqlx::query_as(
                "SELECT i.relname::text, pg_get_indexdef(i.oid) FROM pg_index x \
                 JOIN pg_class i ON i.oid = x.indexrelid \
                 WHERE x.indrelid = 'messages'::regclass \
                 AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)",
            )
            .fetch_all(&mut *conn)
            .await?;
            for (name, definition) in indexes {
                conn.execute(format!("DROP INDEX {name}").as_str()).await?;
                dropped.push(definition);
            }
        }
        Ok(())
    }

    /// A batch of messages, the edits and deletions among them and whom
    /// they mention, in one transaction (events refer to their messages).
    pub async fn messages(
        &mut self,
        messages: &[MessageRow],
        events: &[EventRow],
        mentions: &[MentionRow],
    ) -> anyhow::Result<()> {
        match self {
            Sink::Sqlite(conn) => {
                let mut tx = conn.begin().await?;
                insert_sqlite(&mut tx, messages).await?;
                insert_sqlite(&mut tx, events).await?;
                insert_sqlite(&mut tx, mentions).await?;
                tx.commit().await?;
            }
            Sink::Postgres { conn, .. } => {
                copy_postgres(conn, messages).await?;
                copy_postgres(conn, events).await?;
                copy_postgres(conn, mentions).await?;
            }
        }
        Ok(())
    }

    /// Memberships and their read cursors.
    pub async fn memberships(&mut self, rows: &[MemberRow]) -> anyhow::Result<()> {
        self.write(rows).await
    }

    /// Sets each room's `last_seq` and `active_at`; on PostgreSQL builds the
    /// dropped indexes again, moves the id sequences past the ids written and
    /// runs `VACUUM ANALYZE` (what autovacuum would soon do); on SQLite
    /// checkpoints the WAL into the database file.
    pub async fn finish(&mut self, rooms: &[RoomRow]) -> anyhow::Result<()> {
        match self {
            Sink::Sqlite(conn) => {
                let mut tx = conn.begin().await?;
                for room in rooms {
                    sqlx::query("UPDATE chatrooms SET last_seq = $1, active_at = $2 WHERE id = $3")
                        .bind(room.last_seq)
                        .bind(room.active_at)
                        .bind(room.id)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").await?;
            }
            Sink::Postgres { conn, dropped } => {
                for room in rooms {
                    sqlx::query("UPDATE chatrooms SET last_seq = $1, active_at = $2 WHERE id = $3")
                        .bind(room.last_seq)
                        .bind(room.active_at)
                        .bind(room.id)
                        .execute(&mut *conn)
                        .await?;
                }
                for definition in dropped.drain(..) {
                    conn.execute(definition.as_str())
                        .await
                        .with_context(|| definition.clone())?;
                }
                for table in ["users", "chatrooms", "messages", "message_events"] {
                    conn.execute(
                        format!(
                            "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                             (SELECT MAX(id) FROM {table}))"
                        )
                        .as_str(),
                    )
                    .await?;
                }
                conn.execute("VACUUM ANALYZE").await?;
            }
        }
        Ok(())
    }
}

/// Multi-row INSERTs of `rows`, as many rows a statement as the parameter
/// limit allows.
async fn insert_sqlite<R: Row>(conn: &mut SqliteConnection, rows: &[R]) -> anyhow::Result<()> {
    let per_statement = (SQLITE_PARAMETERS / R::COLUMNS.len()).max(1);
    let one = format!("({})", vec!["?"; R::COLUMNS.len()].join(", "));
    for chunk in rows.chunks(per_statement) {
        let sql = format!(
            "INSERT INTO {} ({}) VALUES {}",
            R::TABLE,
            R::COLUMNS.join(", "),
            vec![one.as_str(); chunk.len()].join(", ")
        );
        let mut query = sqlx::query(&sql);
        for row in chunk {
            for value in row.values() {
                query = match value {
                    Value::Int(int) => query.bind(int),
                    Value::Text(text) => query.bind(text),
                    Value::Null => query.bind(None::<i64>),
                };
            }
        }
        query
            .execute(&mut *conn)
            .await
            .with_context(|| format!("inserting into {}", R::TABLE))?;
    }
    Ok(())
}

/// `rows` through `COPY … FROM STDIN` in text format.
async fn copy_postgres<R: Row>(conn: &mut PgConnection, rows: &[R]) -> anyhow::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut copy = conn
        .copy_in_raw(&format!(
            "COPY {} ({}) FROM STDIN",
            R::TABLE,
            R::COLUMNS.join(", ")
        ))
        .await?;
    let mut buf = String::with_capacity(1 << 20);
    for row in rows {
        for (i, value) in row.values().into_iter().enumerate() {
            if i > 0 {
                buf.push('\t');
            }
            match value {
                Value::Int(int) => buf.push_str(&int.to_string()),
                Value::Text(text) => copy_escape(text, &mut buf),
                Value::Null => buf.push_str("\\N"),
            }
        }
        buf.push('\n');
        if buf.len() >= 1 << 20 {
            copy.send(std::mem::take(&mut buf).into_bytes()).await?;
        }
    }
    if !buf.is_empty() {
        copy.send(buf.into_bytes()).await?;
    }
    copy.finish()
        .await
        .with_context(|| format!("copying into {}", R::TABLE))?;
    Ok(())
}

/// `text` as a field of `COPY`'s text format.
fn copy_escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::copy_escape;

    #[test]
    fn copy_fields_escape_what_copy_reads_specially() {
        let mut out = String::new();
        copy_escape("a\tb\nc\\d", &mut out);
        assert_eq!(out, "a\\tb\\nc\\\\d");
    }
}

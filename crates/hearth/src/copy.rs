//! `hearth copy`: moves a whole instance from one database to another — the
//! path from one SQLite node to PostgreSQL — and checks the counts after.

use anyhow::{Context, bail};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::{self, Db};

/// Rows read and written per round trip.
const CHUNK: i64 = 1000;

/// How many rows of each table were copied.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub users: i64,
    pub chatrooms: i64,
    pub messages: i64,
    pub message_events: i64,
    pub memberships: i64,
    pub mentions: i64,
    pub sessions: i64,
}

impl std::fmt::Display for CopyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} users, {} chatrooms, {} messages, {} edits and deletions, {} memberships, \
             {} mentions, {} sessions",
            self.users,
            self.chatrooms,
            self.messages,
            self.message_events,
            self.memberships,
            self.mentions,
            self.sessions
        )
    }
}

/// One table's copy: its columns, in the order both sides use, the first
/// `key` of them its primary key (read in that order, a chunk at a time).
struct Table {
    name: &'static str,
    key: usize,
    columns: &'static [(&'static str, Kind)],
}

#[derive(Clone, Copy)]
enum Kind {
    Int,
    /// An integer that may be NULL.
    MaybeInt,
    Text,
    /// Text that may be NULL.
    MaybeText,
}

const USERS: Table = Table {
    name: "users",
    key: 1,
    columns: &[
        ("id", Kind::Int),
        ("email", Kind::Text),
        ("nickname", Kind::Text),
        ("password_hash", Kind::Text),
        ("created_at", Kind::Int),
        ("role", Kind::Text),
    ],
};
const CHATROOMS: Table = Table {
    name: "chatrooms",
    key: 1,
    columns: &[
        ("id", Kind::Int),
        ("name", Kind::Text),
        // NULL for direct conversations, which have no name of their own.
        ("name_key", Kind::MaybeText),
        ("topic", Kind::Text),
        ("topic_key", Kind::Text),
        ("last_seq", Kind::Int),
        ("created_at", Kind::Int),
        ("active_at", Kind::Int),
        ("kind", Kind::Text),
        ("created_by", Kind::MaybeInt),
        ("archived_at", Kind::MaybeInt),
        ("direct_key", Kind::MaybeText),
        ("room_mentions", Kind::Text),
    ],
};
const MESSAGES: Table = Table {
    name: "messages",
    key: 1,
    columns: &[
        ("id", Kind::Int),
        ("chatroom_id", Kind::Int),
        ("seq", Kind::Int),
        ("user_id", Kind::Int),
        ("content", Kind::Text),
        ("created_at", Kind::Int),
        ("edited_at", Kind::MaybeInt),
        ("deleted_at", Kind::MaybeInt),
    ],
};
const MESSAGE_EVENTS: Table = Table {
    name: "message_events",
    key: 1,
    columns: &[
        ("id", Kind::Int),
        ("chatroom_id", Kind::Int),
        ("seq", Kind::Int),
        ("message_id", Kind::Int),
        ("kind", Kind::Text),
        ("created_at", Kind::Int),
    ],
};
const MEMBERSHIPS: Table = Table {
    name: "memberships",
    key: 2,
    columns: &[
        ("chatroom_id", Kind::Int),
        ("user_id", Kind::Int),
        ("joined_at", Kind::Int),
        ("last_read_seq", Kind::Int),
        ("notify", Kind::Text),
    ],
};
const MENTIONS: Table = Table {
    name: "mentions",
    key: 3,
    columns: &[
        ("chatroom_id", Kind::Int),
        ("user_id", Kind::Int),
        ("seq", Kind::Int),
        ("author_id", Kind::Int),
    ],
};
const SESSIONS: Table = Table {
    name: "sessions",
    key: 1,
    columns: &[
        ("token_hash", Kind::Text),
        ("user_id", Kind::Int),
        ("created_at", Kind::Int),
        ("expires_at", Kind::Int),
    ],
};

/// Copies every user, room, message and membership (and sessions if asked) from `from`
/// to `to`, in one transaction on the target, then compares the counts.
/// The target may hold empty rooms (a server started on it creates
/// "general"), but no users or messages.
pub async fn copy(from: &str, to: &str, with_sessions: bool) -> anyhow::Result<CopyReport> {
    let source = db::connect(from).await.context("opening the source")?;
    let target = db::connect(to).await.context("opening the target")?;
    for table in ["users", "messages"] {
        if count(&target, table).await? > 0 {
            bail!("the target already holds {table}; copy only into a fresh database");
        }
    }

    let mut tx = target.begin().await?;
    sqlx::query("DELETE FROM chatrooms")
        .execute(&mut *tx)
        .await?;
    let mut report = CopyReport {
        users: copy_table(&source, &mut tx, &USERS).await?,
        chatrooms: copy_table(&source, &mut tx, &CHATROOMS).await?,
        messages: copy_table(&source, &mut tx, &MESSAGES).await?,
        message_events: copy_table(&source, &mut tx, &MESSAGE_EVENTS).await?,
        memberships: copy_table(&source, &mut tx, &MEMBERSHIPS).await?,
        mentions: copy_table(&source, &mut tx, &MENTIONS).await?,
        sessions: 0,
    };
    if with_sessions {
        report.sessions = copy_table(&source, &mut tx, &SESSIONS).await?;
    }
    if to.starts_with("postgres") {
        // Rows came with their ids: move each identity past the largest, so new
        // rows do not collide. (SQLite's AUTOINCREMENT tracks this by itself.)
        for table in ["users", "chatrooms", "messages", "message_events"] {
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                 COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
            );
            sqlx::query(&sql).execute(&mut *tx).await?;
        }
    }
    tx.commit().await?;

    for (table, copied) in [
        ("users", report.users),
        ("chatrooms", report.chatrooms),
        ("messages", report.messages),
        ("message_events", report.message_events),
        ("memberships", report.memberships),
        ("mentions", report.mentions),
    ] {
        let (there, here) = (count(&source, table).await?, count(&target, table).await?);
        if there != here || here != copied {
            bail!("{table}: the source has {there}, the target {here} after copying {copied}");
        }
    }
    if to.starts_with("sqlite") {
        // Fold the write-ahead log into the database file now, so the copy is
        // whole in `hearth.db` even if only that file is moved afterwards.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&target)
            .await?;
    }
    source.close().await;
    target.close().await;
    Ok(report)
}

async fn count(db: &Db, table: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(db)
        .await
}

/// Where a table's read has got to: the key of the last row copied.
#[derive(Clone)]
enum Value {
    Int(i64),
    Text(String),
}

async fn copy_table(
    source: &Db,
    target: &mut sqlx::AnyConnection,
    table: &Table,
) -> anyhow::Result<i64> {
    let names: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
    let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
    let key = &names[..table.key];
    // Keyset paging by the whole primary key: a row value comparison, which
    // both engines order column by column.
    let select = format!(
        "SELECT {} FROM {} WHERE ({key}) > ({after}) ORDER BY {key} LIMIT ${limit}",
        names.join(", "),
        table.name,
        key = key.join(", "),
        after = placeholders[..table.key].join(", "),
        limit = table.key + 1,
    );
    let insert = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        table.name,
        names.join(", "),
        placeholders.join(", ")
    );
    let mut after: Vec<Value> = table.columns[..table.key]
        .iter()
        .map(|(_, kind)| match kind {
            // Keys are never NULL.
            Kind::Int | Kind::MaybeInt => Value::Int(i64::MIN),
            Kind::Text | Kind::MaybeText => Value::Text(String::new()),
        })
        .collect();
    let mut copied = 0;
    loop {
        let mut query = sqlx::query(&select);
        for value in &after {
            query = match value.clone() {
                Value::Int(value) => query.bind(value),
                Value::Text(value) => query.bind(value),
            };
        }
        let rows: Vec<AnyRow> = query.bind(CHUNK).fetch_all(source).await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let mut query = sqlx::query(&insert);
            for (index, (_, kind)) in table.columns.iter().enumerate() {
                query = match kind {
                    Kind::Int => query.bind(row.try_get::<i64, _>(index)?),
                    Kind::MaybeInt => query.bind(row.try_get::<Option<i64>, _>(index)?),
                    Kind::Text => query.bind(row.try_get::<String, _>(index)?),
                    Kind::MaybeText => query.bind(row.try_get::<Option<String>, _>(index)?),
                };
            }
            query.execute(&mut *target).await?;
        }
        let last = rows.last().expect("not empty");
        for (index, value) in after.iter_mut().enumerate() {
            *value = match value {
                Value::Int(_) => Value::Int(last.try_get(index)?),
                Value::Text(_) => Value::Text(last.try_get(index)?),
            };
        }
        copied += rows.len() as i64;
    }
    Ok(copied)
}

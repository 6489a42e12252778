//! The data layer: one module per table, plain functions taking an executor.
//!
//! Every query is portable SQL with `$n` placeholders, run through
//! `sqlx::Any`, so SQLite and PostgreSQL share it; [`connect`] is the one
//! seam that picks the engine and its migrations. The exception is the hot
//! path of posting on SQLite: [`sqlite_writer`] stores the writer's batches
//! through a connection of its own (measured there), chosen once at start.

pub mod chatrooms;
pub mod memberships;
pub mod mentions;
pub mod messages;
pub mod search;
pub mod search_index;
pub mod sessions;
pub mod sqlite_writer;
pub mod users;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use sqlx::any::AnyPoolOptions;
use sqlx::sqlite::SqliteConnectOptions;

/// The connection pool, whichever engine is behind it.
pub type Db = sqlx::AnyPool;

/// The SQLite database inside a data folder, created if missing.
pub fn sqlite_url(data_dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", data_dir.join("hearth.db").display())
}

/// The file of a SQLite database URL; `None` for PostgreSQL and for an
/// in-memory SQLite, which has no file to put beside it (no search index,
/// no writer's connection of its own).
pub fn sqlite_file(url: &str) -> anyhow::Result<Option<PathBuf>> {
    if !url.starts_with("sqlite:") {
        return Ok(None);
    }
    let options = SqliteConnectOptions::from_str(url)
        .with_context(|| format!("reading the database URL {url}"))?;
    let path = options.get_filename();
    if path.as_os_str() == ":memory:" || path.to_string_lossy().starts_with("file:") {
        return Ok(None);
    }
    Ok(Some(path.to_owned()))
}

/// Opens the database at `url` (`sqlite://…` or `postgres://…`) and runs
/// its migrations. SQLite runs in WAL mode with foreign keys on, with the
/// search index's file ([`search_index`]) attached as `search`.
pub async fn connect(url: &str) -> anyhow::Result<Db> {
    sqlx::any::install_default_drivers();
    let sqlite = url.starts_with("sqlite:");
    let index: Option<Arc<str>> = match sqlite_file(url)? {
        Some(file) => {
            let index = search_index::file_beside(&file);
            search_index::prepare(&index)?;
            let name = index
                .to_str()
                .with_context(|| format!("{} is not UTF-8", index.display()))?;
            Some(name.into())
        }
        None => None,
    };
    let pool = AnyPoolOptions::new()
        .max_connections(if sqlite { 8 } else { 16 })
        .after_connect(move |conn, _| {
            let index = index.clone();
            Box::pin(async move {
                if conn.backend_name() == "SQLite" {
                    if let Some(index) = index {
                        sqlx::query("ATTACH DATABASE $1 AS search")
                            .bind(index.to_string())
                            .execute(&mut *conn)
                            .await?;
                    }
                    // A post is acknowledged only after its commit reaches
                    // the disk: FULL syncs the WAL at every commit (the writer
                    // batches commits, so this costs one fsync per batch).
                    sqlx::query("PRAGMA synchronous = FULL")
                        .execute(&mut *conn)
                        .await?;
                } else {
                    // Every query here reads a few rows through an index, but
                    // PostgreSQL's estimates can be far above what it reads,
                    // and past `jit_above_cost` it compiles the query first,
                    // on every run: at the seeded million messages the room
                    // page took 109 ms with JIT and 12 ms without, and the
                    // admin's unread counts over 86 rooms 380-430 ms against
                    // 6-23 ms (BENCHMARKS.md, "History, search and unread
                    // counts at 1,000,000 messages").
                    sqlx::query("SET jit = off").execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await
        .with_context(|| format!("connecting to {}", redact(url)))?;
    if sqlite {
        // WAL lets readers run beside the one writer; sqlx also defaults to it,
        // but say it here so the file's mode never depends on a default.
        sqlx::query("PRAGMA journal_mode = WAL")
            .execute(&pool)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
    } else {
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
    }
    chatrooms::backfill_name_keys(&pool).await?;
    Ok(pool)
}

/// A database URL without its password, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Bytes of memory the embedded SQLite holds (its page caches, statements
/// and connections), 0 on PostgreSQL. The page caches grow with the data
/// touched, up to `cache_size` (SQLite's default, 2 MiB) per pooled connection.
pub fn sqlite_memory_bytes() -> i64 {
    // SAFETY: sqlite3_memory_used takes no arguments and only reads SQLite's
    // own counter (thread-safe in the serialized/multi-thread builds sqlx uses).
    unsafe { libsqlite3_sys::sqlite3_memory_used() }
}

/// Now, in Unix milliseconds, as stored in every `*_at` column.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Whether `error` is a violated unique constraint, on either engine.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

/// `count` numbered placeholders from `$first`, comma-separated, for an
/// `IN (…)` list built at run time: `placeholders(2, 3)` is `$2, $3, $4`.
pub fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }
}

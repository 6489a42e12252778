//! SQLite's search index, kept out of the message writer's commits.
//!
//! The FTS5 trigram index (`message_search`, read by [`super::search`])
//! lives in a file of its own beside the database (`hearth.db` →
//! `hearth-search.db`), attached to every connection as the schema
//! `search`. One thread owns its writing: after the writer commits, it
//! follows `messages` and `message_events` by id from where it stopped
//! (`search_progress`) and takes in the new messages, the edits and the
//! deletions, in a transaction of its own on that file. After each round
//! it also checkpoints the database's WAL, off the writer's commits.
//!
//! Why: while triggers kept the index in step inside the writer's
//! transaction, the index was 46 % of the writer thread's CPU with 100
//! speakers (`perf`: FTS5 flushing 23 %, merging 15 %, tokenizing 7 %), and
//! the writer's thread is the bound on how many messages a second SQLite
//! takes (BENCHMARKS.md, "Writes: the search index off the commit"). A
//! file of its own has its own write lock, so indexing runs beside the
//! writer instead of between its commits, and in rounds of thousands of
//! messages, which flush and merge far fewer FTS5 segments than a round per
//! commit. The index and its progress commit together, so after a crash it
//! carries on from where its file says; deleting the file rebuilds it.
//!
//! A search waits (at most [`SETTLE`]) until the index has taken in every
//! post and change committed before the search began ([`SearchIndex::settle`]):
//! indexing later than the commit is never visible as a missing result.
//! Rows written without the writer (`hearth copy`, `hearth-bench seed`) are
//! found by the thread's look every [`POLL`], or by [`build`].
//!
//! PostgreSQL keeps its trigram index on `messages` itself, updated in the
//! same transaction (a GIN index with its pending list is cheap to grow);
//! there is nothing to wait for.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::watch;

/// Most new messages taken in by one transaction: large enough that FTS5
/// writes few segments, small enough that a round of a big backlog (the
/// first start after an upgrade) commits every few tens of milliseconds.
const ROUND: i64 = 4096;

/// How often the thread looks for rows written other than by the writer.
const POLL: Duration = Duration::from_secs(1);

/// How long the thread gathers commits before a round, unless a search
/// waits: a round per commit flushed an FTS5 segment per commit and cost
/// as much as indexing inside the commit had (measured with 100 speakers:
/// the thread at 35 % of the server's samples, against 46 % of the
/// writer's before).
const GATHER: Duration = Duration::from_millis(200);

/// Longest a search waits for the index to take in what was committed
/// before it; past it, the search runs on the index as it is.
pub const SETTLE: Duration = Duration::from_secs(2);

/// How long a statement waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The index's tables, made in its file by [`prepare`] if missing.
/// `contentless_delete` lets an edit or a deletion remove a message's old
/// text by its id alone: the index keeps no copy of the text, and results
/// are read from `messages`.
const SCHEMA: &str = "
    CREATE VIRTUAL TABLE IF NOT EXISTS message_search USING fts5(
        content, content = '', contentless_delete = 1, tokenize = 'trigram');
    CREATE TABLE IF NOT EXISTS search_progress (
        id               INTEGER PRIMARY KEY CHECK (id = 1),
        database_key     TEXT    NOT NULL,
        messages_through INTEGER NOT NULL,
        events_through   INTEGER NOT NULL);
    INSERT OR IGNORE INTO search_progress (id, database_key, messages_through, events_through)
        VALUES (1, '', 0, 0);
";

/// Makes the index file `index` and its tables if missing, in WAL mode (its
/// readers, the pool's connections, never wait for its writer). Run by
/// [`super::connect`] before any connection attaches it: attaching opens an
/// existing file only, as the database's URL may not allow creating one.
pub fn prepare(index: &Path) -> anyhow::Result<()> {
    let conn = Connection::open(index)
        .with_context(|| format!("creating the search index {}", index.display()))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    anyhow::ensure!(
        mode.eq_ignore_ascii_case("wal"),
        "{}: journal_mode is {mode}, not WAL",
        index.display()
    );
    conn.execute_batch(SCHEMA)
        .with_context(|| format!("making the tables of {}", index.display()))?;
    Ok(())
}

/// The index's file beside the database file `db`: `hearth.db` →
/// `hearth-search.db`.
pub fn file_beside(db: &Path) -> PathBuf {
    let stem = db.file_stem().unwrap_or_default().to_string_lossy();
    let name = match db.extension() {
        Some(extension) => format!("{stem}-search.{}", extension.to_string_lossy()),
        None => format!("{stem}-search"),
    };
    db.with_file_name(name)
}

/// The handle the writer tells of its commits and searches wait on; cheap
/// to clone. On PostgreSQL (and an in-memory SQLite) it does nothing.
#[derive(Clone, Default)]
pub struct SearchIndex {
    shared: Option<Arc<Shared>>,
}

struct Shared {
    /// Commits that changed messages, counted by the writer after each.
    written: Arc<AtomicU64>,
    /// Wakes the thread; it ends once every handle is gone.
    wake: mpsc::SyncSender<Wake>,
    /// The count of `written` the index has taken in.
    indexed: watch::Receiver<u64>,
}

impl SearchIndex {
    /// Starts the indexing thread for the SQLite file `db` (its index file
    /// made by [`super::connect`] already); `None` gives a handle that does
    /// nothing.
    pub fn start(db: Option<&Path>) -> anyhow::Result<Self> {
        let Some(db) = db else {
            return Ok(Self::default());
        };
        let mut conn = open(db)?;
        adopt(&mut conn)?;
        // One commit to take in at start: whatever the file holds that the
        // index does not (a lost index file, an upgrade, rows copied in).
        let written = Arc::new(AtomicU64::new(1));
        let (wake, woken) = mpsc::sync_channel(4);
        let (told, indexed) = watch::channel(0);
        let counted = written.clone();
        std::thread::Builder::new()
            .name("hearth-search-index".into())
            .spawn(move || run(conn, &counted, &woken, &told))
            .context("starting the search index thread")?;
        Ok(Self {
            shared: Some(Arc::new(Shared {
                written,
                wake,
                indexed,
            })),
        })
    }

    /// Tells the thread that a commit changed messages: it takes them in
    /// within [`GATHER`], with whatever else was committed meanwhile.
    pub fn written(&self) {
        if let Some(shared) = &self.shared {
            shared.written.fetch_add(1, Ordering::Release);
            // Full means it is woken already and will see this count.
            let _ = shared.wake.try_send(Wake::Written);
        }
    }

    /// Waits, at most [`SETTLE`], until the index has taken in every commit
    /// told of before this call; the thread starts its round at once.
    pub async fn settle(&self) {
        let Some(shared) = &self.shared else {
            return;
        };
        let wanted = shared.written.load(Ordering::Acquire);
        let mut indexed = shared.indexed.clone();
        if *indexed.borrow() >= wanted {
            return;
        }
        // Full means wakes are waiting already; the thread reads them all.
        let _ = shared.wake.try_send(Wake::Searched);
        // A stopped thread (the sender gone) or a slow one: search anyway.
        let _ = tokio::time::timeout(SETTLE, indexed.wait_for(|&i| i >= wanted)).await;
    }
}

/// Why the thread is woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// The writer committed: gather for [`GATHER`], then a round.
    Written,
    /// A search waits: a round now.
    Searched,
}

/// The thread: a round [`GATHER`] after a commit, at once when a search
/// waits, and every [`POLL`]; rounds back to back while a backlog lasts.
/// Each count of `written` read before a round that leaves nothing behind
/// is published as taken in.
fn run(
    mut conn: Connection,
    written: &AtomicU64,
    woken: &mpsc::Receiver<Wake>,
    indexed: &watch::Sender<u64>,
) {
    // A backlog being taken in (the first start after an upgrade, a lost
    // index file): since when, and how many so far.
    let mut backlog: Option<(std::time::Instant, i64)> = None;
    loop {
        let count = written.load(Ordering::Acquire);
        match catch_up(&mut conn, ROUND) {
            Ok(Round {
                more: true,
                messages,
            }) => {
                let (since, total) = backlog.get_or_insert_with(|| {
                    tracing::info!("building the search index from the stored messages");
                    (std::time::Instant::now(), 0)
                });
                *total += messages;
                if *total % (64 * ROUND) < ROUND {
                    tracing::info!(
                        messages = *total,
                        seconds = since.elapsed().as_secs(),
                        "search index building"
                    );
                }
                continue;
            }
            Ok(Round {
                more: false,
                messages,
            }) => {
                if let Some((since, total)) = backlog.take() {
                    tracing::info!(
                        messages = total + messages,
                        seconds = since.elapsed().as_secs_f64(),
                        "the search index is built"
                    );
                }
                indexed.send_replace(count);
            }
            Err(error) => {
                tracing::error!(%error, "updating the search index failed; trying again");
            }
        }
        checkpoint(&conn);
        match woken.recv_timeout(POLL) {
            Ok(Wake::Searched) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(Wake::Written) => {
                if !gather(woken) {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
}

/// Copies what the database's WAL holds into the database file, beside the
/// writer and without waiting for it (`PASSIVE`), so that the writer's own
/// checkpoints, at its commits, are rare and short
/// ([`super::sqlite_writer`]). Nothing to do costs next to nothing.
fn checkpoint(conn: &Connection) {
    if let Err(error) = conn.query_row("PRAGMA main.wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
        tracing::debug!(%error, "checkpointing the database failed; the writer will");
    }
}

/// Waits [`GATHER`], or until a search waits; `false` once every handle is gone.
fn gather(woken: &mpsc::Receiver<Wake>) -> bool {
    let until = std::time::Instant::now() + GATHER;
    loop {
        let left = until.saturating_duration_since(std::time::Instant::now());
        match woken.recv_timeout(left) {
            Ok(Wake::Written) => {}
            Ok(Wake::Searched) | Err(mpsc::RecvTimeoutError::Timeout) => return true,
            Err(mpsc::RecvTimeoutError::Disconnected) => return false,
        }
    }
}

/// Opens the database file `db` with its index file attached as `search`,
/// for the indexing thread or [`build`]. The index is derived data, so its
/// commits need not wait for the disk (`synchronous = NORMAL`: a crash may
/// lose the last rounds, never the index's agreement with its progress).
fn open(db: &Path) -> anyhow::Result<Connection> {
    let index = file_beside(db);
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {} for the search index", db.display()))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let index_name = index
        .to_str()
        .with_context(|| format!("{} is not UTF-8", index.display()))?;
    conn.execute("ATTACH DATABASE ?1 AS search", [index_name])
        .with_context(|| format!("attaching {}", index.display()))?;
    conn.pragma_update(
        Some(rusqlite::DatabaseName::Attached("search")),
        "synchronous",
        "NORMAL",
    )?;
    Ok(conn)
}

/// Empties the index if it was not built from this database, or from a
/// later state of it than the file holds (a backup restored beside a newer
/// index): it is then built again from the start. Runs before the thread
/// and before the server takes a request.
fn adopt(conn: &mut Connection) -> anyhow::Result<()> {
    let tx = conn.transaction()?;
    let key: String = tx.query_row(
        "SELECT key FROM database_identity WHERE id = 1",
        [],
        |row| row.get(0),
    )?;
    let (owner, messages_through, events_through): (String, i64, i64) = tx.query_row(
        "SELECT database_key, messages_through, events_through FROM search.search_progress \
         WHERE id = 1",
        [],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    let (messages, events): (i64, i64) = tx.query_row(
        "SELECT (SELECT coalesce(max(id), 0) FROM messages), \
         (SELECT coalesce(max(id), 0) FROM message_events)",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    if owner == key && messages_through <= messages && events_through <= events {
        return Ok(());
    }
    if !owner.is_empty() {
        tracing::warn!(
            "the search index beside the database was not built from it as it is now \
             (another copy, or a backup put back); building it again"
        );
    }
    tx.execute(
        "INSERT INTO search.message_search (message_search) VALUES ('delete-all')",
        [],
    )?;
    tx.execute(
        "UPDATE search.search_progress SET database_key = ?1, messages_through = 0, \
         events_through = 0 WHERE id = 1",
        [key],
    )?;
    tx.commit()?;
    Ok(())
}

/// What one round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// New messages taken in.
    pub messages: i64,
    /// Whether more new messages wait than the round took.
    pub more: bool,
}

/// One round in one transaction: first the edits and deletions since the
/// last round of messages indexed already (each message's text as it is
/// now), then at most `most` new messages, then the progress. Reads see one
/// snapshot of the database, so a message edited after it was stored but
/// before it was indexed is indexed once, with its new text.
pub fn catch_up(conn: &mut Connection, most: i64) -> rusqlite::Result<Round> {
    // Deferred: the database file is only read (its writers never wait for
    // this), and only this thread writes the index file.
    let tx = conn.transaction()?;
    let (messages_through, events_through): (i64, i64) = tx.query_row(
        "SELECT messages_through, events_through FROM search.search_progress WHERE id = 1",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    // Each changed message once, by id, with its text now; `None` once deleted.
    let mut changed = std::collections::BTreeMap::new();
    let mut last_event = events_through;
    {
        let mut events = tx.prepare_cached(
            "SELECT e.id, m.id, CASE WHEN m.deleted_at IS NULL THEN m.content END \
             FROM message_events e JOIN messages m ON m.id = e.message_id \
             WHERE e.id > ?1 ORDER BY e.id",
        )?;
        let mut rows = events.query([events_through])?;
        while let Some(row) = rows.next()? {
            last_event = row.get(0)?;
            let message: i64 = row.get(1)?;
            // A message not indexed yet is indexed below with its text now.
            if message <= messages_through {
                changed.insert(message, row.get::<_, Option<String>>(2)?);
            }
        }
    }
    for (message, content) in &changed {
        tx.prepare_cached("DELETE FROM search.message_search WHERE rowid = ?1")?
            .execute([message])?;
        if let Some(content) = content {
            tx.prepare_cached(
                "INSERT INTO search.message_search (rowid, content) VALUES (?1, ?2)",
            )?
            .execute((message, content))?;
        }
    }
    let (count, through): (i64, Option<i64>) = tx
        .prepare_cached(
            "SELECT count(*), max(id) FROM \
             (SELECT id FROM messages WHERE id > ?1 ORDER BY id LIMIT ?2)",
        )?
        .query_row((messages_through, most), |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
    if let Some(through) = through {
        // One statement: FTS5 writes one segment for it.
        tx.prepare_cached(
            "INSERT INTO search.message_search (rowid, content) \
             SELECT id, content FROM messages \
             WHERE id > ?1 AND id <= ?2 AND deleted_at IS NULL ORDER BY id",
        )?
        .execute((messages_through, through))?;
    }
    let round = Round {
        messages: count,
        more: count >= most,
    };
    if through.is_some() || last_event > events_through {
        tx.prepare_cached(
            "UPDATE search.search_progress SET messages_through = ?1, events_through = ?2 \
             WHERE id = 1",
        )?
        .execute((through.unwrap_or(messages_through), last_event))?;
    }
    tx.commit()?;
    Ok(round)
}

/// Brings the index of the SQLite file `db` up to date, for tools that
/// write many rows at once (`hearth-bench seed`); returns the messages
/// taken in. A server running on the file does the same by itself.
pub fn build(db: &Path) -> anyhow::Result<i64> {
    let mut conn = open(db)?;
    adopt(&mut conn)?;
    let mut total = 0;
    loop {
        let round = catch_up(&mut conn, 64 * ROUND).context("indexing messages")?;
        total += round.messages;
        if !round.more {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages in the index matching `phrase`, through the pool.
    async fn matching(db: &crate::db::Db, phrase: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM search.message_search WHERE message_search MATCH $1",
        )
        .bind(format!("\"{phrase}\""))
        .fetch_one(db)
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_search_that_settles_sees_every_commit_told_of_before_it() {
        let folder = tempfile::tempdir().unwrap();
        let url = crate::db::sqlite_url(folder.path());
        let db = crate::db::connect(&url).await.unwrap();
        crate::db::chatrooms::ensure_general(&db).await.unwrap();
        let room: i64 = sqlx::query_scalar("SELECT id FROM chatrooms")
            .fetch_one(&db)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO users (id, email, nickname, password_hash, created_at) \
             VALUES (1, 'ann@example.com', 'ann', 'x', 1)",
        )
        .execute(&db)
        .await
        .unwrap();
        let index = SearchIndex::start(Some(&folder.path().join("hearth.db"))).unwrap();
        index.settle().await;
        for round in 1..=3_i64 {
            // A batch as big as a busy writer's, committed, then told of.
            sqlx::query(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) \
                 INSERT INTO messages (chatroom_id, seq, user_id, content, created_at) \
                 SELECT $1, ($2 - 1) * 3000 + i, 1, 'batch ' || $2 || ' line ' || i, 0 FROM n",
            )
            .bind(room)
            .bind(round)
            .execute(&db)
            .await
            .unwrap();
            index.written();
            index.settle().await;
            assert_eq!(matching(&db, &format!("batch {round} line")).await, 3000);
        }
        // An edit and a deletion of indexed messages, as the writer makes
        // them: the text changed and an event recorded, in one commit.
        for (seq, sql) in [
            (
                1,
                "UPDATE messages SET content = 'rewritten', edited_at = 1 WHERE seq = 1",
            ),
            (
                2,
                "UPDATE messages SET content = '', deleted_at = 1 WHERE seq = 2",
            ),
        ] {
            let mut tx = db.begin().await.unwrap();
            sqlx::query(sql).execute(&mut *tx).await.unwrap();
            sqlx::query(
                "INSERT INTO message_events (chatroom_id, seq, message_id, kind, created_at) \
                 SELECT chatroom_id, 9000 + $1, id, $2, 1 FROM messages WHERE seq = $1",
            )
            .bind(seq)
            .bind(if seq == 1 { "edited" } else { "deleted" })
            .execute(&mut *tx)
            .await
            .unwrap();
            tx.commit().await.unwrap();
        }
        index.written();
        index.settle().await;
        assert_eq!(matching(&db, "batch 1 line").await, 2998);
        assert_eq!(matching(&db, "rewritten").await, 1);
        db.close().await;
    }

    #[test]
    fn the_index_file_sits_beside_the_database() {
        assert_eq!(
            file_beside(Path::new("/data/hearth.db")),
            Path::new("/data/hearth-search.db")
        );
        assert_eq!(
            file_beside(Path::new("/data/chat")),
            Path::new("/data/chat-search")
        );
    }
}

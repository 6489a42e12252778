//! The message writer's own SQLite connection: the one hot path written by
//! hand on `rusqlite` instead of `sqlx`, and the SQL it runs.
//!
//! Why: storing a batch through `sqlx` on SQLite cost one hand-off to sqlx's
//! worker thread per statement (BEGIN, the sequence UPDATE, the INSERT, the
//! memberships, each post's mentions, COMMIT), and sqlx looked each of the
//! multi-row INSERT's ~500 parameters up by name. A profile of 100 speakers
//! (BENCHMARKS.md, run 4, "100 speakers") found sqlx's SQLite threads at
//! 50 % of the samples and switching between threads at 18 %, for 11–14k
//! messages/s. Here one thread owns one connection and takes the writer's
//! batches itself (one transaction and one fsync a batch; see
//! [`crate::writer`]), and every statement is prepared once and cached. Measured against the sqlx path
//! (`bench/speak-ab.sh`, 8 alternating rounds on a loaded 2-core machine):
//! server CPU per message 60–66 µs before, 39–44 µs after. The rate did
//! not move there (8–10k messages/s); on the same machine when quiet it was
//! 24,364 (`bench/run.sh`, run 8) against run 4's 11–14k. Then the search
//! index left the commit ([`super::search_index`]), this thread came to read
//! the writer's queue itself, and checkpoints moved off its commits:
//! 17.8k → 26.2k messages a second side by side (BENCHMARKS.md, "Writes:
//! the search index off the commit").
//!
//! Only the writer's posts take this path; everything else, edits and
//! deletions included, stays on the `sqlx` pool. The queries below mirror
//! [`super::messages::take_seqs`], [`super::messages::insert_rows`],
//! [`super::memberships::add_posters`] and [`super::mentions::record`]
//! statement for statement, so both engines store the same rows; PostgreSQL
//! keeps those.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior};
use tokio::sync::oneshot;

use super::mentions::CHANNEL;
use super::messages::NewRow;
use crate::markup::Mentions;

/// How long a statement waits for another connection's write lock (sign-ups,
/// rooms, edits on the `sqlx` pool) before it fails: sqlx's own default.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Statements kept prepared: the four fixed ones, and the mentions query in
/// each shape (count of names and of members present) seen lately.
const STATEMENT_CACHE: usize = 64;

/// WAL pages past which the writer checkpoints at its commit (SQLite's
/// default is 1,000). Below it the search index's thread checkpoints in the
/// background after each of its rounds: with 100 speakers, checkpoints made
/// at the writer's commits were 9 % of its CPU, and their fsync of the
/// database file stalled the commit that made them.
const WAL_CHECKPOINT_PAGES: i64 = 8192;

/// Work for the connection's thread.
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The thread that owns the writer's connection to a SQLite file.
pub struct SqliteWriter {
    /// To the thread; unbounded, but it holds one job at a time: the
    /// writer's loop, which runs until the writer stops ([`crate::writer`]).
    jobs: mpsc::Sender<Job>,
    /// Told once the thread has closed the connection.
    closed: oneshot::Receiver<()>,
}

/// The connection's thread has ended (it panicked).
#[derive(Debug, thiserror::Error)]
#[error("the SQLite writer thread has stopped")]
pub struct Stopped;

impl SqliteWriter {
    /// Opens the SQLite file of `url` (migrated already, by [`super::connect`])
    /// on a thread of its own. `None` for PostgreSQL and for an in-memory
    /// database, which a second connection would not share: those keep the
    /// `sqlx` path.
    pub fn open(url: &str) -> anyhow::Result<Option<Self>> {
        let Some(path) = super::sqlite_file(url)? else {
            return Ok(None);
        };
        let conn = open_connection(&path)
            .with_context(|| format!("opening {} for the message writer", path.display()))?;
        let (jobs, received) = mpsc::channel::<Job>();
        let (done, closed) = oneshot::channel();
        std::thread::Builder::new()
            .name("hearth-sqlite-writer".into())
            .spawn(move || {
                let mut conn = conn;
                while let Ok(job) = received.recv() {
                    job(&mut conn);
                }
                drop(conn);
                let _ = done.send(());
            })
            .context("starting the SQLite writer thread")?;
        Ok(Some(Self { jobs, closed }))
    }

    /// Hands `work` to the connection's thread now; the future gives what
    /// it returns. One hand-off there and one back, whatever `work` does;
    /// work runs in the order handed over.
    pub fn start<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> R + Send + 'static,
    ) -> impl Future<Output = Result<R, Stopped>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let sent = self.jobs.send(Box::new(move |conn| {
            let _ = reply.send(work(conn));
        }));
        async move {
            sent.map_err(|_| Stopped)?;
            answer.await.map_err(|_| Stopped)
        }
    }

    /// Closes the connection once the work already sent is done.
    pub async fn close(self) {
        drop(self.jobs);
        let _ = self.closed.await;
    }
}

/// Opens the file with the pragmas the `sqlx` pool's connections have
/// (`connect` and sqlx's defaults): WAL, `synchronous = FULL` (a post is
/// acknowledged only once its commit is on disk), foreign keys on, and a
/// busy timeout, as the pool's connections write to the same file.
fn open_connection(path: &std::path::Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode is {mode}, not WAL"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // The search index's thread checkpoints the WAL beside this connection
    // ([`super::search_index`]); this one only when that falls behind.
    conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Begins the batch's transaction, taking the write lock at once so that
/// the busy timeout, not a failed upgrade, orders it after the pool's writers.
pub fn begin(conn: &mut Connection) -> rusqlite::Result<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
}

/// Takes each room's next `count` sequence numbers and marks the rooms
/// active at `at`; returns the last of them by room, without the rooms that
/// do not exist. As [`super::messages::take_seqs`], one prepared UPDATE per
/// room: a statement here costs microseconds, not a hand-off.
pub fn take_seqs(
    tx: &Transaction<'_>,
    counts: &[(i64, i64)],
    at: i64,
) -> rusqlite::Result<HashMap<i64, i64>> {
    let mut update = tx.prepare_cached(
        "UPDATE chatrooms SET last_seq = last_seq + ?1, active_at = ?2 \
         WHERE id = ?3 RETURNING last_seq",
    )?;
    let mut last = HashMap::with_capacity(counts.len());
    for &(room, count) in counts {
        if let Some(seq) = update
            .query_row((count, at, room), |row| row.get(0))
            .optional()?
        {
            last.insert(room, seq);
        }
    }
    Ok(last)
}

/// Inserts `rows` into `messages`, one prepared statement per row; returns
/// their ids, in the order given. (While the search index was filled by a
/// trigger, the rows were staged in a temporary table and moved in one
/// statement, as FTS5 wrote a segment per statement; the index is now
/// filled apart, [`super::search_index`].)
pub fn insert_rows(tx: &Transaction<'_>, rows: &[NewRow<'_>]) -> rusqlite::Result<Vec<i64>> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO messages (chatroom_id, seq, user_id, content, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
    )?;
    rows.iter()
        .map(|row| {
            insert.query_row(
                (
                    row.chatroom_id,
                    row.seq,
                    row.user_id,
                    row.content,
                    row.created_at,
                ),
                |found| found.get(0),
            )
        })
        .collect()
}

/// Makes each poster of `(chatroom_id, user_id, seq)` a member since
/// `joined_at` unless one already, its read cursor moved up to its newest
/// post; in key order, as [`super::memberships::add_posters`].
pub fn add_posters(
    tx: &Transaction<'_>,
    posters: impl IntoIterator<Item = (i64, i64, i64)>,
    joined_at: i64,
) -> rusqlite::Result<()> {
    let mut newest: BTreeMap<(i64, i64), i64> = BTreeMap::new();
    for (room, user, seq) in posters {
        let entry = newest.entry((room, user)).or_insert(seq);
        *entry = (*entry).max(seq);
    }
    let mut upsert = tx.prepare_cached(
        "INSERT INTO memberships (chatroom_id, user_id, joined_at, last_read_seq) \
         VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (chatroom_id, user_id) DO UPDATE SET last_read_seq = CASE \
         WHEN excluded.last_read_seq > memberships.last_read_seq \
         THEN excluded.last_read_seq ELSE memberships.last_read_seq END",
    )?;
    for ((room, user), seq) in newest {
        upsert.execute((room, user, joined_at, seq))?;
    }
    Ok(())
}

/// Records whom message `seq` of `room`, by `author`, mentions, as
/// [`super::mentions::record`] does: the members named (ignoring case) or
/// present (for `@here`), never the author, and one [`CHANNEL`] row for
/// `@channel`. Returns the members mentioned by name or as present, ascending.
pub fn record_mentions(
    tx: &Transaction<'_>,
    room: i64,
    seq: i64,
    author: i64,
    mentions: &Mentions,
    here: &[i64],
) -> rusqlite::Result<Vec<i64>> {
    if mentions.channel {
        tx.prepare_cached(
            "INSERT INTO mentions (chatroom_id, seq, user_id, author_id) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute((room, seq, CHANNEL, author))?;
    }
    let here: &[i64] = if mentions.here { here } else { &[] };
    if mentions.nicknames.is_empty() && here.is_empty() {
        return Ok(Vec::new());
    }
    let numbered = |first: usize, count: usize| {
        (first..first + count)
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut wanted = Vec::new();
    if !mentions.nicknames.is_empty() {
        wanted.push(format!(
            "lower(u.nickname) IN ({})",
            numbered(4, mentions.nicknames.len())
        ));
    }
    if !here.is_empty() {
        wanted.push(format!(
            "u.id IN ({})",
            numbered(4 + mentions.nicknames.len(), here.len())
        ));
    }
    let sql = format!(
        "INSERT INTO mentions (chatroom_id, seq, user_id, author_id) \
         SELECT ?1, ?2, u.id, ?3 FROM users u \
         JOIN memberships m ON m.user_id = u.id AND m.chatroom_id = ?1 \
         WHERE u.id <> ?3 AND ({}) RETURNING user_id",
        wanted.join(" OR ")
    );
    let mut insert = tx.prepare_cached(&sql)?;
    let mut params: Vec<&dyn rusqlite::ToSql> = vec![&room, &seq, &author];
    params.extend(
        mentions
            .nicknames
            .iter()
            .map(|name| name as &dyn rusqlite::ToSql),
    );
    params.extend(here.iter().map(|user| user as &dyn rusqlite::ToSql));
    let mut mentioned = insert
        .query_map(params.as_slice(), |row| row.get(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    mentioned.sort_unstable();
    Ok(mentioned)
}

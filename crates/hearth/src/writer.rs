//! The message writer: the one place messages are stored, changed and
//! broadcast.
//!
//! Posts from every HTTP request and every `speak` go through one queue.
//! Whatever is waiting is stored in one transaction (group commit: one
//! fsync for the lot), and only after the commit is each message broadcast,
//! in the order of the room's sequence (through the [`crate::relay`]). So a
//! message is never broadcast unless it is stored, and subscribers see each
//! room's messages in order.
//!
//! Edits and deletions take the same path: each takes its room's next `seq`
//! after the batch's posts, in a transaction of its own, and is broadcast
//! after that commit, so the relay sees every room's sequence in order.
//!
//! On SQLite the posts are stored through the writer's own connection, whose
//! thread reads the queue itself and hands each committed batch back to the
//! writer task to broadcast ([`SqliteWriter`], prepared statements); on
//! PostgreSQL the task takes the batches and stores them through the pool.
//! [`Storage`] chooses once, at start. After each commit SQLite's search
//! index is told to take the new messages in ([`SearchIndex`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::value::RawValue;
use sqlx::Acquire;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::auth::CurrentUser;
use crate::db::chatrooms::Chatroom;
use crate::db::mentions;
use crate::db::messages::{self, EventKind, Message, NewRow, RoomEvent};
use crate::db::search_index::SearchIndex;
use crate::db::sqlite_writer::{self, SqliteWriter};
use crate::db::{Db, now_millis};
use crate::domain::MessageContent;
use crate::limits::{Rate, RateLimiter};
use crate::markup::Mentions;
use crate::payload::Encoded;
use crate::presence::PresenceHandle;
use crate::relay::{News, RelayHandle};

/// Most posts stored in one transaction.
const MAX_BATCH: usize = 512;
/// Posts waiting for the writer before new ones wait for room in the queue.
const QUEUE: usize = 4096;

/// A message to store: who, where, what.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The room.
    pub chatroom_id: i64,
    /// The author's id.
    pub user_id: i64,
    /// The author's nickname, for the broadcast.
    pub nickname: String,
    /// The text.
    pub content: MessageContent,
    /// The sender page's id for its pending copy ([`client_id`]), if any.
    pub client_id: Option<String>,
    /// Whom the text mentions ([`crate::markup::mentions`]); the poster may
    /// mention everyone if it says `@channel` or `@here` (checked before).
    pub mentions: Mentions,
    /// Who is present in the room, for `@here`; empty without it.
    pub here: Vec<i64>,
}

/// What a poster who may not mention a whole room is told.
pub const ROOM_MENTION_REFUSED: &str =
    "Only this room's creator or an admin may use @channel or @here in it";

/// Most members present one `@here` mentions.
const MAX_HERE: usize = 1000;

/// Who is present in `room` for the `mentions` a post by `user` makes
/// (empty without `@here`); `None` when they mention the whole room and the
/// room does not let `user` ([`Chatroom::may_mention_everyone`]).
pub fn addressed(
    room: &Chatroom,
    user: &CurrentUser,
    mentions: &Mentions,
    presence: &PresenceHandle,
) -> Option<Vec<i64>> {
    if mentions.is_broadcast() && !room.may_mention_everyone(user.id, user.admin) {
        return None;
    }
    Some(if mentions.here {
        presence.present(room.id, MAX_HERE)
    } else {
        Vec::new()
    })
}

/// A client's id for a message it shows as pending: 1 to 64 letters, digits,
/// `-` or `_` (a UUID fits); anything else is ignored.
pub fn client_id(raw: &str) -> Option<String> {
    let valid = (1..=64).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    valid.then(|| raw.to_owned())
}

/// Why a post was not stored.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("chatroom not found")]
    RoomNotFound,
    #[error("too many messages; try again in {0:?}")]
    RateLimited(std::time::Duration),
    #[error("the message writer has stopped")]
    Stopped,
    #[error("storing the message failed")]
    Database(#[source] DatabaseError),
}

/// Why a batch of posts was not stored, shared by each of its posts: from
/// `sqlx` or, on SQLite, from the writer's own connection.
pub type DatabaseError = Arc<dyn std::error::Error + Send + Sync>;

/// A message once committed, with its broadcast payload encoded once: the
/// relay sends it to subscribers and the poster's JSON answer is the same bytes.
#[derive(Debug)]
pub struct Stored {
    /// The stored row.
    pub message: Message,
    /// Its payload in the full format ([`Encoded::full`]), as broadcast.
    pub payload: Box<RawValue>,
}

struct Post {
    message: NewMessage,
    /// Who waits for the commit; `None` for a `speak`, whose answer is the
    /// broadcast itself.
    reply: Option<oneshot::Sender<Result<Stored, PostError>>>,
}

/// An edit or a deletion of a stored message, asked for by `user_id`.
#[derive(Debug, Clone)]
pub struct MessageChange {
    /// The room the message is in.
    pub chatroom_id: i64,
    /// The message.
    pub message_id: i64,
    /// Who asks; only the author may change a message.
    pub user_id: i64,
    /// The new text; `None` deletes the message.
    pub content: Option<MessageContent>,
    /// Whom the new text mentions: they replace whom the old one did
    /// (silently: an edit notifies nobody).
    pub mentions: Mentions,
}

/// Why an edit or a deletion was not made.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("message not found")]
    NotFound,
    #[error("only its author may change a message")]
    NotAuthor,
    #[error("too many messages; try again in {0:?}")]
    RateLimited(std::time::Duration),
    #[error("the message writer has stopped")]
    Stopped,
    #[error("storing the change failed")]
    Database(#[source] std::sync::Arc<sqlx::Error>),
}

/// An edit or deletion once committed, with its payload as broadcast.
#[derive(Debug)]
pub struct Changed {
    /// The message as it is now.
    pub message: Message,
    /// The change's place in the room's sequence; `None` when an edit
    /// left the text as it was, which changes and broadcasts nothing.
    pub seq: Option<i64>,
    /// Its payload (`message_edited` or `message_deleted`; the message's
    /// own for an edit that changed nothing).
    pub payload: Box<RawValue>,
}

struct Change {
    change: MessageChange,
    reply: oneshot::Sender<Result<Changed, ChangeError>>,
}

/// What the writer task is asked to do.
enum Job {
    Post(Post),
    Change(Change),
    /// Shutdown, sent by the task to the SQLite connection's thread: refuse
    /// new posts, store those queued, and end.
    Stop,
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Messages stored.
    pub stored: AtomicU64,
    /// Transactions committed (each stores a batch).
    pub commits: AtomicU64,
    /// Time spent storing batches, begin to commit, in microseconds.
    pub commit_micros: AtomicU64,
}

/// The handle requests use to post; cheap to clone.
#[derive(Clone)]
pub struct MessageWriter {
    /// To the writer task; bounded by [`QUEUE`], so a flood of posts waits
    /// instead of growing memory.
    posts: mpsc::Sender<Job>,
    stats: Arc<WriterStats>,
    /// Messages per user, over every path that posts.
    rate: Arc<RateLimiter<i64>>,
}

/// Where the writer stores posts, chosen once from the database URL: on a
/// SQLite file, the writer's own connection; else (PostgreSQL, an in-memory
/// SQLite) the pool. Edits and deletions always take the pool. SQLite's
/// search index is told of every commit and takes it in after.
pub struct Storage {
    db: Db,
    sqlite: Option<SqliteWriter>,
    index: SearchIndex,
}

impl Storage {
    /// Storage on `db`, opened from `url`, telling `index` of its commits.
    pub fn open(db: Db, url: &str, index: SearchIndex) -> anyhow::Result<Self> {
        Ok(Self {
            db,
            sqlite: SqliteWriter::open(url)?,
            index,
        })
    }
}

/// The writer task's side, started once the relay exists.
pub struct WriterTask {
    posts: mpsc::Receiver<Job>,
    /// To the queue without keeping it open: how the task tells the SQLite
    /// connection's thread, which reads the queue there, to stop.
    stopper: mpsc::WeakSender<Job>,
    stats: Arc<WriterStats>,
}

/// A writer handle and the task to run it with.
pub fn channel(rate: Option<Rate>) -> (MessageWriter, WriterTask) {
    let (posts, rx) = mpsc::channel(QUEUE);
    let stats = Arc::new(WriterStats::default());
    let stopper = posts.downgrade();
    (
        MessageWriter {
            posts,
            stats: stats.clone(),
            rate: Arc::new(RateLimiter::new(rate)),
        },
        WriterTask {
            posts: rx,
            stopper,
            stats,
        },
    )
}

impl MessageWriter {
    /// Counters.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Stores and broadcasts a message; returns it once committed.
    pub async fn post(&self, message: NewMessage) -> Result<Stored, PostError> {
        self.rate
            .check(&message.user_id)
            .map_err(PostError::RateLimited)?;
        let (reply, answer) = oneshot::channel();
        self.posts
            .send(Job::Post(Post {
                message,
                reply: Some(reply),
            }))
            .await
            .map_err(|_| PostError::Stopped)?;
        answer.await.map_err(|_| PostError::Stopped)?
    }

    /// Edits or deletes a message and broadcasts the change; returns it
    /// once committed. Changes count against the same rate as posts.
    pub async fn change(&self, change: MessageChange) -> Result<Changed, ChangeError> {
        self.rate
            .check(&change.user_id)
            .map_err(ChangeError::RateLimited)?;
        let (reply, answer) = oneshot::channel();
        self.posts
            .send(Job::Change(Change { change, reply }))
            .await
            .map_err(|_| ChangeError::Stopped)?;
        answer.await.map_err(|_| ChangeError::Stopped)?
    }

    /// Queues a message without waiting for its commit: the broadcast tells
    /// everyone, the sender included, that it is stored. A connection's
    /// speaks are queued in the order they arrive and stored in that order,
    /// so a client that speaks fast is not held to one commit per message
    /// (measured: one fsync per speak capped a speaker at a few thousand
    /// messages a second). Waits only while the writer's queue is full.
    pub async fn submit(&self, message: NewMessage) -> Result<(), PostError> {
        self.rate
            .check(&message.user_id)
            .map_err(PostError::RateLimited)?;
        self.posts
            .send(Job::Post(Post {
                message,
                reply: None,
            }))
            .await
            .map_err(|_| PostError::Stopped)
    }
}

impl WriterTask {
    /// Runs until `stop` is cancelled, then refuses new posts, stores and
    /// broadcasts those already queued, and returns.
    pub async fn run(self, mut storage: Storage, relay: RelayHandle, stop: CancellationToken) {
        match storage.sqlite.take() {
            Some(sqlite) => self.run_on_thread(sqlite, storage, relay, stop).await,
            None => self.run_on_pool(storage, relay, stop).await,
        }
    }

    /// On SQLite: the connection's thread reads the queue itself and stores
    /// batch after batch ([`serve`]); this task broadcasts each committed
    /// batch, in order, and makes the edits and deletions on the pool
    /// while the thread waits for them.
    ///
    /// Why the thread reads the queue: when this task took the batches and
    /// handed each to the thread, the thread waited for its next batch
    /// while this task was woken and scheduled among the connections' tasks
    /// (measured with 100 speakers: the thread was in its commits 96 % of
    /// the time by this task's clock, but on a CPU 44 %).
    async fn run_on_thread(
        self,
        sqlite: SqliteWriter,
        storage: Storage,
        relay: RelayHandle,
        stop: CancellationToken,
    ) {
        let WriterTask {
            posts,
            stopper,
            stats,
        } = self;
        let (done, mut committed) = mpsc::unbounded_channel();
        let serving = sqlite.start(move |conn| serve(conn, posts, &done));
        let mut stopping = false;
        loop {
            tokio::select! {
                next = committed.recv() => match next {
                    Some(Done::Posts { batch, results, took }) => {
                        count(&stats, &results, took);
                        storage.index.written();
                        broadcast(&relay, batch, results);
                    }
                    Some(Done::Change(change, made)) => {
                        make_change(&storage, &relay, change).await;
                        let _ = made.send(());
                    }
                    // The thread has stored what was queued, or stopped.
                    None => break,
                },
                _ = stop.cancelled(), if !stopping => {
                    stopping = true;
                    // In a task of its own: with the queue full, the send
                    // waits for the thread, which may wait for this task.
                    if let Some(queue) = stopper.upgrade() {
                        tokio::spawn(async move { queue.send(Job::Stop).await });
                    }
                }
            }
        }
        if serving.await.is_err() {
            tracing::error!("the SQLite writer thread stopped; posts are refused until a restart");
        }
        sqlite.close().await;
    }

    /// On PostgreSQL (or an in-memory SQLite): this task takes what waits,
    /// stores it through the pool in one transaction, and broadcasts it.
    async fn run_on_pool(mut self, storage: Storage, relay: RelayHandle, stop: CancellationToken) {
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        loop {
            let received = tokio::select! {
                received = self.posts.recv_many(&mut jobs, MAX_BATCH) => received,
                _ = stop.cancelled() => {
                    self.posts.close();
                    self.posts.recv_many(&mut jobs, MAX_BATCH).await
                }
            };
            if received == 0 {
                break;
            }
            let (batch, changes) = sort(&mut jobs);
            if !batch.is_empty() {
                let started = std::time::Instant::now();
                let results = store_all(&storage.db, &batch)
                    .await
                    .unwrap_or_else(|error| failed(&batch, Arc::new(error)));
                count(&self.stats, &results, started.elapsed());
                broadcast(&relay, batch, results);
            }
            // After the posts: a change takes a later `seq` than any post
            // of its room in this batch.
            for change in changes {
                make_change(&storage, &relay, change).await;
            }
        }
    }
}

/// What the SQLite connection's thread hands back, in order.
enum Done {
    /// A batch of posts, committed or failed, with how long storing took.
    Posts {
        batch: Vec<Post>,
        results: Vec<Result<StoredPost, PostError>>,
        took: std::time::Duration,
    },
    /// An edit or deletion for the task to make; the thread waits until
    /// told it is made, so it takes its `seq` after the posts before it
    /// and before the posts after it.
    Change(Change, oneshot::Sender<()>),
}

/// The SQLite connection's thread: takes whatever waits in the queue (up to
/// [`MAX_BATCH`] posts), stores the posts in one transaction, hands them
/// back, then each change, waiting for it to be made; until [`Job::Stop`],
/// after which it stores what was queued before and returns.
fn serve(
    conn: &mut rusqlite::Connection,
    mut posts: mpsc::Receiver<Job>,
    done: &mpsc::UnboundedSender<Done>,
) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    let mut stopping = false;
    loop {
        if !stopping {
            match posts.blocking_recv() {
                Some(job) => jobs.push(job),
                None => return,
            }
        }
        while jobs.len() < MAX_BATCH {
            match posts.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        if jobs.is_empty() {
            return;
        }
        if jobs.iter().any(|job| matches!(job, Job::Stop)) {
            posts.close();
            stopping = true;
        }
        let (batch, changes) = sort(&mut jobs);
        if !batch.is_empty() {
            let started = std::time::Instant::now();
            let results = store_all_sqlite(conn, &batch)
                .unwrap_or_else(|error| failed(&batch, Arc::new(error)));
            let took = started.elapsed();
            if done
                .send(Done::Posts {
                    batch,
                    results,
                    took,
                })
                .is_err()
            {
                return;
            }
        }
        for change in changes {
            let (made, waited) = oneshot::channel();
            if done.send(Done::Change(change, made)).is_err() {
                return;
            }
            let _ = waited.blocking_recv();
        }
    }
}

/// Splits `jobs` into the posts, in order, and the changes, in order.
fn sort(jobs: &mut Vec<Job>) -> (Vec<Post>, Vec<Change>) {
    let mut batch = Vec::with_capacity(jobs.len());
    let mut changes = Vec::new();
    for job in jobs.drain(..) {
        match job {
            Job::Post(post) => batch.push(post),
            Job::Change(change) => changes.push(change),
            Job::Stop => {}
        }
    }
    (batch, changes)
}

/// One failure for each post of a batch that was not stored.
fn failed(batch: &[Post], error: DatabaseError) -> Vec<Result<StoredPost, PostError>> {
    tracing::error!(%error, posts = batch.len(), "storing a batch of messages failed");
    batch
        .iter()
        .map(|_| Err(PostError::Database(error.clone())))
        .collect()
}

/// Counts a stored batch in the writer's metrics.
fn count(
    stats: &WriterStats,
    results: &[Result<StoredPost, PostError>],
    took: std::time::Duration,
) {
    stats.commits.fetch_add(1, Ordering::Relaxed);
    stats
        .commit_micros
        .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    let ok = results.iter().filter(|r| r.is_ok()).count();
    stats.stored.fetch_add(ok as u64, Ordering::Relaxed);
}

/// Broadcasts each stored post of a committed batch and answers its
/// poster, in the batch's order.
fn broadcast(relay: &RelayHandle, batch: Vec<Post>, results: Vec<Result<StoredPost, PostError>>) {
    for (post, result) in batch.into_iter().zip(results) {
        let Post {
            message: new,
            reply,
        } = post;
        let result = result.map(|(message, mentioned)| {
            let news = News {
                author: message.user_id,
                mentioned,
                channel: new.mentions.channel,
            };
            // A poster over HTTP is answered with the full payload; a
            // `speak` is answered by the broadcast, in its own format.
            let stored = reply.as_ref().map(|_| message.clone());
            let encoded = Encoded::post(message, new.client_id);
            let stored = stored.map(|message| Stored {
                message,
                payload: encoded.full().to_owned(),
            });
            relay.stored(new.chatroom_id, encoded.seq(), encoded, Some(news));
            stored
        });
        // The poster may have gone away; the message is stored regardless.
        match (reply, result) {
            (Some(reply), result) => {
                let result = result.map(|stored| stored.expect("made for a reply"));
                let _ = reply.send(result);
            }
            (None, Err(error)) => {
                tracing::warn!(%error, chatroom_id = new.chatroom_id, "a spoken message was not stored");
            }
            (None, Ok(_)) => {}
        }
    }
}

/// Makes an edit or deletion on the pool, broadcasts it, and answers the asker.
async fn make_change(storage: &Storage, relay: &RelayHandle, change: Change) {
    let result = apply_change(&storage.db, &change.change).await;
    if matches!(result, Ok(Applied { changed: true, .. })) {
        storage.index.written();
    }
    let result = result.map(|Applied { encoded, changed }| {
        let answer = Changed {
            message: encoded.message().clone(),
            seq: changed.then(|| encoded.seq()),
            payload: encoded.full().to_owned(),
        };
        if changed {
            relay.stored(answer.message.chatroom_id, encoded.seq(), encoded, None);
        }
        answer
    });
    // The asker may have gone away; the change is made regardless.
    let _ = change.reply.send(result);
}

/// An edit or deletion as made: the message at its new place, and whether
/// it changed anything (an edit to the same text does not).
struct Applied {
    encoded: Encoded,
    changed: bool,
}

/// Makes one edit or deletion in its own transaction. Changes are rare
/// beside posts, so they are not batched.
async fn apply_change(db: &Db, change: &MessageChange) -> Result<Applied, ChangeError> {
    let database = |error: sqlx::Error| {
        tracing::error!(%error, message_id = change.message_id, "changing a message failed");
        ChangeError::Database(Arc::new(error))
    };
    let mut conn = db.acquire().await.map_err(database)?;
    let mut tx = conn.begin().await.map_err(database)?;
    let mut message = messages::find_in_room(&mut *tx, change.chatroom_id, change.message_id)
        .await
        .map_err(database)?
        .filter(|m| m.deleted_at.is_none())
        .ok_or(ChangeError::NotFound)?;
    if message.user_id != change.user_id {
        return Err(ChangeError::NotAuthor);
    }
    if let Some(content) = &change.content
        && content.as_str() == message.content
    {
        return Ok(Applied {
            encoded: Encoded::post(message, None),
            changed: false,
        });
    }
    let seq = messages::take_seq(&mut tx, change.chatroom_id)
        .await
        .map_err(database)?
        .ok_or(ChangeError::NotFound)?;
    let at = now_millis();
    let kind = match &change.content {
        Some(content) => {
            messages::record_edit(&mut tx, message.id, content.as_str(), at)
                .await
                .map_err(database)?;
            message.content = content.as_str().to_owned();
            message.edited_at = Some(at);
            EventKind::Edited
        }
        None => {
            messages::record_delete(&mut tx, message.id, at)
                .await
                .map_err(database)?;
            message.content.clear();
            message.deleted_at = Some(at);
            EventKind::Deleted
        }
    };
    messages::insert_event(&mut tx, &message, seq, kind, at)
        .await
        .map_err(database)?;
    if kind == EventKind::Edited {
        mentions::forget(&mut tx, message.chatroom_id, message.seq)
            .await
            .map_err(database)?;
        mentions::record(
            &mut tx,
            message.chatroom_id,
            message.seq,
            message.user_id,
            &change.mentions,
            &[],
        )
        .await
        .map_err(database)?;
    }
    tx.commit().await.map_err(database)?;
    Ok(Applied {
        encoded: Encoded::event(RoomEvent { seq, kind, message }),
        changed: true,
    })
}

/// A stored post and the members it mentioned by name or as present.
type StoredPost = (Message, Vec<i64>);

/// How many posts of `batch` go to each room, rooms in the order first posted to.
fn count_per_room(batch: &[Post]) -> Vec<(i64, i64)> {
    let mut per_room: Vec<(i64, i64)> = Vec::new();
    for Post { message, .. } in batch {
        match per_room
            .iter_mut()
            .find(|(room, _)| *room == message.chatroom_id)
        {
            Some((_, count)) => *count += 1,
            None => per_room.push((message.chatroom_id, 1)),
        }
    }
    per_room
}

/// Gives each post the next of its room's numbers taken (`last_seq`: the
/// last of them by room, without the rooms that do not exist): the rows to
/// insert, and each post's `seq`, `None` where its room does not exist.
fn number<'a>(
    batch: &'a [Post],
    per_room: &[(i64, i64)],
    last_seq: &std::collections::HashMap<i64, i64>,
    created_at: i64,
) -> (Vec<NewRow<'a>>, Vec<Option<i64>>) {
    let mut next_seq: std::collections::HashMap<i64, i64> = per_room
        .iter()
        .filter_map(|(room, count)| Some((*room, last_seq.get(room)? - count + 1)))
        .collect();
    let mut rows = Vec::with_capacity(batch.len());
    let mut seqs = Vec::with_capacity(batch.len());
    for Post { message, .. } in batch {
        let seq = next_seq.get_mut(&message.chatroom_id).map(|next| {
            *next += 1;
            *next - 1
        });
        if let Some(seq) = seq {
            rows.push(NewRow {
                chatroom_id: message.chatroom_id,
                seq,
                user_id: message.user_id,
                content: message.content.as_str(),
                created_at,
            });
        }
        seqs.push(seq);
    }
    (rows, seqs)
}

/// Each post's result once its batch has committed: the stored message and
/// whom it mentioned, or [`PostError::RoomNotFound`].
fn results(
    batch: &[Post],
    seqs: Vec<Option<i64>>,
    ids: Vec<i64>,
    mentioned: Vec<Vec<i64>>,
    created_at: i64,
) -> Vec<Result<StoredPost, PostError>> {
    let mut ids = ids.into_iter();
    batch
        .iter()
        .zip(seqs)
        .zip(mentioned)
        .map(|((Post { message, .. }, seq), mentioned)| {
            let seq = seq.ok_or(PostError::RoomNotFound)?;
            let message = Message {
                id: ids.next().expect("one id per stored row"),
                chatroom_id: message.chatroom_id,
                seq,
                user_id: message.user_id,
                nickname: message.nickname.clone(),
                content: message.content.as_str().to_owned(),
                created_at,
                edited_at: None,
                deleted_at: None,
            };
            Ok((message, mentioned))
        })
        .collect()
}

/// Stores a batch through the pool (PostgreSQL): one statement per step,
/// each batching its rows.
async fn store_all(db: &Db, batch: &[Post]) -> sqlx::Result<Vec<Result<StoredPost, PostError>>> {
    let mut conn = db.acquire().await?;
    let mut tx = conn.begin().await?;
    // One sequence update for the whole batch; each post then takes the
    // next number of its room.
    let per_room = count_per_room(batch);
    let last_seq = messages::take_seqs(&mut tx, &per_room).await?;
    let created_at = now_millis();
    let (rows, seqs) = number(batch, &per_room, &last_seq, created_at);
    let ids = messages::insert_rows(&mut tx, &rows).await?;
    // Posting in a room makes one a member of it (the directory counts
    // them) and reads what came before the post.
    crate::db::memberships::add_posters(
        &mut tx,
        rows.iter()
            .map(|row| (row.chatroom_id, row.user_id, row.seq)),
        created_at,
    )
    .await?;
    // Whom each post mentions, once its author is a member.
    let mut mentioned = Vec::with_capacity(batch.len());
    for (Post { message, .. }, seq) in batch.iter().zip(&seqs) {
        mentioned.push(match seq {
            Some(seq) if !message.mentions.is_empty() => {
                mentions::record(
                    &mut tx,
                    message.chatroom_id,
                    *seq,
                    message.user_id,
                    &message.mentions,
                    &message.here,
                )
                .await?
            }
            _ => Vec::new(),
        });
    }
    tx.commit().await?;
    Ok(results(batch, seqs, ids, mentioned, created_at))
}

/// Stores a batch through the writer's own SQLite connection, on its
/// thread: the same steps and rows as [`store_all`], in one IMMEDIATE
/// transaction of prepared statements. (Measured: through sqlx each step
/// was a hand-off to sqlx's worker thread; with 100 speakers those threads
/// took 50 % of the server's samples and switching threads 18 %; see
/// [`crate::db::sqlite_writer`].)
fn store_all_sqlite(
    conn: &mut rusqlite::Connection,
    batch: &[Post],
) -> rusqlite::Result<Vec<Result<StoredPost, PostError>>> {
    let tx = sqlite_writer::begin(conn)?;
    let per_room = count_per_room(batch);
    let last_seq = sqlite_writer::take_seqs(&tx, &per_room, now_millis())?;
    let created_at = now_millis();
    let (rows, seqs) = number(batch, &per_room, &last_seq, created_at);
    let ids = sqlite_writer::insert_rows(&tx, &rows)?;
    sqlite_writer::add_posters(
        &tx,
        rows.iter()
            .map(|row| (row.chatroom_id, row.user_id, row.seq)),
        created_at,
    )?;
    let mut mentioned = Vec::with_capacity(batch.len());
    for (Post { message, .. }, seq) in batch.iter().zip(&seqs) {
        mentioned.push(match seq {
            Some(seq) if !message.mentions.is_empty() => sqlite_writer::record_mentions(
                &tx,
                message.chatroom_id,
                *seq,
                message.user_id,
                &message.mentions,
                &message.here,
            )?,
            _ => Vec::new(),
        });
    }
    tx.commit()?;
    Ok(results(batch, seqs, ids, mentioned, created_at))
}

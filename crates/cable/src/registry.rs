//! The stream registry: which connections follow which stream, under which
//! identifier, and the fan-out of one broadcast to all of them.
//!
//! Streams are spread over shards, each behind its own `RwLock`, so broadcasts
//! to different rooms do not queue behind one lock, and a broadcast only takes
//! a read lock. A broadcast encodes its frame once per distinct identifier
//! string and hands every subscriber a reference-counted copy of those bytes.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::task::{Poll, Waker};

use bytes::Bytes;
use serde_json::value::RawValue;
use tokio::sync::Notify;

use crate::channel::Formats;
use crate::protocol::{self, Dialect, Position};
use crate::wire;

/// A connection's id, unique within one process.
pub type ConnId = u64;

const SHARDS: usize = 32;

/// Which subscription and stream a positioned frame belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamKey {
    /// The subscription's identifier, as the client sent it.
    pub identifier: Arc<str>,
    /// The stream.
    pub stream: Arc<str>,
}

/// A frame for connections. Frames for extended clients carry their
/// stream position, so the session can skip what history already sent.
#[derive(Debug)]
pub struct Frame {
    /// The whole WebSocket frame, header included, as it goes on the wire.
    pub frame: Bytes,
    /// The frame's subscription, stream and offset, when it has one.
    pub position: Option<(Arc<StreamKey>, i64)>,
    /// Set on the engine's notice that the connection's subscriptions to
    /// this stream end ([`crate::Cable::end_subscriptions`]); such a frame
    /// has no bytes of its own.
    pub ends: Option<Arc<str>>,
}

impl Frame {
    /// A frame without a stream position.
    pub fn unpositioned(frame: Bytes) -> Self {
        Self {
            frame,
            position: None,
            ends: None,
        }
    }

    /// The notice that a connection's subscriptions to `stream` end.
    pub fn ending(stream: &str) -> Self {
        Self {
            frame: Bytes::new(),
            position: None,
            ends: Some(Arc::from(stream)),
        }
    }

    /// The frame's JSON text.
    pub fn text(&self) -> &str {
        std::str::from_utf8(wire::payload(&self.frame)).expect("frames are made from strings")
    }
}

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        &self.frame
    }
}

/// A frame queued for one connection: one pointer, shared by every
/// subscriber of the same group. Keeping queue slots a pointer wide keeps
/// each idle connection's queue block small (measured: 32 slots of 56 bytes
/// each were 1.7 KiB of every connection's memory).
pub type Outgoing = Arc<Frame>;

/// The sending side of a connection's bounded frame queue.
#[derive(Clone, Debug)]
pub struct Outbox {
    queue: Arc<Queue>,
    /// The connection's send budget, shared with its session.
    budget: Arc<Budget>,
}

/// A connection's frame queue: a deque behind a lock, and the waker of the
/// session waiting on it.
///
/// Not tokio's `mpsc` channel: its shared state is two cache-padded halves
/// and a first block of 32 slots, 800 bytes per connection (measured with
/// the `dhat-heap` feature; BENCHMARKS.md, run 6) for a queue an idle
/// connection finds empty but for a ping every 3 s. This one takes ~90
/// bytes and a slot per waiting frame. The lock is held to push or pop one
/// frame, never across an await.
#[derive(Debug)]
struct Queue {
    capacity: usize,
    state: Mutex<QueueState>,
}

#[derive(Debug, Default)]
struct QueueState {
    frames: VecDeque<Outgoing>,
    /// The session's waker while it waits for a frame.
    waker: Option<Waker>,
    /// The session is gone: frames are refused.
    closed: bool,
}

/// Slots a drained queue may keep; a burst's larger deque is let go, so a
/// connection idle after a busy minute holds no more than this.
const KEPT_SLOTS: usize = 64;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The receiving side of a connection's frame queue: its session's.
/// Dropping it closes the queue.
#[derive(Debug)]
pub struct Inbox {
    queue: Arc<Queue>,
}

impl Inbox {
    /// The next frame, once there is one.
    pub async fn recv(&mut self) -> Outgoing {
        std::future::poll_fn(|cx| {
            let mut state = lock(&self.queue.state);
            match state.frames.pop_front() {
                Some(frame) => Poll::Ready(frame),
                None => {
                    if !state
                        .waker
                        .as_ref()
                        .is_some_and(|waker| waker.will_wake(cx.waker()))
                    {
                        state.waker = Some(cx.waker().clone());
                    }
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// The next frame, if one is queued.
    pub fn try_recv(&mut self) -> Option<Outgoing> {
        let mut state = lock(&self.queue.state);
        let frame = state.frames.pop_front();
        if frame.is_none() && state.frames.capacity() > KEPT_SLOTS {
            state.frames = VecDeque::new();
        }
        frame
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let frames = {
            let mut state = lock(&self.queue.state);
            state.closed = true;
            state.waker = None;
            std::mem::take(&mut state.frames)
        };
        // Frames are dropped outside the lock.
        drop(frames);
    }
}

/// Everything one connection has buffered on its way out — frames queued
/// for it, frames its session holds or is writing, replies — counted in
/// bytes against one limit. A broadcast that would cross the limit is lost,
/// so the connection must be dropped (`too_slow`) before it writes anything
/// more; the session waits for that with [`Budget::wait`].
#[derive(Debug)]
pub struct Budget {
    /// Bytes buffered now.
    bytes: AtomicUsize,
    /// Most bytes a broadcast may find buffered and still be queued.
    limit: usize,
    exceeded: AtomicBool,
    notify: Notify,
}

impl Budget {
    fn new(limit: usize) -> Self {
        Self {
            bytes: AtomicUsize::new(0),
            limit,
            exceeded: AtomicBool::new(false),
            notify: Notify::new(),
        }
    }

    fn raise(&self) {
        self.exceeded.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// Counts `bytes` unless that would cross the limit.
    fn try_charge(&self, bytes: usize) -> bool {
        let before = self.bytes.fetch_add(bytes, Ordering::AcqRel);
        if before + bytes > self.limit {
            self.bytes.fetch_sub(bytes, Ordering::AcqRel);
            false
        } else {
            true
        }
    }

    /// Counts bytes the session itself buffers (replies to the client's own
    /// commands); they may cross the limit, and then the next broadcast is
    /// the one refused.
    pub fn charge(&self, bytes: usize) {
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
    }

    /// Gives back bytes written to the socket or dropped unwritten.
    pub fn release(&self, bytes: usize) {
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Bytes buffered now.
    pub fn buffered(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    /// Whether a frame has been lost to the limit or a full queue.
    pub fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Acquire)
    }

    /// Resolves once a frame has been lost (at once if one already was).
    pub async fn wait(&self) {
        if !self.exceeded() {
            // `raise` stores a permit if nobody waits yet, so a raise
            // between the check and this wait is not missed.
            self.notify.notified().await;
        }
    }
}

/// What happened to one frame offered to an [`Outbox`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queued for writing.
    Queued,
    /// The queue or the byte budget was full: the connection is too slow
    /// and will be dropped.
    Full,
    /// The connection is gone.
    Closed,
}

impl Outbox {
    /// A queue of at most `capacity` frames and `budget` buffered bytes, its
    /// receiving end, and the budget the session shares.
    pub fn new(capacity: usize, budget: usize) -> (Self, Inbox, Arc<Budget>) {
        let queue = Arc::new(Queue {
            capacity: capacity.max(1),
            state: Mutex::default(),
        });
        let budget = Arc::new(Budget::new(budget));
        (
            Self {
                queue: queue.clone(),
                budget: budget.clone(),
            },
            Inbox { queue },
            budget,
        )
    }

    /// Queues a frame without waiting; a full queue or budget marks the
    /// connection too slow. A queued frame stays charged to the budget until
    /// the session writes or drops it.
    pub fn offer(&self, frame: Outgoing) -> Offer {
        let bytes = frame.frame.len();
        if !self.budget.try_charge(bytes) {
            self.budget.raise();
            return Offer::Full;
        }
        let mut state = lock(&self.queue.state);
        if state.closed {
            drop(state);
            self.budget.release(bytes);
            return Offer::Closed;
        }
        if state.frames.len() >= self.queue.capacity {
            drop(state);
            self.budget.release(bytes);
            self.budget.raise();
            return Offer::Full;
        }
        state.frames.push_back(frame);
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        Offer::Queued
    }
}

/// The subscribers of one stream that used one identifier string and one
/// dialect: they all get the very same bytes.
#[derive(Debug)]
struct Group {
    key: Arc<StreamKey>,
    dialect: Dialect,
    /// Which of a broadcast's formats the group takes ([`Formats`]).
    format: u8,
    subscribers: HashMap<ConnId, Outbox>,
}

type Shard = HashMap<Arc<str>, Vec<Group>>;

/// How one broadcast went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Frames queued to subscribers.
    pub queued: usize,
    /// Subscribers whose queue was full or closed.
    pub dropped: usize,
}

/// Told when a stream gets its first subscriber on this node and when it
/// loses its last, e.g. so a broker follows only the streams served here.
/// Called under the stream's shard lock, so the calls for one stream arrive
/// in order: it must not block (queue the change and return).
pub trait StreamWatcher: Send + Sync + 'static {
    /// `stream` is followed (`true`) or no longer followed (`false`) here.
    fn followed(&self, stream: &str, followed: bool);
}

/// Every stream followed on this node and its subscribers.
pub struct Registry {
    shards: Box<[RwLock<Shard>]>,
    hasher: RandomState,
    /// Set once, before clients arrive; see [`StreamWatcher`].
    watcher: OnceLock<Box<dyn StreamWatcher>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: RandomState::new(),
            watcher: OnceLock::new(),
        }
    }
}

impl Registry {
    /// Tells `watcher` of every stream that gains its first or loses its last
    /// subscriber from now on; only the first watcher set is kept.
    pub fn watch(&self, watcher: Box<dyn StreamWatcher>) {
        let _ = self.watcher.set(watcher);
    }

    fn followed(&self, stream: &str, followed: bool) {
        if let Some(watcher) = self.watcher.get() {
            watcher.followed(stream, followed);
        }
    }

    fn shard_index(&self, stream: &str) -> usize {
        self.hasher.hash_one(stream) as usize % self.shards.len()
    }

    fn shard(&self, stream: &str) -> &RwLock<Shard> {
        &self.shards[self.shard_index(stream)]
    }

    /// Adds a subscriber taking `format` of each broadcast; adding the same
    /// one twice keeps one entry. Returns the stream's name as the registry
    /// holds it, for the subscriber to keep without a copy of its own.
    pub fn add(
        &self,
        stream: &str,
        identifier: &Arc<str>,
        dialect: Dialect,
        format: u8,
        conn: ConnId,
        outbox: &Outbox,
    ) -> Arc<str> {
        let mut shard = self
            .shard(stream)
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Look up before inserting: most adds join a stream that exists, and
        // `entry` would allocate the key every time.
        if !shard.contains_key(stream) {
            shard.insert(Arc::from(stream), Vec::new());
            self.followed(stream, true);
        }
        let name = shard.get_key_value(stream).expect("just ensured").0.clone();
        let groups = shard.get_mut(stream).expect("just ensured");
        // One identifier names one format: the channel chose it from the
        // identifier's params.
        let found = groups
            .iter()
            .position(|g| g.key.identifier == *identifier && g.dialect == dialect);
        let group = match found {
            Some(index) => &mut groups[index],
            None => {
                groups.push(Group {
                    key: Arc::new(StreamKey {
                        identifier: identifier.clone(),
                        stream: name.clone(),
                    }),
                    dialect,
                    format,
                    subscribers: HashMap::new(),
                });
                groups.last_mut().expect("just pushed")
            }
        };
        group.subscribers.insert(conn, outbox.clone());
        name
    }

    /// Removes a subscriber, and the stream once nobody follows it.
    pub fn remove(&self, stream: &str, identifier: &str, conn: ConnId) {
        self.prune(stream, |group| {
            if &*group.key.identifier == identifier {
                group.subscribers.remove(&conn);
            }
        });
    }

    /// Removes every subscriber of `stream` that is one of `conns`, under
    /// any identifier: once this returns, no broadcast reaches them.
    pub fn remove_conns(&self, stream: &str, conns: &std::collections::HashSet<ConnId>) {
        self.prune(stream, |group| {
            group.subscribers.retain(|conn, _| !conns.contains(conn));
        });
    }

    /// Lets `prune` take subscribers out of each group of `stream`, then
    /// drops the groups left empty, and the stream once nobody follows it.
    fn prune(&self, stream: &str, mut prune: impl FnMut(&mut Group)) {
        let mut shard = self
            .shard(stream)
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(groups) = shard.get_mut(stream) else {
            return;
        };
        groups.retain_mut(|group| {
            prune(group);
            !group.subscribers.is_empty()
        });
        if groups.is_empty() {
            shard.remove(stream);
            self.followed(stream, false);
        }
    }

    /// Queues `message`, in the format each takes, for every subscriber of
    /// `stream`; `offset` is its place in the stream's history of `epoch`,
    /// if it has one.
    pub fn deliver<M: Formats + ?Sized>(
        &self,
        stream: &str,
        message: &M,
        offset: Option<i64>,
        epoch: &str,
    ) -> Delivery {
        let shard = self
            .shard(stream)
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match shard.get(stream) {
            Some(groups) => deliver_to(groups, stream, message, offset, epoch, |_| false),
            None => Delivery::default(),
        }
    }

    /// Queues `message` (without a stream position) for every subscriber of
    /// `stream` that does not also follow `unless`: e.g. a note on a user's
    /// own stream that a room has news, which a connection following the
    /// room itself hears there already.
    pub fn deliver_unless_following(
        &self,
        stream: &str,
        message: &RawValue,
        unless: &str,
    ) -> Delivery {
        let (ours, theirs) = (self.shard_index(stream), self.shard_index(unless));
        let read = |index: usize| {
            self.shards[index]
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        // Two read locks at once are taken in shard order, so two such
        // deliveries cannot each hold the lock the other waits for while a
        // writer queues behind both.
        let (mine, others) = if ours == theirs {
            (read(ours), None)
        } else if ours < theirs {
            let mine = read(ours);
            (mine, Some(read(theirs)))
        } else {
            let others = read(theirs);
            (read(ours), Some(others))
        };
        let shard = &mine;
        let other = others.as_deref().unwrap_or(&mine);
        let Some(groups) = shard.get(stream) else {
            return Delivery::default();
        };
        let followers = other.get(unless).map(Vec::as_slice).unwrap_or_default();
        deliver_to(groups, stream, message, None, "", |conn| {
            followers
                .iter()
                .any(|group| group.subscribers.contains_key(&conn))
        })
    }

    /// How many subscribers `stream` has on this node.
    pub fn subscriber_count(&self, stream: &str) -> usize {
        let shard = self
            .shard(stream)
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        shard
            .get(stream)
            .map(|groups| groups.iter().map(|g| g.subscribers.len()).sum())
            .unwrap_or(0)
    }
}

/// Queues `message` for every subscriber in `groups` (those of `stream`)
/// but those `skip` names, encoding each group's frame once, and only if
/// one of its subscribers takes it.
fn deliver_to<M: Formats + ?Sized>(
    groups: &[Group],
    stream: &str,
    message: &M,
    offset: Option<i64>,
    epoch: &str,
    skip: impl Fn(ConnId) -> bool,
) -> Delivery {
    let mut delivery = Delivery::default();
    for group in groups {
        let mut outgoing: Option<Arc<Frame>> = None;
        for (conn, outbox) in &group.subscribers {
            if skip(*conn) {
                continue;
            }
            let frame = outgoing.get_or_insert_with(|| {
                let message = message.format(group.format);
                Arc::new(encode(group, stream, message, offset, epoch))
            });
            match outbox.offer(frame.clone()) {
                Offer::Queued => delivery.queued += 1,
                Offer::Full | Offer::Closed => delivery.dropped += 1,
            }
        }
    }
    delivery
}

/// `message` as `group`'s subscribers get it on the wire.
fn encode(
    group: &Group,
    stream: &str,
    message: &RawValue,
    offset: Option<i64>,
    epoch: &str,
) -> Frame {
    let identifier = &group.key.identifier;
    let (frame, position) = match (group.dialect, offset) {
        (Dialect::Extended, Some(offset)) => {
            let at = Position {
                stream,
                epoch,
                offset,
            };
            let frame = protocol::to_subscription_at(identifier, message, at);
            (
                wire::text(frame.as_str()),
                Some((group.key.clone(), offset)),
            )
        }
        _ => (
            wire::text(protocol::to_subscription(identifier, message).as_str()),
            None,
        ),
    };
    Frame {
        frame,
        position,
        ends: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    #[tokio::test]
    async fn delivers_to_each_subscriber_with_its_own_identifier() {
        let registry = Registry::default();
        let (a, mut a_rx, _) = Outbox::new(8, 1 << 20);
        let (b, mut b_rx, _) = Outbox::new(8, 1 << 20);
        let id_a: Arc<str> = Arc::from(r#"{"channel":"C","id":1}"#);
        let id_b: Arc<str> = Arc::from(r#"{"id":"1","channel":"C"}"#);
        registry.add("room:1", &id_a, Dialect::V1, 0, 1, &a);
        registry.add("room:1", &id_b, Dialect::Extended, 0, 2, &b);
        registry.add("room:1", &id_b, Dialect::Extended, 0, 2, &b);

        let delivery = registry.deliver("room:1", &*raw(r#"{"n":1}"#), Some(9), "e");

        assert_eq!(
            delivery,
            Delivery {
                queued: 2,
                dropped: 0
            }
        );
        let a_frame = a_rx.recv().await;
        assert!(a_frame.position.is_none());
        let frame: serde_json::Value = serde_json::from_str(a_frame.text()).unwrap();
        assert_eq!(frame["identifier"], &*id_a);
        assert!(
            frame.get("offset").is_none(),
            "plain clients get plain frames"
        );
        let b_frame = b_rx.recv().await;
        assert_eq!(
            b_frame.position.as_ref().map(|(_, offset)| *offset),
            Some(9)
        );
        let frame: serde_json::Value = serde_json::from_str(b_frame.text()).unwrap();
        assert_eq!(frame["identifier"], &*id_b);
        assert_eq!(frame["stream_id"], "room:1");
        assert_eq!(frame["epoch"], "e");
        assert_eq!(frame["offset"], 9);
        assert!(
            b_rx.try_recv().is_none(),
            "a duplicate add must not deliver twice"
        );
    }

    /// A message in three formats, counting how often each is asked for.
    struct Counted {
        formats: Vec<Box<RawValue>>,
        asked: [AtomicUsize; 3],
    }

    impl Formats for Counted {
        fn format(&self, format: u8) -> &RawValue {
            self.asked[usize::from(format)].fetch_add(1, Ordering::Relaxed);
            &self.formats[usize::from(format)]
        }
    }

    #[tokio::test]
    async fn each_group_gets_its_format_encoded_once_and_no_format_nobody_takes() {
        let registry = Registry::default();
        let id_full: Arc<str> = Arc::from(r#"{"channel":"C"}"#);
        let id_html: Arc<str> = Arc::from(r#"{"channel":"C","format":"html"}"#);
        let mut inboxes = Vec::new();
        for (conn, (identifier, format)) in [(&id_full, 0), (&id_full, 0), (&id_html, 1)]
            .into_iter()
            .enumerate()
        {
            let (outbox, inbox, _) = Outbox::new(8, 1 << 20);
            let name = registry.add("s", identifier, Dialect::V1, format, conn as u64, &outbox);
            assert_eq!(&*name, "s");
            inboxes.push((format, inbox, outbox));
        }
        let message = Counted {
            formats: vec![raw(r#"{"f":0}"#), raw(r#"{"f":1}"#), raw(r#"{"f":2}"#)],
            asked: Default::default(),
        };

        let delivery = registry.deliver("s", &message, None, "e");

        assert_eq!(delivery.queued, 3);
        let asked: Vec<usize> = message
            .asked
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect();
        assert_eq!(asked, [1, 1, 0], "once per group, and never format 2");
        for (format, inbox, _) in &mut inboxes {
            let frame: serde_json::Value = serde_json::from_str(inbox.recv().await.text()).unwrap();
            assert_eq!(frame["message"]["f"], *format);
        }
        // A plain message is the same in every format.
        registry.deliver("s", &*raw(r#"{"plain":1}"#), None, "e");
        for (_, inbox, _) in &mut inboxes {
            let frame: serde_json::Value = serde_json::from_str(inbox.recv().await.text()).unwrap();
            assert_eq!(frame["message"]["plain"], 1);
        }
    }

    #[tokio::test]
    async fn a_delivery_can_pass_over_the_followers_of_another_stream() {
        let registry = Registry::default();
        let (both, mut both_rx, _) = Outbox::new(8, 1 << 20);
        let (one, mut one_rx, _) = Outbox::new(8, 1 << 20);
        let id: Arc<str> = Arc::from("x");
        registry.add("user:1", &id, Dialect::V1, 0, 1, &both);
        registry.add("room:1", &id, Dialect::V1, 0, 1, &both);
        registry.add("user:1", &id, Dialect::V1, 0, 2, &one);
        // Every pair of shards, in both orders, and the same shard twice.
        for room in (0..64).map(|n| format!("room:{n}")) {
            let delivery = registry.deliver_unless_following("user:1", &raw("1"), &room);
            let skipped = room == "room:1";
            assert_eq!(delivery.queued, if skipped { 1 } else { 2 }, "{room}");
            assert_eq!(both_rx.try_recv().is_some(), !skipped, "{room}");
            assert!(one_rx.try_recv().is_some(), "{room}");
        }
        assert_eq!(
            registry.deliver_unless_following("nobody", &raw("1"), "room:1"),
            Delivery::default()
        );
    }

    #[tokio::test]
    async fn removed_subscribers_get_nothing_and_empty_streams_vanish() {
        let registry = Registry::default();
        let (a, mut a_rx, _) = Outbox::new(8, 1 << 20);
        let id: Arc<str> = Arc::from("x");
        registry.add("s", &id, Dialect::V1, 0, 1, &a);
        registry.remove("s", "x", 1);
        assert_eq!(
            registry.deliver("s", &*raw("1"), None, "e"),
            Delivery::default()
        );
        assert_eq!(registry.subscriber_count("s"), 0);
        assert!(a_rx.try_recv().is_none());
    }

    #[derive(Default)]
    struct Changes(std::sync::Mutex<Vec<(String, bool)>>);

    impl StreamWatcher for Arc<Changes> {
        fn followed(&self, stream: &str, followed: bool) {
            self.0.lock().unwrap().push((stream.to_owned(), followed));
        }
    }

    #[tokio::test]
    async fn the_watcher_hears_of_a_streams_first_and_last_subscriber_only() {
        let registry = Registry::default();
        let changes = Arc::new(Changes::default());
        registry.watch(Box::new(changes.clone()));
        let (a, _a_rx, _) = Outbox::new(8, 1 << 20);
        let (b, _b_rx, _) = Outbox::new(8, 1 << 20);
        let x: Arc<str> = Arc::from("x");
        let y: Arc<str> = Arc::from("y");
        registry.add("s", &x, Dialect::V1, 0, 1, &a);
        registry.add("s", &y, Dialect::V1, 0, 2, &b);
        registry.add("t", &x, Dialect::V1, 0, 1, &a);
        registry.remove("s", "x", 1);
        registry.remove("s", "x", 1);
        registry.remove("s", "y", 2);
        registry.remove("u", "x", 1);
        registry.add("s", &x, Dialect::V1, 0, 1, &a);
        let seen = changes.0.lock().unwrap().clone();
        let expected = [("s", true), ("t", true), ("s", false), ("s", true)];
        assert_eq!(
            seen,
            expected
                .iter()
                .map(|(s, f)| (s.to_string(), *f))
                .collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn a_full_queue_is_counted_and_signalled() {
        let registry = Registry::default();
        let (a, _a_rx, budget) = Outbox::new(1, 1 << 20);
        let id: Arc<str> = Arc::from("x");
        registry.add("s", &id, Dialect::V1, 0, 1, &a);
        assert_eq!(registry.deliver("s", &*raw("1"), None, "e").queued, 1);
        assert_eq!(registry.deliver("s", &*raw("2"), None, "e").dropped, 1);
        tokio::time::timeout(std::time::Duration::from_secs(1), budget.wait())
            .await
            .expect("overflow is signalled");
        assert!(budget.exceeded());
    }

    #[tokio::test]
    async fn a_queue_wakes_its_session_and_refuses_frames_once_it_is_gone() {
        let (outbox, mut inbox, budget) = Outbox::new(8, 1 << 20);
        let waiting = tokio::spawn(async move {
            let frame = inbox.recv().await;
            (frame, inbox)
        });
        tokio::task::yield_now().await;
        let frame = Arc::new(Frame::unpositioned(Bytes::from_static(b"12345")));
        assert_eq!(outbox.offer(frame), Offer::Queued);
        let (received, inbox) = waiting.await.unwrap();
        assert_eq!(&received.frame[..], b"12345");
        budget.release(received.frame.len());
        drop(inbox);
        let late = Arc::new(Frame::unpositioned(Bytes::from_static(b"678")));
        assert_eq!(outbox.offer(late), Offer::Closed);
        assert_eq!(budget.buffered(), 0, "a refused frame is not charged");
        assert!(!budget.exceeded(), "a closed queue is not a slow client");
    }

    #[tokio::test]
    async fn a_full_byte_budget_refuses_the_frame_and_written_bytes_free_it() {
        let registry = Registry::default();
        let (a, mut a_rx, budget) = Outbox::new(1024, 200);
        let id: Arc<str> = Arc::from("x");
        registry.add("s", &id, Dialect::V1, 0, 1, &a);
        let big = format!("\"{}\"", "y".repeat(100));
        assert_eq!(registry.deliver("s", &*raw(&big), None, "e").queued, 1);
        let first = budget.buffered();
        assert!(first > 100 && first < 200, "{first}");
        assert_eq!(
            registry.deliver("s", &*raw(&big), None, "e").dropped,
            1,
            "a second frame would cross 200 bytes"
        );
        assert!(budget.exceeded());
        let taken = a_rx.recv().await;
        budget.release(taken.frame.len());
        assert_eq!(budget.buffered(), 0, "nothing stays charged once written");
    }
}

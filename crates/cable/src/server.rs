//! The engine handle: configuration, channels, the WebSocket upgrade,
//! broadcasts and shutdown.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::value::RawValue;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tungstenite::protocol::WebSocketConfig;

use crate::channel::{Channel, Formats};
use crate::origin::OriginPolicy;
use crate::protocol::{self, Dialect, DisconnectReason};
use crate::registry::{ConnId, Delivery, Frame, Outbox, Registry, StreamWatcher};
use crate::session;
use crate::upgrade::CableUpgrade;
use crate::wire;

/// What the engine needs of the identity an application attaches to a
/// connection (Rails' `identified_by`).
pub trait Identity: PartialEq + Send + Sync + 'static {
    /// The user behind the connection, for the per-user limits.
    fn user_key(&self) -> u64;
}

/// Engine settings; every limit here has a documented answer when hit.
#[derive(Debug, Clone)]
pub struct Config {
    /// How often every connection gets `{"type":"ping"}` (Rails: 3 s).
    pub ping_interval: Duration,
    /// Largest client frame accepted; a larger one closes the socket with 1009.
    pub max_frame_bytes: usize,
    /// Frames queued per connection before it is dropped as `too_slow`.
    pub outbox_capacity: usize,
    /// Bytes one connection may have buffered — broadcasts queued, frames
    /// being written, replies, a replay page — before a broadcast that would
    /// cross it drops the connection as `too_slow`.
    pub send_budget_bytes: usize,
    /// How long one write may wait on a client that does not read before it
    /// is dropped as `too_slow`.
    pub write_timeout: Duration,
    /// Longest identifier accepted; longer ones get `reject_subscription`
    /// (every frame to a subscription echoes its identifier).
    pub max_identifier_bytes: usize,
    /// Replays (`catch_up`-style actions, history requests) one connection
    /// may start per second, in bursts of ten times as many; 0 is no limit.
    pub replay_rate: f64,
    /// Subscriptions one user may hold over all their connections; 0 is
    /// no limit.
    pub max_subscriptions_per_user: usize,
    /// Open connections one user may hold; past it, upgrades get 429; 0 is
    /// no limit.
    pub max_connections_per_user: usize,
    /// Open connections from one address; past it, upgrades get 429; 0 is
    /// no limit.
    pub max_connections_per_address: usize,
    /// Subscriptions one connection may hold; past it, `reject_subscription`.
    pub max_subscriptions: usize,
    /// Size of each socket's read buffer.
    pub read_buffer_bytes: usize,
    /// Origins allowed besides the server's own.
    pub origins: OriginPolicy,
    /// Open connections allowed; past it, upgrades get 503.
    pub max_connections: usize,
    /// How long an extended-protocol session can be restored after its socket closed.
    pub session_ttl: Duration,
    /// The epoch of stream offsets: clients holding offsets of another epoch
    /// replay by time instead.
    pub epoch: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(3),
            max_frame_bytes: 64 * 1024,
            outbox_capacity: 1024,
            send_budget_bytes: 1 << 20,
            write_timeout: Duration::from_secs(30),
            max_identifier_bytes: 1024,
            replay_rate: 2.0,
            max_subscriptions_per_user: 1000,
            max_connections_per_user: 100,
            max_connections_per_address: 1000,
            max_subscriptions: 100,
            read_buffer_bytes: 256,
            origins: OriginPolicy::default(),
            max_connections: 100_000,
            session_ttl: Duration::from_secs(300),
            epoch: "hearth".to_owned(),
        }
    }
}

/// Counters for monitoring.
#[derive(Debug, Default)]
pub struct Stats {
    /// Open connections.
    pub connections: AtomicU64,
    /// Active subscriptions.
    pub subscriptions: AtomicU64,
    /// Broadcasts made.
    pub broadcasts: AtomicU64,
    /// Frames queued to subscribers.
    pub deliveries: AtomicU64,
    /// Frames not queued because a subscriber's queue was full or closed.
    pub dropped: AtomicU64,
}

/// A closed extended-protocol session kept for restoring.
pub(crate) struct Parked<I> {
    pub(crate) identity: Arc<I>,
    pub(crate) subscriptions: Vec<session::Restorable<I>>,
    pub(crate) expires: Instant,
}

/// How to reach a live session from outside it.
struct Live<I> {
    identity: Arc<I>,
    /// Ends the session with this reason.
    kick: oneshot::Sender<DisconnectReason>,
    /// Its send queue, for pings.
    outbox: Outbox,
}

pub(crate) struct Inner<I> {
    pub(crate) config: Config,
    pub(crate) channels: HashMap<String, Arc<dyn Channel<I>>>,
    pub(crate) registry: Registry,
    pub(crate) stats: Stats,
    /// Cancelled when the server shuts down; every live session is then
    /// kicked with `server_restart`. Sessions do not wait on it while they
    /// run: waiting on one token registers every session, at every wake-up,
    /// in one list behind one lock.
    pub(crate) shutdown: CancellationToken,
    /// Every session task, so shutdown can wait for them to finish.
    pub(crate) sessions: TaskTracker,
    next_conn: AtomicU64,
    /// Live sessions, so some can be ended from outside (e.g. at sign-out or
    /// shutdown) and all pinged. Held only to insert, remove or scan; never
    /// across an await.
    live: Mutex<HashMap<u64, Live<I>>>,
    /// Closed extended sessions by `sid`, until they expire. Same locking rule.
    parked: Mutex<ParkedSessions<I>>,
    /// Connections admitted (counted at the upgrade, before the session starts).
    admitted: AtomicUsize,
    /// Connections and subscriptions per user and per address, for the
    /// per-user and per-address limits. Same locking rule as `live`.
    counts: Mutex<Counts>,
}

/// What the per-user and per-address limits count; entries at zero are removed.
#[derive(Default)]
pub(crate) struct Counts {
    connections_by_user: HashMap<u64, usize>,
    connections_by_address: HashMap<IpAddr, usize>,
    subscriptions_by_user: HashMap<u64, usize>,
}

/// Whether `held` has reached a share `limit`, where 0 is no limit.
fn reached(held: usize, limit: usize) -> bool {
    limit != 0 && held >= limit
}

fn increment<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: K) -> usize {
    let count = map.entry(key).or_insert(0);
    *count += 1;
    *count
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(count) = map.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            map.remove(key);
        }
    }
}

pub(crate) struct ParkedSessions<I> {
    by_sid: HashMap<String, Parked<I>>,
    last_sweep: Instant,
}

impl<I: Identity> Inner<I> {
    /// Counts a new subscription of `identity`'s user; false (and nothing
    /// counted) past the per-user limit.
    pub(crate) fn count_subscription(&self, identity: &I) -> bool {
        let mut counts = lock(&self.counts);
        let held = counts
            .subscriptions_by_user
            .get(&identity.user_key())
            .copied()
            .unwrap_or(0);
        if reached(held, self.config.max_subscriptions_per_user) {
            return false;
        }
        increment(&mut counts.subscriptions_by_user, identity.user_key());
        true
    }

    /// Counts a restored subscription, which was within the limit when parked.
    pub(crate) fn recount_subscription(&self, identity: &I) {
        increment(
            &mut lock(&self.counts).subscriptions_by_user,
            identity.user_key(),
        );
    }

    /// Forgets one subscription of `identity`'s user.
    pub(crate) fn uncount_subscription(&self, identity: &I) {
        decrement(
            &mut lock(&self.counts).subscriptions_by_user,
            &identity.user_key(),
        );
    }
}

impl<I> Inner<I> {
    fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a live session; returns the receiver of a kick. A session
    /// that goes live once shutdown has begun is kicked at once.
    pub(crate) fn go_live(
        &self,
        conn: u64,
        identity: Arc<I>,
        outbox: &Outbox,
    ) -> oneshot::Receiver<DisconnectReason> {
        let (kick, kicked) = oneshot::channel();
        let live = Live {
            identity,
            kick,
            outbox: outbox.clone(),
        };
        lock(&self.live).insert(conn, live);
        // `shutdown` cancels before it scans `live`: either that scan saw
        // this session, or this check sees the cancellation.
        if self.shutdown.is_cancelled() {
            self.kick_where(|_| true, DisconnectReason::ServerRestart);
        }
        kicked
    }

    /// Ends every live session whose identity matches; returns how many.
    fn kick_where(&self, matches: impl Fn(&I) -> bool, reason: DisconnectReason) -> usize {
        let mut live = lock(&self.live);
        let kicked: Vec<u64> = live
            .iter()
            .filter(|(_, l)| matches(&l.identity))
            .map(|(id, _)| *id)
            .collect();
        for id in &kicked {
            if let Some(l) = live.remove(id) {
                let _ = l.kick.send(reason);
            }
        }
        kicked.len()
    }

    /// Ends the subscriptions to `stream` of every live session whose
    /// identity matches: they are out of the registry before this returns,
    /// and each session is sent a notice to drop them and tell its client.
    fn end_subscriptions(&self, stream: &str, matches: impl Fn(&I) -> bool) -> usize {
        let targets: Vec<(u64, Outbox)> = lock(&self.live)
            .iter()
            .filter(|(_, l)| matches(&l.identity))
            .map(|(id, l)| (*id, l.outbox.clone()))
            .collect();
        if targets.is_empty() {
            return 0;
        }
        let conns = targets.iter().map(|(id, _)| *id).collect();
        self.registry.remove_conns(stream, &conns);
        let notice = Arc::new(Frame::ending(stream));
        for (_, outbox) in &targets {
            // A full queue marks the session too slow: it ends anyway.
            outbox.offer(notice.clone());
        }
        targets.len()
    }

    /// Queues one shared ping frame for every live session.
    fn ping_all(&self) {
        let ping = Arc::new(Frame::unpositioned(ping_frame()));
        for live in lock(&self.live).values() {
            // A full queue marks the session too slow, as for any frame.
            live.outbox.offer(ping.clone());
        }
    }

    pub(crate) fn leave(&self, conn: u64) {
        lock(&self.live).remove(&conn);
    }

    /// Keeps a closed session for restoring under `sid`.
    pub(crate) fn park(&self, sid: String, parked: Parked<I>) {
        let mut store = lock(&self.parked);
        let now = Instant::now();
        if now.duration_since(store.last_sweep) > Duration::from_secs(1) {
            store.by_sid.retain(|_, p| p.expires > now);
            store.last_sweep = now;
        }
        store.by_sid.insert(sid, parked);
    }

    /// Takes the session parked under `sid`, if it has not expired and
    /// belongs to the same identity. Anyone else's attempt leaves it parked
    /// for its owner.
    pub(crate) fn unpark(&self, sid: &str, identity: &I) -> Option<Parked<I>>
    where
        I: PartialEq,
    {
        let mut store = lock(&self.parked);
        let owned = store
            .by_sid
            .get(sid)
            .is_some_and(|p| p.expires > Instant::now() && *p.identity == *identity);
        if owned {
            store.by_sid.remove(sid)
        } else {
            None
        }
    }
}

/// Locks a mutex, carrying on after a panic elsewhere: the maps stay valid.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Holds one admitted connection's place, in the total and in its user's
/// and address's counts, until dropped.
pub(crate) struct Admission<I> {
    inner: Arc<Inner<I>>,
    user: Option<u64>,
    address: IpAddr,
}

impl<I> Drop for Admission<I> {
    fn drop(&mut self) {
        self.inner.admitted.fetch_sub(1, Ordering::Relaxed);
        let mut counts = lock(&self.inner.counts);
        if let Some(user) = self.user {
            decrement(&mut counts.connections_by_user, &user);
        }
        decrement(&mut counts.connections_by_address, &self.address);
    }
}

/// Why an upgrade was refused before the handshake.
enum Refusal {
    /// The whole node is full: 503.
    Full,
    /// This user holds their share: 429.
    User,
    /// This address holds its share: 429.
    Address,
}

/// Collects channels before the engine starts.
pub struct CableBuilder<I> {
    config: Config,
    channels: HashMap<String, Arc<dyn Channel<I>>>,
}

impl<I: Identity> CableBuilder<I> {
    /// Registers `channel` under the class name clients put in identifiers.
    pub fn channel(mut self, name: &str, channel: impl Channel<I>) -> Self {
        self.channels.insert(name.to_owned(), Arc::new(channel));
        self
    }

    /// Starts the engine: spawns the shared ping ticker. Needs a Tokio runtime.
    pub fn build(self) -> Cable<I> {
        let shutdown = CancellationToken::new();
        let inner = Arc::new(Inner {
            config: self.config,
            channels: self.channels,
            registry: Registry::default(),
            stats: Stats::default(),
            shutdown: shutdown.clone(),
            sessions: TaskTracker::new(),
            next_conn: AtomicU64::new(1),
            live: Mutex::new(HashMap::new()),
            parked: Mutex::new(ParkedSessions {
                by_sid: HashMap::new(),
                last_sweep: Instant::now(),
            }),
            admitted: AtomicUsize::new(0),
            counts: Mutex::default(),
        });
        // The one ping ticker, ending at shutdown.
        let interval = inner.config.ping_interval;
        let ticker = inner.clone();
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => ticker.ping_all(),
                }
            }
        });
        Cable { inner }
    }
}

/// A running Action Cable engine; cheap to clone.
pub struct Cable<I> {
    inner: Arc<Inner<I>>,
}

impl<I> Clone for Cable<I> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<I: Identity> Cable<I> {
    /// Starts configuring an engine.
    pub fn builder(config: Config) -> CableBuilder<I> {
        CableBuilder {
            config,
            channels: HashMap::new(),
        }
    }

    /// Whether a request's `Origin` may open a cable.
    pub fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        self.inner.config.origins.allows(headers)
    }

    /// Completes the WebSocket handshake and runs the session. Without an
    /// identity the client is told `unauthorized` and the socket is closed.
    /// Over the connection limit the answer is 503, over the user's or the
    /// address's (`peer`) share 429, and no WebSocket. An extended-protocol
    /// client may name a session to restore with `?sid=` or the
    /// `X-ANYCABLE-RESTORE-SID` header.
    pub fn upgrade(
        &self,
        upgrade: CableUpgrade,
        uri: &Uri,
        headers: &HeaderMap,
        identity: Option<I>,
        peer: IpAddr,
    ) -> Response {
        let config = &self.inner.config;
        let user = identity.as_ref().map(Identity::user_key);
        let admission = match self.admit(user, peer) {
            Ok(admission) => admission,
            Err(Refusal::Full) => {
                tracing::warn!(
                    limit = config.max_connections,
                    "refusing a cable: connection limit reached"
                );
                return (StatusCode::SERVICE_UNAVAILABLE, "Too many connections").into_response();
            }
            Err(Refusal::User) => {
                tracing::warn!(
                    user,
                    limit = config.max_connections_per_user,
                    "refusing a cable: this user's connection limit reached"
                );
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many connections for this user",
                )
                    .into_response();
            }
            Err(Refusal::Address) => {
                tracing::warn!(
                    %peer,
                    limit = config.max_connections_per_address,
                    "refusing a cable: this address's connection limit reached"
                );
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many connections from this address",
                )
                    .into_response();
            }
        };
        let restore = restore_sid(uri, headers);
        let protocol =
            upgrade.choose(&[protocol::PROTOCOL_V1_EXT_JSON, protocol::PROTOCOL_V1_JSON]);
        let dialect = match protocol {
            Some(protocol::PROTOCOL_V1_EXT_JSON) => Dialect::Extended,
            _ => Dialect::V1,
        };
        let response = upgrade.accept(protocol);
        // tungstenite reads; the session writes by hand (see `wire`), so
        // tungstenite's own writes (pongs, close replies) go straight out.
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(config.read_buffer_bytes)
            .write_buffer_size(0)
            .max_message_size(Some(config.max_frame_bytes))
            .max_frame_size(Some(config.max_frame_bytes));
        let id: ConnId = self.inner.next_conn_id();
        let start = session::Start {
            inner: self.inner.clone(),
            id,
            on_upgrade: upgrade.on_upgrade,
            ws_config,
            dialect,
            identity,
            restore,
            admission,
        };
        let session = self
            .inner
            .sessions
            .track_future(session::connection(Box::new(start)));
        // One task per connection, from the handshake to the goodbye;
        // tracked so shutdown can wait for it, bounded by `max_connections`.
        tokio::spawn(session);
        response
    }

    /// Takes a place for a connection of `user` from `address`, or says
    /// which limit is full.
    fn admit(&self, user: Option<u64>, address: IpAddr) -> Result<Admission<I>, Refusal> {
        let config = &self.inner.config;
        let mut counts = lock(&self.inner.counts);
        if self.inner.admitted.load(Ordering::Relaxed) >= config.max_connections {
            return Err(Refusal::Full);
        }
        if let Some(user) = user
            && reached(
                counts.connections_by_user.get(&user).copied().unwrap_or(0),
                config.max_connections_per_user,
            )
        {
            return Err(Refusal::User);
        }
        let from_address = counts.connections_by_address.get(&address).copied();
        if reached(
            from_address.unwrap_or(0),
            config.max_connections_per_address,
        ) {
            return Err(Refusal::Address);
        }
        self.inner.admitted.fetch_add(1, Ordering::Relaxed);
        if let Some(user) = user {
            increment(&mut counts.connections_by_user, user);
        }
        increment(&mut counts.connections_by_address, address);
        Ok(Admission {
            inner: self.inner.clone(),
            user,
            address,
        })
    }

    /// The identities of every live session on this node, e.g. to check
    /// that their sign-in sessions still exist.
    pub fn live_identities(&self) -> Vec<Arc<I>> {
        lock(&self.inner.live)
            .values()
            .map(|live| live.identity.clone())
            .collect()
    }

    /// Ends every live session whose identity matches, telling it `reason`
    /// (e.g. `unauthorized` for the sockets of a session that signed out).
    /// Returns how many were ended.
    pub fn disconnect_where(
        &self,
        matches: impl Fn(&I) -> bool,
        reason: DisconnectReason,
    ) -> usize {
        self.inner.kick_where(matches, reason)
    }

    /// Ends the subscriptions to `stream` of every live session on this
    /// node whose identity matches (e.g. a member removed from a private
    /// room): no broadcast to `stream` reaches them once this returns, and
    /// each such subscription ends as an unsubscribe does (the channel's
    /// `unsubscribed` runs) and its client gets `reject_subscription`, which
    /// Action Cable clients take as the end of that subscription. Returns
    /// how many sessions were told. Sessions parked for a restore are not
    /// touched: a restore asks the channel's `subscribe` again.
    pub fn end_subscriptions(&self, stream: &str, matches: impl Fn(&I) -> bool) -> usize {
        self.inner.end_subscriptions(stream, matches)
    }

    /// Sends `message` (a JSON value) to every subscriber of `stream` on this node.
    pub fn broadcast(&self, stream: &str, message: &RawValue) -> Delivery {
        self.broadcast_at(stream, message, None)
    }

    /// The same, for a message at `offset` in the stream's history: extended
    /// clients get `stream_id`, `epoch` and `offset` with it.
    pub fn broadcast_at(&self, stream: &str, message: &RawValue, offset: Option<i64>) -> Delivery {
        self.broadcast_formats(stream, message, offset)
    }

    /// The same for a message in several formats: each subscriber gets the
    /// one its subscription chose ([`crate::Subscription::format`]).
    pub fn broadcast_formats<M: Formats + ?Sized>(
        &self,
        stream: &str,
        message: &M,
        offset: Option<i64>,
    ) -> Delivery {
        let delivery =
            self.inner
                .registry
                .deliver(stream, message, offset, &self.inner.config.epoch);
        self.count(delivery);
        delivery
    }

    fn count(&self, delivery: Delivery) {
        let stats = &self.inner.stats;
        stats.broadcasts.fetch_add(1, Ordering::Relaxed);
        stats
            .deliveries
            .fetch_add(delivery.queued as u64, Ordering::Relaxed);
        stats
            .dropped
            .fetch_add(delivery.dropped as u64, Ordering::Relaxed);
    }

    /// Sends `message` to every subscriber of `stream` on this node that
    /// does not also follow `unless` there (see
    /// [`crate::registry::Registry::deliver_unless_following`]).
    pub fn broadcast_unless_following(
        &self,
        stream: &str,
        message: &RawValue,
        unless: &str,
    ) -> Delivery {
        let delivery = self
            .inner
            .registry
            .deliver_unless_following(stream, message, unless);
        self.count(delivery);
        delivery
    }

    /// Tells `watcher` whenever a stream gains its first subscriber on this
    /// node or loses its last (e.g. a broker's per-stream subscriptions).
    /// Set it before clients arrive; only the first watcher is kept.
    pub fn watch_streams(&self, watcher: impl StreamWatcher) {
        self.inner.registry.watch(Box::new(watcher));
    }

    /// How many connections follow `stream` on this node.
    pub fn subscriber_count(&self, stream: &str) -> usize {
        self.inner.registry.subscriber_count(stream)
    }

    /// Monitoring counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Tells every client `server_restart` and closes its socket, then waits
    /// for all sessions to end, at most `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.shutdown.cancel();
        self.inner
            .kick_where(|_| true, DisconnectReason::ServerRestart);
        self.inner.sessions.close();
        if tokio::time::timeout(grace, self.inner.sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = self.inner.sessions.len(),
                "cable sessions still open after the grace period"
            );
        }
    }
}

/// The session a client asks to restore: `?sid=` or `X-ANYCABLE-RESTORE-SID`.
fn restore_sid(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    if let Some(sid) = headers
        .get("x-anycable-restore-sid")
        .and_then(|v| v.to_str().ok())
    {
        return Some(sid.to_owned());
    }
    uri.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == "sid")
        .map(|(_, value)| value.to_owned())
}

/// `{"type":"ping","message":<now>}`, framed for the wire.
fn ping_frame() -> Bytes {
    wire::text(protocol::ping(unix_seconds()).as_str())
}

pub(crate) fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::reached;

    #[test]
    fn a_share_of_zero_is_no_limit() {
        assert!(!reached(1_000_000, 0));
        assert!(!reached(2, 3));
        assert!(reached(3, 3));
    }
}

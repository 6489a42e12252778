//! The engine handle: configuration, channels, the WebSocket upgrade,
//! broadcasts and shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::value::RawValue;
use tokio::sync::oneshot;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tungstenite::protocol::{Role, WebSocketConfig};

use crate::channel::Channel;
use crate::origin::OriginPolicy;
use crate::protocol::{self, Dialect, DisconnectReason};
use crate::registry::{Delivery, Frame, Outbox, Registry, StreamWatcher};
use crate::session;
use crate::upgrade::CableUpgrade;
use crate::wire;

/// Engine settings; every limit here has a documented answer when hit.
#[derive(Debug, Clone)]
pub struct Config {
    /// How often every connection gets `{"type":"ping"}` (Rails: 3 s).
    pub ping_interval: Duration,
    /// Largest client frame accepted; a larger one closes the socket with 1009.
    pub max_frame_bytes: usize,
    /// Frames queued per connection before it is dropped as `too_slow`.
    pub outbox_capacity: usize,
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
            max_subscriptions: 100,
            read_buffer_bytes: 512,
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
}

pub(crate) struct ParkedSessions<I> {
    by_sid: HashMap<String, Parked<I>>,
    last_sweep: Instant,
}

impl<I> Inner<I> {
    pub(crate) fn next_conn_id(&self) -> u64 {
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
    /// belongs to the same identity.
    pub(crate) fn unpark(&self, sid: &str, identity: &I) -> Option<Parked<I>>
    where
        I: PartialEq,
    {
        let mut store = lock(&self.parked);
        let parked = store.by_sid.remove(sid)?;
        if parked.expires > Instant::now() && *parked.identity == *identity {
            Some(parked)
        } else {
            None
        }
    }
}

/// Locks a mutex, carrying on after a panic elsewhere: the maps stay valid.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Holds one admitted connection's place until dropped.
pub(crate) struct Admission<I> {
    inner: Arc<Inner<I>>,
}

impl<I> Drop for Admission<I> {
    fn drop(&mut self) {
        self.inner.admitted.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Collects channels before the engine starts.
pub struct CableBuilder<I> {
    config: Config,
    channels: HashMap<String, Arc<dyn Channel<I>>>,
}

impl<I: PartialEq + Send + Sync + 'static> CableBuilder<I> {
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

impl<I: PartialEq + Send + Sync + 'static> Cable<I> {
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
    /// Over the connection limit the answer is 503 and no WebSocket.
    /// An extended-protocol client may name a session to restore with
    /// `?sid=` or the `X-ANYCABLE-RESTORE-SID` header.
    pub fn upgrade(
        &self,
        upgrade: CableUpgrade,
        uri: &Uri,
        headers: &HeaderMap,
        identity: Option<I>,
    ) -> Response {
        let config = &self.inner.config;
        let admitted = self.inner.admitted.fetch_add(1, Ordering::Relaxed);
        let admission = Admission {
            inner: self.inner.clone(),
        };
        if admitted >= config.max_connections {
            drop(admission);
            tracing::warn!(
                limit = config.max_connections,
                "refusing a cable: connection limit reached"
            );
            return (StatusCode::SERVICE_UNAVAILABLE, "Too many connections").into_response();
        }
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
        let inner = self.inner.clone();
        let on_upgrade = upgrade.on_upgrade;
        let session = self.inner.sessions.track_future(async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(error) => {
                    tracing::debug!(%error, "the cable handshake did not complete");
                    return;
                }
            };
            let socket = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(ws_config),
            )
            .await;
            session::run(inner, socket, dialect, identity, restore).await;
            drop(admission);
        });
        // One task per connection, from the handshake to the goodbye;
        // tracked so shutdown can wait for it, bounded by `max_connections`.
        tokio::spawn(session);
        response
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

    /// Sends `message` (a JSON value) to every subscriber of `stream` on this node.
    pub fn broadcast(&self, stream: &str, message: &RawValue) -> Delivery {
        self.broadcast_at(stream, message, None)
    }

    /// The same, for a message at `offset` in the stream's history: extended
    /// clients get `stream_id`, `epoch` and `offset` with it.
    pub fn broadcast_at(&self, stream: &str, message: &RawValue, offset: Option<i64>) -> Delivery {
        let delivery =
            self.inner
                .registry
                .deliver(stream, message, offset, &self.inner.config.epoch);
        let stats = &self.inner.stats;
        stats.broadcasts.fetch_add(1, Ordering::Relaxed);
        stats
            .deliveries
            .fetch_add(delivery.queued as u64, Ordering::Relaxed);
        stats
            .dropped
            .fetch_add(delivery.dropped as u64, Ordering::Relaxed);
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

//! The engine handle: configuration, channels, the WebSocket upgrade,
//! broadcasts and shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{Utf8Bytes, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::value::RawValue;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::channel::Channel;
use crate::origin::OriginPolicy;
use crate::protocol;
use crate::registry::{Delivery, Registry};
use crate::session;

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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(3),
            max_frame_bytes: 64 * 1024,
            outbox_capacity: 1024,
            max_subscriptions: 100,
            read_buffer_bytes: 4 * 1024,
            origins: OriginPolicy::default(),
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

pub(crate) struct Inner<I> {
    pub(crate) config: Config,
    pub(crate) channels: HashMap<String, Arc<dyn Channel<I>>>,
    pub(crate) registry: Registry,
    pub(crate) stats: Stats,
    /// The latest ping frame; one ticker task updates it for every connection.
    pub(crate) ping: watch::Receiver<Utf8Bytes>,
    /// Cancelled when the server shuts down: every session says goodbye.
    pub(crate) shutdown: CancellationToken,
    /// Every session task, so shutdown can wait for them to finish.
    pub(crate) sessions: TaskTracker,
    next_conn: AtomicU64,
}

impl<I> Inner<I> {
    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }
}

/// Collects channels before the engine starts.
pub struct CableBuilder<I> {
    config: Config,
    channels: HashMap<String, Arc<dyn Channel<I>>>,
}

impl<I: Send + Sync + 'static> CableBuilder<I> {
    /// Registers `channel` under the class name clients put in identifiers.
    pub fn channel(mut self, name: &str, channel: impl Channel<I>) -> Self {
        self.channels.insert(name.to_owned(), Arc::new(channel));
        self
    }

    /// Starts the engine: spawns the shared ping ticker. Needs a Tokio runtime.
    pub fn build(self) -> Cable<I> {
        let (ping_tx, ping) = watch::channel(protocol::ping(unix_seconds()));
        let shutdown = CancellationToken::new();
        let inner = Arc::new(Inner {
            config: self.config,
            channels: self.channels,
            registry: Registry::default(),
            stats: Stats::default(),
            ping,
            shutdown: shutdown.clone(),
            sessions: TaskTracker::new(),
            next_conn: AtomicU64::new(1),
        });
        // The one ping ticker: owns the watch sender, ends at shutdown.
        let interval = inner.config.ping_interval;
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {
                        if ping_tx.send(protocol::ping(unix_seconds())).is_err() {
                            break;
                        }
                    }
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

impl<I: Send + Sync + 'static> Cable<I> {
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
    pub fn upgrade(&self, ws: WebSocketUpgrade, identity: Option<I>) -> Response {
        let inner = self.inner.clone();
        let config = &self.inner.config;
        ws.protocols([protocol::PROTOCOL_V1_JSON])
            .read_buffer_size(config.read_buffer_bytes)
            .write_buffer_size(WRITE_BUFFER_BYTES)
            .max_message_size(config.max_frame_bytes)
            .max_frame_size(config.max_frame_bytes)
            .on_upgrade(move |socket| {
                let tracker = inner.sessions.clone();
                tracker.track_future(session::run(inner, socket, identity))
            })
    }

    /// Sends `message` (a JSON value) to every subscriber of `stream` on this node.
    pub fn broadcast(&self, stream: &str, message: &RawValue) -> Delivery {
        let delivery = self.inner.registry.deliver(stream, message);
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

/// Frames are gathered up to this size before one write to the socket.
const WRITE_BUFFER_BYTES: usize = 16 * 1024;

fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

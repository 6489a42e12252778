//! Brokers carry broadcasts between nodes. Without one, broadcasts stay in
//! the process. With Redis, every node publishes its broadcasts to
//! `<prefix>:<stream>` (Action Cable's Redis adapter naming, payload the JSON
//! message) and hears every other node's through one pattern subscription.
//!
//! Redis pub/sub delivers at most once and says nothing when it drops a
//! message, so the broker reports when it goes down and comes back
//! ([`BrokerEvent`]); the application decides how to fill what it missed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Publishes waiting to be sent to Redis; past this they are dropped (and counted).
const PUBLISH_QUEUE: usize = 16 * 1024;
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the broker tells the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerEvent {
    /// A broadcast from any node (this one included), or from another Action Cable app.
    Message { stream: String, payload: String },
    /// Subscribed to Redis, after starting or after an outage.
    Up { reconnected: bool },
    /// The subscription to Redis was lost; broadcasts from other nodes are not arriving.
    Down,
}

/// Counters and state for health checks and metrics.
#[derive(Debug, Default)]
pub struct BrokerStatus {
    subscribed: AtomicBool,
    publishing: AtomicBool,
    /// Broadcasts published to Redis.
    pub published: AtomicU64,
    /// Broadcasts that could not be published (Redis away or queue full).
    pub publish_failures: AtomicU64,
    /// Broadcasts received from Redis.
    pub received: AtomicU64,
    /// Times the subscription was re-established after a loss.
    pub reconnects: AtomicU64,
}

impl BrokerStatus {
    /// True while both the subscription and the publishing connection work.
    pub fn healthy(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed) && self.publishing.load(Ordering::Relaxed)
    }
}

/// A Redis pub/sub broker; cheap to clone.
#[derive(Clone)]
pub struct RedisBroker {
    prefix: Arc<str>,
    /// To the publisher task; bounded by [`PUBLISH_QUEUE`].
    publishes: mpsc::Sender<(String, String)>,
    status: Arc<BrokerStatus>,
}

impl RedisBroker {
    /// Connects to `url` and starts the subscriber and publisher tasks; events
    /// go to `events` until `shutdown` is cancelled. Fails only on a malformed
    /// URL: an unreachable Redis is retried with backoff, and reported as down.
    pub fn start(
        url: &str,
        prefix: &str,
        events: mpsc::UnboundedSender<BrokerEvent>,
        shutdown: CancellationToken,
    ) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let prefix: Arc<str> = Arc::from(prefix);
        let status = Arc::new(BrokerStatus::default());
        let (publishes, queue) = mpsc::channel(PUBLISH_QUEUE);
        // Subscriber: owns the pub/sub connection, re-subscribes after any loss.
        tokio::spawn(subscribe_loop(
            client.clone(),
            prefix.clone(),
            events,
            status.clone(),
            shutdown.clone(),
        ));
        // Publisher: owns the publishing connection; sends in queue order.
        tokio::spawn(publish_loop(client, queue, status.clone(), shutdown));
        Ok(Self {
            prefix,
            publishes,
            status,
        })
    }

    /// Queues `payload` for `<prefix>:<stream>`; never waits. A full queue or
    /// a Redis outage loses the publish, which the status counts.
    pub fn publish(&self, stream: &str, payload: &str) {
        let channel = format!("{}:{stream}", self.prefix);
        if self
            .publishes
            .try_send((channel, payload.to_owned()))
            .is_err()
        {
            self.status.publish_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Health and counters.
    pub fn status(&self) -> &BrokerStatus {
        &self.status
    }
}

async fn subscribe_loop(
    client: redis::Client,
    prefix: Arc<str>,
    events: mpsc::UnboundedSender<BrokerEvent>,
    status: Arc<BrokerStatus>,
    shutdown: CancellationToken,
) {
    let pattern = format!("{prefix}:*");
    let strip = prefix.len() + 1;
    let mut backoff = MIN_BACKOFF;
    let mut was_up = false;
    loop {
        let connected = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.psubscribe(&pattern).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::select! {
            _ = shutdown.cancelled() => return,
            connected = connected => connected,
        };
        match pubsub {
            Ok(mut pubsub) => {
                backoff = MIN_BACKOFF;
                status.subscribed.store(true, Ordering::Relaxed);
                if was_up {
                    status.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                info!(pattern, reconnected = was_up, "subscribed to Redis");
                let _ = events.send(BrokerEvent::Up {
                    reconnected: was_up,
                });
                was_up = true;
                let mut messages = pubsub.on_message();
                loop {
                    let message = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        message = messages.next() => message,
                    };
                    let Some(message) = message else { break };
                    let channel = message.get_channel_name();
                    let Some(stream) = channel.get(strip..) else {
                        continue;
                    };
                    let Ok(payload) = message.get_payload::<String>() else {
                        warn!(channel, "ignoring a non-UTF-8 broadcast from Redis");
                        continue;
                    };
                    status.received.fetch_add(1, Ordering::Relaxed);
                    let _ = events.send(BrokerEvent::Message {
                        stream: stream.to_owned(),
                        payload,
                    });
                }
                status.subscribed.store(false, Ordering::Relaxed);
                warn!("lost the Redis subscription; broadcasts from other nodes are paused");
                let _ = events.send(BrokerEvent::Down);
            }
            Err(error) => {
                status.subscribed.store(false, Ordering::Relaxed);
                warn!(%error, retry_in = ?backoff, "cannot subscribe to Redis");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn publish_loop(
    client: redis::Client,
    mut queue: mpsc::Receiver<(String, String)>,
    status: Arc<BrokerStatus>,
    shutdown: CancellationToken,
) {
    let mut connection: Option<redis::aio::MultiplexedConnection> = None;
    let mut backoff = MIN_BACKOFF;
    loop {
        if connection.is_none() {
            match client.get_multiplexed_async_connection().await {
                Ok(c) => {
                    connection = Some(c);
                    backoff = MIN_BACKOFF;
                    status.publishing.store(true, Ordering::Relaxed);
                }
                Err(error) => {
                    warn!(%error, retry_in = ?backoff, "cannot connect to Redis to publish");
                    status.publishing.store(false, Ordering::Relaxed);
                }
            }
        }
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = queue.recv() => next,
            // While disconnected, retry on a timer even when nothing is published.
            _ = tokio::time::sleep(backoff), if connection.is_none() => {
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let Some((channel, payload)) = next else {
            return;
        };
        let Some(conn) = connection.as_mut() else {
            status.publish_failures.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        match conn.publish::<_, _, ()>(&channel, &payload).await {
            Ok(()) => {
                status.published.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                warn!(%error, "publishing to Redis failed");
                status.publish_failures.fetch_add(1, Ordering::Relaxed);
                status.publishing.store(false, Ordering::Relaxed);
                connection = None;
            }
        }
    }
}

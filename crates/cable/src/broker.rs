//! Brokers carry broadcasts between nodes. Without one, broadcasts stay in
//! the process. With Redis, it behaves as Action Cable's Redis adapter does:
//! every node publishes its broadcasts to `<prefix>:<stream>` (bare
//! `<stream>` when the prefix is empty), payload the JSON message, and
//! subscribes to the exact channel of each stream that has a subscriber on
//! this node, from the first one's arrival until the last one leaves — so a
//! node hears only the streams it serves, and no channel name is a pattern.
//!
//! Redis pub/sub delivers at most once and says nothing when it drops a
//! message, so the broker reports when it goes down and comes back
//! ([`BrokerEvent`]); the application decides how to fill what it missed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::registry::StreamWatcher;

/// Publishes waiting to be sent to Redis; past this they are dropped (and counted).
const PUBLISH_QUEUE: usize = 16 * 1024;
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A queue a task keeps draining while it waits out a Redis outage.
trait Drain<T> {
    fn next_item(&mut self) -> impl Future<Output = Option<T>> + Send;
}

impl<T: Send> Drain<T> for mpsc::Receiver<T> {
    fn next_item(&mut self) -> impl Future<Output = Option<T>> + Send {
        self.recv()
    }
}

impl<T: Send> Drain<T> for mpsc::UnboundedReceiver<T> {
    fn next_item(&mut self) -> impl Future<Output = Option<T>> + Send {
        self.recv()
    }
}

/// Sleeps `backoff` before the next try at Redis, handing whatever arrives
/// on `queue` meanwhile to `take`; false if the server shuts down first.
async fn wait_out<T>(
    backoff: Duration,
    shutdown: &CancellationToken,
    queue: &mut impl Drain<T>,
    mut take: impl FnMut(T),
) -> bool {
    let sleep = tokio::time::sleep(backoff);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = &mut sleep => return true,
            Some(item) = queue.next_item() => take(item),
        }
    }
}
/// How long one Redis command or connection attempt may take before it counts as failed.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a subscription made ahead of a stream's first subscriber is
/// held for that subscriber to be registered.
const AHEAD_HOLD: Duration = Duration::from_secs(5);

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
    /// Redis channels subscribed right now: one per stream followed here.
    pub channels: AtomicU64,
}

impl BrokerStatus {
    /// True while both the subscription and the publishing connection work.
    pub fn healthy(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed) && self.publishing.load(Ordering::Relaxed)
    }
}

/// The Redis channel of `stream`: `<prefix>:<stream>`, or bare `<stream>`
/// when the prefix is empty, as Action Cable names them.
pub fn channel_name(prefix: &str, stream: &str) -> String {
    if prefix.is_empty() {
        stream.to_owned()
    } else {
        format!("{prefix}:{stream}")
    }
}

/// A change to the streams this node follows, for the subscriber task.
enum Follow {
    /// The stream gained its first (`true`) or lost its last (`false`) local subscriber.
    Changed(String, bool),
    /// Subscribe now, ahead of a subscriber about to be confirmed; answer
    /// once Redis has (or at once while Redis is away).
    Ahead(String, oneshot::Sender<()>),
}

/// A Redis pub/sub broker; cheap to clone.
#[derive(Clone)]
pub struct RedisBroker {
    prefix: Arc<str>,
    /// To the publisher task; bounded by [`PUBLISH_QUEUE`].
    publishes: mpsc::Sender<(String, String)>,
    /// To the subscriber task: streams gaining their first or losing their
    /// last local subscriber. Unbounded because the registry sends under a
    /// lock and must not wait; bounded in practice by subscribe and
    /// unsubscribe commands, each of which also costs a registry write.
    follows: mpsc::UnboundedSender<Follow>,
    status: Arc<BrokerStatus>,
}

impl RedisBroker {
    /// Connects to `url` and starts the subscriber and publisher tasks; events
    /// go to `events` until `shutdown` is cancelled. Fails only on a malformed
    /// URL: an unreachable Redis is retried with backoff, and reported as down.
    /// It subscribes only to the streams it is told of through
    /// [`RedisBroker::watcher`].
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
        let (follows, follow_rx) = mpsc::unbounded_channel();
        // Subscriber: owns the pub/sub connection and the set of streams
        // followed here; re-subscribes to all of them after any loss.
        tokio::spawn(
            Subscriber {
                client: client.clone(),
                prefix: prefix.clone(),
                events,
                status: status.clone(),
                wanted: HashSet::new(),
                ahead: HashMap::new(),
            }
            .run(follow_rx, shutdown.clone()),
        );
        // Publisher: owns the publishing connection; sends in queue order.
        tokio::spawn(publish_loop(client, queue, status.clone(), shutdown));
        Ok(Self {
            prefix,
            publishes,
            follows,
            status,
        })
    }

    /// Queues `payload` for the channel of `stream`; never waits. A full
    /// queue or a Redis outage loses the publish, which the status counts.
    pub fn publish(&self, stream: &str, payload: &str) {
        let channel = channel_name(&self.prefix, stream);
        if self
            .publishes
            .try_send((channel, payload.to_owned()))
            .is_err()
        {
            self.status.publish_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Subscribes to the channel of `stream` before its first subscriber is
    /// confirmed, as Action Cable confirms only after its `SUBSCRIBE`: a
    /// broadcast published right after the confirmation then arrives. Returns
    /// once Redis has answered, at once while Redis is away, and after at most
    /// two seconds; the subscription is held a few seconds for the subscriber.
    pub async fn subscribe_ahead(&self, stream: &str) {
        let (answer, answered) = oneshot::channel();
        if self
            .follows
            .send(Follow::Ahead(stream.to_owned(), answer))
            .is_ok()
        {
            let _ = tokio::time::timeout(REDIS_TIMEOUT, answered).await;
        }
    }

    /// What to give [`crate::Cable::watch_streams`], so the broker subscribes
    /// to exactly the streams this node's clients follow.
    pub fn watcher(&self) -> impl StreamWatcher {
        Follows(self.follows.clone())
    }

    /// Health and counters.
    pub fn status(&self) -> &BrokerStatus {
        &self.status
    }
}

/// Hands registry changes to the subscriber task without waiting.
struct Follows(mpsc::UnboundedSender<Follow>);

impl StreamWatcher for Follows {
    fn followed(&self, stream: &str, followed: bool) {
        let _ = self.0.send(Follow::Changed(stream.to_owned(), followed));
    }
}

/// The subscriber task's state.
struct Subscriber {
    client: redis::Client,
    prefix: Arc<str>,
    events: mpsc::UnboundedSender<BrokerEvent>,
    status: Arc<BrokerStatus>,
    /// Streams with a subscriber on this node, whether or not Redis is up.
    wanted: HashSet<String>,
    /// Streams subscribed ahead of their first subscriber, until when.
    ahead: HashMap<String, Instant>,
}

/// Why a connected subscription ended.
enum Ended {
    Shutdown,
    Lost,
}

impl Subscriber {
    async fn run(
        mut self,
        mut follows: mpsc::UnboundedReceiver<Follow>,
        shutdown: CancellationToken,
    ) {
        let mut backoff = MIN_BACKOFF;
        let mut was_up = false;
        loop {
            let connected = async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                // Proves the connection before any stream is followed.
                pubsub.ping::<()>().await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let pubsub = tokio::select! {
                _ = shutdown.cancelled() => return,
                connected = tokio::time::timeout(REDIS_TIMEOUT, connected) => connected,
            };
            match pubsub {
                Ok(Ok(pubsub)) => {
                    let (sink, messages) = pubsub.split();
                    let ended = self
                        .serve(sink, messages, &mut follows, &shutdown, was_up)
                        .await;
                    self.status.channels.store(0, Ordering::Relaxed);
                    if let Ended::Shutdown = ended {
                        return;
                    }
                    if self.status.subscribed.swap(false, Ordering::Relaxed) {
                        warn!(
                            "lost the Redis subscription; broadcasts from other nodes are paused"
                        );
                        let _ = self.events.send(BrokerEvent::Down);
                        was_up = true;
                        backoff = MIN_BACKOFF;
                    }
                }
                Ok(Err(error)) => {
                    warn!(%error, retry_in = ?backoff, "cannot subscribe to Redis");
                }
                Err(_) => {
                    warn!(retry_in = ?backoff, "cannot subscribe to Redis: timed out");
                }
            }
            // Follows that arrive while Redis is away only change `wanted`;
            // nobody waits for Redis while it is away: answers are dropped.
            if !wait_out(backoff, &shutdown, &mut follows, |follow| {
                drop(self.want(follow));
            })
            .await
            {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Records a change; returns who waits for the next subscription change.
    fn want(&mut self, follow: Follow) -> Option<oneshot::Sender<()>> {
        match follow {
            Follow::Changed(stream, true) => {
                self.ahead.remove(&stream);
                self.wanted.insert(stream);
                None
            }
            Follow::Changed(stream, false) => {
                self.wanted.remove(&stream);
                None
            }
            Follow::Ahead(stream, answer) => {
                if !self.wanted.contains(&stream) {
                    self.ahead.insert(stream, Instant::now() + AHEAD_HOLD);
                }
                Some(answer)
            }
        }
    }

    /// Keeps one connection's subscriptions equal to `wanted` and forwards
    /// its messages, until the connection fails or shutdown.
    async fn serve(
        &mut self,
        mut sink: redis::aio::PubSubSink,
        mut messages: redis::aio::PubSubStream,
        follows: &mut mpsc::UnboundedReceiver<Follow>,
        shutdown: &CancellationToken,
        reconnected: bool,
    ) -> Ended {
        // Channels subscribed on this connection, by stream.
        let mut subscribed: HashSet<String> = HashSet::new();
        if self.sync(&mut sink, &mut subscribed).await.is_err() {
            return Ended::Lost;
        }
        self.status.subscribed.store(true, Ordering::Relaxed);
        if reconnected {
            self.status.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        info!(
            channels = subscribed.len(),
            reconnected, "subscribed to Redis"
        );
        let _ = self.events.send(BrokerEvent::Up { reconnected });
        // Lets subscriptions made ahead of a subscriber that never came expire.
        let mut expire = tokio::time::interval(AHEAD_HOLD);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ended::Shutdown,
                Some(follow) = follows.recv() => {
                    let mut dirty = changes(&follow, &subscribed);
                    let mut waiting: Vec<_> = self.want(follow).into_iter().collect();
                    // Take every change already waiting, then send one
                    // SUBSCRIBE and one UNSUBSCRIBE for the lot.
                    while let Ok(follow) = follows.try_recv() {
                        dirty |= changes(&follow, &subscribed);
                        waiting.extend(self.want(follow));
                    }
                    // Most subscribes join a stream subscribed already: no
                    // need to compare every stream followed here.
                    if dirty && self.sync(&mut sink, &mut subscribed).await.is_err() {
                        return Ended::Lost;
                    }
                    for answer in waiting {
                        let _ = answer.send(());
                    }
                }
                _ = expire.tick(), if !self.ahead.is_empty() => {
                    if self.sync(&mut sink, &mut subscribed).await.is_err() {
                        return Ended::Lost;
                    }
                }
                message = messages.next() => {
                    let Some(message) = message else { return Ended::Lost };
                    self.forward(&message, &subscribed);
                }
            }
        }
    }

    /// Subscribes to the channels of wanted streams not yet subscribed, and
    /// unsubscribes from those no longer wanted.
    async fn sync(
        &mut self,
        sink: &mut redis::aio::PubSubSink,
        subscribed: &mut HashSet<String>,
    ) -> redis::RedisResult<()> {
        let now = Instant::now();
        self.ahead.retain(|_, until| *until > now);
        let wanted =
            |stream: &String| self.wanted.contains(stream) || self.ahead.contains_key(stream);
        let add: Vec<String> = self
            .wanted
            .iter()
            .chain(self.ahead.keys())
            .filter(|s| !subscribed.contains(*s))
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let drop: Vec<String> = subscribed.iter().filter(|s| !wanted(s)).cloned().collect();
        let channels = |streams: &[String]| -> Vec<String> {
            streams
                .iter()
                .map(|s| channel_name(&self.prefix, s))
                .collect()
        };
        let result = async {
            if !add.is_empty() {
                sink.subscribe(channels(&add)).await?;
                subscribed.extend(add);
            }
            if !drop.is_empty() {
                sink.unsubscribe(channels(&drop)).await?;
                for stream in &drop {
                    subscribed.remove(stream);
                }
            }
            Ok(())
        }
        .await;
        self.status
            .channels
            .store(subscribed.len() as u64, Ordering::Relaxed);
        if let Err(error) = &result {
            warn!(%error, "changing Redis subscriptions failed");
        }
        result
    }

    /// Hands one Redis message to the application as a broadcast on its stream.
    fn forward(&self, message: &redis::Msg, subscribed: &HashSet<String>) {
        let channel = message.get_channel_name();
        let stream = if self.prefix.is_empty() {
            Some(channel)
        } else {
            channel
                .strip_prefix(&*self.prefix)
                .and_then(|rest| rest.strip_prefix(':'))
        };
        // Only exact subscriptions exist; a message for a stream just
        // unsubscribed may still be in flight, and nobody here follows it.
        let Some(stream) = stream.filter(|s| subscribed.contains(*s)) else {
            return;
        };
        self.status.received.fetch_add(1, Ordering::Relaxed);
        let Ok(payload) = message.get_payload::<String>() else {
            warn!(channel, "ignoring a non-UTF-8 broadcast from Redis");
            return;
        };
        let _ = self.events.send(BrokerEvent::Message {
            stream: stream.to_owned(),
            payload,
        });
    }
}

/// Whether `follow` may change what a connection subscribed to
/// `subscribed` must be subscribed to.
fn changes(follow: &Follow, subscribed: &HashSet<String>) -> bool {
    match follow {
        Follow::Changed(stream, true) | Follow::Ahead(stream, _) => !subscribed.contains(stream),
        Follow::Changed(_, false) => true,
    }
}

/// Sends queued publishes in order through a [`ConnectionManager`], which
/// reconnects by itself; while Redis is away each publish fails at once and
/// is counted, and a ping on a timer notices when it is back.
async fn publish_loop(
    client: redis::Client,
    mut queue: mpsc::Receiver<(String, String)>,
    status: Arc<BrokerStatus>,
    shutdown: CancellationToken,
) {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(REDIS_TIMEOUT)
        .set_response_timeout(REDIS_TIMEOUT)
        .set_number_of_retries(1)
        .set_max_delay(MAX_BACKOFF.as_millis() as u64);
    let mut backoff = MIN_BACKOFF;
    // The manager needs one successful connection to exist; until then, retry.
    let mut connection = loop {
        let connecting = ConnectionManager::new_with_config(client.clone(), config.clone());
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return,
            attempt = connecting => attempt,
        };
        match attempt {
            Ok(connection) => break connection,
            Err(error) => {
                warn!(%error, retry_in = ?backoff, "cannot connect to Redis to publish");
                // Publishes meanwhile are lost and counted, as during any outage.
                let lost = |_| {
                    status.publish_failures.fetch_add(1, Ordering::Relaxed);
                };
                if !wait_out(backoff, &shutdown, &mut queue, lost).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    };
    status.publishing.store(true, Ordering::Relaxed);
    backoff = MIN_BACKOFF;
    loop {
        let up = status.publishing.load(Ordering::Relaxed);
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = queue.recv() => next,
            // While Redis is away, check on a timer even when nothing is published.
            _ = tokio::time::sleep(backoff), if !up => {
                if redis::cmd("PING").query_async::<()>(&mut connection).await.is_ok() {
                    info!("publishing to Redis again");
                    status.publishing.store(true, Ordering::Relaxed);
                    backoff = MIN_BACKOFF;
                } else {
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                continue;
            }
        };
        let Some((channel, payload)) = next else {
            return;
        };
        let published = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(&payload)
            .query_async::<()>(&mut connection)
            .await;
        match published {
            Ok(()) => {
                status.published.fetch_add(1, Ordering::Relaxed);
                if !up {
                    status.publishing.store(true, Ordering::Relaxed);
                    backoff = MIN_BACKOFF;
                }
            }
            Err(error) => {
                if up {
                    warn!(%error, "publishing to Redis failed");
                }
                status.publish_failures.fetch_add(1, Ordering::Relaxed);
                status.publishing.store(false, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::channel_name;

    #[test]
    fn an_empty_prefix_names_the_bare_stream_as_rails_does() {
        assert_eq!(channel_name("", "chatrooms:1"), "chatrooms:1");
        assert_eq!(channel_name("app", "chatrooms:1"), "app:chatrooms:1");
    }
}

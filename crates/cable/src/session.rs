//! One client's session: the welcome, its subscriptions, commands in,
//! frames out, pings, and the goodbye.
//!
//! A session is a single task. It owns the socket, so reads and writes never
//! contend; broadcasts reach it through its bounded [`Outbox`] and are
//! written in batches (all that is queued, then one flush).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code};
use futures_util::SinkExt;
use tracing::{debug, warn};

use crate::channel::{Channel, Params};
use crate::protocol::{self, ActionData, Command, DisconnectReason, Identifier};
use crate::registry::{ConnId, Outbox};
use crate::server::Inner;

/// Most queued frames written before one flush.
const BATCH: usize = 256;
/// How long a goodbye may take to write before the socket is dropped.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

struct Subscribed<I> {
    channel: Arc<dyn Channel<I>>,
    params: Params,
    streams: Vec<String>,
}

struct Session<I> {
    inner: Arc<Inner<I>>,
    id: ConnId,
    identity: I,
    outbox: Outbox,
    /// Keyed by the identifier string exactly as the client sent it.
    subscriptions: HashMap<Arc<str>, Subscribed<I>>,
}

/// Why the loop ended.
enum End {
    /// The client left or the socket failed: nothing more to send.
    Gone,
    /// The server ends the session and says why.
    Disconnect(DisconnectReason),
    /// The client broke a limit: close the socket with this code.
    Close(u16, &'static str),
}

pub(crate) async fn run<I: Send + Sync + 'static>(
    inner: Arc<Inner<I>>,
    mut socket: WebSocket,
    identity: Option<I>,
) {
    let Some(identity) = identity else {
        goodbye(&mut socket, End::Disconnect(DisconnectReason::Unauthorized)).await;
        return;
    };
    inner.stats.connections.fetch_add(1, Ordering::Relaxed);
    let (outbox, mut queue, overflow) = Outbox::new(inner.config.outbox_capacity);
    let mut session = Session {
        id: inner.next_conn_id(),
        inner: inner.clone(),
        identity,
        outbox,
        subscriptions: HashMap::new(),
    };
    let mut ping = inner.ping.clone();
    ping.mark_unchanged();

    let end = if socket
        .send(Message::Text(protocol::welcome()))
        .await
        .is_err()
    {
        End::Gone
    } else {
        loop {
            tokio::select! {
                _ = inner.shutdown.cancelled() => break End::Disconnect(DisconnectReason::ServerRestart),
                _ = overflow.notified() => break End::Disconnect(DisconnectReason::TooSlow),
                Some(frame) = queue.recv() => {
                    if write_batch(&mut socket, frame, &mut queue).await.is_err() {
                        break End::Gone;
                    }
                }
                changed = ping.changed() => {
                    if changed.is_err() {
                        break End::Disconnect(DisconnectReason::ServerRestart);
                    }
                    let frame = ping.borrow_and_update().clone();
                    if socket.send(Message::Text(frame)).await.is_err() {
                        break End::Gone;
                    }
                }
                incoming = socket.recv() => match incoming {
                    None | Some(Ok(Message::Close(_))) => break End::Gone,
                    Some(Err(error)) => break read_failed(session.id, error),
                    Some(Ok(Message::Text(text))) => {
                        for reply in session.handle(&text).await {
                            if socket.send(Message::Text(reply)).await.is_err() {
                                break;
                            }
                        }
                    }
                    Some(Ok(Message::Binary(bytes))) => {
                        warn!(conn = session.id, len = bytes.len(), "ignoring a binary frame: the JSON protocol takes text only");
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                },
            }
        }
    };
    session.unsubscribe_all();
    inner.stats.connections.fetch_sub(1, Ordering::Relaxed);
    goodbye(&mut socket, end).await;
}

/// Writes `first` and whatever else is queued, then flushes once.
async fn write_batch(
    socket: &mut WebSocket,
    first: Utf8Bytes,
    queue: &mut tokio::sync::mpsc::Receiver<Utf8Bytes>,
) -> Result<(), axum::Error> {
    socket.feed(Message::Text(first)).await?;
    for _ in 1..BATCH {
        match queue.try_recv() {
            Ok(frame) => socket.feed(Message::Text(frame)).await?,
            Err(_) => break,
        }
    }
    socket.flush().await
}

fn read_failed(conn: ConnId, error: axum::Error) -> End {
    let too_big = error
        .into_inner()
        .downcast::<tungstenite::Error>()
        .map(|e| matches!(*e, tungstenite::Error::Capacity(_)))
        .unwrap_or(false);
    if too_big {
        warn!(
            conn,
            "closing a connection whose frame exceeds the size limit"
        );
        End::Close(close_code::SIZE, "frame too large")
    } else {
        debug!(conn, "socket read failed");
        End::Gone
    }
}

async fn goodbye(socket: &mut WebSocket, end: End) {
    let frames = match end {
        End::Gone => return,
        End::Disconnect(reason) => vec![
            Message::Text(protocol::disconnect(reason)),
            Message::Close(Some(CloseFrame {
                code: close_code::NORMAL,
                reason: Utf8Bytes::from_static(""),
            })),
        ],
        End::Close(code, reason) => vec![Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        }))],
    };
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, async {
        for frame in frames {
            socket.send(frame).await?;
        }
        Ok::<_, axum::Error>(())
    })
    .await;
}

impl<I: Send + Sync + 'static> Session<I> {
    /// Runs one client frame; returns the frames to send straight back.
    async fn handle(&mut self, text: &str) -> Vec<Utf8Bytes> {
        let command = match Command::parse(text) {
            Ok(command) => command,
            Err(error) => {
                warn!(conn = self.id, %error, "ignoring a malformed frame");
                return Vec::new();
            }
        };
        match command {
            Command::Subscribe { identifier } => vec![self.subscribe(identifier).await],
            Command::Unsubscribe { identifier } => {
                self.unsubscribe(&identifier);
                Vec::new()
            }
            Command::Message { identifier, data } => self.perform(&identifier, &data).await,
        }
    }

    async fn subscribe(&mut self, identifier: String) -> Utf8Bytes {
        if self.subscriptions.contains_key(identifier.as_str()) {
            // Confirm again, so a client that retries never loops.
            return protocol::confirm_subscription(&identifier);
        }
        let reject = |why: &str| {
            warn!(conn = self.id, identifier = %identifier, why, "rejecting a subscription");
            protocol::reject_subscription(&identifier)
        };
        if self.subscriptions.len() >= self.inner.config.max_subscriptions {
            return reject("too many subscriptions on this connection");
        }
        let Some(parsed) = Identifier::parse(&identifier) else {
            return reject("identifier is not a JSON object with a channel");
        };
        let Some(channel) = self.inner.channels.get(&parsed.channel).cloned() else {
            return reject("unknown channel");
        };
        let subscription = match channel.subscribe(&self.identity, &parsed.params).await {
            Ok(subscription) => subscription,
            Err(rejection) => return reject(&rejection.0),
        };
        // Register before confirming, so no broadcast after the confirmation is missed.
        let key: Arc<str> = Arc::from(identifier.as_str());
        for stream in &subscription.streams {
            self.inner.registry.add(stream, &key, self.id, &self.outbox);
        }
        self.inner
            .stats
            .subscriptions
            .fetch_add(1, Ordering::Relaxed);
        self.subscriptions.insert(
            key,
            Subscribed {
                channel,
                params: parsed.params,
                streams: subscription.streams,
            },
        );
        protocol::confirm_subscription(&identifier)
    }

    fn unsubscribe(&mut self, identifier: &str) {
        let Some(subscribed) = self.subscriptions.remove(identifier) else {
            warn!(
                conn = self.id,
                identifier, "ignoring unsubscribe for an unknown identifier"
            );
            return;
        };
        for stream in &subscribed.streams {
            self.inner.registry.remove(stream, identifier, self.id);
        }
        self.inner
            .stats
            .subscriptions
            .fetch_sub(1, Ordering::Relaxed);
    }

    fn unsubscribe_all(&mut self) {
        let identifiers: Vec<Arc<str>> = self.subscriptions.keys().cloned().collect();
        for identifier in identifiers {
            self.unsubscribe(&identifier);
        }
    }

    async fn perform(&self, identifier: &str, data: &str) -> Vec<Utf8Bytes> {
        let Some(subscribed) = self.subscriptions.get(identifier) else {
            warn!(
                conn = self.id,
                identifier, "ignoring a message for an unknown identifier"
            );
            return Vec::new();
        };
        let Some(action) = ActionData::parse(data) else {
            warn!(
                conn = self.id,
                identifier, "ignoring a message whose data has no action"
            );
            return Vec::new();
        };
        match subscribed
            .channel
            .perform(&self.identity, &subscribed.params, action)
            .await
        {
            Some(reply) => vec![protocol::to_subscription(identifier, &reply)],
            None => Vec::new(),
        }
    }
}

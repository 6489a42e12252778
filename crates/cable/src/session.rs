//! One client's session: the welcome, its subscriptions, commands in,
//! frames out, pings, history, restore and the goodbye.
//!
//! A session is a single task. It owns the socket, so reads and writes never
//! contend; broadcasts reach it through its bounded [`Outbox`] and are
//! written in batches (all that is queued, then one flush).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code};
use futures_util::SinkExt;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::channel::{Channel, HistoryFrom, Params};
use crate::protocol::{
    self, ActionData, Command, Dialect, DisconnectReason, HistoryRequest, Identifier, Position,
};
use crate::registry::{ConnId, Outbox, Outgoing, StreamKey};
use crate::server::{Inner, Parked};

/// Most queued frames written before one flush.
const BATCH: usize = 256;
/// How long a goodbye may take to write before the socket is dropped.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

struct Subscribed<I> {
    channel: Arc<dyn Channel<I>>,
    params: Params,
    streams: Vec<String>,
}

/// A subscription kept with a parked session, to be registered again on restore.
pub(crate) struct Restorable<I> {
    identifier: Arc<str>,
    channel: Arc<dyn Channel<I>>,
    params: Params,
    streams: Vec<String>,
}

struct Session<I> {
    inner: Arc<Inner<I>>,
    id: ConnId,
    dialect: Dialect,
    identity: Arc<I>,
    outbox: Outbox,
    /// Keyed by the identifier string exactly as the client sent it.
    subscriptions: HashMap<Arc<str>, Subscribed<I>>,
    /// Extended clients: the last offset written per subscription and stream,
    /// so live frames that history already sent are skipped.
    written: HashMap<StreamKey, i64>,
    /// Extended clients: the id under which this session can be restored.
    sid: Option<String>,
    /// Restored subscriptions whose client has not asked for history yet:
    /// their live frames wait here, so the replay comes first and the client's
    /// position never jumps over a gap. Released by the history answer, or
    /// after [`HOLD_TIMEOUT`], or when more than a queue's worth piles up.
    held: HashMap<Arc<str>, Vec<Outgoing>>,
    hold_until: Option<tokio::time::Instant>,
}

/// How long live frames of a restored subscription wait for its history request.
const HOLD_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the loop ended.
enum End {
    /// The client left or the socket failed: nothing more to send.
    Gone,
    /// The server ends the session and says why.
    Disconnect(DisconnectReason),
    /// The client broke a limit: close the socket with this code.
    Close(u16, &'static str),
}

/// A frame to write now, in order.
type Replies = Vec<Utf8Bytes>;

pub(crate) async fn run<I: PartialEq + Send + Sync + 'static>(
    inner: Arc<Inner<I>>,
    mut socket: WebSocket,
    dialect: Dialect,
    identity: Option<I>,
    restore: Option<String>,
) {
    let Some(identity) = identity else {
        goodbye(&mut socket, End::Disconnect(DisconnectReason::Unauthorized)).await;
        return;
    };
    let identity = Arc::new(identity);
    inner.stats.connections.fetch_add(1, Ordering::Relaxed);
    let (outbox, mut queue, overflow) = Outbox::new(inner.config.outbox_capacity);
    let id = inner.next_conn_id();
    let mut kicked = inner.go_live(id, identity.clone());
    let mut session = Session {
        id,
        dialect,
        inner: inner.clone(),
        identity,
        outbox,
        subscriptions: HashMap::new(),
        written: HashMap::new(),
        sid: (dialect == Dialect::Extended).then(|| new_sid(id)),
        held: HashMap::new(),
        hold_until: None,
    };
    let mut ping = inner.ping.clone();
    ping.mark_unchanged();

    let welcome = match dialect {
        Dialect::V1 => protocol::welcome(),
        Dialect::Extended => {
            let restored = restore.and_then(|sid| session.restore(&sid));
            let sid = session.sid.clone().unwrap_or_default();
            protocol::welcome_extended(&sid, restored.as_deref())
        }
    };
    let end = if socket.send(Message::Text(welcome)).await.is_err() {
        End::Gone
    } else {
        loop {
            let hold_until = session.hold_until;
            let hold_expired = async move {
                match hold_until {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = inner.shutdown.cancelled() => break End::Disconnect(DisconnectReason::ServerRestart),
                _ = hold_expired => {
                    warn!(conn = session.id, "no history request after a restore: releasing live frames");
                    let frames = session.release_held();
                    if write_all(&mut socket, frames).await.is_err() {
                        break End::Gone;
                    }
                }
                reason = &mut kicked => break End::Disconnect(reason.unwrap_or(DisconnectReason::ServerRestart)),
                _ = overflow.notified() => break too_slow(session.id),
                Some(first) = queue.recv() => {
                    // A client that stopped reading blocks this write once its
                    // socket buffers fill: race it against the queue overflowing,
                    // so the client is dropped instead of held forever.
                    let written = tokio::select! {
                        written = session.write_queued(&mut socket, first, &mut queue) => written,
                        _ = overflow.notified() => break too_slow(session.id),
                    };
                    if written.is_err() {
                        break End::Gone;
                    }
                }
                changed = ping.changed() => {
                    if changed.is_err() {
                        break End::Disconnect(DisconnectReason::ServerRestart);
                    }
                    let frame = ping.borrow_and_update().clone();
                    let sent = tokio::select! {
                        sent = socket.send(Message::Text(frame)) => sent,
                        _ = overflow.notified() => break too_slow(session.id),
                    };
                    if sent.is_err() {
                        break End::Gone;
                    }
                }
                incoming = socket.recv() => match incoming {
                    None | Some(Ok(Message::Close(_))) => break End::Gone,
                    Some(Err(error)) => break read_failed(session.id, error),
                    Some(Ok(Message::Text(text))) => {
                        // Boxed: commands are rare next to idle time, and their
                        // state (channel calls, history) would otherwise
                        // widen every idle connection's task.
                        let replies = Box::pin(session.handle(&text)).await;
                        let written = tokio::select! {
                            written = write_all(&mut socket, replies) => written,
                            _ = overflow.notified() => break too_slow(session.id),
                        };
                        if written.is_err() {
                            break End::Gone;
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
    inner.leave(session.id);
    // An extended client that merely lost its socket may come back with its sid.
    let restorable = matches!(end, End::Gone) && dialect == Dialect::Extended;
    session.close(restorable);
    inner.stats.connections.fetch_sub(1, Ordering::Relaxed);
    goodbye(&mut socket, end).await;
}

fn too_slow(conn: ConnId) -> End {
    warn!(
        conn,
        "dropping a client that stopped reading: its send queue is full (too_slow)"
    );
    End::Disconnect(DisconnectReason::TooSlow)
}

/// A session id: unique per connection and unguessable.
fn new_sid(conn: ConnId) -> String {
    use std::hash::{BuildHasher, RandomState};
    let a = RandomState::new().hash_one((conn, Instant::now()));
    let b = RandomState::new().hash_one((a, std::process::id()));
    format!("{a:016x}{b:016x}")
}

async fn write_all(socket: &mut WebSocket, frames: Replies) -> Result<(), axum::Error> {
    if frames.is_empty() {
        return Ok(());
    }
    for frame in frames {
        socket.feed(Message::Text(frame)).await?;
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

impl<I: PartialEq + Send + Sync + 'static> Session<I> {
    /// Writes `first` and whatever else is queued, then flushes once. Frames
    /// an extended client already got from history are skipped.
    async fn write_queued(
        &mut self,
        socket: &mut WebSocket,
        first: Outgoing,
        queue: &mut mpsc::Receiver<Outgoing>,
    ) -> Result<(), axum::Error> {
        // Let the broadcaster finish its burst first: one yield turned many
        // one-frame writes into one write of many frames (BENCHMARKS.md).
        tokio::task::yield_now().await;
        let mut next = Some(first);
        let mut written = 0;
        while let Some(outgoing) = next.take() {
            if let Some(outgoing) = self.hold(outgoing) {
                if self.fresh(&outgoing) {
                    socket.feed(Message::Text(outgoing.frame.clone())).await?;
                    written += 1;
                }
            } else if self.held.values().map(Vec::len).sum::<usize>()
                > self.inner.config.outbox_capacity
            {
                for frame in self.release_held() {
                    socket.feed(Message::Text(frame)).await?;
                }
            }
            if written < BATCH {
                next = queue.try_recv().ok();
            }
        }
        socket.flush().await
    }

    /// Keeps a live frame of a subscription awaiting its history; gives
    /// back any other frame.
    fn hold(&mut self, outgoing: Outgoing) -> Option<Outgoing> {
        if let Some((key, _)) = &outgoing.position
            && let Some(waiting) = self.held.get_mut(&key.identifier)
        {
            waiting.push(outgoing);
            return None;
        }
        Some(outgoing)
    }

    /// Ends every hold; returns the held frames the client still lacks.
    fn release_held(&mut self) -> Replies {
        self.hold_until = None;
        let held: Vec<Outgoing> = self.held.drain().flat_map(|(_, frames)| frames).collect();
        held.into_iter()
            .filter(|o| self.fresh(o))
            .map(|o| o.frame.clone())
            .collect()
    }

    /// `reject_history`, then whatever was held for the subscription.
    fn rejected_history(&mut self, identifier: &str) -> Replies {
        let mut replies = vec![protocol::reject_history(identifier)];
        replies.extend(self.release(identifier));
        replies
    }

    /// Ends the hold of one subscription; returns what the client still lacks.
    fn release(&mut self, identifier: &str) -> Replies {
        let held = self.held.remove(identifier).unwrap_or_default();
        if self.held.is_empty() {
            self.hold_until = None;
        }
        held.into_iter()
            .filter(|o| self.fresh(o))
            .map(|o| o.frame.clone())
            .collect()
    }

    /// Whether a queued frame is new to this client, noting it as written.
    fn fresh(&mut self, outgoing: &Outgoing) -> bool {
        let Some((key, offset)) = &outgoing.position else {
            return true;
        };
        match self.written.get_mut(&**key) {
            Some(last) if *last >= *offset => false,
            Some(last) => {
                *last = *offset;
                true
            }
            None => {
                self.written.insert(
                    StreamKey {
                        identifier: key.identifier.clone(),
                        stream: key.stream.clone(),
                    },
                    *offset,
                );
                true
            }
        }
    }

    /// Runs one client frame; returns the frames to send straight back.
    async fn handle(&mut self, text: &str) -> Replies {
        let command = match Command::parse(text) {
            Ok(command) => command,
            Err(error) => {
                warn!(conn = self.id, %error, "ignoring a malformed frame");
                return Vec::new();
            }
        };
        match command {
            Command::Subscribe {
                identifier,
                history,
            } => {
                let mut replies = vec![self.subscribe(&identifier).await];
                if let (Some(history), Dialect::Extended) = (history, self.dialect)
                    && self.subscriptions.contains_key(identifier.as_str())
                {
                    replies.extend(self.history(&identifier, &history).await);
                }
                replies
            }
            Command::Unsubscribe { identifier } => {
                self.unsubscribe(&identifier);
                Vec::new()
            }
            Command::Message { identifier, data } => self.perform(&identifier, &data).await,
            Command::History {
                identifier,
                history,
            } if self.dialect == Dialect::Extended => self.history(&identifier, &history).await,
            Command::History { .. } => {
                warn!(
                    conn = self.id,
                    "ignoring history: it needs the extended protocol"
                );
                Vec::new()
            }
            Command::Pong => Vec::new(),
        }
    }

    async fn subscribe(&mut self, identifier: &str) -> Utf8Bytes {
        if self.subscriptions.contains_key(identifier) {
            // Confirm again, so a client that retries never loops.
            return protocol::confirm_subscription(identifier);
        }
        let reject = |why: &str| {
            warn!(conn = self.id, identifier, why, "rejecting a subscription");
            protocol::reject_subscription(identifier)
        };
        if self.subscriptions.len() >= self.inner.config.max_subscriptions {
            return reject("too many subscriptions on this connection");
        }
        let Some(parsed) = Identifier::parse(identifier) else {
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
        self.register(
            Arc::from(identifier),
            channel,
            parsed.params,
            subscription.streams,
        );
        protocol::confirm_subscription(identifier)
    }

    fn register(
        &mut self,
        identifier: Arc<str>,
        channel: Arc<dyn Channel<I>>,
        params: Params,
        streams: Vec<String>,
    ) {
        for stream in &streams {
            self.inner
                .registry
                .add(stream, &identifier, self.dialect, self.id, &self.outbox);
        }
        self.inner
            .stats
            .subscriptions
            .fetch_add(1, Ordering::Relaxed);
        self.subscriptions.insert(
            identifier,
            Subscribed {
                channel,
                params,
                streams,
            },
        );
    }

    fn unsubscribe(&mut self, identifier: &str) -> Option<Subscribed<I>> {
        let Some(subscribed) = self.subscriptions.remove(identifier) else {
            warn!(
                conn = self.id,
                identifier, "ignoring unsubscribe for an unknown identifier"
            );
            return None;
        };
        for stream in &subscribed.streams {
            self.inner.registry.remove(stream, identifier, self.id);
        }
        self.written.retain(|key, _| &*key.identifier != identifier);
        self.held.remove(identifier);
        self.inner
            .stats
            .subscriptions
            .fetch_sub(1, Ordering::Relaxed);
        Some(subscribed)
    }

    /// Drops every subscription; with `park`, keeps them for a restore.
    fn close(&mut self, park: bool) {
        let identifiers: Vec<Arc<str>> = self.subscriptions.keys().cloned().collect();
        let mut kept = Vec::new();
        for identifier in identifiers {
            if let Some(s) = self.unsubscribe(&identifier) {
                kept.push(Restorable {
                    identifier,
                    channel: s.channel,
                    params: s.params,
                    streams: s.streams,
                });
            }
        }
        if let (true, Some(sid)) = (park, self.sid.take()) {
            self.inner.park(
                sid,
                Parked {
                    identity: self.identity.clone(),
                    subscriptions: kept,
                    expires: Instant::now() + self.inner.config.session_ttl,
                },
            );
        }
    }

    /// Re-registers the subscriptions of the session parked under `sid`,
    /// if it is this identity's; returns their identifiers.
    fn restore(&mut self, sid: &str) -> Option<Vec<Arc<str>>> {
        let parked = self.inner.unpark(sid, &self.identity)?;
        let mut ids = Vec::with_capacity(parked.subscriptions.len());
        for s in parked.subscriptions {
            ids.push(s.identifier.clone());
            self.held.insert(s.identifier.clone(), Vec::new());
            self.register(s.identifier, s.channel, s.params, s.streams);
        }
        if !ids.is_empty() {
            self.hold_until = Some(tokio::time::Instant::now() + HOLD_TIMEOUT);
        }
        debug!(conn = self.id, restored = ids.len(), "restored a session");
        Some(ids)
    }

    /// Replays what a subscription missed in each of its streams, then
    /// `confirm_history`; `reject_history` if any stream cannot be replayed.
    async fn history(&mut self, identifier: &str, request: &HistoryRequest) -> Replies {
        let Some(subscribed) = self.subscriptions.get(identifier) else {
            warn!(
                conn = self.id,
                identifier, "history for an unknown identifier"
            );
            return vec![protocol::reject_history(identifier)];
        };
        let channel = subscribed.channel.clone();
        let streams = subscribed.streams.clone();
        let epoch = self.inner.config.epoch.clone();
        let mut replies = Vec::new();
        let key_identifier: Arc<str> = Arc::from(identifier);
        for stream in streams {
            let from = match (request.streams.get(&stream), request.since) {
                (Some(position), _) if position.epoch == epoch => {
                    HistoryFrom::After(position.offset)
                }
                (_, Some(since)) => HistoryFrom::Since(since),
                (Some(_), None) => {
                    warn!(
                        conn = self.id,
                        identifier, stream, "history of another epoch"
                    );
                    return self.rejected_history(identifier);
                }
                (None, None) => continue,
            };
            let items = match channel.history(&self.identity, &stream, from).await {
                Ok(items) => items,
                Err(rejection) => {
                    warn!(conn = self.id, identifier, reason = %rejection.0, "rejecting history");
                    return self.rejected_history(identifier);
                }
            };
            let key = StreamKey {
                identifier: key_identifier.clone(),
                stream: Arc::from(stream.as_str()),
            };
            let mut last = self.written.get(&key).copied().unwrap_or(i64::MIN);
            for item in items {
                if item.offset <= last {
                    continue;
                }
                let position = Position {
                    stream: &stream,
                    epoch: &epoch,
                    offset: item.offset,
                };
                replies.push(protocol::to_subscription_at(
                    identifier,
                    &item.message,
                    position,
                ));
                last = item.offset;
            }
            if last != i64::MIN {
                self.written.insert(key, last);
            }
        }
        replies.push(protocol::confirm_history(identifier));
        replies.extend(self.release(identifier));
        replies
    }

    async fn perform(&self, identifier: &str, data: &str) -> Replies {
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
        subscribed
            .channel
            .perform(&self.identity, &subscribed.params, action)
            .await
            .iter()
            .map(|reply| protocol::to_subscription(identifier, reply))
            .collect()
    }
}

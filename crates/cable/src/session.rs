//! One client's session: the welcome, its subscriptions, commands in,
//! frames out, pings, history, restore and the goodbye.
//!
//! A session is a single task. It owns the socket, so reads and writes never
//! contend; broadcasts reach it through its bounded [`Outbox`] as frames
//! already on the wire's terms, and whatever is queued leaves in one
//! vectored write ([`crate::wire`]).

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, warn};
use tungstenite::Message;

use crate::channel::{Channel, HistoryFrom, Params};
use crate::protocol::{
    self, ActionData, Command, Dialect, DisconnectReason, HistoryRequest, Identifier, Position,
};
use crate::registry::{ConnId, Frame, Outbox, Outgoing, Overflow, StreamKey};
use crate::server::{Inner, Parked};
use crate::wire::{self, Pending};

/// The client's socket: tungstenite reads it; frames are written to the
/// stream underneath by hand (see [`crate::wire`]).
pub(crate) type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Most queued frames gathered for one write.
const BATCH: usize = 256;
/// How long a goodbye may take to write before the socket is dropped.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a client dropped as too slow has to read what it was sent and
/// the reason, unless the server is shutting down: it stopped reading, so
/// its goodbye waits behind full socket buffers.
const TOO_SLOW_GOODBYE_TIMEOUT: Duration = Duration::from_secs(10);
/// Close codes (RFC 6455 §7.4.1).
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_TOO_BIG: u16 = 1009;

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
    /// Frames on their way to the socket, so a write cut short by an
    /// overflow is finished before the goodbye.
    pending: Pending<Outgoing>,
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

/// Frames to write now, in order, each a whole frame on the wire.
type Replies = Vec<Outgoing>;

/// A reply that belongs to no stream position, framed for the wire.
fn reply(payload: impl AsRef<str>) -> Outgoing {
    Arc::new(Frame::unpositioned(wire::text(payload.as_ref())))
}

pub(crate) async fn run<I: PartialEq + Send + Sync + 'static>(
    inner: Arc<Inner<I>>,
    mut socket: Socket,
    dialect: Dialect,
    identity: Option<I>,
    restore: Option<String>,
) {
    let Some(identity) = identity else {
        let unauthorized = End::Disconnect(DisconnectReason::Unauthorized);
        let _ = tokio::time::timeout(
            GOODBYE_TIMEOUT,
            goodbye(&mut socket, Pending::default(), unauthorized),
        )
        .await;
        return;
    };
    let identity = Arc::new(identity);
    inner.stats.connections.fetch_add(1, Ordering::Relaxed);
    let (outbox, mut queue, overflow) = Outbox::new(inner.config.outbox_capacity);
    let id = inner.next_conn_id();
    let mut kicked = inner.go_live(id, identity.clone(), &outbox);
    let mut session = Session {
        id,
        dialect,
        inner: inner.clone(),
        identity,
        outbox,
        pending: Pending::default(),
        subscriptions: HashMap::new(),
        written: HashMap::new(),
        sid: (dialect == Dialect::Extended).then(|| new_sid(id)),
        held: HashMap::new(),
        hold_until: None,
    };

    let welcome = match dialect {
        Dialect::V1 => protocol::welcome(),
        Dialect::Extended => {
            let restored = restore.and_then(|sid| session.restore(&sid));
            let sid = session.sid.clone().unwrap_or_default();
            protocol::welcome_extended(&sid, restored.as_deref())
        }
    };
    session.pending.push(reply(welcome));
    let end = if session.flush(&mut socket).await.is_err() {
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
                _ = hold_expired => {
                    warn!(conn = session.id, "no history request after a restore: releasing live frames");
                    let frames = session.release_held();
                    session.queue_all(frames);
                    if let Err(end) = session.send(&mut socket, &overflow).await {
                        break end;
                    }
                }
                reason = &mut kicked => break End::Disconnect(reason.unwrap_or(DisconnectReason::ServerRestart)),
                // Pings come through the queue too (`Inner::ping_all`).
                Some(first) = queue.recv() => {
                    session.take_queued(first, &mut queue).await;
                    if let Err(end) = session.send(&mut socket, &overflow).await {
                        break end;
                    }
                }
                incoming = socket.next() => match incoming {
                    None | Some(Ok(Message::Close(_))) => break End::Gone,
                    Some(Err(error)) => break read_failed(session.id, error),
                    Some(Ok(Message::Text(text))) => {
                        // Boxed: commands are rare next to idle time, and their
                        // state (channel calls, history) would otherwise
                        // widen every idle connection's task.
                        let replies = Box::pin(session.handle(&text)).await;
                        session.queue_all(replies);
                        if let Err(end) = session.send(&mut socket, &overflow).await {
                            break end;
                        }
                    }
                    Some(Ok(Message::Ping(_))) => {
                        // tungstenite has queued the pong: send it now, whole,
                        // so it never interleaves with frames written by hand.
                        if socket.flush().await.is_err() {
                            break End::Gone;
                        }
                    }
                    Some(Ok(Message::Binary(bytes))) => {
                        warn!(conn = session.id, len = bytes.len(), "ignoring a binary frame: the JSON protocol takes text only");
                    }
                    Some(Ok(Message::Pong(_) | Message::Frame(_))) => {}
                },
            }
        }
    };
    inner.leave(session.id);
    // An extended client that merely lost its socket may come back with its sid.
    let restorable = matches!(end, End::Gone) && dialect == Dialect::Extended;
    session.close(restorable);
    inner.stats.connections.fetch_sub(1, Ordering::Relaxed);
    let mut pending = std::mem::take(&mut session.pending);
    let linger = match end {
        End::Disconnect(DisconnectReason::TooSlow) => {
            // What was taken after the lost frame must not be written.
            pending.discard_unstarted();
            TOO_SLOW_GOODBYE_TIMEOUT
        }
        _ => GOODBYE_TIMEOUT,
    };
    tokio::select! {
        _ = tokio::time::timeout(linger, goodbye(&mut socket, pending, end)) => {}
        // A shutdown gives every client the same short goodbye.
        _ = async {
            inner.shutdown.cancelled().await;
            tokio::time::sleep(GOODBYE_TIMEOUT).await;
        } => {}
    }
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

fn read_failed(conn: ConnId, error: tungstenite::Error) -> End {
    if matches!(error, tungstenite::Error::Capacity(_)) {
        warn!(
            conn,
            "closing a connection whose frame exceeds the size limit"
        );
        End::Close(CLOSE_TOO_BIG, "frame too large")
    } else {
        debug!(conn, %error, "socket read failed");
        End::Gone
    }
}

/// Finishes whatever was being written, then says why the session ends
/// and closes. Callers bound the time it may take.
async fn goodbye(socket: &mut Socket, mut pending: Pending<Outgoing>, end: End) {
    match end {
        End::Gone => return,
        End::Disconnect(reason) => {
            pending.push(reply(protocol::disconnect(reason)));
            pending.push(Arc::new(Frame::unpositioned(wire::close(CLOSE_NORMAL, ""))));
        }
        End::Close(code, reason) => {
            pending.push(Arc::new(Frame::unpositioned(wire::close(code, reason))));
        }
    }
    let _ = pending.write_to(socket.get_mut()).await;
}

impl<I: PartialEq + Send + Sync + 'static> Session<I> {
    /// Writes whatever is pending, unless the queue has overflowed; ends
    /// the session if it did or the socket failed. The overflow is checked
    /// first (`biased`), so a frame lost to a full queue ends the session
    /// before anything after the gap is written; and the write races it, so
    /// a client that stopped reading, whose full socket buffers block the
    /// write, is dropped as too slow instead of being held forever.
    async fn send(&mut self, socket: &mut Socket, overflow: &Overflow) -> Result<(), End> {
        let id = self.id;
        tokio::select! {
            biased;
            _ = overflow.wait() => Err(too_slow(id)),
            written = self.flush(socket) => written.map_err(|_| End::Gone),
        }
    }

    /// Writes whatever is pending, in as few writes as the socket allows.
    async fn flush(&mut self, socket: &mut Socket) -> io::Result<()> {
        self.pending.write_to(socket.get_mut()).await
    }

    fn queue_all(&mut self, frames: Replies) {
        for frame in frames {
            self.pending.push(frame);
        }
    }

    /// Moves `first` and whatever else is queued (up to [`BATCH`] frames)
    /// to the pending frames, for one vectored write. Frames an extended
    /// client already got from history are skipped.
    async fn take_queued(&mut self, first: Outgoing, queue: &mut mpsc::Receiver<Outgoing>) {
        // Let the broadcaster finish its burst first: one yield turned many
        // one-frame writes into one write of many frames (BENCHMARKS.md).
        tokio::task::yield_now().await;
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(outgoing) = next.take() {
            taken += 1;
            if let Some(outgoing) = self.hold(outgoing) {
                if self.fresh(&outgoing) {
                    self.pending.push(outgoing);
                }
            } else if self.held.values().map(Vec::len).sum::<usize>()
                > self.inner.config.outbox_capacity
            {
                let released = self.release_held();
                self.queue_all(released);
            }
            if taken < BATCH {
                next = queue.try_recv().ok();
            }
        }
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
        held.into_iter().filter(|o| self.fresh(o)).collect()
    }

    /// `reject_history`, then whatever was held for the subscription.
    fn rejected_history(&mut self, identifier: &str) -> Replies {
        let mut replies = vec![reply(protocol::reject_history(identifier))];
        replies.extend(self.release(identifier));
        replies
    }

    /// Ends the hold of one subscription; returns what the client still lacks.
    fn release(&mut self, identifier: &str) -> Replies {
        let held = self.held.remove(identifier).unwrap_or_default();
        if self.held.is_empty() {
            self.hold_until = None;
        }
        held.into_iter().filter(|o| self.fresh(o)).collect()
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

    async fn subscribe(&mut self, identifier: &str) -> Outgoing {
        if self.subscriptions.contains_key(identifier) {
            // Confirm again, so a client that retries never loops.
            return reply(protocol::confirm_subscription(identifier));
        }
        let reject = |why: &str| {
            warn!(conn = self.id, identifier, why, "rejecting a subscription");
            reply(protocol::reject_subscription(identifier))
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
        reply(protocol::confirm_subscription(identifier))
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
            return vec![reply(protocol::reject_history(identifier))];
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
                replies.push(reply(protocol::to_subscription_at(
                    identifier,
                    &item.message,
                    position,
                )));
                last = item.offset;
            }
            if last != i64::MIN {
                self.written.insert(key, last);
            }
        }
        replies.push(reply(protocol::confirm_history(identifier)));
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
            .map(|message| reply(protocol::to_subscription(identifier, message)))
            .collect()
    }
}

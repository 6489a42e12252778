//! One client's session: the welcome, its subscriptions, commands in,
//! frames out, pings, replays and the goodbye.
//!
//! A session is a single task. It owns the socket, so reads and writes never
//! contend; broadcasts reach it through its bounded [`Outbox`] as frames
//! already on the wire's terms, and whatever is queued leaves in one
//! vectored write ([`crate::wire`]).
//!
//! Everything a session buffers — broadcasts queued for it, frames it is
//! writing, replies, replay pages — counts against one byte [`Budget`].
//! Every write, control frames included, goes through [`Session::send`] or
//! [`Session::flush_control`], which race the budget running out, the kick
//! and a deadline: a client that stops reading is dropped as `too_slow`
//! instead of pinning memory or outliving its sign-out. Replays are read
//! from the application a page at a time, each only once the last is
//! written.
//!
//! [`extended`] adds AnyCable's extended protocol: restore, hold and history.

mod extended;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::sync::oneshot;
use tokio_tungstenite::WebSocketStream;
use tracing::{Instrument, debug, warn};
use tungstenite::Message;
use tungstenite::protocol::{Role, WebSocketConfig};

use crate::channel::{Channel, HistoryItem, Params, Replay, Reply, Subscription};
use crate::protocol::{self, ActionData, Command, Dialect, DisconnectReason, Identifier};
use crate::registry::{Budget, ConnId, Frame, Inbox, Outbox, Outgoing};
use crate::server::{Admission, Identity, Inner};
use crate::wire::{self, Pending};

pub(crate) use extended::Restorable;

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

/// An accepted subscription. Its params are not kept: they are parsed again
/// from the identifier (the key it is kept under) when an action or the end
/// needs them. A parsed `Params` is a B-tree whose first node takes ~640
/// bytes however few keys it holds (and keeps it when emptied), which was
/// a tenth of an idle connection's heap per subscription (measured with
/// `hearth_heap_bytes`: 6.1 KB per connection with one subscription, 6.9 KB
/// with two).
struct Subscribed<I> {
    channel: Arc<dyn Channel<I>>,
    /// The streams followed, named by the registry's own copies.
    streams: Box<[Arc<str>]>,
}

/// A connection's subscriptions, keyed by the identifier string exactly as
/// the client sent it. A list, not a map: a connection holds a few (the
/// room page, three) and a hash map's smallest table took ~250 bytes of
/// every idle connection where this takes 56 a subscription (BENCHMARKS.md,
/// run 8). A lookup walks at most `max_subscriptions` entries.
struct Subscriptions<I>(Vec<(Arc<str>, Subscribed<I>)>);

impl<I> Subscriptions<I> {
    fn get(&self, identifier: &str) -> Option<&Subscribed<I>> {
        self.0
            .iter()
            .find(|(key, _)| **key == *identifier)
            .map(|(_, subscribed)| subscribed)
    }

    fn contains_key(&self, identifier: &str) -> bool {
        self.get(identifier).is_some()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// Adds a subscription not held yet, growing the list by one slot.
    fn insert(&mut self, identifier: Arc<str>, subscribed: Subscribed<I>) {
        self.0.reserve_exact(1);
        self.0.push((identifier, subscribed));
    }

    fn remove(&mut self, identifier: &str) -> Option<Subscribed<I>> {
        let index = self.0.iter().position(|(key, _)| **key == *identifier)?;
        Some(self.0.swap_remove(index).1)
    }

    fn keys(&self) -> impl Iterator<Item = &Arc<str>> {
        self.0.iter().map(|(key, _)| key)
    }

    fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Subscribed<I>)> {
        self.0.iter().map(|(key, subscribed)| (key, subscribed))
    }
}

/// The params of a subscription, parsed from its identifier; an identifier
/// was accepted only once it parsed, so this never finds it malformed.
fn params_of(identifier: &str) -> Params {
    Identifier::parse(identifier)
        .map(|parsed| parsed.params)
        .unwrap_or_default()
}

struct Session<I> {
    inner: Arc<Inner<I>>,
    id: ConnId,
    dialect: Dialect,
    identity: Arc<I>,
    outbox: Outbox,
    /// What this connection has buffered, shared with its [`Outbox`].
    budget: Arc<Budget>,
    /// Fires when the server ends the session (sign-out, shutdown).
    kicked: oneshot::Receiver<DisconnectReason>,
    /// Frames on their way to the socket, so a write cut short by an
    /// overflow is finished before the goodbye.
    pending: Pending<Outgoing>,
    subscriptions: Subscriptions<I>,
    /// `catch_up`s and history requests this connection may still start.
    replays: ReplayRate,
    /// The extended protocol's state; idle for plain clients.
    ext: extended::State,
}

/// Why the loop ended.
enum End {
    /// The client left or the socket failed: nothing more to send.
    Gone,
    /// The server ends the session and says why.
    Disconnect(DisconnectReason),
    /// The client broke a limit: close the socket with this code.
    Close(u16, &'static str),
    /// The client stopped reading: it is told `too_slow`; the reason is
    /// logged once, in the session's span ([`finish`]).
    TooSlow(&'static str),
}

/// A reply that belongs to no stream position, framed for the wire.
fn reply(payload: impl AsRef<str>) -> Outgoing {
    Arc::new(Frame::unpositioned(wire::text(payload.as_ref())))
}

/// The engine's own answer to one subscription, e.g. a refused replay.
fn transmit_json(identifier: &str, message: &serde_json::Value) -> Outgoing {
    let message = serde_json::value::to_raw_value(message).expect("a JSON value always encodes");
    reply(protocol::to_subscription(identifier, &message))
}

/// What a connection's task starts with, handed to it in one box and
/// unpacked into its locals, so that the task holds each of them once.
///
/// An async fn keeps each argument twice while its body runs, as the
/// argument and as the local it is moved into (rust-lang/rust#62958), and
/// an `async move` block keeps every capture after moving it on. The task
/// used to be such a block calling `run(.., socket, .., identity, ..)`: it
/// held the socket twice and the identity three times: over 2,200 bytes
/// per connection, where it took 1,464 in run 6 and 1,320 since run 8 (the
/// test below; BENCHMARKS.md).
pub(crate) struct Start<I> {
    pub(crate) inner: Arc<Inner<I>>,
    pub(crate) id: ConnId,
    /// Resolves to the connection once the `101` has been written.
    pub(crate) on_upgrade: OnUpgrade,
    pub(crate) ws_config: WebSocketConfig,
    pub(crate) dialect: Dialect,
    /// `None`: the client is told `unauthorized`.
    pub(crate) identity: Option<I>,
    /// The extended-protocol session the client asks to restore.
    pub(crate) restore: Option<String>,
    /// The connection's place under the connection limits, until the task ends.
    pub(crate) admission: Admission<I>,
}

/// A connection's task, from the end of the handshake to the goodbye.
pub(crate) async fn connection<I: Identity>(start: Box<Start<I>>) {
    // Unpacked in a block of its own, so that the emptied box is freed
    // here, not when the task ends.
    let Start {
        inner,
        id,
        on_upgrade,
        ws_config,
        dialect,
        identity,
        restore,
        admission,
    } = {
        let start = start;
        *start
    };
    // Shared from here on (the session and the live map hold it), and the
    // one copy the task keeps across its awaits.
    let identity = identity.map(Arc::new);
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(error) => {
            debug!(conn = id, %error, "the cable handshake did not complete");
            return;
        }
    };
    let mut socket =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(ws_config))
            .await;
    run(inner, id, &mut socket, dialect, identity, restore).await;
    drop(admission);
}

/// The session itself, on a socket its caller holds (an async fn argument
/// is kept twice: see [`Start`]).
async fn run<I: Identity>(
    inner: Arc<Inner<I>>,
    id: ConnId,
    socket: &mut Socket,
    dialect: Dialect,
    identity: Option<Arc<I>>,
    restore: Option<String>,
) {
    let Some(identity) = identity else {
        let unauthorized = End::Disconnect(DisconnectReason::Unauthorized);
        // Boxed, as every path an idle connection is not waiting in: the
        // task is as large as its largest await.
        let goodbye = goodbye(socket, Pending::default(), unauthorized);
        let _ = Box::pin(tokio::time::timeout(GOODBYE_TIMEOUT, goodbye)).await;
        return;
    };
    inner.stats.connections.fetch_add(1, Ordering::Relaxed);
    let config = &inner.config;
    let (outbox, mut queue, budget) = Outbox::new(config.outbox_capacity, config.send_budget_bytes);
    let kick = inner.go_live(id, identity.clone(), &outbox);
    let mut session = Session {
        id,
        dialect,
        inner: inner.clone(),
        identity,
        outbox,
        budget,
        kicked: kick,
        pending: Pending::default(),
        subscriptions: Subscriptions(Vec::new()),
        replays: ReplayRate::new(config.replay_rate),
        ext: extended::State::new(dialect),
    };

    let welcome = match dialect {
        Dialect::V1 => protocol::welcome(),
        Dialect::Extended => {
            let restored = match restore {
                Some(sid) => {
                    let span = session.span();
                    Box::pin(session.restore(&sid).instrument(span)).await
                }
                None => None,
            };
            protocol::welcome_extended(session.ext.sid(), restored.as_deref())
        }
    };
    session.push_reply(reply(welcome));
    let end = match session.send(socket).await {
        Err(end) => end,
        Ok(()) => loop {
            let hold_expired = session.ext.hold_expired();
            tokio::select! {
                _ = hold_expired => {
                    session.span().in_scope(|| warn!("no history request after a restore: releasing live frames"));
                    session.release_all_held();
                    if let Err(end) = session.send(socket).await {
                        break end;
                    }
                }
                reason = &mut session.kicked => break kicked(reason),
                // Pings come through the queue too (`Inner::ping_all`).
                first = queue.recv() => {
                    session.take_queued(first, &mut queue).await;
                    if let Err(end) = session.send(socket).await {
                        break end;
                    }
                }
                incoming = socket.next() => match incoming {
                    None | Some(Ok(Message::Close(_))) => break End::Gone,
                    Some(Err(error)) => break session.span().in_scope(|| read_failed(error)),
                    Some(Ok(Message::Text(text))) => {
                        // Boxed: commands are rare next to idle time, and their
                        // state (channel calls, replays) would otherwise
                        // widen every idle connection's task.
                        let span = session.span();
                        if let Err(end) = Box::pin(session.handle(socket, &text).instrument(span)).await {
                            break end;
                        }
                    }
                    Some(Ok(Message::Ping(_))) => {
                        // tungstenite has queued the pong (one at most: a newer
                        // ping replaces it); send it now, whole, so it never
                        // interleaves with frames written by hand.
                        if let Err(end) = session.flush_control(socket).await {
                            break end;
                        }
                    }
                    Some(Ok(Message::Binary(bytes))) => {
                        session.span().in_scope(|| warn!(len = bytes.len(), "ignoring a binary frame: the JSON protocol takes text only"));
                    }
                    Some(Ok(Message::Pong(_) | Message::Frame(_))) => {}
                },
            }
        },
    };
    let span = session.span();
    Box::pin(finish(session, socket, end).instrument(span)).await;
}

/// Ends a session: out of the live map, its subscriptions ended (parked
/// for a restore when an extended client merely lost its socket), then
/// the goodbye, bounded in time.
async fn finish<I: Identity>(mut session: Session<I>, socket: &mut Socket, end: End) {
    let end = match end {
        End::TooSlow(why) => {
            warn!(why, "dropping a client that stopped reading (too_slow)");
            End::Disconnect(DisconnectReason::TooSlow)
        }
        end => end,
    };
    let inner = session.inner.clone();
    inner.leave(session.id);
    // An extended client that merely lost its socket may come back with its sid.
    let restorable = matches!(end, End::Gone) && session.dialect == Dialect::Extended;
    session.close(restorable).await;
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
    // The session's buffers are dropped with it; only the goodbye remains.
    drop(session);
    tokio::select! {
        _ = tokio::time::timeout(linger, goodbye(socket, pending, end)) => {}
        // A shutdown gives every client the same short goodbye.
        _ = async {
            inner.shutdown.cancelled().await;
            tokio::time::sleep(GOODBYE_TIMEOUT).await;
        } => {}
    }
}

fn too_slow() -> End {
    End::TooSlow("its send budget is spent")
}

fn stalled() -> End {
    End::TooSlow("a write made no headway within the write timeout")
}

fn kicked(reason: Result<DisconnectReason, oneshot::error::RecvError>) -> End {
    End::Disconnect(reason.unwrap_or(DisconnectReason::ServerRestart))
}

fn read_failed(error: tungstenite::Error) -> End {
    if matches!(error, tungstenite::Error::Capacity(_)) {
        warn!("closing a connection whose frame exceeds the size limit");
        End::Close(CLOSE_TOO_BIG, "frame too large")
    } else {
        debug!(%error, "socket read failed");
        End::Gone
    }
}

/// Finishes whatever was being written, then says why the session ends
/// and closes. Callers bound the time it may take.
async fn goodbye(socket: &mut Socket, mut pending: Pending<Outgoing>, end: End) {
    match end {
        End::Gone => return,
        End::TooSlow(_) => {
            pending.push(reply(protocol::disconnect(DisconnectReason::TooSlow)));
            pending.push(Arc::new(Frame::unpositioned(wire::close(CLOSE_NORMAL, ""))));
        }
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

/// A token bucket for the replays one connection starts: a burst of ten
/// times the rate, refilled at the rate; a rate of 0 never limits.
struct ReplayRate {
    per_second: f64,
    tokens: f64,
    updated: Instant,
}

impl ReplayRate {
    fn new(per_second: f64) -> Self {
        Self {
            per_second,
            tokens: per_second * 10.0,
            updated: Instant::now(),
        }
    }

    /// Takes one replay; `Err(wait)` until one is free.
    fn take(&mut self) -> Result<(), Duration> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let refill = now.duration_since(self.updated).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.per_second * 10.0);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.per_second,
            ))
        }
    }
}

impl<I: Identity> Session<I> {
    /// Writes whatever is pending; ends the session if the budget ran out,
    /// the server kicked it, the write made no headway within the write
    /// timeout, or the socket failed. The budget is checked first
    /// (`biased`), so a frame lost to it ends the session before anything
    /// after the gap is written; the race keeps a client that stopped
    /// reading, whose full socket buffers block the write, from being held
    /// forever.
    async fn send(&mut self, socket: &mut Socket) -> Result<(), End> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let before = self.pending.unwritten();
        // Most writes finish at once: the race is armed only for one that
        // has to wait. Arming it at every write registered a timer and a
        // budget waiter, each behind a lock, once per write of the fan-out.
        let result = match self.write_now(socket) {
            Some(result) => result,
            None => self.write_racing(socket).await,
        };
        self.budget.release(before - self.pending.unwritten());
        result
    }

    /// The write, if the socket takes it without waiting, after the checks
    /// the race makes first (a spent budget, a kick); `None` if it would
    /// wait. What was written stays written either way.
    fn write_now(&mut self, socket: &mut Socket) -> Option<Result<(), End>> {
        if self.budget.exceeded() {
            return Some(Err(too_slow()));
        }
        match self.kicked.try_recv() {
            Ok(reason) => return Some(Err(End::Disconnect(reason))),
            Err(oneshot::error::TryRecvError::Closed) => {
                return Some(Err(End::Disconnect(DisconnectReason::ServerRestart)));
            }
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        self.pending
            .write_to(socket.get_mut())
            .now_or_never()
            .map(|written| written.map_err(|_| End::Gone))
    }

    /// The write raced against the budget, the kick and the write timeout.
    async fn write_racing(&mut self, socket: &mut Socket) -> Result<(), End> {
        let timeout = self.inner.config.write_timeout;
        let Self {
            pending,
            budget,
            kicked: kick,
            ..
        } = self;
        tokio::select! {
            biased;
            _ = budget.wait() => Err(too_slow()),
            reason = kick => Err(kicked(reason)),
            _ = tokio::time::sleep(timeout) => Err(stalled()),
            written = pending.write_to(socket.get_mut()) => written.map_err(|_| End::Gone),
        }
    }

    /// Writes what tungstenite queued itself (a pong), with the same race as
    /// [`Session::send`]. Nothing of ours is pending here: every `send`
    /// finished before the socket was read again.
    async fn flush_control(&mut self, socket: &mut Socket) -> Result<(), End> {
        let timeout = self.inner.config.write_timeout;
        tokio::select! {
            biased;
            _ = self.budget.wait() => Err(too_slow()),
            reason = &mut self.kicked => Err(kicked(reason)),
            _ = tokio::time::sleep(timeout) => Err(stalled()),
            flushed = socket.flush() => flushed.map_err(|_| End::Gone),
        }
    }

    /// The span every line this session logs is in: its connection and
    /// user. Made when something is logged or a command runs, never held
    /// while the connection idles: a span held by each connection's task
    /// took ~600 bytes of every idle connection (BENCHMARKS.md, run 8).
    fn span(&self) -> tracing::Span {
        tracing::info_span!("cable", conn = self.id, user = self.identity.user_key())
    }

    /// Queues a reply to the client's own command, charged to the budget.
    fn push_reply(&mut self, frame: Outgoing) {
        self.budget.charge(frame.frame.len());
        self.pending.push(frame);
    }

    /// Queues a frame taken from the outbox (already charged), unless an
    /// extended client got it from history already.
    fn push_queued(&mut self, frame: Outgoing) {
        if self.ext.fresh(&frame) {
            self.pending.push(frame);
        } else {
            self.budget.release(frame.frame.len());
        }
    }

    /// Moves `first` and whatever else is queued (up to [`BATCH`] frames)
    /// to the pending frames, for one vectored write.
    async fn take_queued(&mut self, first: Outgoing, queue: &mut Inbox) {
        // Let the broadcaster finish its burst first: one yield turned many
        // one-frame writes into one write of many frames (BENCHMARKS.md).
        tokio::task::yield_now().await;
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(outgoing) = next.take() {
            taken += 1;
            if let Some(stream) = &outgoing.ends {
                self.end_subscriptions_to(stream).await;
            } else if let Some(outgoing) = self.ext.hold(outgoing) {
                self.push_queued(outgoing);
            }
            if taken < BATCH {
                next = queue.try_recv();
            }
        }
    }

    /// Ends every subscription following `stream`, as the server asked
    /// ([`crate::Cable::end_subscriptions`]): each is unsubscribed, its
    /// channel told, and its client sent `reject_subscription`.
    async fn end_subscriptions_to(&mut self, stream: &str) {
        let ending: Vec<Arc<str>> = self
            .subscriptions
            .iter()
            .filter(|(_, subscribed)| subscribed.streams.iter().any(|s| **s == *stream))
            .map(|(identifier, _)| identifier.clone())
            .collect();
        for identifier in ending {
            if let Some(ended) = self.unsubscribe(&identifier) {
                ended
                    .channel
                    .unsubscribed(&self.identity, &params_of(&identifier))
                    .await;
                debug!(stream, "the server ended a subscription");
                self.push_reply(reply(protocol::reject_subscription(&identifier)));
            }
        }
    }

    /// Runs one client frame and writes what it answers.
    async fn handle(&mut self, socket: &mut Socket, text: &str) -> Result<(), End> {
        let command = match Command::parse(text) {
            Ok(command) => command,
            Err(error) => {
                warn!(%error, "ignoring a malformed frame");
                return Ok(());
            }
        };
        match command {
            Command::Subscribe {
                identifier,
                history,
            } => {
                let subscribed = self.subscribe(&identifier).await;
                if let (true, Some(history), Dialect::Extended) =
                    (subscribed, history, self.dialect)
                {
                    self.history(socket, &identifier, &history).await?;
                }
            }
            Command::Unsubscribe { identifier } => {
                if let Some(ended) = self.unsubscribe(&identifier) {
                    ended
                        .channel
                        .unsubscribed(&self.identity, &params_of(&identifier))
                        .await;
                }
            }
            Command::Message { identifier, data } => {
                self.perform(socket, &identifier, &data).await?;
            }
            Command::History {
                identifier,
                history,
            } if self.dialect == Dialect::Extended => {
                self.history(socket, &identifier, &history).await?;
            }
            Command::History { .. } => {
                warn!("ignoring history: it needs the extended protocol");
            }
            Command::Pong => {}
        }
        self.send(socket).await
    }

    /// Subscribes, answering `confirm_subscription` or `reject_subscription`;
    /// returns whether the identifier is now subscribed.
    async fn subscribe(&mut self, identifier: &str) -> bool {
        if self.subscriptions.contains_key(identifier) {
            // Confirm again, so a client that retries never loops.
            self.push_reply(reply(protocol::confirm_subscription(identifier)));
            return true;
        }
        match self.admit(identifier).await {
            Ok(()) => {
                self.push_reply(reply(protocol::confirm_subscription(identifier)));
                true
            }
            Err(why) => {
                // The identifier may be long: log its size, not its text.
                warn!(
                    identifier_bytes = identifier.len(),
                    why, "rejecting a subscription"
                );
                self.push_reply(reply(protocol::reject_subscription(identifier)));
                false
            }
        }
    }

    /// Checks the limits and asks the channel; registers on success.
    async fn admit(&mut self, identifier: &str) -> Result<(), String> {
        let config = &self.inner.config;
        if identifier.len() > config.max_identifier_bytes {
            return Err(format!(
                "identifier longer than {} bytes",
                config.max_identifier_bytes
            ));
        }
        if self.subscriptions.len() >= config.max_subscriptions {
            return Err("too many subscriptions on this connection".into());
        }
        let parsed = Identifier::parse(identifier)
            .ok_or("identifier is not a JSON object with a channel")?;
        let channel = self
            .inner
            .channels
            .get(&parsed.channel)
            .cloned()
            .ok_or("unknown channel")?;
        // Counted before the channel is asked, so every subscription the
        // channel accepts is registered, and later `unsubscribed`.
        if !self.inner.count_subscription(&self.identity) {
            return Err("too many subscriptions for this user".into());
        }
        let subscription = match channel.subscribe(&self.identity, &parsed.params).await {
            Ok(subscription) => subscription,
            Err(rejection) => {
                self.inner.uncount_subscription(&self.identity);
                return Err(rejection.0);
            }
        };
        // Register before confirming, so no broadcast after the confirmation is missed.
        self.register(Arc::from(identifier), channel, subscription);
        Ok(())
    }

    /// Adds a subscription already counted against the user's limit.
    fn register(
        &mut self,
        identifier: Arc<str>,
        channel: Arc<dyn Channel<I>>,
        subscription: Subscription,
    ) {
        let streams = subscription
            .streams
            .iter()
            .map(|stream| {
                self.inner.registry.add(
                    stream,
                    &identifier,
                    self.dialect,
                    subscription.format,
                    self.id,
                    &self.outbox,
                )
            })
            .collect();
        self.inner
            .stats
            .subscriptions
            .fetch_add(1, Ordering::Relaxed);
        self.subscriptions
            .insert(identifier, Subscribed { channel, streams });
    }

    fn unsubscribe(&mut self, identifier: &str) -> Option<Subscribed<I>> {
        let Some(subscribed) = self.subscriptions.remove(identifier) else {
            warn!(
                identifier_bytes = identifier.len(),
                "ignoring unsubscribe for an unknown identifier"
            );
            return None;
        };
        for stream in &subscribed.streams {
            self.inner.registry.remove(stream, identifier, self.id);
        }
        let dropped = self.ext.forget(identifier);
        self.budget.release(dropped);
        self.inner.uncount_subscription(&self.identity);
        self.inner
            .stats
            .subscriptions
            .fetch_sub(1, Ordering::Relaxed);
        Some(subscribed)
    }

    /// Streams `replay` to the client, a page at a time: each page is
    /// fetched only once everything before it is written, so a client that
    /// stops reading holds one page at most. `frame` turns an item into the
    /// frame to send, or `None` to skip it. Returns the channel's refusal,
    /// if the replay failed part way.
    async fn stream(
        &mut self,
        socket: &mut Socket,
        mut replay: Box<dyn Replay>,
        mut frame: impl FnMut(&mut Self, HistoryItem) -> Option<Outgoing> + Send,
    ) -> Result<Result<(), crate::channel::Rejection>, End> {
        loop {
            self.send(socket).await?;
            let page = tokio::select! {
                page = replay.next_page() => page,
                reason = &mut self.kicked => return Err(kicked(reason)),
            };
            match page {
                Ok(Some(items)) => {
                    for item in items {
                        if let Some(frame) = frame(self, item) {
                            self.push_reply(frame);
                        }
                    }
                }
                Ok(None) => return Ok(Ok(())),
                Err(rejection) => return Ok(Err(rejection)),
            }
        }
    }

    async fn perform(
        &mut self,
        socket: &mut Socket,
        identifier: &str,
        data: &str,
    ) -> Result<(), End> {
        let Some(subscribed) = self.subscriptions.get(identifier) else {
            warn!(
                identifier_bytes = identifier.len(),
                "ignoring a message for an unknown identifier"
            );
            return Ok(());
        };
        let Some(action) = ActionData::parse(data) else {
            warn!("ignoring a message whose data has no action");
            return Ok(());
        };
        let replies = subscribed
            .channel
            .perform(&self.identity, &params_of(identifier), action)
            .await;
        for answer in replies {
            match answer {
                Reply::Transmit(message) => {
                    self.push_reply(reply(protocol::to_subscription(identifier, &message)));
                }
                Reply::Replay(replay) => {
                    if let Err(wait) = self.replays.take() {
                        warn!("refusing a replay: this connection asks too often");
                        let refusal = json!({
                            "type": "error",
                            "error": "rate_limited",
                            "message": "too many replays; try again later",
                            "retry_after": wait.as_secs_f64(),
                        });
                        self.push_reply(transmit_json(identifier, &refusal));
                        continue;
                    }
                    let failed = self
                        .stream(socket, replay, |_, item| {
                            Some(reply(protocol::to_subscription(identifier, &item.message)))
                        })
                        .await?;
                    if let Err(rejection) = failed {
                        warn!(reason = %rejection.0, "a replay failed part way");
                        let failure = json!({
                            "type": "error",
                            "error": "unavailable",
                            "message": "the replay could not be completed",
                        });
                        self.push_reply(transmit_json(identifier, &failure));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future an async fn of one argument returns: what
    /// its task keeps for as long as it runs.
    fn future_size<A, F: Future>(_: impl FnOnce(A) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// As large as Hearth's identity: an id, three strings and a flag.
    #[derive(PartialEq)]
    struct User {
        id: u64,
        _strings: [String; 3],
        _admin: bool,
    }

    impl Identity for User {
        fn user_key(&self) -> u64 {
            self.id
        }
    }

    #[test]
    fn a_connections_task_keeps_its_socket_and_identity_once() {
        let task = future_size(connection::<User>);
        // The socket and the session once each, and the largest await an
        // idle connection reaches (a write racing the budget, the kick and
        // the write timeout). The task that held the socket twice and the
        // identity three times took over 2,200 bytes.
        let once = size_of::<Socket>() + size_of::<Session<User>>() + size_of::<Option<User>>();
        assert!(task < once + 800, "{task} bytes");
        // A plain client's session keeps no extended state inline, and
        // its subscriptions in one pointer-sized list.
        assert_eq!(size_of::<extended::State>(), size_of::<usize>());
    }
}

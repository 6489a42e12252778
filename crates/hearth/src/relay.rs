//! The relay: the one task that hands each room's messages to this node's
//! subscribers, exactly once and in sequence order, whichever node stored
//! them.
//!
//! Every stored message has its room's next `seq`. The relay remembers the
//! last `seq` it delivered per room. A message at or below it is an echo or a
//! duplicate and is dropped; one above the next expected means something was
//! missed (Redis pub/sub loses messages silently when a connection drops), so
//! the gap is loaded from the database and delivered first. After Redis comes
//! back, and every few seconds while a broker is configured, the relay also
//! compares each room with the database and delivers whatever it lacks.
//!
//! What arrives from Redis is never trusted with the sequence. A node
//! publishes its messages marked with its own random node id
//! (`"hearth_node"`, the first key); another node's marked message is only a
//! hint that the room has news, and what is delivered, and how far the
//! room's `seq` moves, comes from the database. A payload without the marker
//! is foreign (a Rails app, `redis-cli`): it is delivered unchanged, as
//! Action Cable delivers a broadcast, and touches no sequence state, whatever
//! fields it has.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cable::{BrokerEvent, Cable, RedisBroker};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::activity::{Activity, ActivityStream};
use crate::auth::CurrentUser;
use crate::db::{self, Db};
use crate::domain::{PresenceStream, RoomStream};
use crate::online::{ONLINE_STREAM, Online};
use crate::payload::Encoded;
use crate::presence::PresenceHandle;

/// How many missed events (messages, edits, deletions) one fill loads at most; a longer gap is filled
/// in several rounds.
const FILL_LIMIT: i64 = 10_000;

/// Broker events taken at once before their hints are checked.
const HINT_BATCH: usize = 1024;

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Messages delivered after being loaded from the database to fill a gap.
    pub filled: AtomicU64,
    /// Messages dropped because they had been delivered already.
    pub duplicates: AtomicU64,
    /// Messages another node announced through Redis, delivered once the
    /// database confirmed them.
    pub confirmed: AtomicU64,
}

/// What a new message means to the room's members beyond its payload: who
/// wrote it and whom it mentions. Told to the activity index here, and to
/// the other nodes' on the room's activity channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct News {
    /// The author's id.
    #[serde(rename = "user_id")]
    pub author: i64,
    /// The members it mentions by name or as present (`@here`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentioned: Vec<i64>,
    /// Whether it mentions every member (`@channel`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub channel: bool,
}

impl News {
    /// Whether it mentions `user`.
    pub fn mentions(&self, user: i64) -> bool {
        self.channel || self.mentioned.binary_search(&user).is_ok()
    }
}

enum Input {
    /// Stored by this node's writer; `news` for a new message (not an edit
    /// or a deletion).
    Stored {
        chatroom_id: i64,
        seq: i64,
        payload: Box<Encoded>,
        news: Option<News>,
    },
    /// A local client subscribed to a room whose newest message is `last_seq`.
    Track { chatroom_id: i64, last_seq: i64 },
    /// Someone may no longer read a room: end their subscriptions to it.
    End { chatroom_id: i64, who: Who },
}

/// Whose subscriptions to a room end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// One user's: they left or were removed.
    User(i64),
    /// Everyone's: the room was archived.
    Everyone,
}

/// Where the writer and the channel send what the relay must know; cheap to clone.
#[derive(Clone)]
pub struct RelayHandle {
    /// To the relay task. Unbounded, but fed only by the writer (one message
    /// per stored message) and by subscriptions, both far slower than delivery.
    inputs: mpsc::UnboundedSender<Input>,
    stats: Arc<RelayStats>,
    /// To subscribe to a room's channel before its subscriber is confirmed.
    broker: Option<RedisBroker>,
}

impl RelayHandle {
    /// Makes sure this node hears `chatroom_id` from Redis before a
    /// subscriber of it is confirmed, as Action Cable does; see
    /// [`RedisBroker::subscribe_ahead`]. Without a broker, returns at once.
    pub async fn subscribe_ahead(&self, chatroom_id: i64) {
        if let Some(broker) = &self.broker {
            broker
                .subscribe_ahead(&RoomStream(chatroom_id).to_string())
                .await;
        }
    }

    /// An event of a room was committed by this node: a new message and
    /// its `news` (`Some`), or an edit or a deletion (`None`).
    pub fn stored(&self, chatroom_id: i64, seq: i64, payload: Encoded, news: Option<News>) {
        let _ = self.inputs.send(Input::Stored {
            chatroom_id,
            seq,
            payload: Box::new(payload),
            news,
        });
    }

    /// A local client follows `chatroom_id`, whose newest message is `last_seq`.
    pub fn track(&self, chatroom_id: i64, last_seq: i64) {
        let _ = self.inputs.send(Input::Track {
            chatroom_id,
            last_seq,
        });
    }

    /// Ends `who`'s subscriptions to `chatroom_id` on every node: on this
    /// one at once, on the others as soon as they hear it through Redis
    /// (on the room's channel, so only nodes with subscribers hear it).
    pub fn end_subscriptions(&self, chatroom_id: i64, who: Who) {
        let _ = self.inputs.send(Input::End { chatroom_id, who });
    }

    /// Counters.
    pub fn stats(&self) -> &RelayStats {
        &self.stats
    }
}

/// The relay before it runs: everything but the engine it delivers to.
pub struct RelayTask {
    db: Db,
    broker: Option<RedisBroker>,
    presence: PresenceHandle,
    activity: Activity,
    online: Online,
    inputs: mpsc::UnboundedReceiver<Input>,
    stats: Arc<RelayStats>,
}

/// The running relay's state.
struct Relay {
    db: Db,
    cable: Cable<CurrentUser>,
    broker: Option<RedisBroker>,
    /// Told what other nodes say on presence channels.
    presence: PresenceHandle,
    /// Told of every new message, to tell each member's pages.
    activity: Activity,
    /// Told what other nodes say of who is online, and of new conversations.
    online: Online,
    inputs: mpsc::UnboundedReceiver<Input>,
    /// The last `seq` delivered here, per room.
    delivered: HashMap<i64, i64>,
    /// Rooms other nodes said have news, and the lowest and highest `seq`
    /// they named; checked against the database in one query per room per batch.
    hinted: HashMap<i64, (i64, i64)>,
    /// This process's marker on what it publishes.
    node: String,
    stats: Arc<RelayStats>,
}

/// A relay handle and the task to run with [`RelayTask::run`].
pub fn relay(
    db: Db,
    broker: Option<RedisBroker>,
    presence: PresenceHandle,
    activity: Activity,
    online: Online,
) -> (RelayHandle, RelayTask) {
    let (inputs, rx) = mpsc::unbounded_channel();
    let stats = Arc::new(RelayStats::default());
    (
        RelayHandle {
            inputs,
            stats: stats.clone(),
            broker: broker.clone(),
        },
        RelayTask {
            db,
            broker,
            presence,
            activity,
            online,
            inputs: rx,
            stats,
        },
    )
}

impl RelayTask {
    /// Runs until `stop`, then delivers what is still queued and returns.
    /// `events` comes from the broker, if any; `reconcile` is how often rooms
    /// are compared with the database while a broker is configured.
    pub async fn run(
        self,
        cable: Cable<CurrentUser>,
        events: mpsc::UnboundedReceiver<BrokerEvent>,
        reconcile: Duration,
        stop: CancellationToken,
    ) {
        let relay = Relay {
            db: self.db,
            cable,
            broker: self.broker,
            presence: self.presence,
            activity: self.activity,
            online: self.online,
            inputs: self.inputs,
            delivered: HashMap::new(),
            hinted: HashMap::new(),
            node: node_id(),
            stats: self.stats,
        };
        relay.run(events, reconcile, stop).await;
    }
}

/// The key that marks a payload published by a Hearth node; a foreign
/// publisher does not write it by accident.
const NODE_KEY: &str = "hearth_node";

/// A node's word that it stored a message, on a room's activity channel:
/// `{"hearth_node":…,"seq":…,"user_id":…,"mentioned":[…],"channel":true}`.
#[derive(Serialize, Deserialize)]
struct Posted {
    hearth_node: String,
    seq: i64,
    #[serde(flatten)]
    news: News,
}

/// The fields of a user's own stream that change their rooms.
#[derive(Deserialize)]
struct MembershipChange {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: i64,
    /// A new conversation's other members.
    #[serde(default)]
    members: Vec<i64>,
}

/// The fields of a received payload that tell whose it is.
#[derive(Deserialize)]
struct Marked<'a> {
    #[serde(borrow)]
    hearth_node: Option<&'a str>,
    seq: Option<i64>,
    /// On a node's notice that subscriptions to the room end: whose (a
    /// user id, or 0 for everyone's).
    hearth_end: Option<i64>,
}

impl Who {
    /// As `hearth_end` carries it.
    fn code(self) -> i64 {
        match self {
            Self::User(id) => id,
            Self::Everyone => 0,
        }
    }

    fn from_code(code: i64) -> Self {
        if code == 0 {
            Self::Everyone
        } else {
            Self::User(code)
        }
    }
}

/// `payload` (a JSON object) with this node's marker as its first key.
fn marked(payload: &str, node: &str) -> String {
    let rest = payload.strip_prefix('{').unwrap_or(payload);
    let separator = if rest.trim_start().starts_with('}') {
        ""
    } else {
        ","
    };
    format!("{{\"{NODE_KEY}\":\"{node}\"{separator}{rest}")
}

/// A random id for this process, so it can tell its own publishes.
fn node_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl Relay {
    async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<BrokerEvent>,
        reconcile: Duration,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(reconcile);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let reconciling = self.broker.is_some();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                Some(input) = self.inputs.recv() => self.handle(input).await,
                Some(event) = events.recv() => {
                    self.on_broker(event).await;
                    // Take what else has arrived, so the hints of a burst
                    // cost one query per room.
                    for _ in 0..HINT_BATCH {
                        let Ok(event) = events.try_recv() else { break };
                        self.on_broker(event).await;
                    }
                    self.confirm_hints().await;
                }
                _ = tick.tick(), if reconciling => self.reconcile().await,
            }
        }
        self.inputs.close();
        while let Some(input) = self.inputs.recv().await {
            self.handle(input).await;
        }
    }

    async fn handle(&mut self, input: Input) {
        match input {
            Input::Stored {
                chatroom_id,
                seq,
                payload,
                news,
            } => {
                let stream = RoomStream(chatroom_id).to_string();
                if let Some(broker) = &self.broker {
                    broker.publish(&stream, &marked(payload.full().get(), &self.node));
                    if let Some(news) = &news {
                        let posted = Posted {
                            hearth_node: self.node.clone(),
                            seq,
                            news: news.clone(),
                        };
                        if let Ok(posted) = serde_json::to_string(&posted) {
                            broker.publish(&ActivityStream(chatroom_id).to_string(), &posted);
                        }
                    }
                }
                self.accept(chatroom_id, seq, &payload).await;
                if let Some(news) = &news {
                    self.activity.posted(&self.cable, chatroom_id, seq, news);
                }
            }
            Input::Track {
                chatroom_id,
                last_seq,
            } => {
                self.delivered.entry(chatroom_id).or_insert(last_seq);
            }
            Input::End { chatroom_id, who } => {
                if let Some(broker) = &self.broker {
                    let notice = format!("{{\"hearth_end\":{}}}", who.code());
                    broker.publish(
                        &RoomStream(chatroom_id).to_string(),
                        &marked(&notice, &self.node),
                    );
                }
                self.end_here(chatroom_id, who);
            }
        }
    }

    /// Ends `who`'s subscriptions to a room on this node.
    fn end_here(&self, room: i64, who: Who) {
        let ended = self
            .cable
            .end_subscriptions(&RoomStream(room).to_string(), |user| match who {
                Who::User(id) => user.id == id,
                Who::Everyone => true,
            });
        tracing::info!(
            chatroom_id = room,
            ?who,
            sessions = ended,
            "ended subscriptions to a room"
        );
    }

    async fn on_broker(&mut self, event: BrokerEvent) {
        match event {
            BrokerEvent::Message { stream, payload } => {
                // Nodes telling each other who is present or typing: for the
                // presence module, which makes the frames clients get.
                if let Ok(presence) = stream.parse::<PresenceStream>() {
                    self.presence.heard(presence.room(), &payload);
                    return;
                }
                // Nodes telling each other who has a page open.
                if stream == ONLINE_STREAM {
                    self.online.heard(&payload);
                    return;
                }
                // Another node stored a message: tell this node's members.
                if let Ok(activity) = stream.parse::<ActivityStream>() {
                    if let Ok(Posted {
                        hearth_node,
                        seq,
                        news,
                    }) = serde_json::from_str(&payload)
                        && hearth_node != self.node
                    {
                        self.activity
                            .posted(&self.cable, activity.room(), seq, &news);
                    }
                    return;
                }
                // A user added to or removed from a room, on whichever node:
                // this node's index follows, and the message goes on to
                // their pages below.
                if let Some(user) = stream
                    .strip_prefix("users:")
                    .and_then(|id| id.parse::<i64>().ok())
                    && let Ok(change) = serde_json::from_str::<MembershipChange>(&payload)
                {
                    match change.kind.as_str() {
                        "room" => {
                            self.activity.joined(user, change.id);
                            if !change.members.is_empty() {
                                let mut people = change.members;
                                people.push(user);
                                self.online.partnered(&people);
                            }
                        }
                        "room_removed" => self.activity.left(user, change.id),
                        _ => {}
                    }
                }
                let room = stream.parse::<RoomStream>().ok().map(RoomStream::room);
                let marked = serde_json::from_str::<Marked<'_>>(&payload).ok();
                if let (
                    Some(room),
                    Some(Marked {
                        hearth_node: Some(node),
                        hearth_end: Some(code),
                        ..
                    }),
                ) = (room, &marked)
                {
                    // Another node's notice (this node ended its own already).
                    if *node != self.node {
                        self.end_here(room, Who::from_code(*code));
                    }
                    return;
                }
                let mark = marked.and_then(|m| Some((m.hearth_node?, m.seq?)));
                match (room, mark) {
                    // This node's own publish, heard back: delivered already.
                    (Some(_), Some((node, _))) if node == self.node => {
                        self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    // Another node stored something: ask the database.
                    (Some(room), Some((_, seq))) => {
                        let (lowest, highest) = self.hinted.entry(room).or_insert((seq, seq));
                        *lowest = (*lowest).min(seq);
                        *highest = (*highest).max(seq);
                    }
                    // Foreign (e.g. a Rails app): pass it on unchanged, after
                    // what other nodes stored before it.
                    _ => {
                        let Ok(payload) = RawValue::from_string(payload) else {
                            tracing::warn!(stream, "ignoring a broadcast that is not JSON");
                            return;
                        };
                        if let Some(room) = room {
                            self.confirm_hint(room).await;
                        }
                        self.cable.broadcast(&stream, &payload);
                    }
                }
            }
            BrokerEvent::Up { reconnected: true } => {
                tracing::info!("Redis is back: catching up every room from the database");
                self.reconcile().await;
            }
            BrokerEvent::Up { reconnected: false } | BrokerEvent::Down => {}
        }
    }

    /// Delivers message `seq` of a room unless it was delivered already,
    /// filling any gap before it from the database.
    async fn accept(&mut self, room: i64, seq: i64, payload: &Encoded) {
        match self.delivered.get(&room).copied() {
            Some(last) if seq <= last => {
                self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Some(last) if seq > last + 1 => self.fill(room, last, seq, None).await,
            _ => {}
        }
        self.cable
            .broadcast_formats(&RoomStream(room).to_string(), payload, Some(seq));
        self.delivered.insert(room, seq);
    }

    /// Delivers what the database holds of every hinted room.
    async fn confirm_hints(&mut self) {
        let rooms: Vec<i64> = self.hinted.keys().copied().collect();
        for room in rooms {
            self.confirm_hint(room).await;
        }
    }

    /// Delivers the room's stored messages up to the highest hinted `seq`,
    /// from the database: a hint above what is stored moves nothing.
    async fn confirm_hint(&mut self, room: i64) {
        let Some((lowest, highest)) = self.hinted.remove(&room) else {
            return;
        };
        // A room nobody here has followed yet starts at the hinted messages.
        let last = *self.delivered.get(&room).unwrap_or(&(lowest - 1));
        if highest <= last {
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.fill(room, last, highest.saturating_add(1), Some(lowest))
            .await;
    }

    /// Delivers the room's stored messages with `after < seq < before`;
    /// from `announced` on (the lowest `seq` other nodes announced), what is
    /// loaded was announced, not missed.
    async fn fill(&mut self, room: i64, mut after: i64, before: i64, announced: Option<i64>) {
        while after + 1 < before {
            let missed =
                match db::messages::events_between(&self.db, room, after, before, FILL_LIMIT).await
                {
                    Ok(missed) => missed,
                    Err(error) => {
                        tracing::error!(%error, room, "could not load missed messages");
                        return;
                    }
                };
            let Some(newest) = missed.last().map(|e| e.seq) else {
                return;
            };
            let announced = missed
                .iter()
                .filter(|e| announced.is_some_and(|a| e.seq >= a))
                .count();
            let gap = missed.len() - announced;
            let stream = RoomStream(room).to_string();
            for event in missed {
                let seq = event.seq;
                let payload = Encoded::event(event);
                self.cable.broadcast_formats(&stream, &payload, Some(seq));
            }
            self.stats
                .confirmed
                .fetch_add(announced as u64, Ordering::Relaxed);
            self.stats.filled.fetch_add(gap as u64, Ordering::Relaxed);
            if gap > 0 {
                tracing::info!(
                    room,
                    from = after + 1,
                    to = newest,
                    "filled a gap from the database"
                );
            }
            self.delivered.insert(room, newest);
            after = newest;
        }
    }

    /// Brings every tracked room up to the database's newest message.
    async fn reconcile(&mut self) {
        let rooms = match db::chatrooms::last_seqs(&self.db).await {
            Ok(rooms) => rooms,
            Err(error) => {
                tracing::warn!(%error, "could not compare rooms with the database");
                return;
            }
        };
        for (room, newest) in rooms {
            let Some(&last) = self.delivered.get(&room) else {
                continue;
            };
            if newest <= last {
                continue;
            }
            if self.cable.subscriber_count(&RoomStream(room).to_string()) == 0 {
                // Nobody here follows the room any more (nor hears it from
                // Redis): keep its place without loading what nobody gets.
                self.delivered.insert(room, newest);
            } else {
                self.fill(room, last, newest + 1, None).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Marked, marked};

    #[test]
    fn the_marker_is_the_first_key_and_the_rest_is_untouched() {
        let payload = r#"{"type":"message","seq":7,"html":"<p>{\"x\"}</p>"}"#;
        let published = marked(payload, "00ff");
        assert_eq!(
            published,
            r#"{"hearth_node":"00ff","type":"message","seq":7,"html":"<p>{\"x\"}</p>"}"#
        );
        let read: Marked<'_> = serde_json::from_str(&published).unwrap();
        assert_eq!((read.hearth_node, read.seq), (Some("00ff"), Some(7)));
        assert_eq!(marked("{}", "00ff"), r#"{"hearth_node":"00ff"}"#);
    }

    #[test]
    fn a_foreign_payload_with_a_seq_carries_no_marker() {
        let read: Marked<'_> = serde_json::from_str(r#"{"seq":1000,"content":"x"}"#).unwrap();
        assert_eq!((read.hearth_node, read.seq), (None, Some(1000)));
    }
}

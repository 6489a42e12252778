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

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cable::{BrokerEvent, Cable, RedisBroker};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::auth::CurrentUser;
use crate::db::{self, Db};
use crate::payload::MessagePayload;
use crate::writer::room_stream;

/// How many missed messages one fill loads at most; a longer gap is filled
/// in several rounds.
const FILL_LIMIT: i64 = 10_000;

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Messages delivered after being loaded from the database to fill a gap.
    pub filled: AtomicU64,
    /// Messages dropped because they had been delivered already.
    pub duplicates: AtomicU64,
}

enum Input {
    /// Stored by this node's writer.
    Stored {
        chatroom_id: i64,
        seq: i64,
        payload: Box<RawValue>,
    },
    /// A local client subscribed to a room whose newest message is `last_seq`.
    Track { chatroom_id: i64, last_seq: i64 },
}

/// Where the writer and the channel send what the relay must know; cheap to clone.
#[derive(Clone)]
pub struct RelayHandle {
    /// To the relay task. Unbounded, but fed only by the writer (one message
    /// per stored message) and by subscriptions, both far slower than delivery.
    inputs: mpsc::UnboundedSender<Input>,
    stats: Arc<RelayStats>,
}

impl RelayHandle {
    /// A message was committed by this node.
    pub fn stored(&self, chatroom_id: i64, seq: i64, payload: Box<RawValue>) {
        let _ = self.inputs.send(Input::Stored {
            chatroom_id,
            seq,
            payload,
        });
    }

    /// A local client follows `chatroom_id`, whose newest message is `last_seq`.
    pub fn track(&self, chatroom_id: i64, last_seq: i64) {
        let _ = self.inputs.send(Input::Track {
            chatroom_id,
            last_seq,
        });
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
    inputs: mpsc::UnboundedReceiver<Input>,
    stats: Arc<RelayStats>,
}

/// The running relay's state.
struct Relay {
    db: Db,
    cable: Cable<CurrentUser>,
    broker: Option<RedisBroker>,
    inputs: mpsc::UnboundedReceiver<Input>,
    /// The last `seq` delivered here, per room.
    delivered: HashMap<i64, i64>,
    stats: Arc<RelayStats>,
}

/// A relay handle and the task to run with [`RelayTask::run`].
pub fn relay(db: Db, broker: Option<RedisBroker>) -> (RelayHandle, RelayTask) {
    let (inputs, rx) = mpsc::unbounded_channel();
    let stats = Arc::new(RelayStats::default());
    (
        RelayHandle {
            inputs,
            stats: stats.clone(),
        },
        RelayTask {
            db,
            broker,
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
            inputs: self.inputs,
            delivered: HashMap::new(),
            stats: self.stats,
        };
        relay.run(events, reconcile, stop).await;
    }
}

#[derive(Deserialize)]
struct Sequenced {
    seq: Option<i64>,
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
                Some(event) = events.recv() => self.on_broker(event).await,
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
            } => {
                let stream = room_stream(chatroom_id);
                if let Some(broker) = &self.broker {
                    broker.publish(&stream, payload.get());
                }
                self.accept(chatroom_id, seq, &payload).await;
            }
            Input::Track {
                chatroom_id,
                last_seq,
            } => {
                self.delivered.entry(chatroom_id).or_insert(last_seq);
            }
        }
    }

    async fn on_broker(&mut self, event: BrokerEvent) {
        match event {
            BrokerEvent::Message { stream, payload } => {
                let Ok(payload) = RawValue::from_string(payload) else {
                    tracing::warn!(stream, "ignoring a broadcast that is not JSON");
                    return;
                };
                let room = stream
                    .strip_prefix("chatrooms:")
                    .and_then(|id| id.parse::<i64>().ok());
                let seq = serde_json::from_str::<Sequenced>(payload.get())
                    .ok()
                    .and_then(|s| s.seq);
                match (room, seq) {
                    (Some(room), Some(seq)) => self.accept(room, seq, &payload).await,
                    // Not one of Hearth's messages (e.g. from a Rails app): pass it on.
                    _ => {
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
    async fn accept(&mut self, room: i64, seq: i64, payload: &RawValue) {
        match self.delivered.get(&room).copied() {
            Some(last) if seq <= last => {
                self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Some(last) if seq > last + 1 => self.fill(room, last, seq).await,
            _ => {}
        }
        self.cable
            .broadcast_at(&room_stream(room), payload, Some(seq));
        self.delivered.insert(room, seq);
    }

    /// Delivers the room's stored messages with `after < seq < before`.
    async fn fill(&mut self, room: i64, mut after: i64, before: i64) {
        while after + 1 < before {
            let missed =
                match db::messages::between(&self.db, room, after, before, FILL_LIMIT).await {
                    Ok(missed) => missed,
                    Err(error) => {
                        tracing::error!(%error, room, "could not load missed messages");
                        return;
                    }
                };
            let Some(newest) = missed.last().map(|m| m.seq) else {
                return;
            };
            for message in &missed {
                let payload = MessagePayload::encode(message);
                self.cable
                    .broadcast_at(&room_stream(room), &payload, Some(message.seq));
            }
            self.stats
                .filled
                .fetch_add(missed.len() as u64, Ordering::Relaxed);
            tracing::info!(
                room,
                from = after + 1,
                to = newest,
                "filled a gap from the database"
            );
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
            if let Some(&last) = self.delivered.get(&room)
                && newest > last
            {
                self.fill(room, last, newest + 1).await;
            }
        }
    }
}

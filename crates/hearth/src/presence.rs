//! Presence and typing: who is in each room now, and who is typing there.
//!
//! A room's members are its `ChatroomChannel` subscriptions. This node counts
//! its own, a user with several tabs once, from `subscribe` and
//! `unsubscribed`. With Redis it learns the other nodes' from the snapshots
//! they publish on the room's presence channel (`chatrooms:<id>:presence`):
//! each node publishes its members of a room when they change (at most once
//! per interval) and every third of the TTL while it has any; a snapshot not
//! refreshed within its TTL (its node died) no longer counts. A node that
//! starts following a room's presence asks the others for theirs (`sync`).
//! What arrives on that channel is for this module alone, never passed to
//! clients as it came; this node's own publishes heard back are ignored.
//!
//! Subscriptions that ask for it (`"presence":true` in the identifier) also
//! follow the presence stream, on which each node delivers to its own
//! clients: `{"type":"presence","count":…,"users":[…]}` for a room whose
//! members changed, at most once per room per interval (1,000 people
//! joining cost each watcher a frame a second, not a thousand), and
//! `{"type":"typing","user_id":…,"nickname":…}` as it happens. Neither has a
//! `seq`: they are not part of the room's history.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cable::{Cable, RedisBroker};
use serde::{Deserialize, Serialize};
use serde_json::value::{RawValue, to_raw_value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::auth::CurrentUser;
use crate::domain::PresenceStream;
use crate::limits::{Rate, RateLimiter};

/// Typing frames waiting for the task to deliver them; past this they are
/// dropped, as a typing indicator is worth nothing late.
const TYPING_QUEUE: usize = 1024;

/// How presence behaves; every bound has a flag (see `config`).
#[derive(Debug, Clone)]
pub struct PresenceConfig {
    /// Least time between two presence frames of one room (coalescing).
    pub interval: Duration,
    /// How long another node's snapshot counts without a refresh.
    pub ttl: Duration,
    /// Least time between two typing events of one user in one room.
    pub typing_interval: Duration,
    /// Users listed by name in a frame; the count covers everyone.
    pub listed: usize,
}

/// One member on this node: their name and how many subscriptions they hold.
struct Member {
    nickname: String,
    tabs: usize,
}

/// Another node's members of a room, until `expires`.
struct Snapshot {
    members: Vec<(i64, String)>,
    expires: Instant,
}

/// What this node knows of one room.
#[derive(Default)]
struct Room {
    /// Members on this node, by user id.
    local: HashMap<i64, Member>,
    /// Subscriptions on this node that asked for presence frames.
    watchers: usize,
    /// Other nodes' members, by node id; kept only while there are
    /// watchers (the node follows the presence channel only then).
    remote: HashMap<String, Snapshot>,
    /// The local members changed since the last snapshot published.
    local_changed: bool,
    /// The members may have changed since the last frame.
    dirty: bool,
    /// The last frame delivered, so an unchanged one is not sent again.
    last_frame: Option<String>,
}

impl Room {
    /// Whether nothing about the room is worth keeping.
    fn idle(&self) -> bool {
        self.local.is_empty() && self.watchers == 0 && !self.local_changed
    }

    fn local_members(&self) -> Vec<(i64, String)> {
        self.local
            .iter()
            .map(|(id, member)| (*id, member.nickname.clone()))
            .collect()
    }

    /// The frame clients see: everyone here and on live nodes, once each.
    fn frame(&self, listed: usize) -> PresenceFrame {
        let mut everyone: HashMap<i64, &str> = self
            .local
            .iter()
            .map(|(id, member)| (*id, member.nickname.as_str()))
            .collect();
        for snapshot in self.remote.values() {
            for (id, nickname) in &snapshot.members {
                everyone.entry(*id).or_insert(nickname);
            }
        }
        let count = everyone.len();
        let mut users: Vec<PresentUser> = everyone
            .into_iter()
            .map(|(id, nickname)| PresentUser {
                id,
                nickname: nickname.to_owned(),
            })
            .collect();
        users.sort_by_cached_key(|u| (u.nickname.to_lowercase(), u.id));
        users.truncate(listed);
        PresenceFrame {
            kind: "presence",
            count,
            users,
        }
    }
}

/// `{"type":"presence","count":…,"users":[{"id":…,"nickname":…}]}`.
#[derive(Serialize)]
struct PresenceFrame {
    #[serde(rename = "type")]
    kind: &'static str,
    count: usize,
    users: Vec<PresentUser>,
}

#[derive(Serialize)]
struct PresentUser {
    id: i64,
    nickname: String,
}

/// `{"type":"typing","user_id":…,"nickname":…}`.
#[derive(Serialize)]
struct TypingFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    user_id: i64,
    nickname: &'a str,
}

/// What nodes tell each other (here on a presence channel; `online` too),
/// marked with the sender's id as every Hearth publish is.
#[derive(Serialize, Deserialize)]
pub(crate) struct Envelope<E> {
    pub hearth_node: String,
    #[serde(flatten)]
    pub event: E,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "presence", rename_all = "snake_case")]
enum NodeEvent {
    /// "Send me your members": a node started following the room.
    Sync,
    /// The sender's members of the room, valid for `ttl_ms`; empty when its
    /// last one left.
    Snapshot {
        members: Vec<(i64, String)>,
        ttl_ms: u64,
    },
    /// Someone on the sender is typing.
    Typing { user_id: i64, nickname: String },
}

/// Shared between the handle's clones and the task.
struct Shared {
    config: PresenceConfig,
    /// Every room with members or watchers here. Held only to read or
    /// change the maps, never across an await.
    rooms: Mutex<HashMap<i64, Room>>,
    /// Typing events accepted, per room and user.
    typing: RateLimiter<(i64, i64)>,
    broker: Option<RedisBroker>,
    /// This process's marker on what it publishes.
    node: String,
    /// Typing frames for the task to deliver here; bounded by [`TYPING_QUEUE`].
    frames: mpsc::Sender<(i64, Box<RawValue>)>,
}

/// Where the channel and the relay report to; cheap to clone.
#[derive(Clone)]
pub struct PresenceHandle {
    shared: Arc<Shared>,
}

/// The task that delivers frames and publishes snapshots; see [`PresenceTask::run`].
pub struct PresenceTask {
    shared: Arc<Shared>,
    frames: mpsc::Receiver<(i64, Box<RawValue>)>,
}

/// A presence handle and its task.
pub fn presence(
    config: PresenceConfig,
    broker: Option<RedisBroker>,
) -> (PresenceHandle, PresenceTask) {
    let (frames, frames_rx) = mpsc::channel(TYPING_QUEUE);
    let typing = RateLimiter::new(Some(Rate {
        burst: 1.0,
        per_second: 1.0 / config.typing_interval.as_secs_f64().max(0.001),
    }));
    let shared = Arc::new(Shared {
        config,
        rooms: Mutex::default(),
        typing,
        broker,
        node: format!("{:016x}", rand::random::<u64>()),
        frames,
    });
    (
        PresenceHandle {
            shared: shared.clone(),
        },
        PresenceTask {
            shared,
            frames: frames_rx,
        },
    )
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl PresenceHandle {
    /// `user` subscribed to `room`; `watching` if the subscription asked for
    /// presence frames. The first watcher of a room on this node follows
    /// its presence channel before returning, and asks the other nodes for
    /// their members.
    pub async fn join(&self, room: i64, user: &CurrentUser, watching: bool) {
        let first_watcher = {
            let mut rooms = lock(&self.shared.rooms);
            let state = rooms.entry(room).or_default();
            let member = state.local.entry(user.id).or_insert_with(|| Member {
                nickname: user.nickname.clone(),
                tabs: 0,
            });
            member.tabs += 1;
            if member.tabs == 1 {
                state.local_changed = true;
                state.dirty = true;
            }
            // A new watcher asks for the state as it stands (`presence`).
            if watching {
                state.watchers += 1;
            }
            watching && state.watchers == 1
        };
        if let (true, Some(broker)) = (first_watcher, &self.shared.broker) {
            let stream = PresenceStream(room).to_string();
            broker.subscribe_ahead(&stream).await;
            self.publish(broker, room, NodeEvent::Sync);
        }
    }

    /// A subscription [`join`](Self::join)ed before has ended.
    pub fn leave(&self, room: i64, user_id: i64, watching: bool) {
        let mut rooms = lock(&self.shared.rooms);
        let Some(state) = rooms.get_mut(&room) else {
            return;
        };
        if let Some(member) = state.local.get_mut(&user_id) {
            member.tabs -= 1;
            if member.tabs == 0 {
                state.local.remove(&user_id);
                state.local_changed = true;
                state.dirty = true;
            }
        }
        if watching {
            state.watchers = state.watchers.saturating_sub(1);
            if state.watchers == 0 {
                // The presence channel is about to be left: what it said goes stale.
                state.remote.clear();
                state.last_frame = None;
            }
        }
        if state.idle() {
            rooms.remove(&room);
        }
    }

    /// Who is in `room` now, on this node and on the nodes this one hears
    /// (it hears them while it has a watcher of the room), each once; at
    /// most `limit` of them. What `@here` mentions.
    pub fn present(&self, room: i64, limit: usize) -> Vec<i64> {
        let rooms = lock(&self.shared.rooms);
        let Some(state) = rooms.get(&room) else {
            return Vec::new();
        };
        let mut everyone: HashSet<i64> = state.local.keys().copied().collect();
        for snapshot in state.remote.values() {
            everyone.extend(snapshot.members.iter().map(|(id, _)| *id));
        }
        let mut present: Vec<i64> = everyone.into_iter().collect();
        present.sort_unstable();
        present.truncate(limit);
        present
    }

    /// The room's presence frame, e.g. for a client that just subscribed:
    /// the one last sent to the room's watchers, as they all have it; a
    /// change since then reaches every watcher within the interval anyway.
    /// Only a room that no frame went out for yet has its frame made here.
    ///
    /// Making it sorts every member, and the room page asks on every
    /// subscription: 10,000 people joining a room at 1,000 a second made
    /// 10,000 sorts of up to 10,000 names, 10.8 s of the server's CPU and a
    /// p99 of 3.3 s for a message in another room; answered this way, 5.9 s
    /// and 106 ms (`ASK=1 bench/presence.sh`, 2 shared cores).
    pub fn frame(&self, room: i64) -> Option<Box<RawValue>> {
        let rooms = lock(&self.shared.rooms);
        let frame = match rooms.get(&room) {
            Some(state) => {
                if let Some(sent) = &state.last_frame {
                    return RawValue::from_string(sent.clone()).ok();
                }
                state.frame(self.shared.config.listed)
            }
            None => Room::default().frame(0),
        };
        to_raw_value(&frame).ok()
    }

    /// `user` is typing in `room`: tells the room's watchers here and on
    /// every node, unless the user did so less than the typing interval
    /// ago. Returns whether it was passed on.
    pub fn typing(&self, room: i64, user: &CurrentUser) -> bool {
        if self.shared.typing.check(&(room, user.id)).is_err() {
            return false;
        }
        self.deliver_typing(room, user.id, &user.nickname);
        if let Some(broker) = &self.shared.broker {
            let event = NodeEvent::Typing {
                user_id: user.id,
                nickname: user.nickname.clone(),
            };
            self.publish(broker, room, event);
        }
        true
    }

    /// Something another node published on `room`'s presence channel.
    pub fn heard(&self, room: i64, payload: &str) {
        let Ok(envelope) = serde_json::from_str::<Envelope<NodeEvent>>(payload) else {
            tracing::warn!(room, "ignoring a presence payload that is not Hearth's");
            return;
        };
        if envelope.hearth_node == self.shared.node {
            return;
        }
        let mut rooms = lock(&self.shared.rooms);
        let Some(state) = rooms.get_mut(&room) else {
            return;
        };
        match envelope.event {
            NodeEvent::Sync => {
                if !state.local.is_empty() {
                    state.local_changed = true;
                }
            }
            NodeEvent::Snapshot { members, ttl_ms } if state.watchers > 0 => {
                if members.is_empty() {
                    state.remote.remove(&envelope.hearth_node);
                } else {
                    let expires = Instant::now() + Duration::from_millis(ttl_ms);
                    state
                        .remote
                        .insert(envelope.hearth_node, Snapshot { members, expires });
                }
                state.dirty = true;
            }
            NodeEvent::Typing { user_id, nickname } if state.watchers > 0 => {
                drop(rooms);
                self.deliver_typing(room, user_id, &nickname);
            }
            NodeEvent::Snapshot { .. } | NodeEvent::Typing { .. } => {}
        }
    }

    /// Queues a typing frame for this node's watchers of `room`.
    fn deliver_typing(&self, room: i64, user_id: i64, nickname: &str) {
        let frame = TypingFrame {
            kind: "typing",
            user_id,
            nickname,
        };
        if let Ok(frame) = to_raw_value(&frame) {
            // A full queue drops the event: it would be stale anyway.
            let _ = self.shared.frames.try_send((room, frame));
        }
    }

    fn publish(&self, broker: &RedisBroker, room: i64, event: NodeEvent) {
        publish(&self.shared, broker, room, event);
    }
}

fn publish(shared: &Shared, broker: &RedisBroker, room: i64, event: NodeEvent) {
    let envelope = Envelope {
        hearth_node: shared.node.clone(),
        event,
    };
    if let Ok(payload) = serde_json::to_string(&envelope) {
        broker.publish(&PresenceStream(room).to_string(), &payload);
    }
}

/// What one round of the task sends.
struct Round {
    /// The frames of rooms whose members changed, for their watchers here.
    frames: Vec<(i64, Box<RawValue>)>,
    /// This node's members of rooms, for the other nodes.
    snapshots: Vec<(i64, Vec<(i64, String)>)>,
}

impl PresenceTask {
    /// Delivers typing frames as they come; every interval, delivers the
    /// frames of rooms whose members changed, drops snapshots past their
    /// TTL and publishes local changes; every third of the TTL, publishes
    /// this node's members of every room it has some in. Runs until `stop`.
    pub async fn run(mut self, cable: Cable<CurrentUser>, stop: CancellationToken) {
        let config = self.shared.config.clone();
        let mut frames_tick = tokio::time::interval(config.interval);
        frames_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refresh_tick = tokio::time::interval(config.ttl / 3);
        refresh_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                Some((room, frame)) = self.frames.recv() => {
                    cable.broadcast(&PresenceStream(room).to_string(), &frame);
                }
                _ = frames_tick.tick() => self.flush(&cable, false),
                _ = refresh_tick.tick() => self.flush(&cable, true),
            }
        }
    }

    /// One round: frames for changed rooms, snapshots for changed rooms (or
    /// for all with local members, on `refresh`).
    fn flush(&self, cable: &Cable<CurrentUser>, refresh: bool) {
        let Round { frames, snapshots } = self.round(refresh);
        for (room, frame) in frames {
            cable.broadcast(&PresenceStream(room).to_string(), &frame);
        }
        let shared = &self.shared;
        if let Some(broker) = &shared.broker {
            let ttl_ms = shared.config.ttl.as_millis() as u64;
            for (room, members) in snapshots {
                publish(
                    shared,
                    broker,
                    room,
                    NodeEvent::Snapshot { members, ttl_ms },
                );
            }
        }
    }

    /// What one round sends; each frame is now its room's `last_frame`.
    fn round(&self, refresh: bool) -> Round {
        let shared = &self.shared;
        let now = Instant::now();
        let mut frames = Vec::new();
        let mut snapshots = Vec::new();
        {
            let mut rooms = lock(&shared.rooms);
            for (&room, state) in rooms.iter_mut() {
                let before = state.remote.len();
                state.remote.retain(|_, snapshot| snapshot.expires > now);
                if state.remote.len() != before {
                    state.dirty = true;
                }
                if state.local_changed || (refresh && !state.local.is_empty()) {
                    snapshots.push((room, state.local_members()));
                    state.local_changed = false;
                }
                if state.dirty && state.watchers > 0 {
                    state.dirty = false;
                    let frame = state.frame(shared.config.listed);
                    let Ok(frame) = to_raw_value(&frame) else {
                        continue;
                    };
                    if state.last_frame.as_deref() != Some(frame.get()) {
                        state.last_frame = Some(frame.get().to_owned());
                        frames.push((room, frame));
                    }
                }
            }
            rooms.retain(|_, state| !state.idle());
        }
        Round { frames, snapshots }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64, nickname: &str) -> CurrentUser {
        CurrentUser {
            id,
            email: format!("{nickname}@example.com"),
            nickname: nickname.to_owned(),
            admin: false,
            session: String::new(),
        }
    }

    fn config() -> PresenceConfig {
        PresenceConfig {
            interval: Duration::from_secs(1),
            ttl: Duration::from_secs(30),
            typing_interval: Duration::from_secs(2),
            listed: 2,
        }
    }

    fn handle() -> PresenceHandle {
        presence(config(), None).0
    }

    fn frame(handle: &PresenceHandle, room: i64) -> serde_json::Value {
        serde_json::from_str(handle.frame(room).unwrap().get()).unwrap()
    }

    #[tokio::test]
    async fn tabs_count_once_and_the_list_is_bounded_by_name() {
        let presence = handle();
        presence.join(1, &user(3, "cy"), true).await;
        presence.join(1, &user(1, "Ann"), true).await;
        presence.join(1, &user(1, "Ann"), true).await;
        presence.join(1, &user(2, "bob"), false).await;
        assert_eq!(
            frame(&presence, 1),
            serde_json::json!({"type":"presence","count":3,
                "users":[{"id":1,"nickname":"Ann"},{"id":2,"nickname":"bob"}]})
        );
        presence.leave(1, 1, true);
        assert_eq!(frame(&presence, 1)["count"], 3, "one tab of Ann is left");
        presence.leave(1, 1, true);
        assert_eq!(frame(&presence, 1)["count"], 2);
    }

    #[tokio::test]
    async fn other_nodes_count_until_their_snapshot_is_withdrawn_and_own_echoes_are_ignored() {
        let presence = handle();
        presence.join(1, &user(1, "ann"), true).await;
        let snapshot = |node: &str, members: serde_json::Value| {
            serde_json::json!({"hearth_node": node, "presence": "snapshot",
                "members": members, "ttl_ms": 30_000})
            .to_string()
        };
        presence.heard(
            1,
            &snapshot("other", serde_json::json!([[1, "ann"], [2, "bob"]])),
        );
        assert_eq!(frame(&presence, 1)["count"], 2, "ann is counted once");
        let own = presence.shared.node.clone();
        presence.heard(1, &snapshot(&own, serde_json::json!([[9, "ghost"]])));
        assert_eq!(frame(&presence, 1)["count"], 2);
        presence.heard(1, &snapshot("other", serde_json::json!([])));
        assert_eq!(frame(&presence, 1)["count"], 1);
    }

    #[tokio::test]
    async fn a_joiner_asking_is_answered_the_frame_the_watchers_have_until_the_next_round() {
        let (presence, task) = presence(config(), None);
        presence.join(1, &user(1, "ann"), true).await;
        assert_eq!(
            frame(&presence, 1)["count"],
            1,
            "before any round the frame is made"
        );
        assert_eq!(task.round(false).frames.len(), 1);
        presence.join(1, &user(2, "bob"), true).await;
        presence.join(1, &user(3, "cy"), true).await;
        assert_eq!(
            frame(&presence, 1)["count"],
            1,
            "the answer is what the watchers were last sent"
        );
        let frames = task.round(false).frames;
        let sent: serde_json::Value = serde_json::from_str(frames[0].1.get()).unwrap();
        assert_eq!(
            sent["count"], 3,
            "the round tells every watcher, the askers included"
        );
        assert_eq!(frame(&presence, 1), sent);
        assert!(
            task.round(false).frames.is_empty(),
            "nothing changed, nothing is sent"
        );
    }

    #[tokio::test]
    async fn typing_passes_once_per_interval() {
        let presence = handle();
        let ann = user(1, "ann");
        assert!(presence.typing(1, &ann));
        assert!(!presence.typing(1, &ann));
        assert!(presence.typing(2, &ann), "rooms are separate");
    }
}

//! Who is online: a user with a page open (a `RoomsChannel` subscription)
//! on any node. The sidebar shows it as a dot on each direct conversation.
//!
//! This node knows its users with a page open from the activity index,
//! which counts their `RoomsChannel` subscriptions ([`crate::activity`]). With Redis it learns the other nodes' users from the
//! snapshots they publish on one channel (`online`): each node publishes
//! its whole set when it changed (at most once per interval) and every
//! third of the TTL; a snapshot not refreshed within the TTL (its node
//! died) no longer counts. A node follows that channel only while it has a
//! page open, and asks the others for theirs when it starts to.
//! The same presence interval and TTL as rooms' (`--presence-interval`,
//! `--presence-ttl`) apply.
//!
//! Who hears of it: while a user has a page open here, this node knows the
//! people they share a direct conversation with (loaded from the database
//! when their first page opens, kept in step as conversations start). Once
//! per interval, for each user whose state may have changed, a change is
//! sent to those people's own streams on this node as
//! `{"type":"online","user":<id>,"online":<bool>}`: a thousand people
//! signing in within a second cost each of their partners a frame each,
//! never a frame per page they open.
//!
//! What bounds it: a few bytes per user with a page open here, per
//! partnership of such a user, and per user in other nodes' snapshots.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cable::{Cable, RedisBroker};
use serde::{Deserialize, Serialize};
use serde_json::value::to_raw_value;
use tokio_util::sync::CancellationToken;

use crate::auth::CurrentUser;
use crate::channels::rooms::user_stream;
use crate::db::{self, Db};
use crate::presence::Envelope;

/// The Redis channel (under the configured prefix) on which nodes tell
/// each other who is online on them.
pub const ONLINE_STREAM: &str = "online";

/// Most conversation partners of one user followed live: past this, the
/// oldest conversations' dots are right as of the page load.
const MAX_PARTNERS: i64 = 1000;

/// Another node's users, until `expires`.
struct Snapshot {
    users: HashSet<i64>,
    expires: Instant,
}

#[derive(Default)]
struct State {
    /// Users with a page open here (the activity index counts the pages).
    local: HashSet<i64>,
    /// Other nodes' users, by node id.
    remote: HashMap<String, Snapshot>,
    /// Each user with a page here: the people they share a conversation with.
    partners: HashMap<i64, HashSet<i64>>,
    /// Each such person: the users here who want to hear of them.
    watchers: HashMap<i64, HashSet<i64>>,
    /// Whose state may have changed since the last round.
    dirty: HashSet<i64>,
    /// Users last told to be online, among those watched here.
    shown: HashSet<i64>,
    /// The local set changed since it was last published.
    local_changed: bool,
    /// This node follows [`ONLINE_STREAM`]: it has had a page open since
    /// the last round that found none.
    following: bool,
    /// Ask the other nodes for their users in the next round (once the
    /// subscription to their snapshots has had time to start).
    sync_due: bool,
}

impl State {
    fn is_online(&self, user: i64, now: Instant) -> bool {
        self.local.contains(&user)
            || self
                .remote
                .values()
                .any(|snapshot| snapshot.expires > now && snapshot.users.contains(&user))
    }

    /// `watcher` (with a page here) hears of `partner` from now on.
    fn watch(&mut self, watcher: i64, partner: i64, now: Instant) {
        if watcher == partner {
            return;
        }
        let Some(partners) = self.partners.get_mut(&watcher) else {
            return;
        };
        if !partners.insert(partner) {
            return;
        }
        let watchers = self.watchers.entry(partner).or_default();
        let first = watchers.is_empty();
        watchers.insert(watcher);
        // The first watcher's page was drawn with the state as it is now;
        // with others, what they were last told stands, and a change not
        // yet told reaches everyone (this one too, maybe twice over).
        if first && self.is_online(partner, now) {
            self.shown.insert(partner);
        }
    }
}

/// What nodes tell each other on [`ONLINE_STREAM`], in an [`Envelope`].
#[derive(Serialize, Deserialize)]
#[serde(tag = "online", rename_all = "snake_case")]
enum NodeEvent {
    /// "Send me your users": a node started.
    Sync,
    /// The sender's users with a page open, valid for `ttl_ms`.
    Snapshot { users: Vec<i64>, ttl_ms: u64 },
}

struct Shared {
    db: Db,
    broker: Option<RedisBroker>,
    node: String,
    interval: Duration,
    ttl: Duration,
    /// Held to read or change the maps only, never across an await.
    state: Mutex<State>,
}

/// Where `RoomsChannel`, the pages and the relay report; cheap to clone.
#[derive(Clone)]
pub struct Online {
    shared: Arc<Shared>,
}

impl Online {
    /// Nobody online yet; `interval` paces the frames and snapshots, a
    /// snapshot counts for `ttl`.
    pub fn new(db: Db, broker: Option<RedisBroker>, interval: Duration, ttl: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                db,
                broker,
                node: format!("{:016x}", rand::random::<u64>()),
                interval,
                ttl,
                state: Mutex::default(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Follows [`ONLINE_STREAM`] in Redis or stops; called under the lock,
    /// so the broker hears the changes in order.
    fn follow(&self, followed: bool) {
        if let Some(broker) = &self.shared.broker {
            use cable::registry::StreamWatcher;
            broker.watcher().followed(ONLINE_STREAM, followed);
        }
    }

    /// Whether `user` has a page open on any node.
    pub fn is_online(&self, user: i64) -> bool {
        self.lock().is_online(user, Instant::now())
    }

    /// `user` opened their first page here: online, and they hear of their
    /// conversation partners from now on.
    pub async fn arrived(&self, user: i64) -> sqlx::Result<()> {
        {
            let mut state = self.lock();
            state.local.insert(user);
            state.dirty.insert(user);
            state.local_changed = true;
            state.partners.insert(user, HashSet::new());
            // A node hears the others only while it has pages to tell.
            if !state.following {
                state.following = true;
                state.sync_due = true;
                self.follow(true);
            }
        }
        let partners = db::memberships::direct_partners(&self.shared.db, user, MAX_PARTNERS).await;
        let mut state = self.lock();
        let now = Instant::now();
        for partner in partners? {
            state.watch(user, partner, now);
        }
        Ok(())
    }

    /// `user` closed their last page here.
    pub fn left(&self, user: i64) {
        let mut state = self.lock();
        if !state.local.remove(&user) {
            return;
        }
        state.dirty.insert(user);
        state.local_changed = true;
        for partner in state.partners.remove(&user).unwrap_or_default() {
            if let Some(watchers) = state.watchers.get_mut(&partner) {
                watchers.remove(&user);
                if watchers.is_empty() {
                    state.watchers.remove(&partner);
                    state.shown.remove(&partner);
                }
            }
        }
    }

    /// `user` and `others` share a conversation now: each of them with a
    /// page here hears of the rest.
    pub fn partnered(&self, users: &[i64]) {
        let mut state = self.lock();
        let now = Instant::now();
        for &watcher in users {
            for &partner in users {
                state.watch(watcher, partner, now);
            }
        }
    }

    /// What another node said on [`ONLINE_STREAM`].
    pub fn heard(&self, payload: &str) {
        let Ok(Envelope { hearth_node, event }) =
            serde_json::from_str::<Envelope<NodeEvent>>(payload)
        else {
            return;
        };
        if hearth_node == self.shared.node {
            return;
        }
        let mut state = self.lock();
        match event {
            NodeEvent::Sync => state.local_changed |= !state.local.is_empty(),
            NodeEvent::Snapshot { users, ttl_ms } => {
                let users: HashSet<i64> = users.into_iter().collect();
                let old = state.remote.remove(&hearth_node);
                let changed: Vec<i64> = match &old {
                    Some(old) => old.users.symmetric_difference(&users).copied().collect(),
                    None => users.iter().copied().collect(),
                };
                state.dirty.extend(changed);
                let expires = Instant::now() + Duration::from_millis(ttl_ms);
                if !users.is_empty() {
                    state
                        .remote
                        .insert(hearth_node, Snapshot { users, expires });
                }
            }
        }
    }

    fn publish(&self, event: NodeEvent) {
        let Some(broker) = &self.shared.broker else {
            return;
        };
        let envelope = Envelope {
            hearth_node: self.shared.node.clone(),
            event,
        };
        if let Ok(payload) = serde_json::to_string(&envelope) {
            broker.publish(ONLINE_STREAM, &payload);
        }
    }

    /// Every interval: drops snapshots past their TTL, tells watchers here
    /// of each change, and publishes this node's users if they changed (or,
    /// every third of the TTL, anyway). Runs until `stop`.
    pub async fn run(self, cable: Cable<CurrentUser>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.shared.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refresh = tokio::time::interval(self.shared.ttl / 3);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => self.round(&cable, false),
                _ = refresh.tick() => self.round(&cable, true),
            }
        }
    }

    /// One round; see [`Online::run`].
    fn round(&self, cable: &Cable<CurrentUser>, refresh: bool) {
        let now = Instant::now();
        let mut told = Vec::new();
        let (snapshot, sync) = {
            let mut state = self.lock();
            let mut expired = Vec::new();
            state.remote.retain(|_, snapshot| {
                let live = snapshot.expires > now;
                if !live {
                    expired.extend(snapshot.users.iter().copied());
                }
                live
            });
            state.dirty.extend(expired);
            for user in std::mem::take(&mut state.dirty) {
                let Some(watchers) = state.watchers.get(&user) else {
                    continue;
                };
                let online = state.is_online(user, now);
                if online == state.shown.contains(&user) {
                    continue;
                }
                told.push((user, online, watchers.iter().copied().collect::<Vec<_>>()));
                if online {
                    state.shown.insert(user);
                } else {
                    state.shown.remove(&user);
                }
            }
            let publish = state.local_changed || (refresh && !state.local.is_empty());
            state.local_changed = false;
            let users = publish.then(|| state.local.iter().copied().collect::<Vec<_>>());
            let sync = std::mem::take(&mut state.sync_due);
            // The last page here closed: say so (above), and stop listening.
            if state.local.is_empty() && state.following {
                state.following = false;
                state.remote.clear();
                state.shown.clear();
                self.follow(false);
            }
            (users, sync)
        };
        if sync {
            self.publish(NodeEvent::Sync);
        }
        for (user, online, watchers) in told {
            let frame = serde_json::json!({ "type": "online", "user": user, "online": online });
            let Ok(frame) = to_raw_value(&frame) else {
                continue;
            };
            for watcher in watchers {
                cable.broadcast(&user_stream(watcher), &frame);
            }
        }
        if let Some(users) = snapshot {
            let ttl_ms = self.shared.ttl.as_millis() as u64;
            self.publish(NodeEvent::Snapshot { users, ttl_ms });
        }
    }

    /// How many users have a page here and how many are watched, for
    /// metrics and tests.
    pub fn size(&self) -> (usize, usize) {
        let state = self.lock();
        (state.local.len(), state.watchers.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(node: &str, users: &[i64]) -> String {
        serde_json::to_string(&Envelope {
            hearth_node: node.to_owned(),
            event: NodeEvent::Snapshot {
                users: users.to_vec(),
                ttl_ms: 60_000,
            },
        })
        .unwrap()
    }

    #[tokio::test]
    async fn another_nodes_users_count_until_its_snapshot_drops_them() {
        sqlx::any::install_default_drivers();
        let db = sqlx::AnyPool::connect_lazy("sqlite::memory:").unwrap();
        let online = Online::new(db, None, Duration::from_secs(1), Duration::from_secs(3));
        online.heard(&snapshot("other", &[7, 8]));
        assert!(online.is_online(7));
        online.heard(&snapshot("other", &[8]));
        assert!(!online.is_online(7));
        assert!(online.is_online(8));
        // This node's own words, heard back, change nothing.
        let own = online.shared.node.clone();
        online.heard(&snapshot(&own, &[9]));
        assert!(!online.is_online(9));
        online.heard("not json");
        assert!(online.is_online(8));
    }
}

//! Activity: telling each member's pages that their room has a new message,
//! whichever room they are looking at, so unread counts move live.
//!
//! A page follows its user's own stream (`users:<id>`, through
//! `RoomsChannel`). This node keeps an index of the users with such a page
//! here and the rooms each is a member of, loaded once when their first
//! page subscribes and kept in step with joins, invitations, removals and
//! posts; when a message is stored (here, or on another node, heard on the
//! room's activity channel in Redis) every indexed member but its author is
//! sent `{"type":"activity","id":<room>,"seq":<seq>,"mention":<bool>}` on
//! their own stream, `mention` true for those the message mentions, by
//! every connection of theirs but those following the room's own stream:
//! a page showing the room hears the message itself and counts it from
//! that (so a room page's connection gets one frame a message, not two).
//! Nothing is stored per message and reader: the counts themselves come
//! from the read cursor (`db::memberships::unread`); this only says "one
//! more".
//!
//! What bounds it: the index holds a user's room ids only while they have a
//! page open on this node (a few bytes per membership, not per
//! connection), and a message costs one lookup in it plus one frame per
//! member with a page open here. With a broker, a node follows the
//! activity channel of exactly the rooms its indexed users are in.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use cable::registry::StreamWatcher;
use cable::{Cable, RedisBroker};
use serde_json::value::to_raw_value;

use crate::auth::CurrentUser;
use crate::channels::rooms::user_stream;
use crate::db::{self, Db};
pub use crate::domain::ActivityStream;
use crate::domain::RoomStream;
use crate::relay::News;

/// Most rooms of one user the index holds: a user in more rooms gets live
/// activity for their most recently active ones only (the counts on a page
/// load stay exact).
const MAX_ROOMS_PER_USER: i64 = 1000;

/// Who is indexed here, and in which rooms.
#[derive(Default)]
struct Index {
    /// Each indexed user: how many of their `RoomsChannel` subscriptions
    /// are open here, and their rooms.
    users: HashMap<i64, (u32, HashSet<i64>)>,
    /// Each room with an indexed member: those members.
    rooms: HashMap<i64, HashSet<i64>>,
}

/// The activity index and what it sends through; cheap to clone.
#[derive(Clone)]
pub struct Activity {
    db: Db,
    broker: Option<RedisBroker>,
    /// Guards both maps together; held for map updates only, never across
    /// an await or a send.
    index: Arc<Mutex<Index>>,
}

impl Activity {
    /// An empty index reading memberships from `db`, following activity
    /// channels through `broker` if nodes share one.
    pub fn new(db: Db, broker: Option<RedisBroker>) -> Self {
        Self {
            db,
            broker,
            index: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Tells the broker to follow or leave a room's activity channel.
    fn follow(&self, room: i64, followed: bool) {
        if let Some(broker) = &self.broker {
            broker
                .watcher()
                .followed(&ActivityStream(room).to_string(), followed);
        }
    }

    /// `user` opened a page here: index their rooms if this is their
    /// first. Returns whether it is (exactly one of several pages opening
    /// at once is told so).
    pub async fn page_opened(&self, user: i64) -> sqlx::Result<bool> {
        {
            let mut index = self.lock();
            if let Some((pages, _)) = index.users.get_mut(&user) {
                *pages += 1;
                return Ok(false);
            }
        }
        let rooms = db::memberships::rooms_of(&self.db, user, MAX_ROOMS_PER_USER).await?;
        let mut index = self.lock();
        // Another page of theirs may have loaded them meanwhile.
        if let Some((pages, _)) = index.users.get_mut(&user) {
            *pages += 1;
            return Ok(false);
        }
        index.users.insert(user, (1, HashSet::new()));
        drop(index);
        for room in rooms {
            self.joined(user, room);
        }
        Ok(true)
    }

    /// One of `user`'s pages here closed: forget them with their last.
    /// Returns whether it was their last.
    pub fn page_closed(&self, user: i64) -> bool {
        let mut index = self.lock();
        let Some((pages, _)) = index.users.get_mut(&user) else {
            return false;
        };
        *pages -= 1;
        if *pages > 0 {
            return false;
        }
        let (_, rooms) = index.users.remove(&user).expect("just found");
        let mut emptied = Vec::new();
        for room in rooms {
            if let Some(members) = index.rooms.get_mut(&room) {
                members.remove(&user);
                if members.is_empty() {
                    index.rooms.remove(&room);
                    emptied.push(room);
                }
            }
        }
        drop(index);
        for room in emptied {
            self.follow(room, false);
        }
        true
    }

    /// `user` is now a member of `room` (if they are indexed here).
    pub fn joined(&self, user: i64, room: i64) {
        let mut index = self.lock();
        let Some((_, rooms)) = index.users.get_mut(&user) else {
            return;
        };
        if !rooms.insert(room) {
            return;
        }
        let members = index.rooms.entry(room).or_default();
        let first = members.is_empty();
        members.insert(user);
        drop(index);
        if first {
            self.follow(room, true);
        }
    }

    /// `user` is no longer a member of `room`.
    pub fn left(&self, user: i64, room: i64) {
        let mut index = self.lock();
        let Some((_, rooms)) = index.users.get_mut(&user) else {
            return;
        };
        if !rooms.remove(&room) {
            return;
        }
        let emptied = index.rooms.get_mut(&room).is_some_and(|members| {
            members.remove(&user);
            members.is_empty()
        });
        if emptied {
            index.rooms.remove(&room);
        }
        drop(index);
        if emptied {
            self.follow(room, false);
        }
    }

    /// Message `seq` of `room` was stored, with `news` of who wrote it and
    /// whom it mentions: tell every other member with a page open here,
    /// `{"type":"activity","id":…,"seq":…,"mention":<whether it mentions
    /// them>}`. Returns how many were told.
    pub fn posted(&self, cable: &Cable<CurrentUser>, room: i64, seq: i64, news: &News) -> usize {
        let author = news.author;
        // The author is a member now, if posting made them one.
        self.joined(author, room);
        let members: Vec<i64> = match self.lock().rooms.get(&room) {
            Some(members) => members.iter().copied().filter(|m| *m != author).collect(),
            None => return 0,
        };
        let frame = |mention: bool| {
            to_raw_value(&serde_json::json!({
                "type": "activity", "id": room, "seq": seq, "mention": mention
            }))
            .ok()
        };
        // A page showing the room hears the message itself there.
        let room_stream = RoomStream(room).to_string();
        // Most messages mention nobody: their one frame is all there is to encode.
        let plain = frame(false);
        let mention = (news.channel || !news.mentioned.is_empty())
            .then(|| frame(true))
            .flatten();
        for member in &members {
            let chosen = if news.mentions(*member) {
                &mention
            } else {
                &plain
            };
            if let Some(chosen) = chosen {
                cable.broadcast_unless_following(&user_stream(*member), chosen, &room_stream);
            }
        }
        members.len()
    }

    /// How many users and rooms are indexed here, for tests and metrics.
    pub fn size(&self) -> (usize, usize) {
        let index = self.lock();
        (index.users.len(), index.rooms.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_streams_round_trip_and_are_not_rooms() {
        assert_eq!(ActivityStream(7).to_string(), "chatrooms:7:activity");
        assert_eq!("chatrooms:7:activity".parse(), Ok(ActivityStream(7)));
        assert!("chatrooms:7".parse::<ActivityStream>().is_err());
        assert!("chatrooms:7:activity".parse::<RoomStream>().is_err());
    }
}

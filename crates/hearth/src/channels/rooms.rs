//! `RoomsChannel`: the room list, live, and the user's own stream. Every
//! page subscribes; a public room created anywhere (on any node) is
//! announced on the `rooms` stream as
//! `{"type":"room","id":…,"name":…,"list":"rooms","html":<the sidebar's list item>}`.
//! The same subscription follows `users:<id>`, the signed-in user's own
//! stream, which only they hear: a private room or a direct conversation
//! they were added to (the same `room` message, `"list":"direct"` and
//! `"members":[<the other members' ids>]` for a conversation), `{"type":"room_removed","id":…}` when they leave or
//! are removed or the room is archived, and `{"type":"read","id":…,"seq":…}`
//! when one of their pages moved their read cursor,
//! `{"type":"notify","id":…,"notify":"all"|"mentions"|"nothing"|"default"}`
//! when one of them changed what they are notified of in a room, and
//! `{"type":"online","user":…,"online":true|false}` when someone they share
//! a conversation with opens their first page or closes their last
//! ([`crate::online`]), and
//! `{"type":"activity","id":…,"seq":…,"mention":…}` for each new message
//! from others in their rooms, except on a connection that follows that
//! room's own stream and so hears the message itself ([`crate::activity`]).

use async_trait::async_trait;
use cable::{ActionData, Channel, Params, Rejection, Reply, Subscription};
use serde::Serialize;
use serde_json::value::to_raw_value;

use crate::AppState;
use crate::activity::Activity;
use crate::auth::CurrentUser;
use crate::db::chatrooms::{Chatroom, RoomKind};
use crate::db::memberships::{Member, Notify, Unread};
use crate::online::Online;
use crate::templates::{DirectLink, DirectLinkPartial, RoomLinkPartial};

/// The stream every room list follows.
pub const ROOMS_STREAM: &str = "rooms";

/// Identifier `{"channel":"RoomsChannel"}`.
pub struct RoomsChannel {
    /// Told of every page that opens and closes, to index its user's rooms.
    activity: Activity,
    /// Told the same, for who is online.
    online: Online,
}

impl RoomsChannel {
    /// The channel, keeping `activity`'s index of open pages and `online`'s
    /// count of them.
    pub fn new(activity: Activity, online: Online) -> Self {
        Self { activity, online }
    }
}

#[async_trait]
impl Channel<CurrentUser> for RoomsChannel {
    async fn subscribe(
        &self,
        user: &CurrentUser,
        _params: &Params,
    ) -> Result<Subscription, Rejection> {
        let database = |error: sqlx::Error| Rejection(format!("database error: {error}"));
        let first = self.activity.page_opened(user.id).await.map_err(database)?;
        if first && let Err(error) = self.online.arrived(user.id).await {
            self.activity.page_closed(user.id);
            self.online.left(user.id);
            return Err(database(error));
        }
        Ok(Subscription {
            streams: vec![ROOMS_STREAM.to_owned(), user_stream(user.id)],
            ..Subscription::default()
        })
    }

    async fn perform(
        &self,
        _user: &CurrentUser,
        _params: &Params,
        action: ActionData,
    ) -> Vec<Reply> {
        tracing::warn!(action = action.action, "RoomsChannel takes no actions");
        Vec::new()
    }

    async fn unsubscribed(&self, user: &CurrentUser, _params: &Params) {
        if self.activity.page_closed(user.id) {
            self.online.left(user.id);
        }
    }
}

/// The stream only `user` hears, `users:<id>`.
pub fn user_stream(user: i64) -> String {
    format!("users:{user}")
}

#[derive(Serialize)]
struct RoomAnnouncement<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: i64,
    name: &'a str,
    /// Which sidebar list it goes in: `rooms` or `direct`.
    list: &'static str,
    html: String,
    /// A conversation's other members' ids.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    members: Vec<i64>,
}

/// Tells every room list, on every node, that public `room` exists.
pub fn announce(state: &AppState, room: &Chatroom) {
    let html = askama::Template::render(&RoomLinkPartial {
        room,
        current_room_id: 0,
        unread: Unread::default(),
    })
    .unwrap_or_default();
    let announcement = RoomAnnouncement {
        kind: "room",
        id: room.id,
        name: &room.name,
        list: "rooms",
        html,
        members: Vec::new(),
    };
    if let Ok(payload) = to_raw_value(&announcement) {
        publish(state, ROOMS_STREAM, &payload);
    }
}

/// Tells `user`'s pages, on every node, that they are now in `room` (a
/// private room or a direct conversation), with its sidebar item as they
/// see it; `members` names a conversation.
pub fn tell_added(state: &AppState, user: i64, room: &Chatroom, members: &[Member]) {
    state.activity.joined(user, room.id);
    let mut others = Vec::new();
    let (list, html) = if room.kind == RoomKind::Direct {
        others.extend(members.iter().map(|m| m.user_id).filter(|id| *id != user));
        let direct =
            DirectLink::new(room.id, user, members.iter()).online(|id| state.online.is_online(id));
        let html = askama::Template::render(&DirectLinkPartial {
            direct: &direct,
            current_room_id: 0,
            unread: Unread::default(),
        });
        ("direct", html)
    } else {
        let html = askama::Template::render(&RoomLinkPartial {
            room,
            current_room_id: 0,
            unread: Unread::default(),
        });
        ("rooms", html)
    };
    let announcement = RoomAnnouncement {
        kind: "room",
        id: room.id,
        name: &room.name,
        list,
        html: html.unwrap_or_default(),
        members: others,
    };
    if let Ok(payload) = to_raw_value(&announcement) {
        publish(state, &user_stream(user), &payload);
    }
}

/// Tells `user`'s pages, on every node, that they are no longer in `room`.
pub fn tell_removed(state: &AppState, user: i64, room: i64) {
    state.activity.left(user, room);
    let message = serde_json::json!({ "type": "room_removed", "id": room });
    if let Ok(payload) = to_raw_value(&message) {
        publish(state, &user_stream(user), &payload);
    }
}

/// What changed about a room, for every page that lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomChange {
    /// Its name or topic: `{"type":"room_renamed","id":…,"name":…,"topic":…,"sigil":"#"|"🔒"}`.
    Renamed,
    /// Archived, so listed nowhere: `{"type":"room_removed","id":…}`.
    Archived,
}

/// Tells every page that lists `room`, on every node, what changed: every
/// page (the `rooms` stream) for a public room, its members' own streams
/// for a private one.
pub async fn tell_changed(
    state: &AppState,
    room: &Chatroom,
    change: RoomChange,
) -> sqlx::Result<()> {
    let message = match change {
        RoomChange::Renamed => serde_json::json!({
            "type": "room_renamed",
            "id": room.id,
            "name": room.name,
            "topic": room.topic,
            "sigil": crate::templates::sigil(room),
        }),
        RoomChange::Archived => serde_json::json!({ "type": "room_removed", "id": room.id }),
    };
    let Ok(payload) = to_raw_value(&message) else {
        return Ok(());
    };
    if room.kind == RoomKind::Public {
        publish(state, ROOMS_STREAM, &payload);
        return Ok(());
    }
    for member in crate::db::memberships::members(&state.db, room.id, i64::MAX).await? {
        if change == RoomChange::Archived {
            state.activity.left(member.user_id, room.id);
        }
        publish(state, &user_stream(member.user_id), &payload);
    }
    Ok(())
}

/// Tells `user`'s pages, on every node, that they have read `room` up to `seq`.
pub fn tell_read(state: &AppState, user: i64, room: i64, seq: i64) {
    let message = serde_json::json!({ "type": "read", "id": room, "seq": seq });
    if let Ok(payload) = to_raw_value(&message) {
        publish(state, &user_stream(user), &payload);
    }
}

/// Tells `user`'s pages, on every node, what they are now notified of in
/// `room`.
pub fn tell_notify(state: &AppState, user: i64, room: i64, notify: Notify) {
    let message = serde_json::json!({ "type": "notify", "id": room, "notify": notify.as_str() });
    if let Ok(payload) = to_raw_value(&message) {
        publish(state, &user_stream(user), &payload);
    }
}

/// Sends `payload` to `stream` on every node: through Redis when nodes
/// share it (each node, this one too, hears it back and passes it on),
/// else straight to this node's subscribers.
fn publish(state: &AppState, stream: &str, payload: &serde_json::value::RawValue) {
    match &state.broker {
        Some(broker) => broker.publish(stream, payload.get()),
        None => {
            state.cable.broadcast(stream, payload);
        }
    }
}

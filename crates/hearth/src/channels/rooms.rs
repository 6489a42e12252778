//! `RoomsChannel`: the room list, live. Every page subscribes; a room
//! created anywhere (on any node) is announced on the `rooms` stream as
//! `{"type":"room","id":…,"name":…,"html":<the sidebar's list item>}`.

use async_trait::async_trait;
use cable::{ActionData, Channel, Params, Rejection, Reply, Subscription};
use serde::Serialize;
use serde_json::value::to_raw_value;

use crate::AppState;
use crate::auth::CurrentUser;
use crate::db::chatrooms::Chatroom;
use crate::templates::RoomLinkPartial;

/// The stream every room list follows.
pub const ROOMS_STREAM: &str = "rooms";

/// Identifier `{"channel":"RoomsChannel"}`.
pub struct RoomsChannel;

#[async_trait]
impl Channel<CurrentUser> for RoomsChannel {
    async fn subscribe(
        &self,
        _user: &CurrentUser,
        _params: &Params,
    ) -> Result<Subscription, Rejection> {
        Ok(Subscription {
            streams: vec![ROOMS_STREAM.to_owned()],
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
}

#[derive(Serialize)]
struct RoomAnnouncement<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: i64,
    name: &'a str,
    html: String,
}

/// Tells every room list, on every node, that `room` exists: through Redis
/// when nodes share it (each node, this one too, hears it back and passes it
/// on), else straight to this node's subscribers.
pub fn announce(state: &AppState, room: &Chatroom) {
    let html = askama::Template::render(&RoomLinkPartial {
        room,
        current_room_id: 0,
    })
    .unwrap_or_default();
    let announcement = RoomAnnouncement {
        kind: "room",
        id: room.id,
        name: &room.name,
        html,
    };
    let Ok(payload) = to_raw_value(&announcement) else {
        return;
    };
    match &state.broker {
        Some(broker) => broker.publish(ROOMS_STREAM, payload.get()),
        None => {
            state.cable.broadcast(ROOMS_STREAM, &payload);
        }
    }
}

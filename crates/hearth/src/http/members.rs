//! Who is in a room: joining a public room, leaving, inviting someone,
//! removing a member, and how far each member has read; and a room's
//! settings (name, topic, who may mention everyone), archiving, and what
//! each member is notified of.
//!
//! Every route takes its room through [`ReadableRoom`], so a room the user
//! may not read is 404 here as everywhere. Whoever may no longer read a
//! room (a member who left or was removed from a private room or a
//! conversation, everyone once it is archived) has their subscriptions to
//! it ended on every node ([`crate::relay::RelayHandle::end_subscriptions`]).

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::{Form, Router};
use serde::Deserialize;

use super::auth::CurrentUser;
use super::chatrooms::ReadableRoom;
use crate::AppState;
use crate::channels::rooms;
use crate::db;
use crate::db::chatrooms::{Chatroom, InsertChatroomError, RoomAccess, RoomKind, RoomMentions};
use crate::db::memberships::Notify;
use crate::domain::{Nickname, RoomName, RoomTopic};
use crate::error::{Error, Result};
use crate::relay::Who;

/// The membership and settings routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/chatrooms/{id}/join", post(join_room))
        .route("/chatrooms/{id}/leave", post(leave_room))
        .route("/chatrooms/{id}/members", post(invite_member))
        .route(
            "/chatrooms/{id}/members/{user_id}/remove",
            post(remove_member),
        )
        .route("/chatrooms/{id}/settings", post(update_room))
        .route("/chatrooms/{id}/read", post(mark_read))
        .route("/chatrooms/{id}/archive", post(archive_room))
        .route("/chatrooms/{id}/notify", post(set_notify))
        .route("/chatrooms/{id}/room_mentions", post(set_room_mentions))
}

fn back_to(room: i64) -> Response {
    Redirect::to(&format!("/chatrooms/{room}")).into_response()
}

/// Refuses changes to an archived room.
fn writable(access: &RoomAccess) -> Result<()> {
    if access.room.archived_at.is_some() {
        return Err(Error::NotAllowed("This room is archived"));
    }
    Ok(())
}

/// Whether `user` may rename, archive and remove members of `room`: its
/// creator, or the instance's admin.
fn manages(user: &CurrentUser, room: &Chatroom) -> bool {
    room.managed_by(user.id, user.admin)
}

/// `POST /chatrooms/{id}/join`: joins a public room (a first post does too).
/// Members of a private room or a conversation are invited, never join.
async fn join_room(
    State(state): State<AppState>,
    user: CurrentUser,
    ReadableRoom(access): ReadableRoom,
) -> Result<Response> {
    writable(&access)?;
    if access.room.is_closed() && !access.is_member() {
        return Err(Error::NotFound);
    }
    db::memberships::join(&state.db, access.room.id, user.id).await?;
    // Their pages (on every node) follow the room's activity from now on.
    rooms::tell_added(&state, user.id, &access.room, &[]);
    Ok(back_to(access.room.id))
}

/// `POST /chatrooms/{id}/leave`: anyone may leave, but not "general", which
/// everyone is in. Leaving a private room or a conversation ends one's
/// subscriptions to it; the last member to leave archives it.
async fn leave_room(
    State(state): State<AppState>,
    user: CurrentUser,
    ReadableRoom(access): ReadableRoom,
) -> Result<Response> {
    let room = &access.room;
    if room.is_general() {
        return Err(Error::NotAllowed("Everyone is in #general"));
    }
    if !db::memberships::remove(&state.db, room.id, user.id).await? {
        return Ok(Redirect::to("/").into_response());
    }
    tracing::info!(chatroom_id = room.id, user_id = user.id, "left a room");
    state.activity.left(user.id, room.id);
    ended(&state, room, user.id).await?;
    Ok(Redirect::to("/").into_response())
}

/// What follows a member's leaving or removal: in a room only members may
/// read, their subscriptions end everywhere and their sidebars drop it; the
/// last member out archives it.
async fn ended(state: &AppState, room: &Chatroom, user: i64) -> Result<()> {
    if !room.is_closed() {
        return Ok(());
    }
    state.relay.end_subscriptions(room.id, Who::User(user));
    rooms::tell_removed(state, user, room.id);
    let left = db::memberships::counts(&state.db, &[room.id]).await?;
    if left.get(&room.id).copied().unwrap_or(0) == 0 {
        db::chatrooms::archive(&state.db, room.id).await?;
        tracing::info!(
            chatroom_id = room.id,
            "archived a room its last member left"
        );
    }
    Ok(())
}

/// The invitation form: one nickname.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct InviteForm {
    nickname: String,
}

/// `POST /chatrooms/{id}/members`: a member adds someone by nickname; they
/// see the room in their sidebar at once. Not for "general" (everyone is in
/// it) nor a conversation (whose people are its identity: start another).
/// An unknown nickname is 422.
async fn invite_member(
    State(state): State<AppState>,
    user: CurrentUser,
    ReadableRoom(access): ReadableRoom,
    Form(form): Form<InviteForm>,
) -> Result<Response> {
    writable(&access)?;
    let room = &access.room;
    if !access.is_member() {
        return Err(Error::NotAllowed("Join the room to invite people to it"));
    }
    if room.kind == RoomKind::Direct || room.is_general() {
        return Err(Error::NotAllowed("People cannot be invited here"));
    }
    let nickname = Nickname::parse(form.nickname.trim())
        .map_err(|invalid| Error::invalid(vec![invalid.to_string()]))?;
    let found = db::users::find_by_nicknames(&state.db, &[nickname.as_str().to_owned()]).await?;
    let Some((invited, _)) = found.first() else {
        return Err(Error::invalid(vec![format!(
            "Nobody is called {}",
            nickname.as_str()
        )]));
    };
    db::memberships::join(&state.db, room.id, *invited).await?;
    tracing::info!(
        chatroom_id = room.id,
        user_id = user.id,
        invited,
        "invited someone"
    );
    rooms::tell_added(&state, *invited, room, &[]);
    Ok(back_to(room.id))
}

/// `POST /chatrooms/{id}/members/{user_id}/remove`: the room's creator or
/// the admin removes a member (anyone may remove themselves: that is
/// leaving). Their subscriptions to a room only members may read end at once.
async fn remove_member(
    State(state): State<AppState>,
    user: CurrentUser,
    ReadableRoom(access): ReadableRoom,
    axum::extract::Path((_, member)): axum::extract::Path<(i64, i64)>,
) -> Result<Response> {
    let room = &access.room;
    if room.is_general() || room.kind == RoomKind::Direct {
        return Err(Error::NotAllowed("Nobody can be removed from here"));
    }
    if member != user.id && !manages(&user, room) {
        return Err(Error::NotAllowed(
            "Only the room's creator or an admin can remove people",
        ));
    }
    if db::memberships::remove(&state.db, room.id, member).await? {
        tracing::info!(
            chatroom_id = room.id,
            user_id = user.id,
            removed = member,
            "removed a member"
        );
        ended(&state, room, member).await?;
    }
    Ok(back_to(room.id))
}

/// How far the reader has read: the `seq` of the newest event they saw.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ReadForm {
    seq: i64,
}

/// `POST /chatrooms/{id}/read`: moves the member's read cursor up to `seq`
/// (JSON or form; never down, never past the room's newest event) and tells
/// their other tabs and devices through their own stream
/// (`{"type":"read","id":<room>,"seq":<cursor>}`). Answers
/// `{"last_read_seq":<cursor>}`; a non-member has no cursor: 404.
async fn mark_read(
    State(state): State<AppState>,
    user: CurrentUser,
    ReadableRoom(access): ReadableRoom,
    super::JsonOrForm(form): super::JsonOrForm<ReadForm>,
) -> Result<Response> {
    let room = access.room.id;
    let cursor = db::memberships::mark_read(&state.db, room, user.id, form.seq)
        .await?
        .ok_or(Error::NotFound)?;
    if access.last_read_seq.is_some_and(|before| before < cursor) {
        rooms::tell_read(&state, user.id, room, cursor);
    }
    Ok(axum::Json(serde_json::json!({ "last_read_seq": cursor })).into_response())
}

/// The settings form: the room's name and topic.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SettingsForm {
    name: String,
    topic: String,
}

/// `POST /chatrooms/{id}/settings`: its creator or the admin renames the
/// room and sets its topic. Not "general", nor a conversation.
async fn update_room(
    State(state): State<AppState>,
    user: CurrentUser,
    ReadableRoom(access): ReadableRoom,
    Form(form): Form<SettingsForm>,
) -> Result<Response> {
    writable(&access)?;
    let room = &access.room;
    if !manages(&user, room) || room.is_general() || room.kind == RoomKind::Direct {
        return Err(Error::NotAllowed(
            "Only the room's creator or an admin can change it",
        ));
    }
    let name = RoomName::parse(&form.name);
    let topic = RoomTopic::parse(&form.topic);
    let (name, topic) = match (name, topic) {
        (Ok(name), Ok(topic)) => (name, topic),
        (name, topic) => {
            return Err(Error::invalid(
                [name.err(), topic.err()]
                    .into_iter()
                    .flatten()
                    .map(|invalid| invalid.to_string())
                    .collect(),
            ));
        }
    };
    match db::chatrooms::update(&state.db, room.id, &name, &topic).await {
        Ok(()) => {
            let renamed = Chatroom {
                name: name.as_str().to_owned(),
                topic: topic.as_str().to_owned(),
                ..room.clone()
            };
            rooms::tell_changed(&state, &renamed, rooms::RoomChange::Renamed).await?;
            Ok(back_to(room.id))
        }
        Err(InsertChatroomError::Database(error)) => Err(error.into()),
        Err(taken) => Err(Error::invalid(vec![taken.to_string()])),
    }
}

/// `POST /chatrooms/{id}/archive`: its creator or the admin archives the
/// room: it stays readable by whoever could read it, takes no more
/// messages, leaves every list, and every subscription to it ends.
async fn archive_room(
    State(state): State<AppState>,
    user: CurrentUser,
    ReadableRoom(access): ReadableRoom,
) -> Result<Response> {
    let room = &access.room;
    if !manages(&user, room) || room.is_general() || room.kind == RoomKind::Direct {
        return Err(Error::NotAllowed(
            "Only the room's creator or an admin can archive it",
        ));
    }
    if db::chatrooms::archive(&state.db, room.id).await? {
        tracing::info!(chatroom_id = room.id, user_id = user.id, "archived a room");
        state.relay.end_subscriptions(room.id, Who::Everyone);
        rooms::tell_changed(&state, room, rooms::RoomChange::Archived).await?;
    }
    Ok(back_to(room.id))
}

/// The notification form: `notify`, one of [`Notify::as_str`]'s values.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NotifyForm {
    notify: String,
}

/// `POST /chatrooms/{id}/notify`: sets what the member is notified of in
/// the room (JSON or form) and tells their other tabs and devices
/// (`{"type":"notify",…}`). A browser goes back to the room; JSON gets
/// `{"notify":…}`. An unknown value is 422; a non-member has nothing to
/// set: 404.
async fn set_notify(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: axum::http::HeaderMap,
    ReadableRoom(access): ReadableRoom,
    super::JsonOrForm(form): super::JsonOrForm<NotifyForm>,
) -> Result<Response> {
    let notify = Notify::parse(&form.notify).ok_or_else(|| Error::Invalid {
        code: "invalid_notify",
        messages: vec!["Notify of all, mentions, nothing or default".to_owned()],
        form: Default::default(),
    })?;
    let room = access.room.id;
    if !db::memberships::set_notify(&state.db, room, user.id, notify).await? {
        return Err(Error::NotFound);
    }
    rooms::tell_notify(&state, user.id, room, notify);
    if super::wants_json(&headers) {
        Ok(axum::Json(serde_json::json!({ "notify": notify.as_str() })).into_response())
    } else {
        Ok(back_to(room))
    }
}

/// The form saying who may mention everyone in a room.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RoomMentionsForm {
    room_mentions: String,
}

/// `POST /chatrooms/{id}/room_mentions`: its creator or an admin says who
/// may use `@channel` and `@here` in the room (`everyone` or `admins`);
/// the admin alone for "general". Not in a conversation (403).
async fn set_room_mentions(
    State(state): State<AppState>,
    user: CurrentUser,
    ReadableRoom(access): ReadableRoom,
    Form(form): Form<RoomMentionsForm>,
) -> Result<Response> {
    writable(&access)?;
    let room = &access.room;
    if !manages(&user, room) || room.kind == RoomKind::Direct {
        return Err(Error::NotAllowed(
            "Only the room's creator or an admin can change it",
        ));
    }
    let who = RoomMentions::parse(&form.room_mentions).ok_or_else(|| Error::Invalid {
        code: "invalid_room_mentions",
        messages: vec!["Say everyone or admins".to_owned()],
        form: Default::default(),
    })?;
    db::chatrooms::set_room_mentions(&state.db, room.id, who).await?;
    Ok(back_to(room.id))
}

//! Chatrooms: the list, creating one, and the room page.

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;

use super::auth::CurrentUser;
use super::messages::HistoryAt;
use crate::AppState;
use crate::db::chatrooms::{Chatroom, InsertChatroomError, RoomAccess, RoomKind};
use crate::db::{self, messages::Anchor};
use crate::domain::{RoomName, RoomSearch, RoomTopic};
use crate::error::{Error, Result};
use crate::templates::{
    ChatroomPage, ChatroomsPage, DirectLink, DirectoryFragment, DirectoryListing, DirectoryRow,
    RoomTitle, Sidebar, render,
};

/// How many messages the room page shows.
pub const PAGE_MESSAGES: i64 = 50;

/// How many rooms the sidebar lists (the most recently active), and the
/// directory shows per page: a page's size stays bounded however many
/// rooms the instance has.
pub const LISTED_ROOMS: i64 = 50;

/// `/chatrooms` and `/chatrooms/{id}`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/chatrooms", get(list_chatrooms).post(create_chatroom))
        .route("/chatrooms/{id}", get(show_chatroom))
}

/// The room of the path (`/chatrooms/{id}…`) as the signed-in user may see
/// it, read in one query with its newest `seq` and their membership. Every
/// route under `/chatrooms/{id}` takes its room through this, so none can
/// forget the check: a room that does not exist, a malformed id, and a
/// private room or direct conversation the user is not a member of are
/// alike, 404, so that nobody learns that a room they may not read exists.
pub struct ReadableRoom(pub RoomAccess);

impl FromRequestParts<AppState> for ReadableRoom {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let id = super::path_id(parts, state, "id").await?;
        let user = CurrentUser::from_request_parts(parts, state).await?;
        db::chatrooms::access(&state.db, id, user.id)
            .await?
            .filter(RoomAccess::may_read)
            .map(Self)
            .ok_or(Error::NotFound)
    }
}

/// How many direct conversations the sidebar lists (the most recently active).
pub const LISTED_DIRECTS: i64 = 30;

/// The sidebar of `user`: the public rooms and their private ones, most
/// recently active first, `current` always among them; and their direct
/// conversations, each named by its other members.
pub async fn sidebar(
    state: &AppState,
    user: &CurrentUser,
    current: Option<&Chatroom>,
) -> Result<Sidebar> {
    let mut rooms = db::chatrooms::recent(&state.db, user.id, LISTED_ROOMS).await?;
    let mut directs = db::chatrooms::directs(&state.db, user.id, LISTED_DIRECTS).await?;
    if let Some(current) = current {
        let listed = if current.kind == RoomKind::Direct {
            &mut directs
        } else {
            &mut rooms
        };
        if !listed.iter().any(|room| room.id == current.id) && current.archived_at.is_none() {
            listed.insert(0, current.clone());
        }
    }
    let ids: Vec<i64> = directs.iter().map(|room| room.id).collect();
    let members = db::memberships::members_of(&state.db, &ids).await?;
    let listed: Vec<i64> = rooms
        .iter()
        .map(|room| room.id)
        .chain(ids.iter().copied())
        .collect();
    let unread = db::memberships::unread(&state.db, user.id, &listed).await?;
    let directs = directs
        .into_iter()
        .map(|room| {
            DirectLink::new(
                room.id,
                user.id,
                members
                    .iter()
                    .filter(|(r, _)| *r == room.id)
                    .map(|(_, m)| m),
            )
            .online(|id| state.online.is_online(id))
        })
        .collect();
    Ok(Sidebar {
        rooms,
        directs,
        unread,
    })
}

/// The request header with which the directory's script asks `GET
/// /chatrooms` for the results alone, as an HTML fragment, instead of the
/// page; its value is `directory`.
pub const FRAGMENT_HEADER: &str = "hearth-fragment";

/// Whether the request asks for the directory's results alone.
fn wants_fragment(headers: &HeaderMap) -> bool {
    headers
        .get(FRAGMENT_HEADER)
        .is_some_and(|value| value.as_bytes() == b"directory")
}

/// `?q=` and `?page=` of the directory: the search (see [`RoomSearch`]) and
/// the page, counted from 0.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DirectoryQuery {
    q: String,
    page: i64,
}

/// The rooms of directory page `page` matching `search`, with their member
/// counts (one grouped query) and whether `user` is in each.
async fn directory_listing(
    state: &AppState,
    user: &CurrentUser,
    search: &RoomSearch,
    page: i64,
) -> Result<DirectoryListing> {
    let page = page.clamp(0, i64::MAX / LISTED_ROOMS - 1);
    let mut rooms = db::chatrooms::directory(
        &state.db,
        user.id,
        search,
        page * LISTED_ROOMS,
        LISTED_ROOMS + 1,
    )
    .await?;
    let has_next = rooms.len() as i64 > LISTED_ROOMS;
    rooms.truncate(LISTED_ROOMS as usize);
    let ids: Vec<i64> = rooms.iter().map(|room| room.id).collect();
    let members = db::memberships::counts(&state.db, &ids).await?;
    let joined = db::memberships::joined(&state.db, user.id, &ids).await?;
    let now = db::now_millis();
    Ok(DirectoryListing {
        rows: rooms
            .into_iter()
            .map(|room| DirectoryRow {
                members: members.get(&room.id).copied().unwrap_or(0),
                joined: joined.contains(&room.id),
                activity: DirectoryRow::activity(&room, now),
                active_title: DirectoryRow::active_title(&room),
                id: room.id,
                name: room.name,
                topic: room.topic,
                private: room.kind == RoomKind::Private,
            })
            .collect(),
        search: search.as_str().to_owned(),
        page,
        has_next,
        error: None,
    })
}

/// The new-room form's fields as typed, shown again with its errors.
#[derive(Debug, Default, Clone)]
struct NewRoomForm {
    errors: Vec<String>,
    name: String,
    topic: String,
}

/// The directory page around `listing`, with the sidebar and the new-room form.
async fn directory_page(
    state: &AppState,
    user: &CurrentUser,
    listing: DirectoryListing,
    form: NewRoomForm,
) -> Result<ChatroomsPage> {
    Ok(ChatroomsPage {
        current_user: Some(user.user()),
        sidebar: sidebar(state, user, None).await?,
        current_room_id: 0,
        listing,
        errors: form.errors,
        name: form.name,
        topic: form.topic,
        max_search_chars: crate::domain::MAX_SEARCH_CHARS,
        max_topic_chars: crate::domain::MAX_TOPIC_CHARS,
    })
}

/// The directory page around `listing` or, for the directory's script,
/// `listing` alone; either way marked as varying with the fragment header,
/// so that no cache serves one for the other.
async fn show_directory(
    state: &AppState,
    user: &CurrentUser,
    listing: DirectoryListing,
    fragment: bool,
    status: StatusCode,
) -> Result<Response> {
    let mut response = if fragment {
        render(status, &DirectoryFragment { listing: &listing })
    } else {
        let page = directory_page(state, user, listing, NewRoomForm::default()).await?;
        render(status, &page)
    };
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static(FRAGMENT_HEADER));
    Ok(response)
}

/// `GET /chatrooms`: the directory, searched with `?q=` and paged with
/// `?page=`. A search over [`crate::domain::MAX_SEARCH_CHARS`] is 422, the
/// reason shown where the results would be.
async fn list_chatrooms(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    Query(query): Query<DirectoryQuery>,
) -> Result<Response> {
    let fragment = wants_fragment(&headers);
    let search = RoomSearch::parse(&query.q).map_err(|invalid| {
        let (state, user, typed) = (state.clone(), user.clone(), query.q.clone());
        Error::invalid(vec![invalid.to_string()]).on_form(move |errors| {
            Box::pin(async move {
                let listing = DirectoryListing {
                    search: typed,
                    error: Some(errors.join(" ")),
                    ..DirectoryListing::default()
                };
                let status = StatusCode::UNPROCESSABLE_ENTITY;
                show_directory(&state, &user, listing, fragment, status)
                    .await
                    .unwrap_or_else(IntoResponse::into_response)
            })
        })
    })?;
    let listing = directory_listing(&state, &user, &search, query.page).await?;
    show_directory(&state, &user, listing, fragment, StatusCode::OK).await
}

/// The new-room form's fields; the topic may be left empty; `private`
/// (a checkbox) makes a room only its members may read.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ChatroomForm {
    name: String,
    topic: String,
    private: Option<String>,
}

/// Creates a room, its creator its first member, and redirects to it. Past
/// `--room-create-rate`, 429 with `Retry-After`; a bad or taken name or a
/// bad topic, 422 with the form as typed.
async fn create_chatroom(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<ChatroomForm>,
) -> Result<Response> {
    let refused = |error: Error| {
        let (state, user) = (state.clone(), user.clone());
        let (name, topic) = (form.name.clone(), form.topic.clone());
        error.on_form(move |errors| {
            Box::pin(async move {
                let form = NewRoomForm {
                    errors,
                    name,
                    topic,
                };
                let shown = match directory_listing(&state, &user, &RoomSearch::default(), 0).await
                {
                    Ok(listing) => directory_page(&state, &user, listing, form).await,
                    Err(error) => Err(error),
                };
                match shown {
                    Ok(page) => render(StatusCode::OK, &page),
                    Err(error) => error.into_response(),
                }
            })
        })
    };
    let name = RoomName::parse(&form.name);
    let topic = RoomTopic::parse(&form.topic);
    let (name, topic) = match (name, topic) {
        (Ok(name), Ok(topic)) => (name, topic),
        (name, topic) => {
            let messages = [name.err(), topic.err()]
                .into_iter()
                .flatten()
                .map(|invalid| invalid.to_string())
                .collect();
            return Err(refused(Error::invalid(messages)));
        }
    };
    if let Err(wait) = state.limits.room_create_by_user.check(&user.id) {
        tracing::warn!(user_id = user.id, "room creation rate limit reached");
        let minutes = (wait.as_secs_f64() / 60.0).ceil().max(1.0);
        return Err(refused(Error::rate_limited(
            wait,
            format!("You are creating rooms too fast; try again in {minutes} min"),
        )));
    }
    let kind = if form.private.is_some() {
        RoomKind::Private
    } else {
        RoomKind::Public
    };
    let room = match db::chatrooms::insert(&state.db, &name, &topic, kind, user.id).await {
        Ok(room) => room,
        Err(InsertChatroomError::Database(error)) => return Err(error.into()),
        Err(taken) => return Err(refused(Error::invalid(vec![taken.to_string()]))),
    };
    tracing::info!(
        chatroom_id = room.id,
        user_id = user.id,
        "created a chatroom"
    );
    if kind == RoomKind::Public {
        crate::channels::rooms::announce(&state, &room);
    } else {
        crate::channels::rooms::tell_added(&state, user.id, &room, &[]);
    }
    Ok(Redirect::to(&format!("/chatrooms/{}", room.id)).into_response())
}

/// The room page: the newest messages, or with `?before=`, `?after=` or
/// `?around=<seq>` that page of its history (a permalink marks the message).
async fn show_chatroom(
    State(state): State<AppState>,
    user: CurrentUser,
    ReadableRoom(access): ReadableRoom,
    HistoryAt { anchor, limit, .. }: HistoryAt,
) -> Result<Response> {
    let page = room_page_at(
        &state,
        user,
        access,
        anchor,
        limit,
        Vec::new(),
        String::new(),
    )
    .await?;
    Ok(render(StatusCode::OK, &page))
}

/// The room page of room `id` with its newest messages, `errors` above a
/// form holding `draft`; [`Error::NotFound`] for a room that is missing
/// or that `user` may not read.
pub async fn room_page(
    state: &AppState,
    user: CurrentUser,
    id: i64,
    errors: Vec<String>,
    draft: String,
) -> Result<ChatroomPage> {
    let access = db::chatrooms::access(&state.db, id, user.id)
        .await?
        .filter(RoomAccess::may_read)
        .ok_or(Error::NotFound)?;
    room_page_at(
        state,
        user,
        access,
        Anchor::Latest,
        PAGE_MESSAGES,
        errors,
        draft,
    )
    .await
}

/// Most members the room page lists.
const LISTED_MEMBERS: i64 = 200;

async fn room_page_at(
    state: &AppState,
    user: CurrentUser,
    access: RoomAccess,
    anchor: Anchor,
    limit: i64,
    errors: Vec<String>,
    draft: String,
) -> Result<ChatroomPage> {
    // `access` was read before the page: whatever happens between the two
    // reads is caught up.
    let highlight = match anchor {
        Anchor::Around(seq) => Some(seq),
        _ => None,
    };
    let member = access.is_member();
    let RoomAccess {
        room,
        last_seq,
        last_read_seq,
        ..
    } = access;
    let members = db::memberships::members(&state.db, room.id, LISTED_MEMBERS).await?;
    let member_count = db::memberships::counts(&state.db, &[room.id])
        .await?
        .get(&room.id)
        .copied()
        .unwrap_or(0);
    let page = db::messages::page(&state.db, room.id, anchor, limit).await?;
    // The "New" line goes above the first message from someone else after
    // the reader's cursor, as it was when the page was made.
    let first_unread = last_read_seq.and_then(|read| {
        page.messages
            .iter()
            .find(|m| m.seq > read && m.user_id != user.id)
            .map(|m| m.seq)
    });
    Ok(ChatroomPage {
        viewer_id: user.id,
        first_unread,
        last_read_seq: last_read_seq.unwrap_or(0),
        can_manage: room.managed_by(user.id, user.admin),
        title: RoomTitle::of(&room, user.id, &members),
        sidebar: sidebar(state, &user, Some(&room)).await?,
        current_room_id: room.id,
        current_user: Some(user.user()),
        page,
        highlight,
        member,
        members,
        member_count,
        room,
        errors,
        draft,
        max_chars: crate::domain::MAX_MESSAGE_CHARS,
        last_seq,
    })
}

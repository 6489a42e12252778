//! Chatrooms: the list, creating one, and the room page.

use axum::extract::{FromRequestParts, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;

use super::auth::CurrentUser;
use super::messages::HistoryAt;
use crate::AppState;
use crate::db::{self, chatrooms::Chatroom, chatrooms::InsertChatroomError, messages::Anchor};
use crate::domain::RoomName;
use crate::error::{Error, Result};
use crate::templates::{ChatroomPage, ChatroomsPage, render};

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

/// A room id from the path (`/chatrooms/{id}…`); anything but a positive
/// number is a missing room: 404.
pub struct RoomId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for RoomId {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        super::path_id(parts, state, "id").await.map(Self)
    }
}

/// The sidebar's rooms: the most recently active, and `current` always.
async fn sidebar(state: &AppState, current: Option<&Chatroom>) -> Result<Vec<Chatroom>> {
    let mut rooms = db::chatrooms::recent(&state.db, LISTED_ROOMS).await?;
    if let Some(current) = current
        && !rooms.iter().any(|room| room.id == current.id)
    {
        rooms.insert(0, current.clone());
    }
    Ok(rooms)
}

/// `?page=` of the directory, counted from 0.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DirectoryQuery {
    page: i64,
}

/// The directory page `page` with the new-room form.
async fn directory_page(
    state: &AppState,
    user: &CurrentUser,
    page: i64,
    errors: Vec<String>,
    name: String,
) -> Result<ChatroomsPage> {
    let page = page.clamp(0, i64::MAX / LISTED_ROOMS - 1);
    let mut directory =
        db::chatrooms::directory(&state.db, page * LISTED_ROOMS, LISTED_ROOMS + 1).await?;
    let has_next = directory.len() as i64 > LISTED_ROOMS;
    directory.truncate(LISTED_ROOMS as usize);
    Ok(ChatroomsPage {
        current_user: Some(user.user()),
        rooms: sidebar(state, None).await?,
        current_room_id: 0,
        directory,
        page,
        has_next,
        errors,
        name,
    })
}

async fn list_chatrooms(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(query): Query<DirectoryQuery>,
) -> Result<Response> {
    let page = directory_page(&state, &user, query.page, Vec::new(), String::new()).await?;
    Ok(render(StatusCode::OK, &page))
}

/// The new-room form field.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ChatroomForm {
    name: String,
}

/// Creates a room and redirects to it. Past `--room-create-rate`, 429 with
/// `Retry-After`; a bad or taken name, 422.
async fn create_chatroom(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<ChatroomForm>,
) -> Result<Response> {
    let refused = |error: Error| {
        let (state, user, name) = (state.clone(), user.clone(), form.name.clone());
        error.on_form(move |errors| {
            Box::pin(async move {
                match directory_page(&state, &user, 0, errors, name).await {
                    Ok(page) => render(StatusCode::OK, &page),
                    Err(error) => error.into_response(),
                }
            })
        })
    };
    let name = RoomName::parse(&form.name)
        .map_err(|invalid| refused(Error::invalid(vec![invalid.to_string()])))?;
    if let Err(wait) = state.limits.room_create_by_user.check(&user.id) {
        tracing::warn!(user_id = user.id, "room creation rate limit reached");
        let minutes = (wait.as_secs_f64() / 60.0).ceil().max(1.0);
        return Err(refused(Error::rate_limited(
            wait,
            format!("You are creating rooms too fast; try again in {minutes} min"),
        )));
    }
    let room = match db::chatrooms::insert(&state.db, &name).await {
        Ok(room) => room,
        Err(InsertChatroomError::Database(error)) => return Err(error.into()),
        Err(taken) => return Err(refused(Error::invalid(vec![taken.to_string()]))),
    };
    tracing::info!(
        chatroom_id = room.id,
        user_id = user.id,
        "created a chatroom"
    );
    crate::channels::rooms::announce(&state, &room);
    Ok(Redirect::to(&format!("/chatrooms/{}", room.id)).into_response())
}

/// The room page: the newest messages, or with `?before=`, `?after=` or
/// `?around=<seq>` that page of its history (a permalink marks the message).
async fn show_chatroom(
    State(state): State<AppState>,
    user: CurrentUser,
    RoomId(id): RoomId,
    HistoryAt { anchor, limit }: HistoryAt,
) -> Result<Response> {
    let page = room_page_at(&state, user, id, anchor, limit, Vec::new(), String::new()).await?;
    Ok(render(StatusCode::OK, &page))
}

/// The room page of room `id` with its newest messages, `errors` above a
/// form holding `draft`; [`Error::NotFound`] for a missing room.
pub async fn room_page(
    state: &AppState,
    user: CurrentUser,
    id: i64,
    errors: Vec<String>,
    draft: String,
) -> Result<ChatroomPage> {
    room_page_at(
        state,
        user,
        id,
        Anchor::Latest,
        PAGE_MESSAGES,
        errors,
        draft,
    )
    .await
}

async fn room_page_at(
    state: &AppState,
    user: CurrentUser,
    id: i64,
    anchor: Anchor,
    limit: i64,
    errors: Vec<String>,
    draft: String,
) -> Result<ChatroomPage> {
    let room = db::chatrooms::find(&state.db, id)
        .await?
        .ok_or(Error::NotFound)?;
    // Before the page: whatever happens between the two reads is caught up.
    let last_seq = db::chatrooms::last_seq(&state.db, id)
        .await?
        .ok_or(Error::NotFound)?;
    let highlight = match anchor {
        Anchor::Around(seq) => Some(seq),
        _ => None,
    };
    Ok(ChatroomPage {
        viewer_id: user.id,
        current_user: Some(user.user()),
        rooms: sidebar(state, Some(&room)).await?,
        current_room_id: room.id,
        room_id: room.id,
        room_name: room.name.clone(),
        page: db::messages::page(&state.db, room.id, anchor, limit).await?,
        highlight,
        room,
        errors,
        draft,
        max_chars: crate::domain::MAX_MESSAGE_CHARS,
        last_seq,
    })
}

//! Chatrooms: the list, creating one, and the room page.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;

use super::auth::CurrentUser;
use crate::AppState;
use crate::db::{self, chatrooms::InsertChatroomError};
use crate::domain::RoomName;
use crate::error::Result;
use crate::templates::{ChatroomPage, ChatroomsPage, NotFoundPage, render};

/// How many messages the room page shows.
pub const PAGE_MESSAGES: i64 = 50;

/// `/chatrooms` and `/chatrooms/{id}`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/chatrooms", get(list_chatrooms).post(create_chatroom))
        .route("/chatrooms/{id}", get(show_chatroom))
}

/// Parses a room id from the path; anything else is a missing room.
pub fn parse_room_id(raw: &str) -> Option<i64> {
    raw.parse().ok().filter(|id| *id > 0)
}

/// The 404 page, for a missing room or an unknown path.
pub async fn not_found(user: Option<CurrentUser>) -> Response {
    render(
        StatusCode::NOT_FOUND,
        &NotFoundPage {
            current_user: user.map(|u| u.user()),
        },
    )
}

async fn list_chatrooms(State(state): State<AppState>, user: CurrentUser) -> Result<Response> {
    Ok(render(
        StatusCode::OK,
        &ChatroomsPage {
            current_user: Some(user.user()),
            rooms: db::chatrooms::list(&state.db).await?,
            current_room_id: 0,
            errors: Vec::new(),
            name: String::new(),
        },
    ))
}

/// The new-room form field.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ChatroomForm {
    name: String,
}

async fn create_chatroom(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<ChatroomForm>,
) -> Result<Response> {
    let created = match RoomName::parse(&form.name) {
        Ok(name) => db::chatrooms::insert(&state.db, &name)
            .await
            .map_err(|e| match e {
                InsertChatroomError::NameTaken => Ok(e.to_string()),
                InsertChatroomError::Database(error) => Err(error),
            }),
        Err(invalid) => Err(Ok(invalid.to_string())),
    };
    match created {
        Ok(room) => {
            tracing::info!(
                chatroom_id = room.id,
                user_id = user.id,
                "created a chatroom"
            );
            Ok(Redirect::to(&format!("/chatrooms/{}", room.id)).into_response())
        }
        Err(Err(error)) => Err(error.into()),
        Err(Ok(message)) => Ok(render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &ChatroomsPage {
                current_user: Some(user.user()),
                rooms: db::chatrooms::list(&state.db).await?,
                current_room_id: 0,
                errors: vec![message],
                name: form.name,
            },
        )),
    }
}

async fn show_chatroom(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Response> {
    let page = room_page(&state, user, &id, Vec::new(), String::new()).await?;
    Ok(match page {
        Some(page) => render(StatusCode::OK, &page),
        None => not_found(None).await,
    })
}

/// The room page for `raw_id`, or `None` for a missing room.
pub async fn room_page(
    state: &AppState,
    user: CurrentUser,
    raw_id: &str,
    errors: Vec<String>,
    draft: String,
) -> Result<Option<ChatroomPage>> {
    let Some(id) = parse_room_id(raw_id) else {
        return Ok(None);
    };
    let Some(room) = db::chatrooms::find(&state.db, id).await? else {
        return Ok(None);
    };
    Ok(Some(ChatroomPage {
        current_user: Some(user.user()),
        rooms: db::chatrooms::list(&state.db).await?,
        current_room_id: room.id,
        messages: db::messages::latest(&state.db, room.id, PAGE_MESSAGES).await?,
        room,
        errors,
        draft,
    }))
}

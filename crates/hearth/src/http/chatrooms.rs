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
use crate::error::{Error, Result};
use crate::templates::{ChatroomPage, ChatroomsPage, render};

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

/// The room list with the new-room form.
async fn rooms_page(
    state: &AppState,
    user: &CurrentUser,
    errors: Vec<String>,
    name: String,
) -> Result<ChatroomsPage> {
    Ok(ChatroomsPage {
        current_user: Some(user.user()),
        rooms: db::chatrooms::list(&state.db).await?,
        current_room_id: 0,
        errors,
        name,
    })
}

async fn list_chatrooms(State(state): State<AppState>, user: CurrentUser) -> Result<Response> {
    let page = rooms_page(&state, &user, Vec::new(), String::new()).await?;
    Ok(render(StatusCode::OK, &page))
}

/// The new-room form field.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ChatroomForm {
    name: String,
}

/// Creates a room and redirects to it; a bad or taken name, 422.
async fn create_chatroom(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<ChatroomForm>,
) -> Result<Response> {
    let refused = |error: Error| {
        let (state, user, name) = (state.clone(), user.clone(), form.name.clone());
        error.on_form(move |errors| {
            Box::pin(async move {
                match rooms_page(&state, &user, errors, name).await {
                    Ok(page) => render(StatusCode::OK, &page),
                    Err(error) => error.into_response(),
                }
            })
        })
    };
    let name = RoomName::parse(&form.name)
        .map_err(|invalid| refused(Error::invalid(vec![invalid.to_string()])))?;
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
    Ok(Redirect::to(&format!("/chatrooms/{}", room.id)).into_response())
}

async fn show_chatroom(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Response> {
    let id = parse_room_id(&id).ok_or(Error::NotFound)?;
    let page = room_page(&state, user, id, Vec::new(), String::new()).await?;
    Ok(render(StatusCode::OK, &page))
}

/// The room page of room `id`, with `errors` above a form holding `draft`;
/// [`Error::NotFound`] for a missing room.
pub async fn room_page(
    state: &AppState,
    user: CurrentUser,
    id: i64,
    errors: Vec<String>,
    draft: String,
) -> Result<ChatroomPage> {
    let room = db::chatrooms::find(&state.db, id)
        .await?
        .ok_or(Error::NotFound)?;
    Ok(ChatroomPage {
        current_user: Some(user.user()),
        rooms: db::chatrooms::list(&state.db).await?,
        current_room_id: room.id,
        messages: db::messages::latest(&state.db, room.id, PAGE_MESSAGES).await?,
        room,
        errors,
        draft,
    })
}

//! `POST /chatrooms/{id}/messages`: posting from the room's form or `fetch`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::{Form, Router};
use serde::Deserialize;

use super::auth::CurrentUser;
use super::chatrooms::{parse_room_id, room_page};
use super::wants_json;
use crate::AppState;
use crate::domain::MessageContent;
use crate::error::{Error, Result};
use crate::templates::render;
use crate::writer::{NewMessage, PostError};

/// The message route.
pub fn router() -> Router<AppState> {
    Router::new().route("/chatrooms/{id}/messages", post(create_message))
}

/// The message form field.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MessageForm {
    content: String,
}

/// Stores and broadcasts the message. A browser form gets 303 back to the
/// room; `Accept: application/json` gets 201 and the broadcast payload.
/// Invalid content gets 422 and is neither stored nor broadcast; past the
/// user's message rate, 429 with `Retry-After`. Refusals go through
/// [`Error`], which shows a browser the room again with the draft.
async fn create_message(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    Form(form): Form<MessageForm>,
) -> Result<Response> {
    let chatroom_id = parse_room_id(&raw_id).ok_or(Error::NotFound)?;
    let refused = |error: Error| {
        let (state, user, draft) = (state.clone(), user.clone(), form.content.clone());
        error.on_form(move |errors| {
            Box::pin(async move {
                match room_page(&state, user, chatroom_id, errors, draft).await {
                    Ok(page) => render(StatusCode::OK, &page),
                    Err(error) => error.into_response(),
                }
            })
        })
    };
    let content = MessageContent::parse(&form.content).map_err(|invalid| {
        refused(Error::Invalid {
            code: "invalid_content",
            messages: vec![invalid.to_string()],
            form: Default::default(),
        })
    })?;
    let posted = state
        .writer
        .post(NewMessage {
            chatroom_id,
            user_id: user.id,
            nickname: user.nickname.clone(),
            content,
        })
        .await;
    let stored = match posted {
        Ok(stored) => stored,
        Err(PostError::RoomNotFound) => return Err(Error::NotFound),
        Err(PostError::RateLimited(wait)) => {
            let seconds = wait.as_secs_f64().ceil().max(1.0);
            return Err(refused(Error::rate_limited(
                wait,
                format!("You are sending messages too fast; try again in {seconds} s"),
            )));
        }
        Err(error) => return Err(Error::Internal(error.into())),
    };
    if wants_json(&headers) {
        let json = [(header::CONTENT_TYPE, "application/json")];
        Ok((StatusCode::CREATED, json, stored.payload.get().to_owned()).into_response())
    } else {
        Ok(Redirect::to(&format!("/chatrooms/{chatroom_id}")).into_response())
    }
}

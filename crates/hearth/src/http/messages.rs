//! `POST /chatrooms/{id}/messages`: posting from the room's form or `fetch`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::auth::CurrentUser;
use super::chatrooms::{not_found, parse_room_id, room_page};
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
/// user's message rate, 429 with `Retry-After`.
async fn create_message(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    Form(form): Form<MessageForm>,
) -> Result<Response> {
    let json = wants_json(&headers);
    let Some(chatroom_id) = parse_room_id(&raw_id) else {
        return Ok(missing_room(json, user).await);
    };
    let content = match MessageContent::parse(&form.content) {
        Ok(content) => content,
        Err(invalid) if json => {
            return Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "error": "invalid_content", "message": invalid.to_string() })),
            )
                .into_response());
        }
        Err(invalid) => {
            return Ok(
                match room_page(
                    &state,
                    user.clone(),
                    &raw_id,
                    vec![invalid.to_string()],
                    form.content,
                )
                .await?
                {
                    Some(page) => render(StatusCode::UNPROCESSABLE_ENTITY, &page),
                    None => missing_room(false, user).await,
                },
            );
        }
    };
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
        Err(PostError::RoomNotFound) => return Ok(missing_room(json, user).await),
        Err(PostError::RateLimited(wait)) => {
            let seconds = wait.as_secs().max(1);
            let retry = [(header::RETRY_AFTER, seconds.to_string())];
            let text = format!("You are sending messages too fast; try again in {seconds} s");
            if json {
                let body =
                    json!({ "error": "rate_limited", "message": text, "retry_after": seconds });
                return Ok((StatusCode::TOO_MANY_REQUESTS, retry, Json(body)).into_response());
            }
            let page = room_page(&state, user.clone(), &raw_id, vec![text], form.content).await?;
            return Ok(match page {
                Some(page) => (retry, render(StatusCode::TOO_MANY_REQUESTS, &page)).into_response(),
                None => missing_room(false, user).await,
            });
        }
        Err(error) => return Err(Error::Internal(error.into())),
    };
    if json {
        let json = [(header::CONTENT_TYPE, "application/json")];
        Ok((StatusCode::CREATED, json, stored.payload.get().to_owned()).into_response())
    } else {
        Ok(Redirect::to(&format!("/chatrooms/{chatroom_id}")).into_response())
    }
}

async fn missing_room(json: bool, user: CurrentUser) -> Response {
    if json {
        (StatusCode::NOT_FOUND, Json(json!({ "error": "not_found" }))).into_response()
    } else {
        not_found(Some(user)).await
    }
}

//! `/chatrooms/{id}/messages`: a room's history a page at a time (`GET`),
//! and posting from the room's form or `fetch` (`POST`);
//! `/chatrooms/{id}/messages/{message_id}`: editing (`PATCH`) and deleting
//! (`DELETE`) one's own message, or the same as a form post with `_method`,
//! as Rails forms do, and the edit form for pages without JavaScript.

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, patch};
use axum::{Form, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::auth::CurrentUser;
use super::chatrooms::{ReadableRoom, room_page};
use super::{JsonOrForm, wants_json};
use crate::AppState;
use crate::db::{self, messages::Anchor};
use crate::domain::MessageContent;
use crate::error::{Error, Result};
use crate::payload::{self, Format};
use crate::templates::{EditMessagePage, HistoryFragment, render};
use crate::writer::{
    ChangeError, MessageChange, NewMessage, PostError, ROOM_MENTION_REFUSED, addressed,
};

/// The message routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/chatrooms/{id}/messages",
            get(list_messages).post(create_message),
        )
        .route(
            "/chatrooms/{id}/messages/{message_id}",
            patch(update_message)
                .delete(delete_message)
                .post(change_message_by_form),
        )
        .route(
            "/chatrooms/{id}/messages/{message_id}/edit",
            get(edit_message),
        )
}

/// A message id from the path (`…/messages/{message_id}`); anything but a
/// positive number is a missing message: 404.
pub struct MessageId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for MessageId {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        super::path_id(parts, state, "message_id").await.map(Self)
    }
}

/// Most messages one page of history may hold.
pub const MAX_PAGE: i64 = 200;
/// The page size when none is asked for.
pub const DEFAULT_PAGE: i64 = 50;

/// Where a page of history is taken from: at most one of `before`, `after`
/// and `around` (a `seq`), none for the newest; and how many, 1 to
/// [`MAX_PAGE`].
#[derive(Debug, Default, Deserialize)]
struct HistoryQuery {
    before: Option<i64>,
    after: Option<i64>,
    around: Option<i64>,
    limit: Option<i64>,
    format: Option<String>,
}

/// The place in a room's history a request asks for (`?before=`,
/// `?after=`, `?around=`, `?limit=`), and the [`Format`] of its JSON
/// payloads (`?format=`), checked: a malformed number is a 400, two
/// anchors, a limit out of range or an unknown format a 422
/// ([`Error::Invalid`]).
pub struct HistoryAt {
    /// Where the page is taken from.
    pub anchor: Anchor,
    /// How many messages, 1 to [`MAX_PAGE`].
    pub limit: i64,
    /// How much of each message a JSON page carries.
    pub format: Format,
}

impl<S: Send + Sync> FromRequestParts<S> for HistoryAt {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let Query(query) = Query::<HistoryQuery>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        query.parse().map_err(IntoResponse::into_response)
    }
}

impl HistoryQuery {
    fn parse(&self) -> Result<HistoryAt> {
        let anchor = match (self.before, self.after, self.around) {
            (None, None, None) => Anchor::Latest,
            (Some(seq), None, None) => Anchor::Before(seq),
            (None, Some(seq), None) => Anchor::After(seq),
            (None, None, Some(seq)) => Anchor::Around(seq),
            _ => {
                return Err(Error::invalid(vec![
                    "Give at most one of before, after and around".into(),
                ]));
            }
        };
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(Error::invalid(vec![format!(
                "limit must be 1 to {MAX_PAGE}"
            )]));
        }
        let format = match &self.format {
            None => Format::Full,
            Some(name) => Format::named(name).map_err(|why| Error::invalid(vec![why.into()]))?,
        };
        Ok(HistoryAt {
            anchor,
            limit,
            format,
        })
    }
}

/// A page of history as JSON: the broadcast payloads, oldest first.
#[derive(Serialize)]
struct HistoryJson {
    messages: Vec<Box<RawValue>>,
    more_before: bool,
    more_after: bool,
    /// The room's newest place in its sequence, read before the page: a
    /// client that reached the live end catches up from it.
    last_seq: i64,
}

/// A page of a room's history by `seq`. `Accept: application/json` gets the
/// same payload objects as broadcasts, oldest first, and whether more
/// exist on either side; anything else gets the messages as an HTML
/// fragment, with links to the pages around it.
async fn list_messages(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    ReadableRoom(access): ReadableRoom,
    HistoryAt {
        anchor,
        limit,
        format,
    }: HistoryAt,
) -> Result<Response> {
    let db::chatrooms::RoomAccess { room, last_seq, .. } = access;
    let chatroom_id = room.id;
    let page = db::messages::page(&state.db, chatroom_id, anchor, limit).await?;
    if wants_json(&headers) {
        return Ok(Json(HistoryJson {
            messages: page
                .messages
                .iter()
                .map(|message| payload::encode(message, format))
                .collect(),
            more_before: page.more_before,
            more_after: page.more_after,
            last_seq,
        })
        .into_response());
    }
    let fragment = HistoryFragment {
        room: &room,
        page: &page,
        highlight: None,
        viewer_id: user.id,
        first_unread: None,
    };
    Ok(render(StatusCode::OK, &fragment))
}

/// The message form field.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MessageForm {
    content: String,
    /// The page's id for its pending copy of the message.
    client_id: String,
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
    ReadableRoom(access): ReadableRoom,
    Form(form): Form<MessageForm>,
) -> Result<Response> {
    let chatroom_id = access.room.id;
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
    if access.room.archived_at.is_some() {
        return Err(Error::NotAllowed(ARCHIVED));
    }
    let content = MessageContent::parse(&form.content).map_err(|invalid| {
        refused(Error::Invalid {
            code: "invalid_content",
            messages: vec![invalid.to_string()],
            form: Default::default(),
        })
    })?;
    let mentions = crate::markup::mentions(content.as_str());
    let Some(here) = addressed(&access.room, &user, &mentions, &state.presence) else {
        return Err(refused(room_mention_refused()));
    };
    let posted = state
        .writer
        .post(NewMessage {
            chatroom_id,
            user_id: user.id,
            nickname: user.nickname.clone(),
            content,
            client_id: crate::writer::client_id(&form.client_id),
            mentions,
            here,
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

/// The fields of an edit: the new text.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EditForm {
    content: String,
}

/// A form post standing for `PATCH` or `DELETE` (`_method`), with the new
/// text for an edit.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ChangeForm {
    #[serde(rename = "_method")]
    method: String,
    content: String,
}

/// Replaces the text of one's own message (JSON or form body). The room
/// gets a `message_edited` payload at the room's next `seq`; the answer is
/// that payload as JSON, or 303 back to the message. Someone else's
/// message is 403; a missing or deleted one 404; bad text 422.
async fn update_message(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    ReadableRoom(access): ReadableRoom,
    MessageId(id): MessageId,
    JsonOrForm(form): JsonOrForm<EditForm>,
) -> Result<Response> {
    change_message(&state, user, &headers, &access, id, Some(form.content)).await
}

/// Deletes one's own message: its text is erased and the room gets a
/// `message_deleted` payload at the room's next `seq`. Answers as
/// [`update_message`] does.
async fn delete_message(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    ReadableRoom(access): ReadableRoom,
    MessageId(id): MessageId,
) -> Result<Response> {
    change_message(&state, user, &headers, &access, id, None).await
}

/// `PATCH` or `DELETE` from a page without JavaScript: a form post with
/// `_method=patch` or `_method=delete`.
async fn change_message_by_form(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    ReadableRoom(access): ReadableRoom,
    MessageId(id): MessageId,
    Form(form): Form<ChangeForm>,
) -> Result<Response> {
    let content = match form.method.to_ascii_lowercase().as_str() {
        "patch" | "put" => Some(form.content),
        "delete" => None,
        _ => {
            return Err(Error::invalid(vec![
                "_method must be patch or delete".into(),
            ]));
        }
    };
    change_message(&state, user, &headers, &access, id, content).await
}

/// An edit (`Some` text) or a deletion, through the writer.
async fn change_message(
    state: &AppState,
    user: CurrentUser,
    headers: &HeaderMap,
    access: &db::chatrooms::RoomAccess,
    id: i64,
    content: Option<String>,
) -> Result<Response> {
    if access.room.archived_at.is_some() {
        return Err(Error::NotAllowed(ARCHIVED));
    }
    let room = access.room.id;
    let draft = content.clone().unwrap_or_default();
    let refused = |error: Error| {
        let (state, user, draft) = (state.clone(), user.clone(), draft.clone());
        error.on_form(move |errors| {
            Box::pin(async move {
                match edit_page(&state, user, room, id, errors, Some(draft)).await {
                    Ok(page) => render(StatusCode::OK, &page),
                    Err(error) => error.into_response(),
                }
            })
        })
    };
    let content = match content {
        Some(raw) => Some(MessageContent::parse(&raw).map_err(|invalid| {
            refused(Error::Invalid {
                code: "invalid_content",
                messages: vec![invalid.to_string()],
                form: Default::default(),
            })
        })?),
        None => None,
    };
    // Whom the new text mentions; an edit notifies nobody, so `@here`
    // needs no one present, but it may not mention the whole room where the
    // post could not have.
    let mentions = content
        .as_ref()
        .map(|content| crate::markup::mentions(content.as_str()))
        .unwrap_or_default();
    if mentions.is_broadcast() && !access.room.may_mention_everyone(user.id, user.admin) {
        return Err(refused(room_mention_refused()));
    }
    let changed = state
        .writer
        .change(MessageChange {
            chatroom_id: room,
            message_id: id,
            user_id: user.id,
            content,
            mentions,
        })
        .await
        .map_err(|error| match error {
            ChangeError::NotFound => Error::NotFound,
            ChangeError::NotAuthor => Error::NotAllowed(NOT_YOURS),
            ChangeError::RateLimited(wait) => {
                let seconds = wait.as_secs_f64().ceil().max(1.0);
                refused(Error::rate_limited(
                    wait,
                    format!("You are changing messages too fast; try again in {seconds} s"),
                ))
            }
            error => Error::Internal(error.into()),
        })?;
    if wants_json(headers) {
        let json = [(header::CONTENT_TYPE, "application/json")];
        return Ok((json, changed.payload.get().to_owned()).into_response());
    }
    let message = &changed.message;
    let to = if message.deleted_at.is_some() {
        format!("/chatrooms/{room}")
    } else {
        format!(
            "/chatrooms/{room}?around={}#message_{}",
            message.seq, message.id
        )
    };
    Ok(Redirect::to(&to).into_response())
}

/// What someone writing to an archived room is told.
const ARCHIVED: &str = "This room is archived: it can be read, not written to";

/// What someone trying to change another's message is told.
const NOT_YOURS: &str = "Only its author can change a message";

/// The edit form of one's own message.
async fn edit_message(
    State(state): State<AppState>,
    user: CurrentUser,
    ReadableRoom(access): ReadableRoom,
    MessageId(id): MessageId,
) -> Result<Response> {
    let page = edit_page(&state, user, access.room.id, id, Vec::new(), None).await?;
    Ok(render(StatusCode::OK, &page))
}

async fn edit_page(
    state: &AppState,
    user: CurrentUser,
    room: i64,
    id: i64,
    errors: Vec<String>,
    draft: Option<String>,
) -> Result<EditMessagePage> {
    let message = db::messages::find_in_room(&state.db, room, id)
        .await?
        .filter(|message| message.deleted_at.is_none())
        .ok_or(Error::NotFound)?;
    if message.user_id != user.id {
        return Err(Error::NotAllowed(NOT_YOURS));
    }
    let room = db::chatrooms::find(&state.db, room)
        .await?
        .ok_or(Error::NotFound)?;
    Ok(EditMessagePage {
        current_user: Some(user.user()),
        draft: draft.unwrap_or_else(|| message.content.clone()),
        message,
        room_name: room.name,
        errors,
    })
}

/// A post or edit mentioning the whole room where its author may not: 422.
fn room_mention_refused() -> Error {
    Error::Invalid {
        code: "room_mention_not_allowed",
        messages: vec![ROOM_MENTION_REFUSED.to_owned()],
        form: Default::default(),
    }
}

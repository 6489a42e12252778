//! Direct conversations: `/dm/{nickname}` opens the one with that person
//! (starting it if need be), `/dm` starts one with up to seven others, and
//! `/users?prefix=` suggests nicknames as they are typed.
//!
//! A conversation is a room of kind `direct` whose members are its people:
//! paging, edits, presence, typing and search work in it as in any room,
//! and only its members may read it ([`super::chatrooms::ReadableRoom`]).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Json, Router};
use serde::{Deserialize, Serialize};

use super::auth::CurrentUser;
use super::chatrooms::sidebar;
use crate::AppState;
use crate::channels::rooms;
use crate::db::{self, chatrooms::MAX_DIRECT_MEMBERS};
use crate::domain::Nickname;
use crate::error::{Error, Result};
use crate::templates::{NewDirectPage, render};

/// The conversation routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dm", get(new_direct).post(create_direct))
        .route("/dm/{nickname}", get(open_direct))
        .route("/users", get(suggest_users))
}

/// `GET /dm`: the "New message" form.
async fn new_direct(State(state): State<AppState>, user: CurrentUser) -> Result<Response> {
    let page = direct_page(&state, &user, String::new(), Vec::new()).await?;
    Ok(render(StatusCode::OK, &page))
}

async fn direct_page(
    state: &AppState,
    user: &CurrentUser,
    to: String,
    errors: Vec<String>,
) -> Result<NewDirectPage> {
    Ok(NewDirectPage {
        current_user: Some(user.user()),
        sidebar: sidebar(state, user, None).await?,
        current_room_id: 0,
        to,
        max_others: MAX_DIRECT_MEMBERS - 1,
        errors,
    })
}

/// `GET /dm/{nickname}`: the conversation between the user and that person
/// (themselves alone for their own nickname), found again or started.
async fn open_direct(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(nickname): Path<String>,
) -> Result<Response> {
    let room = start(&state, &user, &[nickname]).await?;
    Ok(Redirect::to(&format!("/chatrooms/{room}")).into_response())
}

/// The "New message" form: nicknames separated by commas or spaces, `@`
/// allowed before each.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DirectForm {
    to: String,
}

/// `POST /dm`: the conversation between the user and everyone named,
/// found again or started. Unknown nicknames or too many people are 422,
/// shown on the form.
async fn create_direct(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<DirectForm>,
) -> Result<Response> {
    let nicknames: Vec<String> = form
        .to
        .split(|c: char| c == ',' || c.is_whitespace())
        .map(|part| part.trim().trim_start_matches('@'))
        .filter(|part| !part.is_empty())
        .map(str::to_owned)
        .collect();
    match start(&state, &user, &nicknames).await {
        Ok(room) => Ok(Redirect::to(&format!("/chatrooms/{room}")).into_response()),
        Err(error) => {
            let (state, user, to) = (state.clone(), user.clone(), form.to.clone());
            Err(error.on_form(move |errors| {
                Box::pin(async move {
                    match direct_page(&state, &user, to, errors).await {
                        Ok(page) => render(StatusCode::UNPROCESSABLE_ENTITY, &page),
                        Err(error) => error.into_response(),
                    }
                })
            }))
        }
    }
}

/// Finds or starts the conversation of `user` and the people called
/// `nicknames`; returns its room id. Each new member's sidebar shows it at once.
async fn start(state: &AppState, user: &CurrentUser, nicknames: &[String]) -> Result<i64> {
    let mut wanted = Vec::with_capacity(nicknames.len());
    for nickname in nicknames {
        let parsed = Nickname::parse(nickname)
            .map_err(|_| Error::invalid(vec![format!("Nobody is called {nickname}")]))?;
        wanted.push(parsed.as_str().to_owned());
    }
    if wanted.is_empty() {
        return Err(Error::invalid(vec!["Say whom to write to".into()]));
    }
    let found = db::users::find_by_nicknames(&state.db, &wanted).await?;
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|w| !found.iter().any(|(_, n)| n.eq_ignore_ascii_case(w)))
        .collect();
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|m| m.as_str()).collect();
        return Err(Error::invalid(vec![format!(
            "Nobody is called {}",
            names.join(", ")
        )]));
    }
    let mut members: Vec<i64> = found.iter().map(|(id, _)| *id).collect();
    members.push(user.id);
    members.sort_unstable();
    members.dedup();
    if members.len() > MAX_DIRECT_MEMBERS {
        return Err(Error::invalid(vec![format!(
            "A conversation has at most {MAX_DIRECT_MEMBERS} people"
        )]));
    }
    let mut names: Vec<&str> = found.iter().map(|(_, n)| n.as_str()).collect();
    names.push(&user.nickname);
    names.sort_unstable_by_key(|n| n.to_lowercase());
    names.dedup();
    let room = db::chatrooms::direct(&state.db, &members, &names.join(", "), user.id).await?;
    let people = db::memberships::members(&state.db, room.id, MAX_DIRECT_MEMBERS as i64).await?;
    // Those with a page here hear of each other's coming and going (other
    // nodes learn it from the announcements, which name the members).
    state.online.partnered(&members);
    for member in &members {
        rooms::tell_added(state, *member, &room, &people);
    }
    Ok(room.id)
}

/// `?prefix=` of the nickname suggestions, and `&room=` whose members
/// come first.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SuggestQuery {
    prefix: String,
    room: Option<i64>,
}

/// One suggested person.
#[derive(Serialize)]
struct Suggestion {
    id: i64,
    nickname: String,
}

/// Most suggestions one request returns.
const SUGGESTIONS: i64 = 10;

/// `GET /users?prefix=`: up to ten nicknames starting with `prefix` (any
/// case), as JSON, for the "New message" form and `@` mentions; with
/// `&room=<id>` of a room the user may read, its members first (a room
/// they may not read orders nothing, so says nothing of its members). A
/// prefix that no nickname could start with gets an empty list.
async fn suggest_users(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(query): Query<SuggestQuery>,
) -> Result<Json<Vec<Suggestion>>> {
    let prefix = query.prefix.trim().trim_start_matches('@');
    let plausible = !prefix.is_empty()
        && prefix.len() <= 32
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !plausible {
        return Ok(Json(Vec::new()));
    }
    let first = match query.room {
        Some(room) => db::chatrooms::access(&state.db, room, user.id)
            .await?
            .filter(db::chatrooms::RoomAccess::may_read)
            .map_or(0, |access| access.room.id),
        None => 0,
    };
    // `_` is a LIKE wildcard: a suggestion too many is filtered out here.
    let found = db::users::nicknames_starting(&state.db, prefix, first, SUGGESTIONS * 2).await?;
    Ok(Json(
        found
            .into_iter()
            .filter(|(_, n)| n.to_lowercase().starts_with(&prefix.to_lowercase()))
            .take(SUGGESTIONS as usize)
            .map(|(id, nickname)| Suggestion { id, nickname })
            .collect(),
    ))
}

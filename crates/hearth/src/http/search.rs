//! `/search`: full-text search over the messages the user may read, as a
//! page or as JSON, each result a permalink into its room.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::auth::CurrentUser;
use super::wants_json;
use crate::AppState;
use crate::db;
use crate::domain::SearchQuery;
use crate::error::{Error, Result};
use crate::markup;
use crate::templates::{SearchPage, SearchResult, date_time_utc, render, rfc3339_millis};

/// The search route.
pub fn router() -> Router<AppState> {
    Router::new().route("/search", get(search_messages))
}

/// Results per page.
pub const PER_PAGE: i64 = 20;
/// The last page that may be asked for: deep pages of a broad query cost
/// the database a scan, and nobody reads that far.
pub const MAX_PAGE: i64 = 49;

/// `?q=` and `?page=` (from 0).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SearchParams {
    q: String,
    page: i64,
}

/// The JSON answer.
#[derive(Serialize)]
struct SearchJson {
    results: Vec<SearchResult>,
    page: i64,
    more: bool,
}

/// Searches. Terms must all occur in a message (any part of a word, any
/// case); `in:#room`, `from:@nickname`, `before:`/`after:YYYY-MM-DD`
/// narrow it. `Accept: application/json` gets `{"results":[…],"page":n,
/// "more":bool}`; anything else the results page. A query over
/// [`crate::domain::MAX_QUERY_CHARS`], a bad date or a page past
/// [`MAX_PAGE`]: 422.
async fn search_messages(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    Query(params): Query<SearchParams>,
) -> Result<Response> {
    let refused = |messages: Vec<String>| {
        let (current_user, q) = (user.user(), params.q.clone());
        Error::Invalid {
            code: "invalid_query",
            messages,
            form: Default::default(),
        }
        .on_form(move |errors| {
            Box::pin(async move {
                let page = SearchPage {
                    current_user: Some(current_user),
                    q,
                    results: Vec::new(),
                    page: 0,
                    more: false,
                    searched: false,
                    errors,
                };
                render(StatusCode::OK, &page)
            })
        })
    };
    let query =
        SearchQuery::parse(&params.q).map_err(|invalid| refused(vec![invalid.to_string()]))?;
    if !(0..=MAX_PAGE).contains(&params.page) {
        return Err(refused(vec![format!("Pages go from 0 to {MAX_PAGE}")]));
    }
    let mut hits = if query.is_empty() {
        Vec::new()
    } else {
        // What was posted before the search is found by it.
        state.search_index.settle().await;
        db::search::search(
            &state.db,
            user.id,
            &query,
            PER_PAGE + 1,
            params.page * PER_PAGE,
        )
        .await?
    };
    let more = hits.len() as i64 > PER_PAGE;
    hits.truncate(PER_PAGE as usize);
    let results: Vec<SearchResult> = hits
        .into_iter()
        .map(|hit| SearchResult {
            url: format!(
                "/chatrooms/{}?around={}#message_{}",
                hit.chatroom_id, hit.seq, hit.id
            ),
            snippet_html: markup::snippet(&hit.content, &query.terms),
            created_at: rfc3339_millis(hit.created_at),
            when: date_time_utc(hit.created_at),
            id: hit.id,
            chatroom_id: hit.chatroom_id,
            room_name: hit.room_name,
            sigil: match hit.room_kind.as_str() {
                "private" => "🔒",
                "direct" => "@",
                _ => "#",
            },
            room_kind: hit.room_kind,
            seq: hit.seq,
            user_id: hit.user_id,
            nickname: hit.nickname,
        })
        .collect();
    if wants_json(&headers) {
        return Ok(Json(SearchJson {
            results,
            page: params.page,
            more,
        })
        .into_response());
    }
    let page = SearchPage {
        current_user: Some(user.user()),
        q: params.q,
        searched: !query.is_empty(),
        results,
        page: params.page,
        more,
        errors: Vec::new(),
    };
    Ok(render(StatusCode::OK, &page))
}

//! `GET /cable`: the Action Cable WebSocket.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cable::CableUpgrade;

use super::ClientIp;
use super::auth::CurrentUser;
use crate::AppState;

/// `/cable`.
pub fn router() -> Router<AppState> {
    Router::new().route("/cable", get(open_cable))
}

/// Refuses foreign origins with 403 before any upgrade; otherwise upgrades and
/// hands the socket to the engine, with the signed-in user if any (without
/// one the client is told `unauthorized`). The per-user and per-address caps
/// count the client's address as [`ClientIp`] sees it. A request that is not a WebSocket
/// handshake gets the engine's answer ([`cable::UpgradeRejection`]).
async fn open_cable(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    user: Option<CurrentUser>,
    ClientIp(peer): ClientIp,
    upgrade: CableUpgrade,
) -> Response {
    if !state.cable.origin_allowed(&headers) {
        tracing::warn!(origin = ?headers.get("origin"), "refused a cable from a foreign origin");
        return (StatusCode::FORBIDDEN, "Origin not allowed").into_response();
    }
    state.cable.upgrade(upgrade, &uri, &headers, user, peer)
}

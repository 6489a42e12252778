//! HTTP: the router, one module per resource, and the layers every route shares.

pub mod assets;
pub mod auth;
pub mod cable;
pub mod chatrooms;
pub mod direct;
pub mod members;
pub mod messages;
pub mod ops;
pub mod search;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::AppState;
use crate::error::{Error, Result};
use auth::CurrentUser;

/// Every route of the app; `/ready` and `/metrics` only without `--ops-bind`.
pub fn router(state: AppState) -> Router {
    let mut routes = Router::new()
        .route("/", get(show_home))
        .merge(auth::router())
        .merge(chatrooms::router())
        .merge(members::router())
        .merge(direct::router())
        .merge(messages::router())
        .merge(search::router())
        .merge(cable::router())
        .merge(assets::router())
        .merge(ops::health_router());
    if state.config.ops_bind.is_none() {
        routes = routes.merge(ops::router());
    }
    routes
        .fallback(|| async { Error::NotFound })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::error::answer_errors,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            refuse_cross_site,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                 connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
            ),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        // Bounds a request's whole life once its headers are in (a slow
        // body included); hyper's header-read timeout bounds the time before.
        // A WebSocket's handler returns at the 101, so the socket is not bound.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.config.request_timeout,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The private operator routes served on `--ops-bind`.
pub fn ops_router(state: AppState) -> Router {
    ops::router()
        .merge(ops::health_router())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// `/`: the landing room when signed in, else the sign-in page.
async fn show_home(State(state): State<AppState>, user: Option<CurrentUser>) -> Result<Redirect> {
    if user.is_none() {
        return Ok(Redirect::to("/sign_in"));
    }
    Ok(match crate::db::chatrooms::landing(&state.db).await? {
        Some(room) => Redirect::to(&format!("/chatrooms/{}", room.id)),
        None => Redirect::to("/chatrooms"),
    })
}

/// Refuses state-changing requests that a browser marks as cross-site, or
/// whose `Origin` is neither this server nor an allowed origin. Requests with
/// neither header (non-browser clients) pass.
async fn refuse_cross_site(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !safe {
        let headers = request.headers();
        let cross_site = headers
            .get("sec-fetch-site")
            .is_some_and(|site| site.as_bytes().eq_ignore_ascii_case(b"cross-site"));
        if cross_site || !state.origins.allows(headers) {
            tracing::warn!(method = %request.method(), uri = %request.uri(), "refused a cross-site request");
            return Error::Forbidden.into_response();
        }
    }
    next.run(request).await
}

/// Whether the client asked for JSON rather than a page.
pub fn wants_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"))
}

/// The positive number named `key` in the request's path
/// (`/chatrooms/{id}/messages/{message_id}`); anything else names nothing
/// that exists: 404.
pub async fn path_id<S: Send + Sync>(
    parts: &mut axum::http::request::Parts,
    state: &S,
    key: &str,
) -> Result<i64> {
    use axum::extract::{FromRequestParts, Path};
    let Path(params) =
        Path::<std::collections::HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| Error::NotFound)?;
    params
        .get(key)
        .and_then(|raw| raw.parse().ok())
        .filter(|id| *id > 0)
        .ok_or(Error::NotFound)
}

/// A request body sent as JSON (`Content-Type: application/json`) or as
/// a form, read into the same fields either way.
pub struct JsonOrForm<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for JsonOrForm<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/json"));
        if json {
            let axum::Json(value) = axum::Json::<T>::from_request(request, state)
                .await
                .map_err(IntoResponse::into_response)?;
            Ok(Self(value))
        } else {
            let axum::Form(value) = axum::Form::<T>::from_request(request, state)
                .await
                .map_err(IntoResponse::into_response)?;
            Ok(Self(value))
        }
    }
}

/// The address a request comes from, for per-address limits: the peer, or,
/// when the peer is a trusted proxy, the nearest address in
/// `X-Forwarded-For` that is not one of the trusted proxies.
pub struct ClientIp(pub std::net::IpAddr);

impl axum::extract::FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> std::result::Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        Ok(Self(client_ip(
            peer,
            &parts.headers,
            &state.config.trusted_proxies,
        )))
    }
}

fn client_ip(
    peer: std::net::IpAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[std::net::IpAddr],
) -> std::net::IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|value| value.to_str().unwrap_or("unknown").split(','))
        .collect::<Vec<_>>();
    // From the nearest hop outwards: a trusted proxy passes us on to the
    // hop before it. A hop nobody can read (`unknown`, an obfuscated name)
    // is where the chain stops being trustworthy: it counts as the peer
    // itself, never as a reason to believe the hops left of it, which the
    // client wrote.
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        match parse_hop(hop) {
            Some(hop) if trusted.contains(&hop) => client = hop,
            Some(hop) => return hop,
            None => return client,
        }
    }
    client
}

/// One `X-Forwarded-For` hop: `1.2.3.4`, `1.2.3.4:5678`, `::1` or `[::1]:5678`.
fn parse_hop(hop: &str) -> Option<std::net::IpAddr> {
    let hop = hop.trim();
    hop.parse::<std::net::IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            hop.strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inner| inner.parse().ok())
        })
}

#[cfg(test)]
mod tests {
    use super::client_ip;
    use axum::http::HeaderMap;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "6.6.6.6, 1.2.3.4, 10.0.0.2".parse().unwrap(),
        );
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        assert_eq!(client_ip(ip("10.0.0.1"), &headers, &trusted), ip("1.2.3.4"));
        assert_eq!(
            client_ip(ip("9.9.9.9"), &headers, &trusted),
            ip("9.9.9.9"),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn forwarded_hops_with_ports_are_parsed_and_unknown_ones_stop_the_walk() {
        let trusted = [ip("10.0.0.1")];
        let from = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-for", value.parse().unwrap());
            client_ip(ip("10.0.0.1"), &headers, &trusted)
        };
        assert_eq!(from("6.6.6.6, 1.2.3.4:5678"), ip("1.2.3.4"));
        assert_eq!(from("6.6.6.6, [2001:db8::7]:443"), ip("2001:db8::7"));
        assert_eq!(from("6.6.6.6, [2001:db8::7]"), ip("2001:db8::7"));
        assert_eq!(
            from("6.6.6.6, unknown"),
            ip("10.0.0.1"),
            "an unreadable hop is the peer, not the attacker's hop left of it"
        );
        assert_eq!(from("6.6.6.6, 1.2.3.4, 10.0.0.1:80"), ip("1.2.3.4"));
    }
}

//! The page's script and stylesheet, compiled into the binary: no build step.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::AppState;

const JS: &str = "text/javascript; charset=utf-8";

/// Every file served under `/static/`: its path, type and contents. The
/// script is native ES modules, one concern a file, so each is listed.
const ASSETS: &[(&str, &str, &str)] = &[
    ("/static/app.js", JS, include_str!("../../static/app.js")),
    (
        "/static/js/cable.js",
        JS,
        include_str!("../../static/js/cable.js"),
    ),
    (
        "/static/js/messages.js",
        JS,
        include_str!("../../static/js/messages.js"),
    ),
    (
        "/static/js/times.js",
        JS,
        include_str!("../../static/js/times.js"),
    ),
    (
        "/static/app.css",
        "text/css; charset=utf-8",
        include_str!("../../static/app.css"),
    ),
];

/// The files of [`ASSETS`].
pub fn router() -> Router<AppState> {
    ASSETS
        .iter()
        .fold(Router::new(), |router, &(path, content_type, body)| {
            router.route(
                path,
                get(move || async move {
                    (
                        [
                            (header::CONTENT_TYPE, content_type),
                            (header::CACHE_CONTROL, "no-cache"),
                        ],
                        body,
                    )
                        .into_response()
                }),
            )
        })
}

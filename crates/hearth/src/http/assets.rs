//! The page's script and stylesheet, compiled into the binary: no build step.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;

use crate::AppState;

const JS: &str = "text/javascript; charset=utf-8";

/// `(path, type, contents)` of a file under `static/`, compiled in.
macro_rules! asset {
    ($file:literal, $type:expr) => {
        (
            concat!("/static/", $file),
            $type,
            include_str!(concat!("../../static/", $file)),
        )
    };
}

/// Every file served under `/static/`. The script is native ES modules, one
/// concern a file, so each is listed.
const ASSETS: &[(&str, &str, &str)] = &[
    asset!("app.js", JS),
    asset!("js/actions.js", JS),
    asset!("js/arrange.js", JS),
    asset!("js/cable.js", JS),
    asset!("js/composer.js", JS),
    asset!("js/directory.js", JS),
    asset!("js/mention-picker.js", JS),
    asset!("js/messages.js", JS),
    asset!("js/notify.js", JS),
    asset!("js/people.js", JS),
    asset!("js/presence.js", JS),
    asset!("js/rooms.js", JS),
    asset!("js/times.js", JS),
    asset!("js/unread.js", JS),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", SVG),
];

const SVG: &str = "image/svg+xml";

/// The files of [`ASSETS`], and the icon where browsers look for it unasked.
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
        .route(
            "/favicon.ico",
            get(|| async { Redirect::permanent("/static/favicon.svg") }),
        )
}

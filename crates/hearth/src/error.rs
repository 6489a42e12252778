//! The app's one error type and how each kind answers over HTTP.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

/// `Result` with the app's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while answering a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The page or resource does not exist: 404.
    #[error("not found")]
    NotFound,
    /// The page needs a signed-in user: 303 to the sign-in page.
    #[error("sign in required")]
    SignInRequired,
    /// A cross-site request or a foreign origin: 403.
    #[error("forbidden")]
    Forbidden,
    /// A database failure: logged, 500.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// Anything else unexpected: logged, 500.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Self::NotFound => (StatusCode::NOT_FOUND, "Not found").into_response(),
            Self::SignInRequired => Redirect::to("/sign_in").into_response(),
            Self::Forbidden => {
                (StatusCode::FORBIDDEN, "Forbidden: cross-site request").into_response()
            }
            Self::Database(ref cause) => {
                tracing::error!(error = %cause, "database error");
                (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong").into_response()
            }
            Self::Internal(ref cause) => {
                tracing::error!(error = ?cause, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong").into_response()
            }
        }
    }
}

//! The app's one error type and how each kind answers over HTTP.
//!
//! Handlers return an [`Error`] and never choose the format: the error
//! becomes a response carrying an [`Answer`], and [`answer_errors`], one
//! layer around every route, renders that answer once — JSON for a client
//! that asked for it with `Accept`, else a page (the handler's own form
//! with the messages, when it gave one, or the generic error page).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use futures_util::future::BoxFuture;
use serde_json::json;

use crate::AppState;
use crate::db::sessions::{self, SessionToken};
use crate::db::users::User;
use crate::http::auth::SESSION_COOKIE;
use crate::templates::{ErrorPage, NotFoundPage, render};

/// `Result` with the app's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while answering a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The page or resource does not exist: 404.
    #[error("not found")]
    NotFound,
    /// The page needs a signed-in user: 303 to the sign-in page, which
    /// returns to `back` (a local path) afterwards.
    #[error("sign in required")]
    SignInRequired {
        /// The page that was asked for, if it is worth coming back to.
        back: Option<String>,
    },
    /// A cross-site request or a foreign origin: 403.
    #[error("forbidden")]
    Forbidden,
    /// The user may see the thing but not do this to it (e.g. edit someone
    /// else's message): 403, said in JSON or on a page.
    #[error("not allowed: {0}")]
    NotAllowed(&'static str),
    /// The request's fields were refused: 422 with a message for each.
    #[error("invalid: {messages:?}")]
    Invalid {
        /// A machine-readable kind, e.g. `invalid_content`.
        code: &'static str,
        /// What to tell the user, one line each.
        messages: Vec<String>,
        /// The form to show again, for a page.
        form: Form,
    },
    /// Too many requests: 429 with `Retry-After`.
    #[error("rate limited for {retry_after:?}")]
    RateLimited {
        /// How long until the next attempt may pass.
        retry_after: Duration,
        /// What to tell the user.
        message: String,
        /// The form to show again, for a page.
        form: Form,
    },
    /// A database failure: logged, 500.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// Anything else unexpected: logged, 500.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    /// 422 with `messages`, under the generic code `invalid`.
    pub fn invalid(messages: Vec<String>) -> Self {
        Self::Invalid {
            code: "invalid",
            messages,
            form: Form::default(),
        }
    }

    /// 429, saying to come back after `retry_after`.
    pub fn rate_limited(retry_after: Duration, message: impl Into<String>) -> Self {
        Self::RateLimited {
            retry_after,
            message: message.into(),
            form: Form::default(),
        }
    }

    /// For a browser, answers with the page `show` renders from the messages
    /// (the form again, filled in); a JSON client never runs it.
    pub fn on_form<F>(mut self, show: F) -> Self
    where
        F: FnOnce(Vec<String>) -> BoxFuture<'static, Response> + Send + 'static,
    {
        if let Self::Invalid { form, .. } | Self::RateLimited { form, .. } = &mut self {
            *form = Form(Some(Box::new(show)));
        }
        self
    }
}

type ShowForm = Box<dyn FnOnce(Vec<String>) -> BoxFuture<'static, Response> + Send>;

/// The page a refused form is shown again on, if the handler gave one.
#[derive(Default)]
pub struct Form(Option<ShowForm>);

impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Form(..)"
        } else {
            "Form(none)"
        })
    }
}

/// What a refused request is told, before it is rendered as JSON or a page.
/// Travels in the response's extensions from [`Error`] to [`answer_errors`].
#[derive(Clone)]
pub struct Answer(Arc<AnswerParts>);

struct AnswerParts {
    status: StatusCode,
    code: &'static str,
    messages: Vec<String>,
    retry_after: Option<Duration>,
    /// Taken once, by the renderer.
    form: Mutex<Option<ShowForm>>,
}

/// `Retry-After` is whole seconds over HTTP: rounded up, never 0.
fn retry_after_header(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code, messages, retry_after, form) = match self {
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                vec!["Not found".to_owned()],
                None,
                Form::default(),
            ),
            Self::NotAllowed(message) => (
                StatusCode::FORBIDDEN,
                "forbidden",
                vec![message.to_owned()],
                None,
                Form::default(),
            ),
            Self::Invalid {
                code,
                messages,
                form,
            } => (StatusCode::UNPROCESSABLE_ENTITY, code, messages, None, form),
            Self::RateLimited {
                retry_after,
                message,
                form,
            } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                vec![message],
                Some(retry_after),
                form,
            ),
            Self::SignInRequired { back } => {
                let to = match back.as_deref().and_then(local_path) {
                    Some(path) => format!("/sign_in?back={}", urlencode(path)),
                    None => "/sign_in".to_owned(),
                };
                return Redirect::to(&to).into_response();
            }
            Self::Forbidden => {
                return (StatusCode::FORBIDDEN, "Forbidden: cross-site request").into_response();
            }
            Self::Database(ref cause) => {
                tracing::error!(error = %cause, "database error");
                return (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong").into_response();
            }
            Self::Internal(ref cause) => {
                tracing::error!(error = ?cause, "internal error");
                return (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong").into_response();
            }
        };
        // Plain text until `answer_errors` renders it (or if it never does).
        let mut response = (status, messages.join("\n")).into_response();
        if let Some(wait) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after_header(wait).into());
        }
        response
            .extensions_mut()
            .insert(Answer(Arc::new(AnswerParts {
                status,
                code,
                messages,
                retry_after,
                form: Mutex::new(form.0),
            })));
        response
    }
}

/// Renders every [`Answer`] of the routes inside it: as JSON
/// (`{"error", "message", "messages", "retry_after"}`) for a client whose
/// `Accept` names `application/json`, else as a page.
pub async fn answer_errors(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let json = crate::http::wants_json(request.headers());
    // The error pages keep the navbar of whoever is signed in.
    let session = CookieJar::from_headers(request.headers())
        .get(SESSION_COOKIE)
        .map(|cookie| SessionToken::from_cookie(cookie.value()));
    let response = next.run(request).await;
    let Some(Answer(answer)) = response.extensions().get::<Answer>().cloned() else {
        return response;
    };
    let retry = response.headers().get(header::RETRY_AFTER).cloned();
    let mut rendered = if json {
        let mut body = json!({
            "error": answer.code,
            "message": answer.messages.join(" "),
            "messages": answer.messages,
        });
        if let Some(wait) = answer.retry_after {
            body["retry_after"] = json!(wait.as_secs_f64());
        }
        Json(body).into_response()
    } else {
        let form = answer
            .form
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match form {
            Some(show) => {
                let page = show(answer.messages.clone()).await;
                // The form itself may have failed (e.g. its room is gone):
                // then that answer stands, as a plain page.
                if let Some(failed) = page.extensions().get::<Answer>().cloned() {
                    return plain_page(&failed.0, signed_in(&state, session).await);
                }
                page
            }
            None => {
                let user = signed_in(&state, session).await;
                return with_retry(plain_page(&answer, user), retry);
            }
        }
    };
    *rendered.status_mut() = answer.status;
    with_retry(rendered, retry)
}

/// `path` if it is a path on this site (`/…`, not `//host` or `/\\host`,
/// no scheme, no control characters), so that coming back after signing in
/// can never send anyone to another site.
pub fn local_path(path: &str) -> Option<&str> {
    let local = path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && !path.chars().any(|c| c.is_control() || c == '\\');
    local.then_some(path)
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn with_retry(mut response: Response, retry: Option<header::HeaderValue>) -> Response {
    if let Some(retry) = retry {
        response.headers_mut().insert(header::RETRY_AFTER, retry);
    }
    response
}

/// The user of `session`, if it is live; nobody if the lookup fails (an
/// error page must not fail for want of a navbar).
async fn signed_in(state: &AppState, session: Option<SessionToken>) -> Option<User> {
    sessions::find_user(&state.db, &session?)
        .await
        .ok()
        .flatten()
        .map(|(user, _admin)| user)
}

/// The generic page for an answer without a form of its own.
fn plain_page(answer: &AnswerParts, current_user: Option<User>) -> Response {
    if answer.status == StatusCode::NOT_FOUND {
        return render(answer.status, &NotFoundPage { current_user });
    }
    render(
        answer.status,
        &ErrorPage {
            current_user,
            title: match answer.status {
                StatusCode::TOO_MANY_REQUESTS => "Too many requests",
                _ => "That did not work",
            },
            errors: answer.messages.clone(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_header(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_header(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_header(Duration::from_secs(60)), 60);
    }
}

//! Accounts: sign up, sign in, sign out, and password hashing. The
//! signed-in user itself is [`crate::auth::CurrentUser`].

use std::sync::Arc;

use anyhow::Context;
use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use serde::Deserialize;

use super::ClientIp;
use crate::AppState;
use crate::db::sessions::{self, SessionToken};
use crate::db::users::{self, InsertUserError, User};
use crate::domain::{Email, Nickname, Password};
use crate::error::Result;
use crate::templates::{SignInPage, SignUpPage, render};

/// The cookie that carries the session token.
pub const SESSION_COOKIE: &str = "hearth_session";

pub use crate::auth::CurrentUser;

/// The sign-up, sign-in and sign-out routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sign_up", get(new_user).post(create_user))
        .route("/sign_in", get(new_session).post(create_session))
        .route("/sign_out", post(destroy_session))
}

/// Argon2id hashing, off the async threads. Holds a decoy hash so that an
/// unknown email costs the same time as a wrong password.
#[derive(Clone)]
pub struct Passwords {
    decoy: Arc<str>,
    /// One permit per core: each hash takes 19 MiB and a core for tens of
    /// milliseconds, so a burst of sign-ins queues here instead of
    /// allocating without bound on the blocking pool.
    permits: Arc<tokio::sync::Semaphore>,
}

impl Passwords {
    /// Prepares the decoy hash.
    pub async fn new() -> anyhow::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let permits = Arc::new(tokio::sync::Semaphore::new(cores));
        let decoy = hash_password(Password::parse("decoy password, never used")?).await?;
        Ok(Self {
            decoy: decoy.into(),
            permits,
        })
    }

    /// Hashes a new password, waiting for a free core.
    async fn hash(&self, password: Password) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await?;
        hash_password(password).await
    }

    /// Whether `password` matches `hash`; with no hash, checks the decoy and fails.
    async fn verify(&self, password: String, hash: Option<String>) -> anyhow::Result<bool> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.decoy.to_string());
        let _permit = self.permits.acquire().await?;
        let matches = tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&hash)
                .map_err(|e| anyhow::anyhow!("stored hash is unreadable: {e}"))?;
            Ok::<_, anyhow::Error>(
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok(),
            )
        })
        .await
        .context("password check panicked")??;
        Ok(known && matches)
    }
}

/// Argon2id with the crate's defaults: 19 MiB, 2 passes, 1 lane — OWASP's minimum.
async fn hash_password(password: Password) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
    })
    .await
    .context("password hashing panicked")?
}

fn session_cookie(token: &SessionToken, secure: bool) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, token.as_str().to_owned()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(time::Duration::milliseconds(sessions::SESSION_TTL_MILLIS))
        .build()
}

/// 429 with `Retry-After` and the form again, saying when to retry.
fn too_many(wait: std::time::Duration, page: impl FnOnce(String) -> Response) -> Response {
    let seconds = wait.as_secs().max(1);
    let mut response = page(format!("Too many attempts; try again in {seconds} s"));
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, seconds.into());
    response
}

/// Starts a fresh session for `user`, ending the one the browser had, if any.
async fn sign_in_as(state: &AppState, jar: CookieJar, user: &User) -> Result<Response> {
    if let Some(old) = jar.get(SESSION_COOKIE) {
        end_session(state, &SessionToken::from_cookie(old.value())).await?;
    }
    let token = sessions::create(&state.db, user.id).await?;
    let cookie = session_cookie(&token, state.config.secure_cookies);
    Ok((jar.add(cookie), Redirect::to("/")).into_response())
}

/// Deletes a session and closes this node's sockets that came with it
/// (other nodes close theirs at their next [`crate::expiry`] sweep); returns
/// how many it closed.
async fn end_session(state: &AppState, token: &SessionToken) -> Result<usize> {
    sessions::delete(&state.db, token).await?;
    let hash = token.hash();
    Ok(state.cable.disconnect_where(
        |user| user.session == hash,
        cable::DisconnectReason::Unauthorized,
    ))
}

/// The sign-up form fields; missing ones are empty.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SignUpForm {
    email: String,
    nickname: String,
    password: String,
}

async fn new_user(user: Option<CurrentUser>) -> Response {
    render(
        StatusCode::OK,
        &SignUpPage {
            current_user: user.map(|u| u.user()),
            ..SignUpPage::default()
        },
    )
}

async fn create_user(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    Form(form): Form<SignUpForm>,
) -> Result<Response> {
    if let Err(wait) = state.limits.sign_up_by_ip.check(&ip) {
        tracing::warn!(ip = %ip, "sign-up rate limit reached");
        return Ok(too_many(wait, |error| {
            render(
                StatusCode::TOO_MANY_REQUESTS,
                &SignUpPage {
                    current_user: None,
                    errors: vec![error],
                    email: form.email.clone(),
                    nickname: form.nickname.clone(),
                },
            )
        }));
    }
    let email = Email::parse(&form.email);
    let nickname = Nickname::parse(&form.nickname);
    let password = Password::parse(&form.password);
    let refuse = |errors: Vec<String>| {
        render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &SignUpPage {
                current_user: None,
                errors,
                email: form.email.clone(),
                nickname: form.nickname.clone(),
            },
        )
    };
    let (email, nickname, password) = match (email, nickname, password) {
        (Ok(e), Ok(n), Ok(p)) => (e, n, p),
        (e, n, p) => {
            let errors = [e.err(), n.err(), p.err()]
                .into_iter()
                .flatten()
                .map(|e| e.to_string())
                .collect();
            return Ok(refuse(errors));
        }
    };
    let hash = state.passwords.hash(password).await?;
    let user = match users::insert(&state.db, &email, &nickname, &hash).await {
        Ok(user) => user,
        Err(InsertUserError::Database(error)) => return Err(error.into()),
        Err(taken) => return Ok(refuse(vec![taken.to_string()])),
    };
    tracing::info!(user_id = user.id, nickname = %user.nickname, "signed up");
    sign_in_as(&state, jar, &user).await
}

/// The sign-in form fields; missing ones are empty.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SignInForm {
    email: String,
    password: String,
}

async fn new_session(user: Option<CurrentUser>) -> Response {
    render(
        StatusCode::OK,
        &SignInPage {
            current_user: user.map(|u| u.user()),
            ..SignInPage::default()
        },
    )
}

async fn create_session(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    Form(form): Form<SignInForm>,
) -> Result<Response> {
    let email = Email::parse(&form.email).ok();
    let account = email
        .as_ref()
        .map_or_else(|| form.email.clone(), |e| e.as_str().to_owned());
    let limited = state
        .limits
        .sign_in_by_ip
        .check(&ip)
        .and_then(|()| state.limits.sign_in_by_account.check(&account));
    if let Err(wait) = limited {
        tracing::warn!(ip = %ip, "sign-in rate limit reached");
        return Ok(too_many(wait, |error| {
            render(
                StatusCode::TOO_MANY_REQUESTS,
                &SignInPage {
                    current_user: None,
                    errors: vec![error],
                    email: form.email.clone(),
                },
            )
        }));
    }
    let found = match email {
        Some(email) => users::find_by_email(&state.db, &email).await?,
        None => None,
    };
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    let matches = state.passwords.verify(form.password, hash).await?;
    match user {
        Some(user) if matches => {
            tracing::info!(user_id = user.id, "signed in");
            sign_in_as(&state, jar, &user).await
        }
        _ => Ok(render(
            StatusCode::UNAUTHORIZED,
            &SignInPage {
                current_user: None,
                errors: vec!["Invalid email or password".into()],
                email: form.email,
            },
        )),
    }
}

async fn destroy_session(State(state): State<AppState>, jar: CookieJar) -> Result<Response> {
    if let Some(cookie) = jar.get(SESSION_COOKIE) {
        let closed = end_session(&state, &SessionToken::from_cookie(cookie.value())).await?;
        tracing::info!(sockets_closed = closed, "signed out");
    }
    let jar = jar.remove(Cookie::build(SESSION_COOKIE).path("/"));
    Ok((jar, Redirect::to("/sign_in")).into_response())
}

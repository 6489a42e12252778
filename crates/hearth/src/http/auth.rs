//! Accounts: sign up, sign in, sign out, and password hashing. The
//! signed-in user itself is [`crate::auth::CurrentUser`].

use std::sync::Arc;

use anyhow::Context;
use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{Query, State};
use axum::http::StatusCode;
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
use crate::error::{Error, Result, local_path};
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

/// The 429 of a rate limit, saying when to retry.
fn too_many(wait: std::time::Duration) -> Error {
    let seconds = wait.as_secs_f64().ceil().max(1.0);
    Error::rate_limited(wait, format!("Too many attempts; try again in {seconds} s"))
}

/// An account as a sign-in limiter key: the SHA-256 of the normalised email
/// (or of the raw field when it is no email at all), so whatever was typed
/// the key is 32 bytes — a 2 MB field is not kept for a minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AccountKey([u8; 32]);

impl AccountKey {
    /// The key of what was typed in the email field.
    pub fn of(typed: &str) -> Self {
        use sha2::Digest;
        let normalised = Email::parse(typed).map(|e| e.as_str().to_owned());
        let account = normalised.as_deref().unwrap_or(typed);
        Self(sha2::Sha256::digest(account.as_bytes()).into())
    }
}

/// What is typed back into a form shown again: an email field's value only
/// if it could be an email at all, so a huge field is not echoed.
fn echo(typed: &str) -> String {
    if typed.len() <= 254 {
        typed.to_owned()
    } else {
        String::new()
    }
}

/// Starts a fresh session for `user`, ending the one the browser had, if any.
async fn sign_in_as(state: &AppState, jar: CookieJar, user: &User, back: &str) -> Result<Response> {
    if let Some(old) = jar.get(SESSION_COOKIE) {
        end_session(state, &SessionToken::from_cookie(old.value())).await?;
    }
    let token = sessions::create(&state.db, user.id).await?;
    let cookie = session_cookie(&token, state.config.secure_cookies);
    Ok((jar.add(cookie), Redirect::to(return_to(back))).into_response())
}

/// Where to go once signed in: `back` if it is a page of this site, else home.
fn return_to(back: &str) -> &str {
    local_path(back).unwrap_or("/")
}

/// `?back=` on the sign-in and sign-up pages.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Back {
    back: String,
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
    back: String,
}

/// The sign-up form; someone already signed in goes on to the chat.
async fn new_user(user: Option<CurrentUser>, Query(Back { back }): Query<Back>) -> Response {
    if user.is_some() {
        return Redirect::to(return_to(&back)).into_response();
    }
    let back = local_path(&back).unwrap_or_default().to_owned();
    render(
        StatusCode::OK,
        &SignUpPage {
            back,
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
    let (typed_email, typed_nickname) = (echo(&form.email), echo(&form.nickname));
    let back = local_path(&form.back).unwrap_or_default().to_owned();
    let refused = move |error: Error| {
        error.on_form(move |errors| {
            Box::pin(async move {
                render(
                    StatusCode::OK,
                    &SignUpPage {
                        current_user: None,
                        errors,
                        email: typed_email,
                        nickname: typed_nickname,
                        back,
                    },
                )
            })
        })
    };
    if let Err(wait) = state.limits.sign_up_by_ip.check(&ip) {
        tracing::warn!(ip = %ip, "sign-up rate limit reached");
        return Err(refused(too_many(wait)));
    }
    let email = Email::parse(&form.email);
    let nickname = Nickname::parse(&form.nickname);
    let password = Password::parse(&form.password).and_then(|password| match &email {
        Ok(email) => password.not_the_email(email),
        Err(_) => Ok(password),
    });
    let (email, nickname, password) = match (email, nickname, password) {
        (Ok(e), Ok(n), Ok(p)) => (e, n, p),
        (e, n, p) => {
            let errors = [e.err(), n.err(), p.err()]
                .into_iter()
                .flatten()
                .map(|e| e.to_string())
                .collect();
            return Err(refused(Error::invalid(errors)));
        }
    };
    let hash = state.passwords.hash(password).await?;
    // Saying that an email or nickname is taken tells whether it has an
    // account: accepted for a team chat (SECURITY.md), where people need to
    // know why they cannot sign up.
    let user = match users::insert(&state.db, &email, &nickname, &hash).await {
        Ok(user) => user,
        Err(InsertUserError::Database(error)) => return Err(error.into()),
        Err(taken) => return Err(refused(Error::invalid(vec![taken.to_string()]))),
    };
    tracing::info!(user_id = user.id, nickname = %user.nickname, "signed up");
    sign_in_as(&state, jar, &user, &form.back).await
}

/// The sign-in form fields; missing ones are empty.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SignInForm {
    email: String,
    password: String,
    back: String,
}

/// The sign-in form; someone already signed in goes on to the chat.
async fn new_session(user: Option<CurrentUser>, Query(Back { back }): Query<Back>) -> Response {
    if user.is_some() {
        return Redirect::to(return_to(&back)).into_response();
    }
    let back = local_path(&back).unwrap_or_default().to_owned();
    render(
        StatusCode::OK,
        &SignInPage {
            back,
            ..SignInPage::default()
        },
    )
}

/// Signs in. Only failures count against the limits, per address and per
/// account from that address: guesses from elsewhere never lock the owner
/// out, and a right password from an address that is not over its limit
/// signs in. A token is taken before the (slow) check, so concurrent
/// guesses cannot overrun the limit, and given back on success.
async fn create_session(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    Form(form): Form<SignInForm>,
) -> Result<Response> {
    let typed_email = echo(&form.email);
    let back = local_path(&form.back).unwrap_or_default().to_owned();
    let typed_back = back.clone();
    let refused = move |error: Error| {
        error.on_form(move |errors| {
            Box::pin(async move {
                render(
                    StatusCode::OK,
                    &SignInPage {
                        current_user: None,
                        errors,
                        email: typed_email,
                        back: typed_back,
                    },
                )
            })
        })
    };
    let limits = &state.limits;
    let account = (AccountKey::of(&form.email), ip);
    if let Err(wait) = limits.sign_in_by_ip.check(&ip) {
        tracing::warn!(ip = %ip, "sign-in failures per address reached");
        return Err(refused(too_many(wait)));
    }
    if let Err(wait) = limits.sign_in_by_account_ip.check(&account) {
        limits.sign_in_by_ip.refund(&ip);
        tracing::warn!(ip = %ip, "sign-in failures per account and address reached");
        return Err(refused(too_many(wait)));
    }
    let found = match Email::parse(&form.email) {
        Ok(email) => users::find_by_email(&state.db, &email).await?,
        Err(_) => None,
    };
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    let matches = state.passwords.verify(form.password, hash).await?;
    match user {
        Some(user) if matches => {
            limits.sign_in_by_ip.refund(&ip);
            limits.sign_in_by_account_ip.refund(&account);
            tracing::info!(user_id = user.id, "signed in");
            sign_in_as(&state, jar, &user, &form.back).await
        }
        _ => Ok(render(
            StatusCode::UNAUTHORIZED,
            &SignInPage {
                current_user: None,
                errors: vec!["Invalid email or password".into()],
                email: echo(&form.email),
                back,
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

#[cfg(test)]
mod tests {
    use super::AccountKey;

    #[test]
    fn an_account_key_is_32_bytes_whatever_was_typed() {
        assert_eq!(std::mem::size_of::<AccountKey>(), 32);
        let huge = "x".repeat(2_000_000);
        assert_ne!(AccountKey::of(&huge), AccountKey::of("x"));
        assert_eq!(
            AccountKey::of(" Ann@Example.com"),
            AccountKey::of("ann@example.com"),
            "one account however its email is typed"
        );
    }
}

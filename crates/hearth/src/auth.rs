//! Who is asking: the signed-in user of a request or a cable, found from
//! the session cookie. The identity of pages (an axum extractor) and of the
//! cable engine ([`cable::Identity`]) alike.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum_extra::extract::CookieJar;

use crate::AppState;
use crate::db::sessions::{self, SessionToken};
use crate::db::users::User;
use crate::error::{Error, Result};
use crate::http::auth::SESSION_COOKIE;

/// The user of a valid session cookie: the identity of pages and cables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentUser {
    /// User id.
    pub id: i64,
    /// Lower-cased email.
    pub email: String,
    /// Display name.
    pub nickname: String,
    /// Whether they are the instance's admin (may rename and archive any room).
    pub admin: bool,
    /// The hash of the session token this user came with: signing out ends
    /// that session's sockets too.
    pub session: String,
}

impl CurrentUser {
    /// As a plain [`User`], for templates.
    pub fn user(&self) -> User {
        User {
            id: self.id,
            email: self.email.clone(),
            nickname: self.nickname.clone(),
        }
    }
}

impl cable::Identity for CurrentUser {
    fn user_key(&self) -> u64 {
        self.id as u64
    }
}

impl OptionalFromRequestParts<AppState> for CurrentUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Self>> {
        // Found once per request: a room's route asks for the user to
        // check membership, and its handler asks again.
        if let Some(found) = parts.extensions.get::<Option<Self>>() {
            return Ok(found.clone());
        }
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(cookie) = jar.get(SESSION_COOKIE) else {
            return Ok(None);
        };
        let token = SessionToken::from_cookie(cookie.value());
        let found = sessions::find_user(&state.db, &token)
            .await?
            .map(|(user, admin)| Self {
                id: user.id,
                email: user.email,
                nickname: user.nickname,
                admin,
                session: token.hash(),
            });
        parts.extensions.insert(found.clone());
        Ok(found)
    }
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        <Self as OptionalFromRequestParts<AppState>>::from_request_parts(parts, state)
            .await?
            .ok_or_else(|| Error::SignInRequired {
                // Only a page someone looked at is worth coming back to.
                back: (parts.method == axum::http::Method::GET)
                    .then(|| parts.uri.path_and_query().map(|p| p.as_str().to_owned()))
                    .flatten(),
            })
    }
}

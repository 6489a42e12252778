//! The `sessions` table: who is signed in, keyed by a hash of the cookie token.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::users::User;
use super::{Db, now_millis};

/// How long a session lasts without signing in again.
pub const SESSION_TTL_MILLIS: i64 = 30 * 24 * 60 * 60 * 1000;

/// The secret a browser holds in its session cookie.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(..)")
    }
}

impl SessionToken {
    /// 256 random bits, URL-safe base64.
    fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// A token read from a cookie; unchecked until looked up.
    pub fn from_cookie(value: &str) -> Self {
        Self(value.to_owned())
    }

    /// The cookie value.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the database stores and looks up: hex SHA-256 of the token.
    pub fn hash(&self) -> String {
        Sha256::digest(self.0.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Starts a new session for `user_id` and returns its fresh token.
pub async fn create(db: &Db, user_id: i64) -> sqlx::Result<SessionToken> {
    let token = SessionToken::generate();
    let now = now_millis();
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(token.hash())
    .bind(user_id)
    .bind(now)
    .bind(now + SESSION_TTL_MILLIS)
    .execute(db)
    .await?;
    Ok(token)
}

/// The user behind an unexpired session, and whether they are the
/// instance's admin.
pub async fn find_user(db: &Db, token: &SessionToken) -> sqlx::Result<Option<(User, bool)>> {
    let row: Option<(i64, String, String, String)> = sqlx::query_as(
        "SELECT users.id, users.email, users.nickname, users.role
         FROM sessions JOIN users ON users.id = sessions.user_id
         WHERE sessions.token_hash = $1 AND sessions.expires_at > $2",
    )
    .bind(token.hash())
    .bind(now_millis())
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(id, email, nickname, role)| {
        (
            User {
                id,
                email,
                nickname,
            },
            role == super::users::ADMIN,
        )
    }))
}

/// Ends a session.
pub async fn delete(db: &Db, token: &SessionToken) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(token.hash())
        .execute(db)
        .await?;
    Ok(())
}

/// Which of `hashes` (token hashes) belong to unexpired sessions.
pub async fn live_among(db: &Db, hashes: &[String]) -> sqlx::Result<HashSet<String>> {
    // Bounded statements: SQLite allows 32,766 parameters, PostgreSQL 65,535.
    const CHUNK: usize = 500;
    let now = now_millis();
    let mut live = HashSet::new();
    for chunk in hashes.chunks(CHUNK) {
        let placeholders = (0..chunk.len())
            .map(|i| format!("${}", i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT token_hash FROM sessions WHERE expires_at > $1 AND token_hash IN ({placeholders})"
        );
        let mut query = sqlx::query_scalar::<_, String>(&sql).bind(now);
        for hash in chunk {
            query = query.bind(hash);
        }
        live.extend(query.fetch_all(db).await?);
    }
    Ok(live)
}

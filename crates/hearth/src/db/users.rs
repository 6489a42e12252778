//! The `users` table.

use sqlx::FromRow;

use super::{Db, is_unique_violation, now_millis};
use crate::domain::{Email, Nickname};

/// A person, as the app sees them.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct User {
    /// Primary key.
    pub id: i64,
    /// Lower-cased email.
    pub email: String,
    /// Display name.
    pub nickname: String,
}

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum InsertUserError {
    #[error("That email is already registered")]
    EmailTaken,
    #[error("That nickname is taken")]
    NicknameTaken,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Creates a user; a taken email or nickname is reported as such.
pub async fn insert(
    db: &Db,
    email: &Email,
    nickname: &Nickname,
    password_hash: &str,
) -> Result<User, InsertUserError> {
    let inserted = sqlx::query_as::<_, User>(
        "INSERT INTO users (email, nickname, password_hash, created_at)
         VALUES ($1, $2, $3, $4) RETURNING id, email, nickname",
    )
    .bind(email.as_str())
    .bind(nickname.as_str())
    .bind(password_hash)
    .bind(now_millis())
    .fetch_one(db)
    .await;
    match inserted {
        Ok(user) => Ok(user),
        Err(error) if is_unique_violation(&error) => {
            // Engines name the violated index differently; ask which one instead.
            if find_by_email(db, email).await?.is_some() {
                Err(InsertUserError::EmailTaken)
            } else {
                Err(InsertUserError::NicknameTaken)
            }
        }
        Err(error) => Err(error.into()),
    }
}

/// A user and their password hash, for signing in.
pub async fn find_by_email(db: &Db, email: &Email) -> sqlx::Result<Option<(User, String)>> {
    let row: Option<(i64, String, String, String)> =
        sqlx::query_as("SELECT id, email, nickname, password_hash FROM users WHERE email = $1")
            .bind(email.as_str())
            .fetch_optional(db)
            .await?;
    Ok(row.map(|(id, email, nickname, hash)| {
        (
            User {
                id,
                email,
                nickname,
            },
            hash,
        )
    }))
}

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

/// `users.role` of the instance's admin; everyone else is `member`.
pub const ADMIN: &str = "admin";

/// Creates a user, a member of "general" from the start; the first user of
/// an instance is its admin. A taken email or nickname is reported as such.
pub async fn insert(
    db: &Db,
    email: &Email,
    nickname: &Nickname,
    password_hash: &str,
) -> Result<User, InsertUserError> {
    let now = now_millis();
    let mut tx = db.begin().await?;
    let inserted = sqlx::query_as::<_, User>(
        "INSERT INTO users (email, nickname, password_hash, created_at, role)
         VALUES ($1, $2, $3, $4,
                 CASE WHEN EXISTS (SELECT 1 FROM users) THEN 'member' ELSE 'admin' END)
         RETURNING id, email, nickname",
    )
    .bind(email.as_str())
    .bind(nickname.as_str())
    .bind(password_hash)
    .bind(now)
    .fetch_one(&mut *tx)
    .await;
    let inserted = match inserted {
        Ok(user) => {
            sqlx::query(
                "INSERT INTO memberships (chatroom_id, user_id, joined_at, last_read_seq) \
                 SELECT id, $1, $2, last_seq FROM chatrooms WHERE name_key = $3 AND kind = 'public'",
            )
            .bind(user.id)
            .bind(now)
            .bind(super::chatrooms::GENERAL)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(user)
        }
        Err(error) => Err(error),
    };
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

/// The users with these nicknames (compared ignoring case), as `(id,
/// nickname)`; nicknames nobody has are absent.
pub async fn find_by_nicknames(db: &Db, nicknames: &[String]) -> sqlx::Result<Vec<(i64, String)>> {
    if nicknames.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = (1..=nicknames.len())
        .map(|i| format!("lower(${i})"))
        .collect();
    let sql = format!(
        "SELECT id, nickname FROM users WHERE lower(nickname) IN ({})",
        ids.join(", ")
    );
    let mut query = sqlx::query_as::<_, (i64, String)>(&sql);
    for nickname in nicknames {
        query = query.bind(nickname.clone());
    }
    query.fetch_all(db).await
}

/// Up to `limit` nicknames starting with `prefix` (ignoring case), for
/// autocompletion, the members of room `first` (0 for none) before the
/// rest; `prefix` holds only nickname characters.
pub async fn nicknames_starting(
    db: &Db,
    prefix: &str,
    first: i64,
    limit: i64,
) -> sqlx::Result<Vec<(i64, String)>> {
    sqlx::query_as(
        "SELECT u.id, u.nickname FROM users u \
         LEFT JOIN memberships m ON m.user_id = u.id AND m.chatroom_id = $2 \
         WHERE lower(u.nickname) LIKE $1 \
         ORDER BY CASE WHEN m.user_id IS NULL THEN 1 ELSE 0 END, lower(u.nickname) LIMIT $3",
    )
    .bind(format!("{}%", prefix.to_lowercase()))
    .bind(first)
    .bind(limit)
    .fetch_all(db)
    .await
}

//! Full-text search over messages: on SQLite an FTS5 trigram index
//! (`message_search`, migration 0005), on PostgreSQL a `pg_trgm` index
//! under `ILIKE`. Both find any part of a word and text without spaces
//! (Chinese, Japanese); words of one or two characters, which a trigram
//! index cannot hold, are matched with `LIKE` among what the rest found.
//!
//! Only messages the searcher may read are found: those of public rooms and
//! of the private rooms and conversations they are a member of now.

use sqlx::FromRow;

use super::Db;
use crate::domain::{SearchQuery, fold_room_name};

/// A message that matched, with what a result shows.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Hit {
    pub id: i64,
    pub chatroom_id: i64,
    pub room_name: String,
    pub seq: i64,
    pub user_id: i64,
    pub nickname: String,
    /// The text, for the snippet.
    pub content: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// A value bound to a query built here.
enum Bind {
    Text(String),
    Int(i64),
}

/// `term` as a `LIKE` pattern matching it anywhere, `\` escaping the
/// pattern characters it contains.
fn contains_pattern(term: &str) -> String {
    let mut pattern = String::with_capacity(term.len() + 2);
    pattern.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// `term` as an FTS5 phrase: in double quotes, its own quotes doubled.
fn fts_phrase(term: &str) -> String {
    format!("\"{}\"", term.replace('"', "\"\""))
}

/// Whether the trigram index can find `term` by itself.
fn indexed(term: &str) -> bool {
    term.chars().count() >= 3
}

/// The page of messages `reader` may read matching `query`, best first
/// (most recent first when nothing ranks them), skipping `offset`, at most
/// `limit`.
pub async fn search(
    db: &Db,
    reader: i64,
    query: &SearchQuery,
    limit: i64,
    offset: i64,
) -> sqlx::Result<Vec<Hit>> {
    let postgres = db
        .connect_options()
        .database_url
        .scheme()
        .starts_with("postgres");
    let mut binds = Vec::new();
    let mut bind = |value: Bind| {
        binds.push(value);
        format!("${}", binds.len())
    };
    let mut from = String::from(
        "messages m JOIN users u ON u.id = m.user_id JOIN chatrooms c ON c.id = m.chatroom_id",
    );
    let mut conditions = vec![
        "m.deleted_at IS NULL".to_owned(),
        format!(
            "(c.kind = 'public' OR c.id IN (SELECT chatroom_id FROM memberships WHERE user_id = {}))",
            bind(Bind::Int(reader))
        ),
    ];
    let mut order = "m.id DESC".to_owned();

    let long: Vec<&String> = query.terms.iter().filter(|t| indexed(t)).collect();
    if !postgres && !long.is_empty() {
        let phrases: Vec<String> = long.iter().map(|t| fts_phrase(t)).collect();
        from.push_str(" JOIN message_search s ON s.rowid = m.id");
        conditions.push(format!(
            "message_search MATCH {}",
            bind(Bind::Text(phrases.join(" ")))
        ));
        order = "s.rank, m.id DESC".to_owned();
    }
    for term in &query.terms {
        if postgres || !indexed(term) {
            let op = if postgres { "ILIKE" } else { "LIKE" };
            let pattern = bind(Bind::Text(contains_pattern(term)));
            conditions.push(format!("m.content {op} {pattern} ESCAPE '\\'"));
        }
    }
    if postgres && !query.terms.is_empty() {
        let all = bind(Bind::Text(query.terms.join(" ")));
        order = format!("word_similarity({all}, m.content) DESC, m.id DESC");
    }
    if let Some(room) = &query.room {
        conditions.push(format!(
            "c.name_key = {}",
            bind(Bind::Text(fold_room_name(room)))
        ));
    }
    if let Some(nickname) = &query.from {
        conditions.push(format!(
            "lower(u.nickname) = lower({})",
            bind(Bind::Text(nickname.clone()))
        ));
    }
    if let Some(before) = query.before {
        conditions.push(format!("m.created_at < {}", bind(Bind::Int(before))));
    }
    if let Some(after) = query.after {
        conditions.push(format!("m.created_at >= {}", bind(Bind::Int(after))));
    }
    let limit = bind(Bind::Int(limit));
    let offset = bind(Bind::Int(offset));
    let sql = format!(
        "SELECT m.id, m.chatroom_id, c.name AS room_name, m.seq, m.user_id, u.nickname, \
         m.content, m.created_at FROM {from} WHERE {} ORDER BY {order} LIMIT {limit} OFFSET {offset}",
        conditions.join(" AND ")
    );
    let mut select = sqlx::query_as::<_, Hit>(&sql);
    for value in binds {
        select = match value {
            Bind::Text(text) => select.bind(text),
            Bind::Int(int) => select.bind(int),
        };
    }
    select.fetch_all(db).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_and_fts_quoting_keep_the_terms_literal() {
        assert_eq!(contains_pattern(r"50%_off\"), r"%50\%\_off\\%");
        assert_eq!(fts_phrase(r#"say "hi""#), r#""say ""hi""""#);
        assert!(indexed("東京都") && !indexed("東京"));
    }
}

//! Full-text search over messages: on SQLite an FTS5 trigram index
//! (`search.message_search`, in a file of its own: [`super::search_index`]),
//! on PostgreSQL a `pg_trgm` index
//! under `ILIKE`. Both find any part of a word and text without spaces
//! (Chinese, Japanese); words of one or two characters, which a trigram
//! index cannot hold, are matched with `LIKE` among what the rest found.
//!
//! Only messages the searcher may read are found: those of public rooms and
//! of the private rooms and conversations they are a member of now.
//!
//! Ranking is bounded: the newest [`RANKED`] matches (after every filter)
//! are ranked, by bm25 on SQLite and `word_similarity` on PostgreSQL, and
//! come first. Ranking every match cost a common word 0.1–0.3 s on SQLite
//! and 0.7–1.1 s on PostgreSQL at a million messages (BENCHMARKS.md,
//! "History, search and unread counts at 1,000,000 messages"). Taken
//! newest first, the matches come in id order (SQLite's index hands them
//! over so; PostgreSQL walks the primary key back and checks each message,
//! or sorts what the trigram index found, whichever it estimates cheaper)
//! and the scan stops at the page's end. With `in:#room` the room's own
//! `(chatroom_id, seq)` index drives the scan instead, each message looked
//! up among the trigram index's matches; on SQLite those come newest first,
//! unranked.

use sqlx::FromRow;

use super::Db;
use crate::domain::{SearchQuery, fold_room_name};

/// A message that matched, with what a result shows.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Hit {
    pub id: i64,
    pub chatroom_id: i64,
    pub room_name: String,
    /// `public`, `private` or `direct`.
    pub room_kind: String,
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

/// How many of the newest matches are ranked: they come first, best
/// first, and the older ones after them, newest first. The same for every
/// page, so paging neither repeats nor skips a result; a page past them
/// costs a scan to its end, as a newest-first search would.
pub const RANKED: i64 = 100;

/// The room whose folded name is `key`, if there is one.
async fn room_named(db: &Db, key: &str) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar("SELECT id FROM chatrooms WHERE name_key = $1")
        .bind(key)
        .fetch_optional(db)
        .await
}

/// The page of messages `reader` may read matching `query`, skipping
/// `offset`, at most `limit`: the newest [`RANKED`] matches best first,
/// then the older ones newest first (all newest first when nothing ranks
/// them).
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
    // `in:#room` names one room (names are unique): its id lets its own
    // `(chatroom_id, seq)` index drive the scan.
    let room = match &query.room {
        Some(name) => match room_named(db, &fold_room_name(name)).await? {
            Some(id) => Some(id),
            None => return Ok(Vec::new()),
        },
        None => None,
    };
    let mut binds = Vec::new();
    let mut bind = |value: Bind| {
        binds.push(value);
        format!("${}", binds.len())
    };
    let mut from = "messages m";
    let mut conditions = vec![
        "m.deleted_at IS NULL".to_owned(),
        format!(
            "(c.kind = 'public' OR c.id IN (SELECT chatroom_id FROM memberships WHERE user_id = {}))",
            bind(Bind::Int(reader))
        ),
    ];
    // The window is taken newest first, then ranked by `rank` (computed in
    // the outer query from the window's columns, `score` among them), higher
    // first. Without terms to rank by, newest first is the order itself.
    // Within one room, `seq` order is id order.
    let mut newest = if room.is_some() {
        "m.seq DESC"
    } else {
        "m.id DESC"
    };
    let mut score = "0";
    let mut rank = "score".to_owned();
    let mut ranked = false;
    if let Some(room) = room {
        conditions.push(format!("m.chatroom_id = {}", bind(Bind::Int(room))));
    }

    let long: Vec<&String> = query.terms.iter().filter(|t| indexed(t)).collect();
    if !postgres && !long.is_empty() {
        let phrases: Vec<String> = long.iter().map(|t| fts_phrase(t)).collect();
        let phrases = bind(Bind::Text(phrases.join(" ")));
        if room.is_some() {
            // The room's messages newest first, each looked up among the
            // index's matches (found once), and not ranked: bm25 is only
            // known to a scan the index drives, and asking it per row cost
            // 13 ms a row at a million messages. Driving from the index
            // instead scanned every match in every room until the window
            // filled: a common word in a quiet room took 381 ms at p95
            // (BENCHMARKS.md, "History, search and unread counts at
            // 1,000,000 messages"); this way 30 ms.
            conditions.push(format!(
                "m.id IN (SELECT rowid FROM search.message_search WHERE message_search MATCH {phrases})"
            ));
        } else {
            // The index drives the scan, in its rowid order (the message
            // id), so the window's end stops it; bm25 is computed for those
            // rows only.
            from = "search.message_search s JOIN messages m ON m.id = s.rowid";
            conditions.push(format!("message_search MATCH {phrases}"));
            newest = "s.rowid DESC";
            score = "-bm25(message_search)";
            ranked = true;
        }
    }
    for term in &query.terms {
        if postgres && !indexed(term) {
            // A pattern of one or two characters makes pg_trgm read its
            // whole index (1.1 s for `会议 in:#room` at a million
            // messages); `strpos` cannot use it, so the scan walks the
            // room's index, or the newest messages, and stops at the window.
            let term = bind(Bind::Text(term.to_lowercase()));
            conditions.push(format!("strpos(lower(m.content), {term}) > 0"));
        } else if postgres || !indexed(term) {
            let op = if postgres { "ILIKE" } else { "LIKE" };
            let pattern = bind(Bind::Text(contains_pattern(term)));
            conditions.push(format!("m.content {op} {pattern} ESCAPE '\\'"));
        }
    }
    if postgres && !query.terms.is_empty() {
        let all = bind(Bind::Text(query.terms.join(" ")));
        rank = format!("word_similarity({all}, content)");
        ranked = true;
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
    let page_end = offset.saturating_add(limit);
    let window = bind(Bind::Int(if ranked {
        page_end.max(RANKED)
    } else {
        page_end
    }));
    let ranked_places = bind(Bind::Int(if ranked { RANKED } else { 0 }));
    let limit = bind(Bind::Int(limit));
    let offset = bind(Bind::Int(offset));
    // `place` counts the window from its newest match; the first RANKED
    // places are ordered by rank, the rest (and every place when unranked)
    // by id. NULLs sort differently on the two engines, so the CASEs give 0.
    let sql = format!(
        "SELECT id, chatroom_id, room_name, room_kind, seq, user_id, nickname, content, created_at FROM \
         (SELECT hits.*, row_number() OVER (ORDER BY id DESC) AS place FROM \
         (SELECT m.id, m.chatroom_id, c.name AS room_name, c.kind AS room_kind, m.seq, m.user_id, u.nickname, \
         m.content, m.created_at, {score} AS score FROM {from} \
         JOIN users u ON u.id = m.user_id JOIN chatrooms c ON c.id = m.chatroom_id WHERE {} \
         ORDER BY {newest} LIMIT {window}) hits) placed \
         ORDER BY CASE WHEN place <= {ranked_places} THEN 0 ELSE 1 END, \
         CASE WHEN place <= {ranked_places} THEN {rank} ELSE 0 END DESC, id DESC \
         LIMIT {limit} OFFSET {offset}",
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

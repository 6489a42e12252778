//! A search as typed into the search box: words and "quoted phrases", with
//! the filters `in:#room`, `from:@nickname`, `before:YYYY-MM-DD` and
//! `after:YYYY-MM-DD` (days in UTC).

use time::macros::format_description;

use super::Invalid;

/// The longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// The most words and phrases in one query.
pub const MAX_TERMS: usize = 8;

/// A parsed search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// Words and phrases a message must all contain, ignoring case.
    pub terms: Vec<String>,
    /// `in:#room`: the room's name as typed.
    pub room: Option<String>,
    /// `from:@nickname`.
    pub from: Option<String>,
    /// `before:` a day: messages created before it began (Unix ms).
    pub before: Option<i64>,
    /// `after:` a day: messages created after it ended (Unix ms).
    pub after: Option<i64>,
}

impl SearchQuery {
    /// Splits the query into terms and filters.
    pub fn parse(input: &str) -> Result<Self, Invalid> {
        if input.chars().count() > MAX_QUERY_CHARS {
            return Err(Invalid("Search for at most 200 characters"));
        }
        let mut query = Self::default();
        for (token, quoted) in tokens(input) {
            let filter = if quoted { None } else { token.split_once(':') };
            match filter {
                Some(("in", room)) => {
                    query.room =
                        Some(room.trim_start_matches('#').to_owned()).filter(|r| !r.is_empty());
                }
                Some(("from", nickname)) => {
                    query.from =
                        Some(nickname.trim_start_matches('@').to_owned()).filter(|n| !n.is_empty());
                }
                Some(("before", day)) => query.before = Some(day_start(day)?),
                Some(("after", day)) => query.after = Some(day_start(day)? + DAY_MS),
                _ => query.terms.push(token),
            }
        }
        if query.terms.len() > MAX_TERMS {
            return Err(Invalid("Search for at most 8 words or phrases"));
        }
        Ok(query)
    }

    /// Whether there is nothing to search for.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
            && self.room.is_none()
            && self.from.is_none()
            && self.before.is_none()
            && self.after.is_none()
    }
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The start of a day written `YYYY-MM-DD`, UTC, in Unix milliseconds.
fn day_start(day: &str) -> Result<i64, Invalid> {
    let date = time::Date::parse(day, format_description!("[year]-[month]-[day]"))
        .map_err(|_| Invalid("Write dates as 2026-12-31"))?;
    Ok(date.midnight().assume_utc().unix_timestamp() * 1000)
}

/// The query's tokens: runs of non-space characters, or what is between
/// double quotes (`true`); an unclosed quote runs to the end.
fn tokens(input: &str) -> Vec<(String, bool)> {
    let mut tokens = Vec::new();
    let mut rest = input.trim();
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let (phrase, after) = quoted.split_once('"').unwrap_or((quoted, ""));
            let phrase = phrase.split_whitespace().collect::<Vec<_>>().join(" ");
            if !phrase.is_empty() {
                tokens.push((phrase, true));
            }
            rest = after.trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            tokens.push((rest[..end].to_owned(), false));
            rest = rest[end..].trim_start();
        }
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_phrases_and_filters_are_told_apart() {
        let query = SearchQuery::parse(
            r#"deploy "release   train" in:#ops from:@maya after:2026-01-01 before:2026-02-01"#,
        )
        .unwrap();
        assert_eq!(query.terms, ["deploy", "release train"]);
        assert_eq!(query.room.as_deref(), Some("ops"));
        assert_eq!(query.from.as_deref(), Some("maya"));
        assert_eq!(query.after, Some(1_767_225_600_000 + DAY_MS));
        assert_eq!(query.before, Some(1_769_904_000_000));
        assert_eq!(
            SearchQuery::parse(r#""in:#ops""#).unwrap().terms,
            ["in:#ops"],
            "quoted, a filter is a phrase"
        );
        assert_eq!(
            SearchQuery::parse(r#"東京 "unclosed phrase"#)
                .unwrap()
                .terms,
            ["東京", "unclosed phrase"]
        );
    }

    #[test]
    fn bad_dates_long_queries_and_too_many_terms_are_refused() {
        assert!(SearchQuery::parse("before:yesterday").is_err());
        assert!(SearchQuery::parse(&"x".repeat(201)).is_err());
        assert!(SearchQuery::parse(&"ab ".repeat(9)).is_err());
        assert!(SearchQuery::parse("  ").unwrap().is_empty());
        assert!(SearchQuery::parse("in:").unwrap().is_empty());
    }
}

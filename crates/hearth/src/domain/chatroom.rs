//! Chatroom fields, and the name of a room's stream.

use std::fmt;
use std::str::FromStr;

use unicode_normalization::UnicodeNormalization;

use super::Invalid;

/// The Action Cable stream of a room, `chatrooms:<id>`: what its channel
/// streams from, what the writer broadcasts to, what Redis carries between
/// nodes (after the prefix) and what the extended protocol's history names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoomStream(pub i64);

impl RoomStream {
    const PREFIX: &'static str = "chatrooms:";

    /// The room's id.
    pub fn room(self) -> i64 {
        self.0
    }
}

impl fmt::Display for RoomStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, self.0)
    }
}

impl FromStr for RoomStream {
    type Err = Invalid;

    /// `chatrooms:<digits>`, nothing more.
    fn from_str(stream: &str) -> Result<Self, Invalid> {
        stream
            .strip_prefix(Self::PREFIX)
            .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|id| id.parse().ok())
            .map(Self)
            .ok_or(Invalid("not a room stream"))
    }
}

/// A stream of a room other than its messages: `chatrooms:<id>` and a
/// fixed suffix, parsed back only when it is exactly that.
macro_rules! room_side_stream {
    ($(#[$doc:meta])* $name:ident, $suffix:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(pub i64);

        impl $name {
            const SUFFIX: &'static str = $suffix;

            /// The room's id.
            pub fn room(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", RoomStream(self.0), Self::SUFFIX)
            }
        }

        impl FromStr for $name {
            type Err = Invalid;

            fn from_str(stream: &str) -> Result<Self, Invalid> {
                stream
                    .strip_suffix(Self::SUFFIX)
                    .and_then(|room| room.parse::<RoomStream>().ok())
                    .map(|room| Self(room.room()))
                    .ok_or(Invalid($what))
            }
        }
    };
}

room_side_stream!(
    /// The stream of a room's presence and typing, `chatrooms:<id>:presence`:
    /// followed by the subscriptions that ask for them, and the Redis channel
    /// on which nodes tell each other who is in the room. Never part of the
    /// room's history.
    PresenceStream,
    ":presence",
    "not a presence stream"
);

room_side_stream!(
    /// The Redis channel on which the node storing a message tells the
    /// others of it, `chatrooms:<id>:activity`, so they can tell the members
    /// with a page open on them ([`crate::activity`]); never a client's stream.
    ActivityStream,
    ":activity",
    "not an activity stream"
);

/// A room name: NFC, trimmed, 1–64 characters, with no control, zero-width
/// or bidi-control characters (which make two names look alike or reorder
/// the text around them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomName(String);

/// Invisible characters that are not `char::is_control`: zero-width
/// spaces and joiners, the soft hyphen, word joiner, byte-order mark,
/// Mongolian vowel separator, line and paragraph separators, and the bidi
/// marks, embeddings, overrides and isolates.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

impl RoomName {
    /// Normalises to NFC, trims and checks length and characters.
    pub fn parse(input: &str) -> Result<Self, Invalid> {
        let name: String = input.nfc().collect();
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 {
            return Err(Invalid("Name must be 1 to 64 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(Invalid("Name may not contain control characters"));
        }
        if name.chars().any(is_invisible) {
            return Err(Invalid(
                "Name may not contain invisible characters (zero-width or text-direction marks)",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name with case folded fully (Unicode default case folding of the
    /// canonical decomposition, stored as NFC): two names with the same key
    /// are the same room, e.g. `Straße` and `STRASSE`.
    pub fn key(&self) -> String {
        fold(&self.0)
    }
}

/// The longest topic, in characters.
pub const MAX_TOPIC_CHARS: usize = 250;

/// A room's topic: one line under its name. NFC, trimmed, at most
/// [`MAX_TOPIC_CHARS`] characters, with no control (so no line breaks),
/// zero-width or bidi-control characters; empty means none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomTopic(String);

impl RoomTopic {
    /// Normalises to NFC, trims and checks length and characters.
    pub fn parse(input: &str) -> Result<Self, Invalid> {
        let topic: String = input.nfc().collect();
        let topic = topic.trim();
        if topic.chars().count() > MAX_TOPIC_CHARS {
            return Err(Invalid("Topic must be at most 250 characters"));
        }
        if topic.chars().any(char::is_control) {
            return Err(Invalid(
                "Topic may not contain control characters or line breaks",
            ));
        }
        if topic.chars().any(is_invisible) {
            return Err(Invalid(
                "Topic may not contain invisible characters (zero-width or text-direction marks)",
            ));
        }
        Ok(Self(topic.to_owned()))
    }

    /// The topic; empty for none.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The topic case-folded as room names are, for searching.
    pub fn key(&self) -> String {
        fold(&self.0)
    }
}

/// The longest directory search, in characters: longer than any room name
/// (64), and enough for a phrase of a topic.
pub const MAX_SEARCH_CHARS: usize = 100;

/// What the room directory is searched for: trimmed, at most
/// [`MAX_SEARCH_CHARS`] characters; empty means every room. It matches a
/// room whose name or topic contains it, folded as room names are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomSearch(String);

impl RoomSearch {
    /// Trims and checks the length.
    pub fn parse(input: &str) -> Result<Self, Invalid> {
        let text = input.trim();
        if text.chars().count() > MAX_SEARCH_CHARS {
            return Err(Invalid("Search for at most 100 characters"));
        }
        Ok(Self(text.to_owned()))
    }

    /// What was typed, trimmed.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether it matches every room.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A `LIKE … ESCAPE '\'` pattern for folded keys containing the folded
    /// text: `%`, `_` and `\` in it stand for themselves.
    pub fn like_pattern(&self) -> String {
        let mut pattern = String::from("%");
        for c in fold(&self.0).chars() {
            if matches!(c, '%' | '_' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('%');
        pattern
    }
}

/// The uniqueness key of any stored name, for rows written before names were
/// parsed this way.
pub fn fold(name: &str) -> String {
    let decomposed: String = name.nfd().collect();
    caseless::default_case_fold_str(&decomposed).nfc().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_stream_round_trips_and_nothing_else_parses() {
        assert_eq!(RoomStream(42).to_string(), "chatrooms:42");
        assert_eq!("chatrooms:42".parse(), Ok(RoomStream(42)));
        for other in [
            "chatrooms:",
            "chatrooms:+4",
            "chatrooms:4 ",
            "rooms:4",
            "chatrooms:99999999999999999999",
        ] {
            assert!(other.parse::<RoomStream>().is_err(), "{other}");
        }
    }

    #[test]
    fn a_presence_stream_round_trips_and_is_no_room_stream() {
        assert_eq!(PresenceStream(42).to_string(), "chatrooms:42:presence");
        assert_eq!("chatrooms:42:presence".parse(), Ok(PresenceStream(42)));
        assert!("chatrooms:42:presence".parse::<RoomStream>().is_err());
        for other in [
            "chatrooms:42",
            "chatrooms::presence",
            "chatrooms:4 :presence",
        ] {
            assert!(other.parse::<PresenceStream>().is_err(), "{other}");
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(RoomName::parse("  random ").unwrap().as_str(), "random");
        assert!(RoomName::parse(&"é".repeat(64)).is_ok());
        assert!(RoomName::parse(&"é".repeat(65)).is_err());
        assert!(RoomName::parse(" ").is_err());
        assert!(RoomName::parse("a\u{7}b").is_err());
    }

    #[test]
    fn names_are_nfc_and_refuse_invisible_characters() {
        assert_eq!(
            RoomName::parse("cafe\u{301}").unwrap().as_str(),
            "caf\u{e9}"
        );
        for bad in [
            "gen\u{200B}eral",
            "gen\u{200D}eral",
            "\u{FEFF}general",
            "abc\u{202E}fed",
            "abc\u{2067}x",
            "a\u{2028}b",
        ] {
            assert!(RoomName::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn topics_are_one_bounded_line_and_may_be_empty() {
        assert_eq!(RoomTopic::parse("  ").unwrap().as_str(), "");
        assert_eq!(RoomTopic::parse(" Deploys ").unwrap().as_str(), "Deploys");
        assert!(RoomTopic::parse(&"é".repeat(250)).is_ok());
        assert!(RoomTopic::parse(&"é".repeat(251)).is_err());
        for bad in ["two\nlines", "a\u{7}b", "abc\u{202E}fed", "x\u{200B}y"] {
            assert!(RoomTopic::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(RoomTopic::parse("STRASSE").unwrap().key(), "strasse");
    }

    #[test]
    fn searches_fold_and_take_wildcards_literally() {
        let pattern = |s: &str| RoomSearch::parse(s).unwrap().like_pattern();
        assert_eq!(pattern(" Straße "), "%strasse%");
        assert_eq!(pattern("100%"), "%100\\%%");
        assert_eq!(pattern("a_b\\c"), "%a\\_b\\\\c%");
        assert!(RoomSearch::parse("").unwrap().is_empty());
        assert!(RoomSearch::parse(&"x".repeat(100)).is_ok());
        assert!(RoomSearch::parse(&"x".repeat(101)).is_err());
    }

    #[test]
    fn keys_fold_case_fully() {
        let key = |s: &str| RoomName::parse(s).unwrap().key();
        assert_eq!(key("Straße"), key("STRASSE"));
        assert_eq!(key("ΣΊΣΥΦΟΣ"), key("σίσυφος"));
        assert_eq!(key("Café"), key("CAFE\u{301}"));
        assert_ne!(key("general"), key("generals"));
    }
}

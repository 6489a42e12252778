//! Chatroom fields, and the name of a room's stream.

use std::fmt;
use std::str::FromStr;

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

/// A room name: 1–64 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomName(String);

impl RoomName {
    /// Trims and checks the length.
    pub fn parse(input: &str) -> Result<Self, Invalid> {
        let name = input.trim();
        if name.is_empty() || name.chars().count() > 64 {
            return Err(Invalid("Name must be 1 to 64 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(Invalid("Name may not contain control characters"));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
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
    fn names_are_trimmed_and_bounded() {
        assert_eq!(RoomName::parse("  random ").unwrap().as_str(), "random");
        assert!(RoomName::parse(&"é".repeat(64)).is_ok());
        assert!(RoomName::parse(&"é".repeat(65)).is_err());
        assert!(RoomName::parse(" ").is_err());
        assert!(RoomName::parse("a\u{7}b").is_err());
    }
}

//! Chatroom fields.

use super::Invalid;

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
    fn names_are_trimmed_and_bounded() {
        assert_eq!(RoomName::parse("  random ").unwrap().as_str(), "random");
        assert!(RoomName::parse(&"é".repeat(64)).is_ok());
        assert!(RoomName::parse(&"é".repeat(65)).is_err());
        assert!(RoomName::parse(" ").is_err());
        assert!(RoomName::parse("a\u{7}b").is_err());
    }
}

//! Message fields.

use super::Invalid;

/// Most characters a message may hold.
pub const MAX_MESSAGE_CHARS: usize = 4000;

/// Message text: trimmed, 1–4000 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageContent(String);

impl MessageContent {
    /// Trims and checks the length.
    pub fn parse(input: &str) -> Result<Self, Invalid> {
        let content = input.trim();
        if content.is_empty() {
            return Err(Invalid("Message can't be empty"));
        }
        if content.chars().count() > MAX_MESSAGE_CHARS {
            return Err(Invalid("Message must be at most 4000 characters"));
        }
        Ok(Self(content.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_trimmed_and_bounded() {
        assert_eq!(MessageContent::parse("  hi \n").unwrap().as_str(), "hi");
        assert!(MessageContent::parse(" \n\t ").is_err());
        assert!(MessageContent::parse(&"x".repeat(4000)).is_ok());
        assert!(MessageContent::parse(&"x".repeat(4001)).is_err());
    }
}

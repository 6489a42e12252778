//! Chatroom fields.

use unicode_normalization::UnicodeNormalization;

use super::Invalid;

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
    fn keys_fold_case_fully() {
        let key = |s: &str| RoomName::parse(s).unwrap().key();
        assert_eq!(key("Straße"), key("STRASSE"));
        assert_eq!(key("ΣΊΣΥΦΟΣ"), key("σίσυφος"));
        assert_eq!(key("Café"), key("CAFE\u{301}"));
        assert_ne!(key("general"), key("generals"));
    }
}

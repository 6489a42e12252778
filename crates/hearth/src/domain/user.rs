//! Account fields: email, nickname, password.

use super::Invalid;

/// A well-formed email address, lower-cased so uniqueness ignores case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Trims, lower-cases and checks the shape `local@domain.tld`.
    pub fn parse(input: &str) -> Result<Self, Invalid> {
        let email = input.trim().to_lowercase();
        let invalid = Invalid("Email must look like name@example.com");
        if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid);
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err(invalid);
        };
        let domain_ok = domain.contains('.')
            && !domain.contains('@')
            && domain
                .split('.')
                .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(invalid);
        }
        Ok(Self(email))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A nickname: 1–32 letters, digits, `_` or `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nickname(String);

impl Nickname {
    /// Trims and checks length and characters.
    pub fn parse(input: &str) -> Result<Self, Invalid> {
        let nickname = input.trim();
        if nickname.is_empty() || nickname.chars().count() > 32 {
            return Err(Invalid("Nickname must be 1 to 32 characters"));
        }
        if !nickname
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(Invalid(
                "Nickname may contain only ASCII letters (a–z, A–Z), digits, _ and -",
            ));
        }
        Ok(Self(nickname.to_owned()))
    }

    /// The nickname as typed.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password long enough to accept; never logged or shown.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

impl Password {
    /// Accepts 8 to 1024 characters; the upper bound keeps hashing cheap to refuse.
    pub fn parse(input: &str) -> Result<Self, Invalid> {
        let length = input.chars().count();
        if length < 8 {
            return Err(Invalid("Password must be at least 8 characters"));
        }
        if length > 1024 {
            return Err(Invalid("Password must be at most 1024 characters"));
        }
        if input.chars().all(char::is_whitespace) {
            return Err(Invalid("Password must not be only spaces"));
        }
        Ok(Self(input.to_owned()))
    }

    /// Refuses a password that is the account's own email, ignoring case
    /// and surrounding spaces: the first thing anyone would guess.
    pub fn not_the_email(self, email: &Email) -> Result<Self, Invalid> {
        if self.0.trim().to_lowercase() == email.as_str() {
            return Err(Invalid("Password must not be your email address"));
        }
        Ok(self)
    }

    /// The secret, for hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_normalised_and_checked() {
        assert_eq!(
            Email::parse(" Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "a b@example.com",
            "a@b@c.com",
            "ann@-x.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn nickname_allows_letters_digits_underscore_dash() {
        assert!(Nickname::parse("ann_B-9").is_ok());
        assert!(Nickname::parse(&"a".repeat(32)).is_ok());
        for bad in ["", "   ", "ann b", "ann!", "<b>", &"a".repeat(33), "anné"] {
            assert!(Nickname::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn password_needs_eight_characters() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse("12345678").is_ok());
        assert!(Password::parse("        ").is_err(), "only spaces");
        assert!(Password::parse(" \t      \n").is_err(), "only whitespace");
        let email = Email::parse("ann@example.com").unwrap();
        for same in ["ann@example.com", "Ann@Example.COM", " ann@example.com "] {
            assert!(
                Password::parse(same)
                    .unwrap()
                    .not_the_email(&email)
                    .is_err(),
                "{same:?}"
            );
        }
        assert!(
            Password::parse("ann@example.com!")
                .unwrap()
                .not_the_email(&email)
                .is_ok()
        );
        assert_eq!(
            format!("{:?}", Password::parse("secret-secret").unwrap()),
            "Password(..)"
        );
    }
}

//! Values validated at the edge: once one of these exists, it is valid. Each `parse` answers the
//! message that goes into a `validation_failed` field.

/// The page size of every list when the client does not say.
pub const DEFAULT_PAGE: i64 = 50;
/// The largest page any list answers.
pub const MAX_PAGE: i64 = 100;

/// An email address in the basic RFC 5322 `local@domain` form, trimmed and lowercased so that
/// comparisons are case-insensitive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        const INVALID: &str = "must be a valid address";
        let email = raw.trim().to_lowercase();
        if email.len() > 254 {
            return Err("must be at most 254 characters");
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return Err(INVALID);
        };
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
        let domain_ok = domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if local_ok && domain_ok {
            Ok(Self(email))
        } else {
            Err(INVALID)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A display name: 1 to 100 characters after trimming, no control characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let name = raw.trim();
        if name.is_empty() {
            return Err("must not be empty");
        }
        if name.chars().count() > 100 {
            return Err("must be at most 100 characters");
        }
        if name.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A new password: 8 to 1,024 characters (the upper bound keeps hashing cheap to refuse).
pub struct Password(String);

impl Password {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let count = raw.chars().count();
        if count < 8 {
            return Err("must be at least 8 characters");
        }
        if count > 1024 {
            return Err("must be at most 1024 characters");
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_compared_in_lowercase() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@example",
            "ada@@example.com",
            "a da@example.com",
            "ada@exa mple.com",
            "ada@-example.com",
            "ada.@example.com",
            "'; DROP TABLE users; --@x.com",
            "ada@例え.jp",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded_in_characters_not_bytes() {
        assert_eq!(Name::parse("  Zoë  ").unwrap().as_str(), "Zoë");
        assert!(Name::parse(&"é".repeat(100)).is_ok());
        assert!(Name::parse(&"é".repeat(101)).is_err());
        assert!(Name::parse("   ").is_err());
        assert!(Name::parse("bell\u{7}").is_err());
    }

    #[test]
    fn passwords_need_eight_characters() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse("12345678").is_ok());
        assert!(Password::parse(&"x".repeat(1025)).is_err());
    }
}

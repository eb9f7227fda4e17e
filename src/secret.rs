//! `Secret`: a value that must never be shown.
//!
//! Its `Debug` and `Display` print a fixed placeholder and it has no `Serialize`, so a secret cannot
//! reach a log line, an error message or a response by accident. The value is read only through
//! [`Secret::expose`], at the moment it is sent somewhere.

use std::fmt;

/// A secret string: a function key, a password, a token.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself. Call this only where the value leaves the process on purpose.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with `candidate` in time that depends only on the lengths, not on where the two
    /// first differ, so a caller cannot guess a key byte by byte from response times.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        let mut difference = expected.len() ^ candidate.len();
        for (i, byte) in candidate.iter().enumerate() {
            let other = expected
                .get(i % expected.len().max(1))
                .copied()
                .unwrap_or(0);
            difference |= usize::from(byte ^ other);
        }
        difference == 0 && !expected.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_its_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), "<redacted>");
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert!(!format!("{:?}", Some(&secret)).contains("hunter2"));
    }

    #[test]
    fn matches_only_the_exact_value() {
        let secret = Secret::new("abc123");
        assert!(secret.matches(b"abc123"));
        for wrong in [&b"abc124"[..], b"abc12", b"abc1234", b"", b"ABC123"] {
            assert!(
                !secret.matches(wrong),
                "{:?}",
                String::from_utf8_lossy(wrong)
            );
        }
        assert!(
            !Secret::new("").matches(b""),
            "an empty key never authenticates"
        );
    }
}

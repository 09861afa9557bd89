//! A wrapper for secrets (API keys) whose `Debug` and `Display` never print
//! the value, so a stray `{:?}` in a log line cannot leak it.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison (for API-key checks).
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        let a = self.0.as_bytes();
        let mut diff = (a.len() ^ other.len()) as u8 | u8::from(a.len() != other.len());
        for i in 0..a.len().max(other.len()) {
            let x = a.get(i).copied().unwrap_or(0);
            let y = other.get(i).copied().unwrap_or(0);
            diff |= x ^ y;
        }
        diff == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = Secret::new("sk-canary-1234");
        assert!(!format!("{s:?} {s}").contains("canary"));
        assert_eq!(s.expose(), "sk-canary-1234");
    }

    #[test]
    fn constant_time_compare_is_correct() {
        let s = Secret::new("abc");
        assert!(s.ct_eq(b"abc"));
        assert!(!s.ct_eq(b"abd"));
        assert!(!s.ct_eq(b"ab"));
        assert!(!s.ct_eq(b"abcd"));
        assert!(!s.ct_eq(b""));
    }
}

//! The people of the development authorization server: who can be picked on the sign-in page,
//! and the claims their access tokens carry.

use serde_json::{Map, Value};

/// A development user (resource owner): a subject, and claims added to the access tokens
/// issued for them (`name`, `email`, `groups`, ...; registered claims such as `sub`, `iss`,
/// `exp` or `scope` are never overridden).
#[derive(Debug, Clone)]
pub struct DevUser {
    pub(crate) subject: String,
    pub(crate) claims: Map<String, Value>,
}

impl DevUser {
    /// A user with this subject (`sub`) and no other claims.
    pub fn new(subject: impl Into<String>) -> Self {
        DevUser { subject: subject.into(), claims: Map::new() }
    }

    /// Adds a claim to this user's access tokens.
    pub fn claim(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.claims.insert(name.into(), value.into());
        self
    }

    /// The subject.
    pub fn subject(&self) -> &str {
        &self.subject
    }
}

/// Claims the server sets itself: a user's claims never replace them.
pub(crate) const RESERVED: [&str; 11] =
    ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope", "cnf", "token_type"];

/// Whether a subject typed on the sign-in page is acceptable: printable, not too long.
pub(crate) fn valid_subject(subject: &str) -> bool {
    !subject.is_empty() && subject.len() <= 255 && !subject.chars().any(char::is_control)
}

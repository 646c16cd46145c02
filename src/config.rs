//! Configuration errors, reported by the builders when a setting cannot work.

use std::fmt;

/// A builder was given settings that cannot work. Reported at start-up, never per request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required setting was not given.
    Missing(&'static str),
    /// A URL does not parse or has the wrong scheme.
    InvalidUrl {
        /// Which URL.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// Settings contradict each other.
    Invalid(&'static str),
    /// The HTTP client could not be built.
    HttpClient(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Missing(what) => write!(f, "missing setting: {what}"),
            ConfigError::InvalidUrl { what, reason } => write!(f, "invalid {what}: {reason}"),
            ConfigError::Invalid(why) => write!(f, "invalid configuration: {why}"),
            ConfigError::HttpClient(why) => write!(f, "cannot build the HTTP client: {why}"),
        }
    }
}

impl std::error::Error for ConfigError {}

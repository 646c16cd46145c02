//! Several trusted issuers on one layer (multi-tenant): the token's unverified `iss` picks the
//! issuer, and only that issuer's validator, with its own keys, audience and algorithms, may
//! accept it (RFC 8725 §3.8: a key of one issuer never verifies a token of another).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

use crate::config::ConfigError;
use crate::error::{AuthError, InvalidToken};
use crate::jwt::JwtValidator;
use crate::principal::Principal;
use crate::validate::{RequestView, Validator, Verdict};

/// A [`Validator`] that trusts several issuers, each through its own [`JwtValidator`].
///
/// The token's `iss` is read, unverified, only to choose the validator; that validator then
/// checks everything (signature with its own keys only, `iss` again, `aud`, `exp`, …). A token
/// naming an issuer that is not configured is refused (`401 invalid_token`) without any network
/// call, so a flood of made-up issuers creates nothing. Cheap to clone.
///
/// ```no_run
/// use tower_bearer::{BearerLayer, JwtValidator, MultiIssuer};
///
/// let tenants = MultiIssuer::new([
///     JwtValidator::from_issuer("https://as.example/tenant-a")?.audience("https://api.example").build()?,
///     JwtValidator::from_issuer("https://as.example/tenant-b")?.audience("https://api.example").build()?,
/// ])?;
/// let layer = BearerLayer::new(tenants);
/// # Ok::<(), tower_bearer::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct MultiIssuer {
    inner: Arc<Inner>,
}

struct Inner {
    by_issuer: HashMap<Box<str>, JwtValidator>,
    /// The largest token any of the validators accepts: nothing bigger is even decoded.
    max_token_bytes: usize,
}

impl MultiIssuer {
    /// Trusts the issuer of each validator. Each must name exactly one issuer (no
    /// `any_issuer()`), and no issuer may appear twice.
    pub fn new(validators: impl IntoIterator<Item = JwtValidator>) -> Result<MultiIssuer, ConfigError> {
        let mut by_issuer = HashMap::new();
        let mut max_token_bytes = 0;
        for validator in validators {
            let issuer = validator
                .issuer()
                .ok_or(ConfigError::Invalid("MultiIssuer needs validators with an exact issuer"))?
                .into();
            max_token_bytes = max_token_bytes.max(validator.max_token_bytes());
            if by_issuer.insert(issuer, validator).is_some() {
                return Err(ConfigError::Invalid("MultiIssuer: an issuer is configured twice"));
            }
        }
        if by_issuer.is_empty() {
            return Err(ConfigError::Missing("at least one issuer"));
        }
        // One key set behind two issuers would let either issuer's key verify the other's
        // tokens: exactly what routing by issuer is meant to prevent.
        let sets: Vec<_> = by_issuer.values().filter_map(JwtValidator::key_set).collect();
        for (i, a) in sets.iter().enumerate() {
            if sets[i + 1..].iter().any(|b| a.same_as(b)) {
                return Err(ConfigError::Invalid("MultiIssuer: two issuers share one key set"));
            }
        }
        Ok(MultiIssuer { inner: Arc::new(Inner { by_issuer, max_token_bytes }) })
    }

    /// The validator of `issuer`, if it is trusted.
    pub fn validator(&self, issuer: &str) -> Option<&JwtValidator> {
        self.inner.by_issuer.get(issuer)
    }

    /// The trusted issuers.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.inner.by_issuer.keys().map(|k| &**k)
    }
}

/// The `iss` of a compact JWS, read without verifying anything.
fn unverified_issuer(token: &str, max_bytes: usize) -> Result<String, InvalidToken> {
    #[derive(Deserialize)]
    struct Issuer<'a> {
        #[serde(borrow)]
        iss: Option<Cow<'a, str>>,
    }
    if token.len() > max_bytes {
        return Err(InvalidToken::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(InvalidToken::Malformed);
    };
    let json = crate::base64url::decode(payload).ok_or(InvalidToken::Malformed)?;
    if json.first() != Some(&b'{') {
        return Err(InvalidToken::Malformed);
    }
    // A duplicate `iss` member is an error here, as it is for the validator.
    let claims: Issuer<'_> = serde_json::from_slice(&json).map_err(|_| InvalidToken::Malformed)?;
    claims.iss.map(Cow::into_owned).ok_or(InvalidToken::WrongIssuer)
}

/// Up to this many issuers, a token is first looked up in each issuer's verified-token cache,
/// before its payload is decoded: a few lookups cost less than decoding and parsing it.
const PEEK_CACHES_UP_TO: usize = 4;

impl Validator for MultiIssuer {
    /// An issuer's cache hit is that issuer's own verdict on this very token, whichever issuer
    /// the payload names (as in `validate`).
    fn remembered(&self, token: &[u8]) -> Option<Principal> {
        if self.inner.by_issuer.len() > PEEK_CACHES_UP_TO {
            return None;
        }
        self.inner.by_issuer.values().find_map(|validator| validator.remembered(token))
    }

    fn validate(&self, token: &str, request: &RequestView<'_>) -> Verdict {
        // A hit in an issuer's cache is that issuer's own earlier verdict on this very token (its
        // `iss` included), so it stands whichever issuer the payload names.
        if self.inner.by_issuer.len() <= PEEK_CACHES_UP_TO && token.len() <= self.inner.max_token_bytes {
            for validator in self.inner.by_issuer.values() {
                if let Some(hit) = validator.cached_only(token.as_bytes()) {
                    return Verdict::Ready(hit);
                }
            }
        }
        let issuer = match unverified_issuer(token, self.inner.max_token_bytes) {
            Ok(issuer) => issuer,
            Err(why) => return Verdict::Ready(Err(AuthError::InvalidToken(why))),
        };
        match self.inner.by_issuer.get(issuer.as_str()) {
            Some(validator) => validator.validate(token, request),
            None => {
                tracing::debug!(reason = "unknown_issuer", "token names an issuer that is not trusted");
                Verdict::Ready(Err(AuthError::InvalidToken(InvalidToken::WrongIssuer)))
            }
        }
    }
}

impl fmt::Debug for MultiIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiIssuer").field("issuers", &self.inner.by_issuer.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn token(payload: &str) -> String {
        format!("eyJhbGciOiJFUzI1NiJ9.{}.c2ln", URL_SAFE_NO_PAD.encode(payload))
    }

    #[test]
    fn reads_the_issuer_without_trusting_anything_else() {
        assert_eq!(unverified_issuer(&token(r#"{"iss":"https://a"}"#), 8192), Ok("https://a".into()));
        assert_eq!(unverified_issuer(&token(r#"{"iss":"https:\/\/a"}"#), 8192), Ok("https://a".into()));
        assert_eq!(unverified_issuer(&token(r#"{"sub":"x"}"#), 8192), Err(InvalidToken::WrongIssuer));
        assert_eq!(unverified_issuer(&token(r#"{"iss":"a","iss":"b"}"#), 8192), Err(InvalidToken::Malformed));
        assert_eq!(unverified_issuer(&token(r#"["iss"]"#), 8192), Err(InvalidToken::Malformed));
        assert_eq!(unverified_issuer(&token(r#"{"iss":7}"#), 8192), Err(InvalidToken::Malformed));
        assert_eq!(unverified_issuer("a.b", 8192), Err(InvalidToken::Malformed));
        assert_eq!(unverified_issuer(&token(r#"{"iss":"https://a"}"#), 10), Err(InvalidToken::TooLarge));
    }
}

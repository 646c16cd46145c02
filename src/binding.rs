//! What binds a token to its sender (RFC 7800 `cnf`): read from the verified claims by the
//! validators, checked by the layer on every request, cache hits included (the binding belongs to
//! the request, not to the token).

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::dpop::{Dpop, Proof, ReplayError};
use crate::error::{AuthError, InvalidDpopProof, InvalidToken, Unavailable};

/// The confirmation (`cnf`) a token carries: what its sender must prove to use it.
///
/// A token with any `cnf` is *bound*: it is never accepted as a plain bearer token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Confirmation {
    /// No `cnf`: a bearer token.
    #[default]
    None,
    /// `cnf.jkt` (RFC 9449 §6): the RFC 7638 SHA-256 thumbprint of the DPoP key, base64url.
    Jkt(String),
    /// `cnf["x5t#S256"]` (RFC 8705 §3.1): the SHA-256 thumbprint of the client certificate.
    /// Mutual TLS is not implemented yet: such tokens are refused.
    X5tS256(String),
    /// Any other `cnf` (another member, several members, not an object): refused, since this
    /// crate cannot check what it asks for.
    Other,
}

impl Confirmation {
    /// Whether the token is bound to a key or certificate.
    pub fn is_bound(&self) -> bool {
        !matches!(self, Confirmation::None)
    }

    fn from_value(cnf: Value) -> Self {
        let Value::Object(mut members) = cnf else { return Confirmation::Other };
        if members.len() != 1 {
            return Confirmation::Other;
        }
        match (members.remove("jkt"), members.remove("x5t#S256")) {
            (Some(Value::String(jkt)), None) => Confirmation::Jkt(jkt),
            (None, Some(Value::String(x5t))) => Confirmation::X5tS256(x5t),
            _ => Confirmation::Other,
        }
    }
}

/// `deserialize_with` for a `cnf` claim (absent is `#[serde(default)]`; `null` is bound, and
/// refused as [`Confirmation::Other`]).
pub(crate) fn cnf_claim<'de, D: Deserializer<'de>>(d: D) -> Result<Confirmation, D::Error> {
    Value::deserialize(d).map(Confirmation::from_value)
}

/// Checks a token sent as `Bearer` (or from a cookie, query or form): only unbound tokens pass.
pub(crate) fn check_bearer(cnf: &Confirmation) -> Result<(), AuthError> {
    match cnf {
        Confirmation::None => Ok(()),
        Confirmation::Jkt(_) => Err(InvalidToken::BoundTokenAsBearer.into()),
        Confirmation::X5tS256(_) => Err(InvalidToken::CertificateBindingUnchecked.into()),
        Confirmation::Other => Err(InvalidToken::UnknownConfirmation.into()),
    }
}

/// Checks the binding of a request's token: unbound for `Bearer` (`proof` is `None`), bound to
/// the proof's key for `DPoP`, whose single use is recorded only then.
pub(crate) fn check(cnf: &Confirmation, proof: Option<&Proof>, dpop: &Dpop) -> Result<(), AuthError> {
    let Some(proof) = proof else { return check_bearer(cnf) };
    match cnf {
        Confirmation::Jkt(jkt) if *jkt == proof.jkt => {
            match dpop.replay.record(proof.replay_key, proof.expires_at, dpop.clock.unix_now()) {
                Ok(()) => Ok(()),
                Err(ReplayError::Replayed) => Err(InvalidDpopProof::Replayed.into()),
                Err(_) => Err(Unavailable::ReplayStoreFull.into()),
            }
        }
        Confirmation::Jkt(_) => Err(InvalidToken::ProofKeyMismatch.into()),
        Confirmation::None => Err(InvalidToken::UnboundTokenAsDpop.into()),
        other => check_bearer(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_cnf() {
        let c = |v: Value| Confirmation::from_value(v);
        assert_eq!(c(json!({"jkt": "abc"})), Confirmation::Jkt("abc".into()));
        assert_eq!(c(json!({"x5t#S256": "abc"})), Confirmation::X5tS256("abc".into()));
        assert_eq!(c(json!({"jkt": "a", "x5t#S256": "b"})), Confirmation::Other);
        assert_eq!(c(json!({"jwk": {}})), Confirmation::Other);
        assert_eq!(c(json!({"jkt": 1})), Confirmation::Other);
        assert_eq!(c(json!({})), Confirmation::Other);
        assert_eq!(c(json!("abc")), Confirmation::Other);
        assert_eq!(c(Value::Null), Confirmation::Other);
    }
}

//! What binds a token to its sender (RFC 7800 `cnf`): read from the verified claims by the
//! validators, checked by the layer on every request, cache hits included (the binding belongs to
//! the request, not to the token).

use crate::dpop::{Dpop, Proof, ReplayError};
use crate::error::{AuthError, InvalidDpopProof, InvalidToken, Unavailable};
use crate::principal::Confirmation;

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

//! What binds a token to its sender (RFC 7800 `cnf`): read from the verified claims by the
//! validators, checked by the layer on every request, cache hits included (the binding belongs to
//! the request, not to the token).

use std::future::Future;
use std::pin::Pin;

use crate::certificate::ClientCertificate;
use crate::dpop::{Dpop, OutOfWindow, Proof, Recording, ReplayError};
use crate::error::{AuthError, InvalidDpopProof, InvalidToken, Throttled, Unavailable};
use crate::principal::Confirmation;

/// The outcome of a binding check: known now, or once a shared replay store answered.
pub(crate) enum Checked {
    Done(Result<(), AuthError>),
    Pending(Pin<Box<dyn Future<Output = Result<(), AuthError>> + Send>>),
}

/// Checks a token sent as `Bearer` (or from a cookie, query or form): unbound tokens pass, and
/// tokens bound to the request's client certificate (RFC 8705 §3). `cert` is only asked for a
/// certificate-bound token: the common, unbound one costs no extensions lookup.
pub(crate) fn check_bearer<'a>(
    cnf: &Confirmation,
    cert: impl FnOnce() -> Option<&'a ClientCertificate>,
) -> Result<(), AuthError> {
    match cnf {
        Confirmation::None => Ok(()),
        Confirmation::Jkt(_) => Err(InvalidToken::BoundTokenAsBearer.into()),
        Confirmation::X5tS256(x5t) => match cert() {
            Some(cert) if cert.matches(x5t) => Ok(()),
            Some(_) => Err(InvalidToken::ClientCertificateMismatch.into()),
            None => Err(InvalidToken::MissingClientCertificate.into()),
        },
        Confirmation::Other => Err(InvalidToken::UnknownConfirmation.into()),
    }
}

/// Checks the binding of a request's token: unbound or certificate-bound for `Bearer` (`proof`
/// is `None`), bound to the proof's key for `DPoP`, whose single use is recorded only then.
pub(crate) fn check<'a>(
    cnf: &Confirmation,
    proof: Option<&Proof>,
    cert: impl FnOnce() -> Option<&'a ClientCertificate>,
    dpop: &Dpop,
) -> Checked {
    let Some(proof) = proof else { return Checked::Done(check_bearer(cnf, cert)) };
    match cnf {
        Confirmation::Jkt(jkt) if *jkt == proof.jkt => {
            let now = dpop.clock.unix_now();
            // The proof's window is judged again when its use is recorded: a validation that
            // outlasted what was left of it (an introspection call, a key fetch) would record an
            // entry already expired, which stores drop, and the same proof would pass again.
            let expires_at = match dpop.record_until(proof, now) {
                Ok(until) => until,
                Err(OutOfWindow::Stale) => return Checked::Done(Err(InvalidDpopProof::Stale.into())),
                Err(OutOfWindow::Ahead) => {
                    return Checked::Done(Err(InvalidDpopProof::IssuedInFuture.into()));
                }
            };
            match dpop.replay.begin(proof.replay_key, expires_at, now) {
                Recording::Done(recorded) => Checked::Done(recorded.map_err(refusal)),
                Recording::Pending(recording) => {
                    Checked::Pending(Box::pin(async move { recording.await.map_err(refusal) }))
                }
            }
        }
        Confirmation::Jkt(_) => Checked::Done(Err(InvalidToken::ProofKeyMismatch.into())),
        // The `DPoP` scheme is for DPoP-bound tokens (RFC 9449 §7.1), a certificate-bound one
        // included.
        Confirmation::None | Confirmation::X5tS256(_) => {
            Checked::Done(Err(InvalidToken::UnboundTokenAsDpop.into()))
        }
        Confirmation::Other => Checked::Done(Err(InvalidToken::UnknownConfirmation.into())),
    }
}

/// A store's refusal: a replay and a key over its share are the client's doing.
fn refusal(err: ReplayError) -> AuthError {
    match err {
        ReplayError::Replayed => InvalidDpopProof::Replayed.into(),
        ReplayError::KeyOverBudget => Throttled::DpopProofs.into(),
        ReplayError::Full => Unavailable::ReplayStoreFull.into(),
        ReplayError::Unavailable => Unavailable::ReplayStore.into(),
    }
}

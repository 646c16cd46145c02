//! [`Revocations`]: what the layer asks about every verified token before letting it through,
//! so that a token revoked before it expires stops working (a deny-list, e.g.
//! [`fleet::DenyList`](crate::fleet::DenyList) with the `redis` feature).

use crate::error::AuthError;
use crate::principal::Principal;

/// A source of revocations, consulted by [`BearerLayer`](crate::BearerLayer) on every verdict,
/// cached ones included. It is called on the request path: it must answer from memory, never
/// wait on the network.
///
/// ```
/// use std::collections::HashSet;
/// use tower_bearer::{AuthError, InvalidToken, Principal, Revocations};
///
/// /// Subjects banned for good.
/// struct Banned(HashSet<String>);
///
/// impl Revocations for Banned {
///     fn check(&self, principal: &Principal) -> Result<(), AuthError> {
///         match principal.subject() {
///             Some(sub) if self.0.contains(sub) => Err(InvalidToken::Revoked.into()),
///             _ => Ok(()),
///         }
///     }
/// }
/// ```
pub trait Revocations: Send + Sync + 'static {
    /// `Ok` if `principal` may pass; [`InvalidToken::Revoked`](crate::InvalidToken::Revoked)
    /// if it was revoked, an [`Unavailable`](crate::Unavailable) error if the answer cannot be
    /// trusted now.
    fn check(&self, principal: &Principal) -> Result<(), AuthError>;
}

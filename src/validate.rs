//! The [`Validator`] trait (token in, [`Principal`] or [`AuthError`] out) and the verified
//! [`Principal`] that handlers receive.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::error::{AuthError, InvalidToken};
use crate::scope::Scopes;

/// A future that finishes a validation which had to wait (e.g. for a key-set fetch).
pub type ValidationFuture = Pin<Box<dyn Future<Output = Result<Principal, AuthError>> + Send>>;

/// The answer of [`Validator::validate`].
///
/// Most validations finish without waiting (a warm key cache and one signature check), so the
/// layer gets [`Verdict::Ready`] and allocates no future. Only a validation that must touch the
/// network returns [`Verdict::Pending`].
pub enum Verdict {
    /// The answer is known now.
    Ready(Result<Principal, AuthError>),
    /// The answer needs I/O first.
    Pending(ValidationFuture),
}

impl fmt::Debug for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Ready(r) => f.debug_tuple("Ready").field(r).finish(),
            Verdict::Pending(_) => f.write_str("Pending(..)"),
        }
    }
}

impl Verdict {
    /// Waits for the answer, whichever kind it is.
    pub async fn resolve(self) -> Result<Principal, AuthError> {
        match self {
            Verdict::Ready(r) => r,
            Verdict::Pending(f) => f.await,
        }
    }
}

/// Checks a bearer token and says who it belongs to.
///
/// Implemented by [`JwtValidator`](crate::JwtValidator); implement it yourself to plug another
/// kind of token into [`BearerLayer`](crate::BearerLayer).
pub trait Validator: Send + Sync + 'static {
    /// Validates `token` (already syntax-checked as an RFC 6750 `b64token`).
    fn validate(&self, token: &str) -> Verdict;
}

impl<V: Validator + ?Sized> Validator for Arc<V> {
    fn validate(&self, token: &str) -> Verdict {
        (**self).validate(token)
    }
}

/// Which kind of token a [`Principal`] was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TokenKind {
    /// A JWT whose signature and claims were checked locally.
    Jwt,
    /// An opaque token vouched for by an introspection endpoint.
    Opaque,
}

/// The verified identity behind a request: who, for which client, with which scopes, until when.
///
/// Cheap to clone (one reference count). Found in the request extensions after
/// [`BearerLayer`](crate::BearerLayer) let a request through, and as an axum extractor with the
/// `axum` feature.
#[derive(Clone)]
pub struct Principal(Arc<PrincipalData>);

#[derive(Serialize)]
pub(crate) struct PrincipalData {
    pub(crate) kind: TokenKind,
    pub(crate) subject: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) issuer: Option<String>,
    pub(crate) audience: Vec<String>,
    pub(crate) scopes: Scopes,
    pub(crate) expires_at: Option<i64>,
    pub(crate) issued_at: Option<i64>,
    /// The verified claims object, verbatim: a `RawValue`, so serializing a principal copies it
    /// instead of parsing it again.
    pub(crate) claims: Box<RawValue>,
}

impl Principal {
    pub(crate) fn new(data: PrincipalData) -> Self {
        Principal(Arc::new(data))
    }

    /// The kind of token.
    pub fn kind(&self) -> TokenKind {
        self.0.kind
    }
    /// The `sub` claim.
    pub fn subject(&self) -> Option<&str> {
        self.0.subject.as_deref()
    }
    /// The `client_id` claim (RFC 9068 / RFC 7662), falling back to `azp`.
    pub fn client_id(&self) -> Option<&str> {
        self.0.client_id.as_deref()
    }
    /// The `iss` claim.
    pub fn issuer(&self) -> Option<&str> {
        self.0.issuer.as_deref()
    }
    /// The `aud` claim, as a list.
    pub fn audience(&self) -> &[String] {
        &self.0.audience
    }
    /// The granted scopes (`scope` and `scp`).
    pub fn scopes(&self) -> &Scopes {
        &self.0.scopes
    }
    /// The `exp` claim, in seconds since the Unix epoch.
    pub fn expires_at_unix(&self) -> Option<i64> {
        self.0.expires_at
    }
    /// The `exp` claim as a [`SystemTime`].
    pub fn expires_at(&self) -> Option<SystemTime> {
        let secs = u64::try_from(self.0.expires_at?).ok()?;
        UNIX_EPOCH.checked_add(Duration::from_secs(secs))
    }
    /// The `iat` claim, in seconds since the Unix epoch.
    pub fn issued_at_unix(&self) -> Option<i64> {
        self.0.issued_at
    }
    /// Every claim, as the raw JSON object that was verified.
    pub fn raw_claims(&self) -> &str {
        self.0.claims.get()
    }
    /// Reads the verified claims as your own type.
    ///
    /// ```
    /// # fn demo(principal: &tower_bearer::Principal) -> Result<(), serde_json::Error> {
    /// #[derive(serde::Deserialize)]
    /// struct MyClaims { tenant: String }
    /// let claims: MyClaims = principal.claims()?;
    /// println!("tenant {}", claims.tenant);
    /// # Ok(()) }
    /// ```
    pub fn claims<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.claims.get())
    }
    /// One claim by name, parsed on demand.
    pub fn claim(&self, name: &str) -> Option<serde_json::Value> {
        let mut map: serde_json::Map<String, serde_json::Value> = self.claims().ok()?;
        map.remove(name)
    }
    /// Requires every scope in `needed`; a `403 insufficient_scope` error otherwise.
    pub fn require_scopes<'a>(
        &self,
        needed: impl IntoIterator<Item = &'a str> + Clone,
    ) -> Result<(), AuthError> {
        if needed.clone().into_iter().all(|s| self.0.scopes.contains(s)) {
            Ok(())
        } else {
            Err(AuthError::InsufficientScope { required: join(needed) })
        }
    }
}

pub(crate) fn join<'a>(scopes: impl IntoIterator<Item = &'a str>) -> String {
    scopes.into_iter().collect::<Vec<_>>().join(" ")
}

impl fmt::Debug for Principal {
    // Claims can hold personal data; Debug shows what is needed to follow a request in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("kind", &self.0.kind)
            .field("subject", &self.0.subject)
            .field("client_id", &self.0.client_id)
            .field("issuer", &self.0.issuer)
            .field("scopes", &self.0.scopes)
            .field("expires_at", &self.0.expires_at)
            .finish_non_exhaustive()
    }
}

impl Serialize for Principal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// Where "now" comes from for `exp`/`nbf`/`iat` checks. The system clock by default; tests and
/// simulations can supply their own.
#[derive(Clone)]
pub struct Clock(Option<Arc<dyn Fn() -> SystemTime + Send + Sync>>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock(None)
    }
    /// A clock that asks `now` for the time.
    pub fn from_fn(now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        Clock(Some(Arc::new(now)))
    }
    /// The current time.
    pub fn now(&self) -> SystemTime {
        match &self.0 {
            None => SystemTime::now(),
            Some(f) => f(),
        }
    }
    /// The current time in whole seconds since the Unix epoch (negative before 1970).
    pub fn unix_now(&self) -> i64 {
        match self.now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Clock(custom)" } else { "Clock(system)" })
    }
}

/// Time-based claim checks shared by every token kind.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimeWindow {
    pub(crate) leeway: i64,
    /// JWT access tokens must carry `exp` (RFC 9068); introspection responses may omit it.
    pub(crate) require_exp: bool,
}

impl TimeWindow {
    pub(crate) fn check(
        &self,
        now: i64,
        exp: Option<i64>,
        nbf: Option<i64>,
        iat: Option<i64>,
    ) -> Result<(), InvalidToken> {
        match exp {
            None if self.require_exp => return Err(InvalidToken::MissingExpiry),
            Some(exp) if now >= exp.saturating_add(self.leeway) => {
                return Err(InvalidToken::Expired);
            }
            _ => {}
        }
        if nbf.is_some_and(|nbf| nbf > now.saturating_add(self.leeway)) {
            return Err(InvalidToken::NotYetValid);
        }
        if iat.is_some_and(|iat| iat > now.saturating_add(self.leeway)) {
            return Err(InvalidToken::IssuedInFuture);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_window_edges() {
        let w = TimeWindow { leeway: 0, require_exp: true };
        assert_eq!(w.check(100, None, None, None), Err(InvalidToken::MissingExpiry));
        assert_eq!(w.check(100, Some(100), None, None), Err(InvalidToken::Expired));
        assert_eq!(w.check(99, Some(100), None, None), Ok(()));
        assert_eq!(w.check(99, Some(200), Some(100), None), Err(InvalidToken::NotYetValid));
        assert_eq!(w.check(99, Some(200), None, Some(100)), Err(InvalidToken::IssuedInFuture));
        let lenient = TimeWindow { leeway: 5, require_exp: true };
        let optional = TimeWindow { leeway: 0, require_exp: false };
        assert_eq!(optional.check(100, None, None, None), Ok(()));
        assert_eq!(lenient.check(104, Some(100), Some(109), Some(109)), Ok(()));
        assert_eq!(lenient.check(105, Some(100), None, None), Err(InvalidToken::Expired));
        assert_eq!(w.check(0, Some(i64::MAX), Some(i64::MIN), None), Ok(()));
    }
}

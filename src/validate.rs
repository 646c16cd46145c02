//! The [`Validator`] trait (token in, [`Principal`] or [`AuthError`] out) and the verified
//! [`Principal`] that handlers receive.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Extensions, HeaderMap, Method, Request, Uri};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::binding::Confirmation;
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
/// Implemented by [`JwtValidator`](crate::JwtValidator), [`Introspector`](crate::Introspector)
/// and their compositions; implement it yourself to plug another kind of credential into
/// [`BearerLayer`](crate::BearerLayer), and build the [`Principal`] with [`Principal::builder`].
/// The validator sees the request the token came with (method, URI, headers, extensions), so it
/// can check what binds a token to its sender (a DPoP proof, a client certificate) or the host.
///
/// ```
/// use std::collections::HashMap;
/// use tower_bearer::{AuthError, InvalidToken, Principal, RequestView, TokenKind, Validator, Verdict};
///
/// /// API keys, each with its owner and scopes.
/// struct ApiKeys(HashMap<String, (String, Vec<String>)>);
///
/// impl Validator for ApiKeys {
///     fn validate(&self, token: &str, _request: &RequestView<'_>) -> Verdict {
///         Verdict::Ready(match self.0.get(token) {
///             Some((owner, scopes)) => Ok(Principal::builder(TokenKind::Opaque)
///                 .subject(owner.as_str())
///                 .scopes(scopes.iter().map(String::as_str))
///                 .build()),
///             None => Err(AuthError::InvalidToken(InvalidToken::Inactive)),
///         })
///     }
/// }
/// ```
pub trait Validator: Send + Sync + 'static {
    /// Validates `token` (already syntax-checked as an RFC 6750 `b64token`), sent with `request`.
    fn validate(&self, token: &str, request: &RequestView<'_>) -> Verdict;
}

impl<V: Validator + ?Sized> Validator for Arc<V> {
    fn validate(&self, token: &str, request: &RequestView<'_>) -> Verdict {
        (**self).validate(token, request)
    }
}

/// What a [`Validator`] sees of the request besides the token: its method, URI, headers and
/// extensions, borrowed (nothing is cloned on the hot path). A validator that must wait
/// ([`Verdict::Pending`]) copies what it needs before it returns.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    extensions: &'a Extensions,
}

impl<'a> RequestView<'a> {
    /// The view of `request`.
    pub fn of<B>(request: &'a Request<B>) -> Self {
        RequestView {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            extensions: request.extensions(),
        }
    }
    /// The view of a request's `parts`.
    pub fn of_parts(parts: &'a http::request::Parts) -> Self {
        RequestView {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            extensions: &parts.extensions,
        }
    }
    /// The request method.
    pub fn method(&self) -> &'a Method {
        self.method
    }
    /// The request URI (as received: usually a path and query, absolute behind some proxies).
    pub fn uri(&self) -> &'a Uri {
        self.uri
    }
    /// The request headers.
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }
    /// The request extensions (for example a client certificate put there by the server).
    pub fn extensions(&self) -> &'a Extensions {
        self.extensions
    }
}

impl RequestView<'static> {
    /// No request: `GET /` without headers or extensions. For validating a token that did not
    /// come with an HTTP request (a test, a message queue); anything bound to a request (a DPoP
    /// proof, a client certificate) then fails.
    pub fn detached() -> Self {
        static URI: LazyLock<Uri> = LazyLock::new(|| Uri::from_static("/"));
        static HEADERS: LazyLock<HeaderMap> = LazyLock::new(HeaderMap::new);
        static EXTENSIONS: LazyLock<Extensions> = LazyLock::new(Extensions::new);
        RequestView { method: &Method::GET, uri: &URI, headers: &HEADERS, extensions: &EXTENSIONS }
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
    /// The `cnf` claim: what binds the token to its sender.
    #[serde(skip)]
    pub(crate) cnf: Confirmation,
    /// The verified claims object, verbatim (already checked to be JSON).
    #[serde(serialize_with = "raw_json")]
    pub(crate) claims: Box<str>,
}

fn raw_json<S: serde::Serializer>(claims: &str, s: S) -> Result<S::Ok, S::Error> {
    let raw = RawValue::from_string(claims.to_owned()).map_err(serde::ser::Error::custom)?;
    raw.serialize(s)
}

/// Builds a [`Principal`] for a [`Validator`] of your own. Every field but the kind is optional.
///
/// ```
/// use tower_bearer::{Principal, TokenKind};
///
/// let principal = Principal::builder(TokenKind::Opaque)
///     .subject("service-a")
///     .client_id("billing")
///     .scopes(["items:read", "items:write"])
///     .expires_at_unix(4_102_444_800)
///     .claims(serde_json::json!({ "tenant": "acme" }))
///     .build();
/// assert!(principal.scopes().contains("items:write"));
/// assert_eq!(principal.claim("tenant"), Some(serde_json::json!("acme")));
/// ```
pub struct PrincipalBuilder {
    data: PrincipalData,
}

impl fmt::Debug for PrincipalBuilder {
    // Like `Principal`'s: the claims stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrincipalBuilder")
            .field("kind", &self.data.kind)
            .field("subject", &self.data.subject)
            .field("client_id", &self.data.client_id)
            .finish_non_exhaustive()
    }
}

impl PrincipalBuilder {
    /// Who the token stands for (`sub`).
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.data.subject = Some(subject.into());
        self
    }
    /// The client the token was issued to (`client_id`).
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.data.client_id = Some(client_id.into());
        self
    }
    /// Who issued the token (`iss`).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.data.issuer = Some(issuer.into());
        self
    }
    /// The audiences the token is meant for (`aud`).
    pub fn audience<S: Into<String>>(mut self, audience: impl IntoIterator<Item = S>) -> Self {
        self.data.audience = audience.into_iter().map(Into::into).collect();
        self
    }
    /// The granted scopes (duplicates are dropped); [`RequireScope`](crate::RequireScope) checks
    /// them.
    pub fn scopes<'a>(mut self, scopes: impl IntoIterator<Item = &'a str>) -> Self {
        self.data.scopes = Scopes::default();
        self.data.scopes.extend(scopes);
        self
    }
    /// When the token expires, in seconds since the Unix epoch (`exp`).
    pub fn expires_at_unix(mut self, exp: i64) -> Self {
        self.data.expires_at = Some(exp);
        self
    }
    /// When the token was issued, in seconds since the Unix epoch (`iat`).
    pub fn issued_at_unix(mut self, iat: i64) -> Self {
        self.data.issued_at = Some(iat);
        self
    }
    /// What binds the token to its sender (its `cnf`); a bound token is refused as a bearer
    /// token, whatever the validator.
    pub fn confirmation(mut self, cnf: Confirmation) -> Self {
        self.data.cnf = cnf;
        self
    }
    /// The claims handlers read with [`Principal::claims`] and [`Principal::claim`]; anything
    /// but a JSON object counts as no claims (`{}`).
    pub fn claims(mut self, claims: serde_json::Value) -> Self {
        self.data.claims = match claims {
            serde_json::Value::Object(_) => claims.to_string().into_boxed_str(),
            _ => "{}".into(),
        };
        self
    }
    /// The principal.
    pub fn build(self) -> Principal {
        Principal::new(self.data)
    }
}

impl Principal {
    pub(crate) fn new(data: PrincipalData) -> Self {
        Principal(Arc::new(data))
    }

    /// Starts a principal of `kind`, for a [`Validator`] of your own.
    pub fn builder(kind: TokenKind) -> PrincipalBuilder {
        PrincipalBuilder {
            data: PrincipalData {
                kind,
                subject: None,
                client_id: None,
                issuer: None,
                audience: Vec::new(),
                scopes: Scopes::default(),
                expires_at: None,
                issued_at: None,
                cnf: Confirmation::None,
                claims: "{}".into(),
            },
        }
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
    /// What binds the token to its sender (the `cnf` claim), checked by
    /// [`BearerLayer`](crate::BearerLayer) on every request.
    pub fn confirmation(&self) -> &Confirmation {
        &self.0.cnf
    }
    /// Every claim, as the raw JSON object that was verified.
    pub fn raw_claims(&self) -> &str {
        &self.0.claims
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
        serde_json::from_str(&self.0.claims)
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

/// The longest any cache here keeps anything: lifetimes from input (`exp`, `max-age`) or from
/// configuration are clamped to it, so that no time arithmetic can overflow (and moka, which
/// refuses lifetimes over 1 000 years, is never handed one).
pub(crate) const LONGEST_LIFETIME: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + after`, with `after` clamped to [`LONGEST_LIFETIME`]; `now` itself when even that
/// does not fit (a clock at the end of time: nothing is then kept).
pub(crate) fn later(now: SystemTime, after: Duration) -> SystemTime {
    now.checked_add(after.min(LONGEST_LIFETIME)).unwrap_or(now)
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

//! The [`Validator`] trait: a token and the request it came with in, a [`Principal`] or an
//! [`AuthError`] out.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};

use http::{Extensions, HeaderMap, Method, Request, Uri};

use crate::error::AuthError;
use crate::principal::Principal;

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

    /// The principal of an earlier successful validation of exactly these bytes, still valid
    /// now, if the validator remembers one (a verified-token cache); `None` (the default)
    /// otherwise. A remembered token once passed the syntax check, so
    /// [`BearerLayer`](crate::BearerLayer) asks this first, with the header's bytes as they
    /// came, and checks syntax and calls [`validate`](Self::validate) only when it gets `None`.
    /// An answer must depend on the token alone (`validate` may look at the request; this
    /// cannot).
    fn remembered(&self, token: &[u8]) -> Option<Principal> {
        let _ = token;
        None
    }
}

impl<V: Validator + ?Sized> Validator for Arc<V> {
    fn validate(&self, token: &str, request: &RequestView<'_>) -> Verdict {
        (**self).validate(token, request)
    }
    fn remembered(&self, token: &[u8]) -> Option<Principal> {
        (**self).remembered(token)
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

//! The per-route guard that demands scopes ([`RequireScope`]) of the set a token grants
//! ([`Scopes`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::{AuthBody, Dialect, HandlerRejection};
use crate::error::AuthError;
pub use crate::principal::Scopes;
use crate::principal::{Principal, join};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    All,
    Any,
}

/// A [`Layer`] that demands scopes of the [`Principal`] that [`BearerLayer`](crate::BearerLayer)
/// put in the request. Apply it per route, inside the bearer layer.
///
/// * no principal (the route is not behind a bearer layer, or it admits anonymous requests) →
///   `401` asking for a token;
/// * principal without the scopes → `403`, `error="insufficient_scope", scope="…"`.
///
/// ```
/// use tower_bearer::RequireScope;
///
/// let read = RequireScope::all(["items:read"]);
/// let admin_or_owner = RequireScope::any(["admin", "items:owner"]);
/// # let _ = (read, admin_or_owner);
/// ```
#[derive(Clone, Debug)]
pub struct RequireScope {
    scopes: Arc<[String]>,
    /// What the challenge's `scope` auth-param says: every scope for all-of, the alternatives for
    /// any-of.
    required: Arc<str>,
    mode: Mode,
}

impl RequireScope {
    /// Every one of `scopes` is needed.
    pub fn all<I, S>(scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(scopes, Mode::All)
    }

    /// At least one of `scopes` is needed.
    pub fn any<I, S>(scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(scopes, Mode::Any)
    }

    fn new<I, S>(scopes: I, mode: Mode) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let scopes: Arc<[String]> = scopes.into_iter().map(Into::into).collect();
        let required = join(scopes.iter().map(String::as_str)).into();
        RequireScope { scopes, required, mode }
    }

    /// Checks a principal against this requirement.
    pub fn check(&self, principal: &Principal) -> Result<(), AuthError> {
        let granted = principal.scopes();
        let ok = match self.mode {
            Mode::All => self.scopes.iter().all(|s| granted.contains(s)),
            Mode::Any => self.scopes.iter().any(|s| granted.contains(s)),
        };
        if ok { Ok(()) } else { Err(AuthError::InsufficientScope { required: self.required.to_string() }) }
    }
}

impl<S> Layer<S> for RequireScope {
    type Service = RequireScopeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScopeService { inner, requirement: Arc::new(self.clone()) }
    }
}

/// The [`Service`] made by [`RequireScope`].
#[derive(Clone, Debug)]
pub struct RequireScopeService<S> {
    inner: S,
    // One reference count: routers clone the service for every request.
    requirement: Arc<RequireScope>,
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for RequireScopeService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
{
    type Response = Response<AuthBody<ResB>>;
    type Error = S::Error;
    type Future = RequireScopeFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let verdict = match req.extensions().get::<Principal>() {
            Some(principal) => self.requirement.check(principal),
            None => Err(AuthError::MissingToken),
        };
        match verdict {
            Ok(()) => RequireScopeFuture { state: ScopeState::Inner { fut: self.inner.call(req) } },
            Err(err) => {
                tracing::debug!(reason = err.reason(), required = %self.requirement.required, "scope check failed");
                crate::observe::scope_rejected(&err);
                // The bearer layer around renders it again with its realm and body style.
                let response = HandlerRejection::render(err, Dialect::of(req.headers()), false);
                RequireScopeFuture { state: ScopeState::Rejected { response: Some(response) } }
            }
        }
    }
}

pin_project! {
    /// Response future of [`RequireScopeService`].
    pub struct RequireScopeFuture<F, B> {
        #[pin]
        state: ScopeState<F, B>,
    }
}

pin_project! {
    #[project = ScopeStateProj]
    enum ScopeState<F, B> {
        Inner { #[pin] fut: F },
        Rejected { response: Option<Response<AuthBody<B>>> },
    }
}

impl<F, B, E> Future for RequireScopeFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<AuthBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            ScopeStateProj::Inner { fut } => fut.poll(cx).map_ok(|res| res.map(AuthBody::inner)),
            ScopeStateProj::Rejected { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
        }
    }
}

impl<F, B> fmt::Debug for RequireScopeFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RequireScopeFuture")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_dedupes() {
        let s = Scopes::from_space_delimited("  a b  a c ");
        assert_eq!(s.iter().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(s.to_string(), "a b c");
        assert!(Scopes::from_space_delimited("").is_empty());
        assert_eq!(Scopes::from_space_delimited("   ").len(), 0);
    }

    /// Items may themselves hold several scopes; each scope is kept once, in first-seen order,
    /// and a scope is only ever matched whole.
    #[test]
    fn extends_with_items_and_matches_whole_scopes() {
        let mut s = Scopes::from_items(["b a", "a", "c", ""]);
        s.extend(["d b", "e"]);
        assert_eq!(s.iter().collect::<Vec<_>>(), ["b", "a", "c", "d", "e"]);
        assert_eq!((s.len(), s.to_string()), (5, "b a c d e".to_owned()));
        assert!(s.contains("a") && s.contains("e"));
        for partial in ["", " ", "b a", "d b", "ab", "A"] {
            assert!(!s.contains(partial), "{partial:?}");
        }
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"["b","a","c","d","e"]"#);
        assert_eq!(format!("{s:?}"), r#"{"b", "a", "c", "d", "e"}"#);
        assert_eq!(Scopes::from_items(["x"]), Scopes::from_space_delimited(" x "));
    }
}

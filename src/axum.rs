//! axum integration (feature `axum`): [`Principal`] and [`Claims`] as extractors, and
//! [`AuthError`] and [`Principal`] as responses.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::body::{Dialect, HandlerRejection};
use crate::error::{AuthError, InvalidToken, JsonErrorShape};
use crate::principal::Principal;

/// Renders with default settings (no `realm`, [`ErrorBody::Empty`](crate::ErrorBody), plain
/// HTTP); when the response passes back out through a [`BearerLayer`](crate::BearerLayer), the
/// layer renders it again with its own realm and body style, and as a gRPC status for a gRPC
/// request, so a handler's `principal.require_scopes([..])?` answers exactly like
/// [`RequireScope`](crate::RequireScope) would.
impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        HandlerRejection::render::<axum::body::Body>(self, Dialect::Http, true).map(axum::body::Body::new)
    }
}

/// The principal as JSON (`application/json`): [`Principal::json`], written once per principal
/// and kept, so a route answering the principal of a cached token copies it out. The same text
/// as `Json(principal)`, without serializing it again on every request.
///
/// ```
/// use tower_bearer::Principal;
///
/// async fn me(principal: Principal) -> Principal {
///     principal
/// }
/// # let _: axum::routing::MethodRouter = axum::routing::get(me);
/// ```
impl IntoResponse for Principal {
    fn into_response(self) -> Response {
        let json = [(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"))];
        (json, self.json().to_owned()).into_response()
    }
}

/// Why the [`Principal`] or [`Claims`] extractor refused a request: the [`AuthError`], answered
/// with the settings of the [`BearerLayer`](crate::BearerLayer) the request came through (its
/// realm and body style; the layer renders it again on the way out), and a gRPC status for a
/// gRPC request.
#[derive(Debug)]
pub struct AuthRejection {
    error: AuthError,
    dialect: Dialect,
}

impl AuthRejection {
    fn new(parts: &Parts, error: AuthError) -> Self {
        AuthRejection { error, dialect: Dialect::of(&parts.headers) }
    }

    /// The error.
    pub fn error(&self) -> &AuthError {
        &self.error
    }

    /// The error, taken out.
    pub fn into_error(self) -> AuthError {
        self.error
    }
}

impl std::fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for AuthRejection {}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        // Not a scope decision: the layer renders it again without counting it.
        HandlerRejection::render::<axum::body::Body>(self.error, self.dialect, false)
            .map(axum::body::Body::new)
    }
}

/// The verified principal. Rejects with `401` when the route is not behind a
/// [`BearerLayer`](crate::BearerLayer) that let a token through.
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| AuthRejection::new(parts, AuthError::MissingToken))
    }
}

/// `Option<Principal>`: `None` for anonymous requests.
impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Principal>().cloned())
    }
}

/// Your own claims type, deserialized from the verified token.
///
/// ```
/// use tower_bearer::Claims;
///
/// #[derive(serde::Deserialize)]
/// struct Tenant { tenant_id: String }
///
/// async fn handler(Claims(tenant): Claims<Tenant>) -> String {
///     tenant.tenant_id
/// }
/// # let _: axum::routing::MethodRouter = axum::routing::get(handler);
/// ```
///
/// A token whose claims do not fit `T` is answered with `401 invalid_token`.
#[derive(Debug, Clone)]
pub struct Claims<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Claims<T> {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let principal = <Principal as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        principal.claims().map(Claims).map_err(|e| {
            tracing::debug!(
                reason = "unexpected_claims",
                error = %JsonErrorShape(&e),
                "claims do not fit the handler's type"
            );
            AuthRejection::new(parts, AuthError::InvalidToken(InvalidToken::UnexpectedClaims))
        })
    }
}

//! The RFC 6749 §5.2 error response of the token endpoint, shared by client authentication and
//! the grants.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An RFC 6749 §5.2 error response.
#[derive(Debug)]
pub(crate) struct TokenError {
    error: &'static str,
    description: &'static str,
    status: StatusCode,
    /// `invalid_client` after `client_secret_basic`: `401` with a `Basic` challenge.
    basic_challenge: bool,
}

impl TokenError {
    pub(crate) fn new(error: &'static str, description: &'static str) -> Self {
        TokenError { error, description, status: StatusCode::BAD_REQUEST, basic_challenge: false }
    }
    pub(crate) fn invalid_request(description: &'static str) -> Self {
        Self::new("invalid_request", description)
    }
    /// `invalid_client`: `401` + `WWW-Authenticate: Basic` when the client tried the
    /// `Authorization` header (§5.2 MUST), `400` otherwise (a `401` must carry a challenge).
    pub(crate) fn invalid_client(basic: bool) -> Self {
        TokenError {
            error: "invalid_client",
            description: "client authentication failed",
            status: if basic { StatusCode::UNAUTHORIZED } else { StatusCode::BAD_REQUEST },
            basic_challenge: basic,
        }
    }
    /// The server cannot issue now (`503`).
    pub(crate) fn temporarily_unavailable(description: &'static str) -> Self {
        TokenError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            ..Self::new("temporarily_unavailable", description)
        }
    }
    pub(crate) fn invalid_grant(description: &'static str) -> Self {
        Self::new("invalid_grant", description)
    }
    pub(crate) fn invalid_scope(description: &'static str) -> Self {
        Self::new("invalid_scope", description)
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.error, "error_description": self.description});
        let mut response = (self.status, no_store(), axum::Json(body)).into_response();
        if self.basic_challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"tower-bearer dev authorization server\""),
            );
        }
        response
    }
}

/// `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1).
pub(crate) fn no_store() -> [(header::HeaderName, &'static str); 2] {
    [(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")]
}

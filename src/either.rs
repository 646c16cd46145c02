//! One layer, both kinds of token: JWTs validated locally, everything else introspected.

use crate::introspect::Introspector;
use crate::jwt::JwtValidator;
use crate::principal::Principal;
use crate::validate::{RequestView, Validator, Verdict};

/// Which tokens [`JwtOrOpaque`] sends to introspection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TokenRouting {
    /// JWT-shaped tokens (three base64url segments whose first decodes to a JSON object) are
    /// validated locally; the rest are introspected. The default.
    #[default]
    ByShape,
    /// Every token is introspected (for issuers whose JWTs may be revoked early).
    IntrospectAll,
}

/// A [`Validator`] for issuers that hand out both JWT and opaque access tokens.
///
/// ```no_run
/// use tower_bearer::{BearerLayer, Introspector, JwtOrOpaque, JwtValidator};
///
/// let jwt = JwtValidator::builder()
///     .issuer("https://as.example")
///     .audience("https://api.example")
///     .jwks_url("https://as.example/jwks")
///     .build()?;
/// let opaque = Introspector::builder("https://as.example/introspect")
///     .client_secret_basic("api", "secret")
///     .build()?;
/// let layer = BearerLayer::new(JwtOrOpaque::new(jwt, opaque));
/// # Ok::<(), tower_bearer::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct JwtOrOpaque {
    jwt: JwtValidator,
    opaque: Introspector,
    routing: TokenRouting,
}

impl JwtOrOpaque {
    /// JWTs to `jwt`, the rest to `opaque`.
    pub fn new(jwt: JwtValidator, opaque: Introspector) -> Self {
        JwtOrOpaque { jwt, opaque, routing: TokenRouting::ByShape }
    }

    /// Changes which tokens are introspected.
    pub fn routing(mut self, routing: TokenRouting) -> Self {
        self.routing = routing;
        self
    }
}

/// Whether `token` looks like a JWS compact serialization. A cheap test on shape only: the
/// JWT validator does the real parsing.
pub(crate) fn is_jwt_shaped(token: &str) -> bool {
    let Some((header, _, _)) = crate::jwt::compact_parts(token) else {
        return false;
    };
    // `{` is 0x7B: the first base64url character of any JSON object header is `e`.
    // Four characters decode to three bytes: into a stack buffer, on every request.
    let mut head = [0u8; 3];
    header.starts_with('e')
        && crate::base64url::decode_into(header.get(..4).unwrap_or(header), &mut head)
            .is_some_and(|head| head.first() == Some(&b'{'))
}

impl Validator for JwtOrOpaque {
    fn validate(&self, token: &str, request: &RequestView<'_>) -> Verdict {
        match self.routing {
            TokenRouting::ByShape if is_jwt_shaped(token) => self.jwt.validate(token, request),
            _ => self.opaque.validate(token, request),
        }
    }

    /// Routing by shape, what the JWT validator remembers: every token it verified is
    /// JWT-shaped (three parts, and a header whose first byte is `{`, which it requires), so
    /// `validate` would send the same bytes there again. Opaque tokens are not remembered here
    /// (`Introspector` has no `remembered`): their cache hits come back `Ready` from `validate`.
    fn remembered(&self, token: &[u8]) -> Option<Principal> {
        match self.routing {
            TokenRouting::ByShape => self.jwt.remembered(token),
            TokenRouting::IntrospectAll => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert!(is_jwt_shaped("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"));
        assert!(!is_jwt_shaped("2YotnFZFEjr1zCsicMWpAA"));
        assert!(!is_jwt_shaped("a.b.c"));
        assert!(!is_jwt_shaped("eyJh.b"));
        assert!(!is_jwt_shaped("eyJhbGciOiJSUzI1NiJ9.a.b.c"));
    }
}

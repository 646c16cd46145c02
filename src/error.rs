//! What went wrong ([`AuthError`], for logs and metrics) and what the client is told about it
//! (an RFC 6750 challenge, rendered by [`AuthError::challenge`]).
//!
//! Every failure has a stable, machine-readable [`reason`](AuthError::reason) code that is safe
//! to log and to count. The client only ever sees the RFC 6750 error code and a short, fixed
//! description: never the token, never a key id, never a URL of ours.

use std::fmt;

use http::{HeaderValue, StatusCode};

/// Why a request was not let through.
///
/// The variants follow the RFC 6750 §3.1 error codes, plus [`AuthError::Unavailable`] for the
/// one failure that is ours rather than the client's and [`AuthError::Throttled`] for a client
/// that takes more than its share.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// The request carried no bearer credentials (no `Authorization` header, or another scheme).
    ///
    /// Answered with `401` and a challenge *without* an error code (RFC 6750 §3.1).
    MissingToken,
    /// The credentials were malformed: `400 invalid_request`.
    InvalidRequest(InvalidRequest),
    /// The token was present but is not acceptable: `401 invalid_token`.
    InvalidToken(InvalidToken),
    /// The token is valid but lacks a scope the route needs: `403 insufficient_scope`.
    InsufficientScope {
        /// The scopes the route asks for, space-separated, as sent in the `scope` auth-param.
        required: String,
    },
    /// The server could not validate the token (key set or introspection endpoint unreachable):
    /// `503`. This is not the client's fault and must not be reported as `invalid_token`.
    Unavailable(Unavailable),
    /// The DPoP proof (RFC 9449 §4.3) is missing a check: `401`, `DPoP error="invalid_dpop_proof"`.
    InvalidDpopProof(InvalidDpopProof),
    /// The DPoP proof lacks the server nonce or has a stale one (RFC 9449 §8): `401`,
    /// `DPoP error="use_dpop_nonce"` with a fresh `DPoP-Nonce` header.
    UseDpopNonce,
    /// The client took more than its share of something every client needs: `429` with
    /// `Retry-After`, no challenge (its credentials are not in question).
    Throttled(Throttled),
}

/// What a client took more than its share of (`429`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Throttled {
    /// Its DPoP key already holds its share of the replay store
    /// ([`InMemoryReplayStore::per_key`](crate::dpop::InMemoryReplayStore::per_key)): proofs are
    /// being minted faster than they expire.
    DpopProofs,
}

/// Why a DPoP proof was refused (RFC 9449 §4.3; `401 invalid_dpop_proof`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidDpopProof {
    /// More than one `DPoP` header (RFC 9449 §4.3's first check, so `invalid_dpop_proof`).
    Multiple,
    /// Not one compact JWS (segments, base64url, JSON objects), or too large.
    Malformed,
    /// The `typ` header is not `dpop+jwt`.
    WrongType,
    /// The `alg` is not in the allowlist (this includes `none` and every symmetric algorithm).
    AlgorithmNotAllowed,
    /// The header has a `crit` member.
    UnsupportedCritical,
    /// No `jwk` header, or one that is not a usable public key.
    MissingKey,
    /// The `jwk` holds private key members (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`, `k`).
    PrivateKey,
    /// The `jwk` does not fit the `alg` (key type, curve, size).
    KeyAlgorithmMismatch,
    /// The signature does not verify (DER-encoded ECDSA signatures included).
    BadSignature,
    /// A claim is missing or has the wrong type (`jti`, `htm`, `htu`, `iat`, `ath`).
    InvalidClaim,
    /// The `jti` is longer than allowed.
    JtiTooLong,
    /// `htm` is not the request method.
    WrongMethod,
    /// `htu` is not the request URI (scheme, host, port and path; query and fragment ignored).
    WrongUri,
    /// `iat` is too far in the past.
    Stale,
    /// `iat` is too far in the future.
    IssuedInFuture,
    /// `ath` is missing or is not the hash of the access token sent.
    WrongTokenHash,
    /// This proof (key and `jti`) was seen before.
    Replayed,
}

/// Why the credentials were malformed (`400 invalid_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidRequest {
    /// More than one `Authorization` header was sent.
    MultipleAuthorizationHeaders,
    /// The `Authorization` header is larger than the configured bound.
    HeaderTooLarge,
    /// The header holds bytes outside visible ASCII.
    NonAsciiHeader,
    /// `Bearer` with nothing after it.
    EmptyToken,
    /// The token is not a syntactically valid RFC 6750 `b64token`.
    MalformedToken,
    /// The token was sent in more than one place (RFC 6750 §2 allows one method per request).
    MultipleTokenSources,
    /// The `DPoP` scheme without a `DPoP` proof header.
    MissingDpopProof,
    /// A `Bearer` token together with a `DPoP` proof header.
    BearerWithDpopProof,
    /// The trusted client-certificate header was sent more than once, or together with a
    /// certificate from the TLS connection.
    MultipleClientCertificates,
    /// The trusted client-certificate header cannot be read as a certificate.
    MalformedClientCertificate,
}

/// Why the token was refused (`401 invalid_token`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidToken {
    /// Not a well-formed JWS compact serialization (segments, base64url, JSON).
    Malformed,
    /// Larger than the configured bound.
    TooLarge,
    /// The `alg` header is not in the allowlist (this includes `none`).
    AlgorithmNotAllowed,
    /// The `crit` header names an extension this crate does not understand.
    UnsupportedCritical,
    /// The `typ` header is not one accepted for access tokens.
    WrongType,
    /// No key in the issuer's key set has the token's `kid`.
    UnknownKey,
    /// The token has no `kid` and several keys could have signed it.
    AmbiguousKey,
    /// The selected key does not fit the token's `alg` (key type, curve or pinned `alg`).
    KeyAlgorithmMismatch,
    /// The signature does not verify.
    BadSignature,
    /// The `exp` claim is missing.
    MissingExpiry,
    /// The token has expired.
    Expired,
    /// The `nbf` claim is in the future.
    NotYetValid,
    /// The `iat` claim is in the future.
    IssuedInFuture,
    /// A claim has the wrong JSON type or an impossible value (e.g. `exp` as a string, NaN).
    InvalidClaim,
    /// The `iss` claim is missing or is not the configured issuer.
    WrongIssuer,
    /// The `aud` claim is missing or does not contain the configured audience.
    WrongAudience,
    /// The introspection endpoint says the token is not active.
    Inactive,
    /// The verified claims could not be read as the type the application asked for.
    UnexpectedClaims,
    /// The token is bound to a DPoP key (`cnf.jkt`) but was sent as a bearer token.
    BoundTokenAsBearer,
    /// The token is bound to a client certificate (`cnf["x5t#S256"]`) and the request came
    /// without one.
    MissingClientCertificate,
    /// The token is bound to another client certificate than the request's.
    ClientCertificateMismatch,
    /// The token's `cnf` is one this crate cannot check.
    UnknownConfirmation,
    /// The token, its subject or its client is on the deny-list (revoked before it expires).
    Revoked,
    /// The DPoP proof was made with another key than the one the token is bound to.
    ProofKeyMismatch,
    /// The token was sent with the `DPoP` scheme but is not bound to a DPoP key.
    UnboundTokenAsDpop,
}

/// Why the server could not validate (`503`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unavailable {
    /// No key set has ever been fetched successfully.
    KeySet,
    /// The introspection endpoint did not give a usable answer.
    Introspection,
    /// Issuer metadata has not been discovered yet.
    Discovery,
    /// Too many introspection calls are under way or queued: the request was refused at once
    /// rather than queued without bound.
    IntrospectionBusy,
    /// The DPoP replay store is full of live entries: refusing is safer than forgetting one.
    ReplayStoreFull,
    /// The shared DPoP replay store did not answer in time and the policy is strict: a proof
    /// that cannot be recorded is not accepted.
    ReplayStore,
    /// The revocation deny-list has not been confirmed current for longer than its bound.
    Revocations,
}

impl AuthError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::MissingToken
            | AuthError::InvalidToken(_)
            | AuthError::InvalidDpopProof(_)
            | AuthError::UseDpopNonce => StatusCode::UNAUTHORIZED,
            AuthError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            AuthError::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AuthError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The gRPC status code a gRPC client is answered with: `16` (`UNAUTHENTICATED`) for `400` and
    /// `401`, `7` (`PERMISSION_DENIED`) for `403`, `8` (`RESOURCE_EXHAUSTED`) for `429`, `14`
    /// (`UNAVAILABLE`) for `503`.
    ///
    /// ```
    /// use tower_bearer::{AuthError, InvalidRequest};
    ///
    /// assert_eq!(AuthError::InvalidRequest(InvalidRequest::EmptyToken).grpc_status(), 16);
    /// assert_eq!(AuthError::InsufficientScope { required: "a".into() }.grpc_status(), 7);
    /// ```
    pub fn grpc_status(&self) -> i32 {
        match self {
            AuthError::MissingToken
            | AuthError::InvalidRequest(_)
            | AuthError::InvalidToken(_)
            | AuthError::InvalidDpopProof(_)
            | AuthError::UseDpopNonce => 16,
            AuthError::InsufficientScope { .. } => 7,
            AuthError::Throttled(_) => 8,
            AuthError::Unavailable(_) => 14,
        }
    }

    /// The RFC 6750 `error` code, if this error has one.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            AuthError::MissingToken | AuthError::Unavailable(_) | AuthError::Throttled(_) => None,
            AuthError::InvalidRequest(_) => Some("invalid_request"),
            AuthError::InvalidToken(_) => Some("invalid_token"),
            AuthError::InsufficientScope { .. } => Some("insufficient_scope"),
            AuthError::InvalidDpopProof(_) => Some("invalid_dpop_proof"),
            AuthError::UseDpopNonce => Some("use_dpop_nonce"),
        }
    }

    /// A stable reason code, safe to log and to use as a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "missing_token",
            AuthError::InsufficientScope { .. } => "insufficient_scope",
            AuthError::InvalidRequest(r) => match r {
                InvalidRequest::MultipleAuthorizationHeaders => "multiple_authorization_headers",
                InvalidRequest::HeaderTooLarge => "header_too_large",
                InvalidRequest::NonAsciiHeader => "non_ascii_header",
                InvalidRequest::EmptyToken => "empty_token",
                InvalidRequest::MalformedToken => "malformed_credentials",
                InvalidRequest::MultipleTokenSources => "multiple_token_sources",
                InvalidRequest::MissingDpopProof => "missing_dpop_proof",
                InvalidRequest::BearerWithDpopProof => "bearer_with_dpop_proof",
                InvalidRequest::MultipleClientCertificates => "multiple_client_certificates",
                InvalidRequest::MalformedClientCertificate => "malformed_client_certificate",
            },
            AuthError::InvalidToken(r) => match r {
                InvalidToken::Malformed => "malformed_token",
                InvalidToken::TooLarge => "token_too_large",
                InvalidToken::AlgorithmNotAllowed => "algorithm_not_allowed",
                InvalidToken::UnsupportedCritical => "unsupported_crit",
                InvalidToken::WrongType => "wrong_typ",
                InvalidToken::UnknownKey => "unknown_kid",
                InvalidToken::AmbiguousKey => "ambiguous_key",
                InvalidToken::KeyAlgorithmMismatch => "key_algorithm_mismatch",
                InvalidToken::BadSignature => "bad_signature",
                InvalidToken::MissingExpiry => "missing_exp",
                InvalidToken::Expired => "expired",
                InvalidToken::NotYetValid => "not_yet_valid",
                InvalidToken::IssuedInFuture => "issued_in_future",
                InvalidToken::InvalidClaim => "invalid_claim",
                InvalidToken::WrongIssuer => "wrong_issuer",
                InvalidToken::WrongAudience => "wrong_audience",
                InvalidToken::Inactive => "inactive",
                InvalidToken::UnexpectedClaims => "unexpected_claims",
                InvalidToken::BoundTokenAsBearer => "bound_token_as_bearer",
                InvalidToken::MissingClientCertificate => "missing_client_certificate",
                InvalidToken::ClientCertificateMismatch => "client_certificate_mismatch",
                InvalidToken::UnknownConfirmation => "unknown_cnf",
                InvalidToken::ProofKeyMismatch => "dpop_key_mismatch",
                InvalidToken::UnboundTokenAsDpop => "unbound_token_as_dpop",
                InvalidToken::Revoked => "revoked",
            },
            AuthError::Unavailable(r) => match r {
                Unavailable::KeySet => "key_set_unavailable",
                Unavailable::Introspection => "introspection_unavailable",
                Unavailable::Discovery => "discovery_unavailable",
                Unavailable::IntrospectionBusy => "introspection_busy",
                Unavailable::ReplayStoreFull => "dpop_replay_store_full",
                Unavailable::ReplayStore => "dpop_replay_store_unavailable",
                Unavailable::Revocations => "revocations_unavailable",
            },
            AuthError::Throttled(Throttled::DpopProofs) => "dpop_key_over_budget",
            AuthError::UseDpopNonce => "dpop_nonce_required",
            AuthError::InvalidDpopProof(r) => match r {
                // The name it had as an `invalid_request`: dashboards keep their series.
                InvalidDpopProof::Multiple => "multiple_dpop_proofs",
                InvalidDpopProof::Malformed => "dpop_malformed",
                InvalidDpopProof::WrongType => "dpop_wrong_typ",
                InvalidDpopProof::AlgorithmNotAllowed => "dpop_algorithm_not_allowed",
                InvalidDpopProof::UnsupportedCritical => "dpop_unsupported_crit",
                InvalidDpopProof::MissingKey => "dpop_missing_jwk",
                InvalidDpopProof::PrivateKey => "dpop_private_jwk",
                InvalidDpopProof::KeyAlgorithmMismatch => "dpop_key_algorithm_mismatch",
                InvalidDpopProof::BadSignature => "dpop_bad_signature",
                InvalidDpopProof::InvalidClaim => "dpop_invalid_claim",
                InvalidDpopProof::JtiTooLong => "dpop_jti_too_long",
                InvalidDpopProof::WrongMethod => "dpop_wrong_htm",
                InvalidDpopProof::WrongUri => "dpop_wrong_htu",
                InvalidDpopProof::Stale => "dpop_stale",
                InvalidDpopProof::IssuedInFuture => "dpop_issued_in_future",
                InvalidDpopProof::WrongTokenHash => "dpop_wrong_ath",
                InvalidDpopProof::Replayed => "dpop_replayed",
            },
        }
    }

    /// The short, fixed `error_description` sent to the client.
    ///
    /// These strings are constants: nothing from the request or from our configuration ends up
    /// in them, so they can never leak internals or break the header's quoting.
    pub fn description(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "no bearer token",
            AuthError::InsufficientScope { .. } => "the token lacks a required scope",
            AuthError::InvalidRequest(r) => match r {
                InvalidRequest::MultipleAuthorizationHeaders => "more than one Authorization header",
                InvalidRequest::HeaderTooLarge => "the Authorization header is too large",
                InvalidRequest::NonAsciiHeader => "the Authorization header is not visible ASCII",
                InvalidRequest::EmptyToken => "the bearer token is empty",
                InvalidRequest::MalformedToken => "the bearer token is not a valid b64token",
                InvalidRequest::MultipleTokenSources => "the token was sent in more than one place",
                InvalidRequest::MissingDpopProof => "the DPoP scheme needs a DPoP proof",
                InvalidRequest::BearerWithDpopProof => "a bearer token cannot come with a DPoP proof",
                InvalidRequest::MultipleClientCertificates => "more than one client certificate",
                InvalidRequest::MalformedClientCertificate => "the forwarded client certificate is malformed",
            },
            AuthError::InvalidToken(r) => match r {
                InvalidToken::Expired => "the access token expired",
                InvalidToken::NotYetValid => "the access token is not valid yet",
                InvalidToken::Inactive => "the access token is not active",
                InvalidToken::WrongAudience => "the access token is not meant for this resource",
                InvalidToken::WrongIssuer => "the access token comes from an untrusted issuer",
                InvalidToken::Malformed | InvalidToken::TooLarge => "the access token is malformed",
                InvalidToken::BoundTokenAsBearer
                | InvalidToken::MissingClientCertificate
                | InvalidToken::ClientCertificateMismatch
                | InvalidToken::UnknownConfirmation
                | InvalidToken::ProofKeyMismatch => "the access token is bound to another sender",
                InvalidToken::UnboundTokenAsDpop => "the access token is not a DPoP-bound token",
                InvalidToken::Revoked => "the access token was revoked",
                _ => "the access token is invalid",
            },
            AuthError::Unavailable(_) => "authorization is temporarily unavailable",
            AuthError::Throttled(Throttled::DpopProofs) => "too many DPoP proofs from this key, retry later",
            AuthError::InvalidDpopProof(InvalidDpopProof::Replayed) => "the DPoP proof was used before",
            AuthError::InvalidDpopProof(InvalidDpopProof::Multiple) => "more than one DPoP header",
            AuthError::InvalidDpopProof(_) => "the DPoP proof is invalid",
            AuthError::UseDpopNonce => "the DPoP proof needs the server nonce",
        }
    }

    /// Whether this failure is the server's (a `503`), not the client's.
    pub fn is_server_error(&self) -> bool {
        matches!(self, AuthError::Unavailable(_))
    }

    /// Whether the request is answered without a challenge: the credentials are not what went
    /// wrong (the server could not judge them, or the client must slow down), and a `Retry-After`
    /// says when to try again.
    pub(crate) fn is_try_later(&self) -> bool {
        matches!(self, AuthError::Unavailable(_) | AuthError::Throttled(_))
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.description(), self.reason())
    }
}

impl std::error::Error for AuthError {}

impl From<InvalidToken> for AuthError {
    fn from(r: InvalidToken) -> Self {
        AuthError::InvalidToken(r)
    }
}

impl From<InvalidRequest> for AuthError {
    fn from(r: InvalidRequest) -> Self {
        AuthError::InvalidRequest(r)
    }
}

impl From<InvalidDpopProof> for AuthError {
    fn from(r: InvalidDpopProof) -> Self {
        AuthError::InvalidDpopProof(r)
    }
}

impl From<Throttled> for AuthError {
    fn from(r: Throttled) -> Self {
        AuthError::Throttled(r)
    }
}

impl From<Unavailable> for AuthError {
    fn from(r: Unavailable) -> Self {
        AuthError::Unavailable(r)
    }
}

/// Settings that every challenge carries: the `realm` and, optionally, the RFC 9728
/// `resource_metadata` URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChallengeParams {
    pub(crate) realm: Option<String>,
    pub(crate) resource_metadata: Option<String>,
    /// The DPoP algorithms accepted (space-separated), when the layer accepts DPoP.
    pub(crate) dpop_algs: Option<String>,
    /// Only DPoP is accepted: no `Bearer` challenge.
    pub(crate) dpop_only: bool,
    /// The request used the `DPoP` scheme: errors found after the layer (scopes, handlers) are
    /// answered under it.
    pub(crate) used_dpop: bool,
}

/// The authentication scheme of a request's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Bearer,
    Dpop,
}

impl ChallengeParams {
    /// No realm, no resource metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the `realm` auth-param.
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// Sets the RFC 9728 `resource_metadata` auth-param.
    pub fn resource_metadata(mut self, url: impl Into<String>) -> Self {
        self.resource_metadata = Some(url.into());
        self
    }
}

impl AuthError {
    /// Renders the `WWW-Authenticate` header value for this error, or `None` for errors that
    /// carry no challenge (`503`).
    ///
    /// ```
    /// use tower_bearer::{AuthError, ChallengeParams, InvalidToken};
    ///
    /// let err = AuthError::InvalidToken(InvalidToken::Expired);
    /// let header = err.challenge(&ChallengeParams::new().realm("api")).unwrap();
    /// assert_eq!(
    ///     header,
    ///     r#"Bearer realm="api", error="invalid_token", error_description="the access token expired""#
    /// );
    /// ```
    pub fn challenge(&self, params: &ChallengeParams) -> Option<HeaderValue> {
        self.challenge_for(params, if params.used_dpop { Scheme::Dpop } else { Scheme::Bearer })
    }

    /// The challenge for credentials sent under `used`: an error is answered under the scheme
    /// the client used (DPoP proof errors always under `DPoP`); no credentials get a challenge
    /// for each scheme the server accepts (RFC 9449 §7.1).
    pub(crate) fn challenge_for(&self, params: &ChallengeParams, used: Scheme) -> Option<HeaderValue> {
        if self.is_try_later() {
            return None;
        }
        let mut out = String::with_capacity(128);
        let dpop_error = matches!(self, AuthError::InvalidDpopProof(_) | AuthError::UseDpopNonce);
        if matches!(self, AuthError::MissingToken) {
            if !params.dpop_only {
                self.push_challenge(&mut out, params, Scheme::Bearer);
            }
            if params.dpop_algs.is_some() {
                if !out.is_empty() {
                    out.push_str(", ");
                }
                self.push_challenge(&mut out, params, Scheme::Dpop);
            }
        } else if dpop_error || used == Scheme::Dpop {
            self.push_challenge(&mut out, params, Scheme::Dpop);
        } else {
            self.push_challenge(&mut out, params, Scheme::Bearer);
            // A DPoP-bound token sent as `Bearer`: the error is the token's, under the scheme
            // used, and a bare `DPoP` challenge says how to send it (RFC 9449 §7.1).
            if matches!(self, AuthError::InvalidToken(InvalidToken::BoundTokenAsBearer))
                && params.dpop_algs.is_some()
            {
                out.push_str(", ");
                AuthError::MissingToken.push_challenge(&mut out, params, Scheme::Dpop);
            }
        }
        // Everything pushed is visible ASCII (non-ASCII was dropped by `push_quoted`).
        HeaderValue::from_str(&out).ok()
    }

    fn push_challenge(&self, out: &mut String, params: &ChallengeParams, scheme: Scheme) {
        out.push_str(match scheme {
            Scheme::Bearer => "Bearer",
            Scheme::Dpop => "DPoP",
        });
        let mut first = true;
        let mut param = |name: &str, value: &str| {
            out.push_str(if first { " " } else { ", " });
            first = false;
            out.push_str(name);
            out.push_str("=\"");
            push_quoted(out, value);
            out.push('"');
        };
        if let Some(realm) = &params.realm {
            param("realm", realm);
        }
        if let Some(code) = self.error_code() {
            param("error", code);
            param("error_description", self.description());
        }
        if let AuthError::InsufficientScope { required } = self {
            param("scope", required);
        }
        if let Some(url) = &params.resource_metadata {
            param("resource_metadata", url);
        }
        if scheme == Scheme::Dpop
            && let Some(algs) = &params.dpop_algs
        {
            param("algs", algs);
        }
    }
}

/// Appends `value` as the inside of an RFC 9110 quoted-string: `"` and `\` are escaped, and
/// anything that is not visible ASCII or a space is dropped, so configuration can never break
/// the header.
fn push_quoted(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {}
        }
    }
}

/// Where and how a JSON text failed to parse, without serde_json's message: that message quotes
/// the offending value (`invalid type: string "alice@example.com"`), which for claims or an
/// introspection answer is personal data, and nothing of a token may reach a log line.
pub(crate) struct JsonErrorShape<'a>(pub(crate) &'a serde_json::Error);

impl fmt::Display for JsonErrorShape<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No position: made by this crate outside any parse (`Error::custom`), a message of ours.
        if self.0.line() == 0 {
            return fmt::Display::fmt(self.0, f);
        }
        let kind = match self.0.classify() {
            serde_json::error::Category::Io => "an I/O error",
            serde_json::error::Category::Syntax => "a syntax error",
            serde_json::error::Category::Data => "a value of the wrong type or a missing field",
            serde_json::error::Category::Eof => "an early end",
        };
        write!(f, "{kind} at line {}, column {}", self.0.line(), self.0.column())
    }
}

#[cfg(test)]
mod tests {
    /// A value that does not fit is not quoted: it may be personal data.
    #[test]
    fn a_json_error_says_where_not_what() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Claims {
            email: u32,
        }
        let e = serde_json::from_str::<Claims>(r#"{"email":"alice@example.com"}"#).unwrap_err();
        assert!(e.to_string().contains("alice@example.com"), "serde_json quotes it: {e}");
        let shown = super::JsonErrorShape(&e).to_string();
        assert_eq!(shown, "a value of the wrong type or a missing field at line 1, column 28");
        let e = serde_json::from_str::<Claims>("{\"email\": 1").unwrap_err();
        assert_eq!(super::JsonErrorShape(&e).to_string(), "an early end at line 1, column 11");
        let ours: serde_json::Error = serde::de::Error::custom("not a JSON object");
        assert_eq!(super::JsonErrorShape(&ours).to_string(), "not a JSON object");
    }

    use super::*;

    #[test]
    fn missing_token_has_no_error_code() {
        let h = AuthError::MissingToken.challenge(&ChallengeParams::new().realm("r"));
        assert_eq!(h.unwrap(), r#"Bearer realm="r""#);
        let bare = AuthError::MissingToken.challenge(&ChallengeParams::new());
        assert_eq!(bare.unwrap(), "Bearer");
    }

    #[test]
    fn quotes_and_control_bytes_are_neutralised() {
        let params = ChallengeParams::new().realm("a\"b\\c\u{7}d\u{e9}");
        let h = AuthError::MissingToken.challenge(&params).unwrap();
        assert_eq!(h, r#"Bearer realm="a\"b\\cd""#);
    }

    #[test]
    fn insufficient_scope_names_the_scope() {
        let err = AuthError::InsufficientScope { required: "items:write".into() };
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
        let h = err.challenge(&ChallengeParams::new()).unwrap();
        assert!(h.to_str().unwrap().contains(r#"scope="items:write""#));
    }

    /// A DPoP-bound token sent as `Bearer`: its error under `Bearer`, then a bare `DPoP`
    /// challenge naming the algorithms, only where DPoP is on; any other token error gets one.
    #[test]
    fn a_bound_token_sent_as_bearer_is_told_how_to_send_it() {
        let bound = AuthError::InvalidToken(InvalidToken::BoundTokenAsBearer);
        let off = ChallengeParams::new().realm("api");
        let text = |err: &AuthError, params| err.challenge(params).unwrap().to_str().unwrap().to_owned();
        assert_eq!(
            text(&bound, &off),
            text(&AuthError::InvalidToken(InvalidToken::Expired), &off)
                .replace("the access token expired", "the access token is bound to another sender")
        );
        let mut on = off.clone();
        on.dpop_algs = Some("ES256 EdDSA".into());
        let all = crate::challenge::Challenge::parse_all(&text(&bound, &on)).unwrap();
        assert_eq!(all.len(), 2, "{all:?}");
        assert!(all[0].is_scheme("Bearer") && all[0].param("error") == Some("invalid_token"));
        assert!(all[1].is_scheme("DPoP") && all[1].param("error").is_none());
        assert_eq!(all[1].dpop_algs().collect::<Vec<_>>(), ["ES256", "EdDSA"]);
        let expired = AuthError::InvalidToken(InvalidToken::Expired);
        assert_eq!(crate::challenge::Challenge::parse_all(&text(&expired, &on)).unwrap().len(), 1);
    }

    #[test]
    fn unavailable_is_a_server_error_without_challenge() {
        let err = AuthError::Unavailable(Unavailable::KeySet);
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(err.challenge(&ChallengeParams::new()).is_none());
    }

    #[test]
    fn throttled_is_the_clients_doing_without_challenge() {
        let err = AuthError::Throttled(Throttled::DpopProofs);
        assert_eq!(err.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(!err.is_server_error());
        assert_eq!(err.error_code(), None);
        assert_eq!(err.grpc_status(), 8);
        let mut params = ChallengeParams::new().realm("api");
        params.used_dpop = true;
        assert!(err.challenge(&params).is_none());
    }
}

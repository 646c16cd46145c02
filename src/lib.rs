//! # tower-bearer
//!
//! An OAuth 2.0 **resource server** as a tower [`Layer`](tower_layer::Layer): put
//! [`BearerLayer`] in front of any tower, axum or hyper service and every request must carry a
//! valid `Authorization: Bearer <token>` (RFC 6750). Failures are answered with the standard
//! challenges, so clients know whether to authenticate, refresh or ask for more scope:
//!
//! | what happened | status | `WWW-Authenticate` |
//! |---|---|---|
//! | no token | `401` | `Bearer realm="…"` (no error code) |
//! | malformed header or token syntax | `400` | `Bearer error="invalid_request", …` |
//! | bad, expired, foreign token | `401` | `Bearer error="invalid_token", error_description="…"` |
//! | token lacks a route's scope | `403` | `Bearer error="insufficient_scope", scope="…"` |
//! | keys cannot be fetched at all | `503` | none: the failure is ours, not the client's |
//! | a DPoP key holding its share of the replay store | `429` + `Retry-After` | none: the client must slow down |
//!
//! gRPC requests (`content-type: application/grpc…`, e.g. from tonic) get the same decisions as
//! trailers-only gRPC statuses: `UNAUTHENTICATED` for `400`/`401`, `PERMISSION_DENIED` for `403`,
//! `RESOURCE_EXHAUSTED` for `429`, `UNAVAILABLE` for `503` ([`AuthError::grpc_status`]), with the
//! challenge kept.
//!
//! JWT access tokens are verified against a cached, self-refreshing JWKS ([`KeySet`]) following
//! RFC 8725: an explicit algorithm allowlist, keys only from the configured key set, `crit`
//! honoured, sizes bounded.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use tower_bearer::{BearerLayer, JwtValidator, Principal, RequireScope};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let validator = JwtValidator::builder()
//!     .issuer("https://issuer.example")
//!     .audience("https://api.example")
//!     .jwks_url("https://issuer.example/.well-known/jwks.json")
//!     .build()?;
//!
//! let app = Router::new()
//!     .route("/items", get(|| async { "items" }))
//!     .route_layer(RequireScope::all(["items:read"]))
//!     .route("/me", get(|p: Principal| async move { format!("hi {:?}", p.subject()) }))
//!     .layer(BearerLayer::new(validator).realm("api"));
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! ## Metrics
//!
//! With the `metrics` feature, counters go through the [`metrics`](https://docs.rs/metrics)
//! facade (install any recorder). Labels are fixed reason codes, never tokens or URLs:
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `tower_bearer_decisions_total` | counter | the bearer layer's decision: `outcome` (`authenticated`, `anonymous`, `rejected`, `throttled`, `unavailable`), `reason` ([`AuthError::reason`]) |
//! | `tower_bearer_scope_rejections_total` | counter | `reason` (`insufficient_scope`) |
//! | `tower_bearer_token_cache_total` | counter | `result` (`hit`, `miss`) |
//! | `tower_bearer_key_set_fetches_total` | counter | `result` (`ok`, `error`) |
//! | `tower_bearer_introspection_calls_total` | counter | `result` (`active`, `inactive`, `error`) |
//! | `tower_bearer_introspection_duration_seconds` | histogram | — |
//! | `tower_bearer_fleet_total` | counter | `event` (`error`, `timeout`, `circuit_open`, `replay_local_only`), feature `redis` |
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod base64url;
mod binding;
mod body;
mod certificate;
pub mod challenge;
mod config;
pub mod discovery;
pub mod dpop;
mod either;
mod error;
pub mod extract;
pub mod form;
pub mod introspect;
mod issuers;
mod jwt;
mod layer;
mod mac;
mod observe;
pub mod outbound;
mod principal;
pub mod resource_metadata;
mod revocation;
pub mod scope;
mod throttle;
mod time;
mod validate;

#[cfg(feature = "axum")]
mod axum;
#[cfg(feature = "dev")]
pub mod dev;
#[cfg(feature = "redis")]
pub mod fleet;

pub use body::{AuthBody, ErrorBody, RenderFn};
pub use certificate::{CertificateHeader, ClientCertificate};
pub use config::ConfigError;
pub use discovery::{Discovery, DiscoveryBuilder, DiscoveryError, IssuerMetadata};
pub use either::{JwtOrOpaque, TokenRouting};
pub use error::{
    AuthError, ChallengeParams, InvalidDpopProof, InvalidRequest, InvalidToken, Throttled, Unavailable,
};
pub use extract::{TokenSource, TokenSources};
pub use introspect::{
    ClientAuth, IntrospectionError, IntrospectionStats, Introspector, IntrospectorBuilder, SharedAnswer,
    SharedLookup, SharedTier,
};
pub use issuers::MultiIssuer;
pub use jwt::jwks::{FetchError, KeySet, KeySetBuilder, KeySetStats, defaults as key_set_defaults};
pub use jwt::policy::TypPolicy;
pub use jwt::{JwtValidator, JwtValidatorBuilder, TokenCacheStats, defaults as jwt_defaults};
pub use layer::{BearerLayer, BearerService, ResponseFuture};
pub use outbound::{HttpClient, HttpClientBuilder, TransportError};
pub use principal::Confirmation;
pub use principal::{Principal, PrincipalBuilder, Scopes, TokenKind};
pub use resource_metadata::{MetadataService, ProtectedResource, ProtectedResourceBuilder};
pub use revocation::Revocations;
pub use scope::RequireScope;
pub use time::Clock;
pub use validate::{RequestView, ValidationFuture, Validator, Verdict};

#[cfg(feature = "axum")]
pub use crate::axum::{AuthRejection, Claims};

/// Re-exported so that users name algorithms without depending on jsonwebtoken themselves.
pub use jsonwebtoken::Algorithm;

//! Opaque tokens: an RFC 7662 introspection client with a bounded, single-flight cache keyed by
//! SHA-256 of the token (never the token itself).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use http::header::ACCEPT;
use moka::Expiry;
use moka::future::Cache;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::{ConfigError, http_url};
use crate::discovery::Discovery;
use crate::error::{AuthError, InvalidToken, Unavailable};
use crate::jwt::jwks::{FetchError, http_client, read_bounded};
use crate::jwt::policy::{AudiencePolicy, ClaimPolicy, OneOrMany, RegisteredClaims};
use crate::validate::{Clock, Principal, PrincipalData, TimeWindow, TokenKind, Validator, Verdict};

/// Defaults of [`IntrospectorBuilder`].
pub mod defaults {
    use std::time::Duration;
    /// Longest an active result is reused (also bounded by the token's `exp`).
    pub const MAX_TTL: Duration = Duration::from_secs(60);
    /// How long an inactive result is reused.
    pub const INACTIVE_TTL: Duration = Duration::from_secs(5);
    /// Most cached results.
    pub const MAX_ENTRIES: u64 = 100_000;
    /// Timeout of one introspection call.
    pub const TIMEOUT: Duration = Duration::from_secs(5);
    /// Largest response body accepted.
    pub const MAX_BODY_BYTES: usize = 64 * 1024;
}

/// How the resource server authenticates to the introspection endpoint (RFC 7662 §2.1).
#[derive(Clone)]
#[non_exhaustive]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (`client_secret_basic`, the default).
    Basic {
        /// Client id.
        client_id: String,
        /// Client secret.
        client_secret: String,
    },
    /// Client id and secret in the form body (`client_secret_post`).
    Post {
        /// Client id.
        client_id: String,
        /// Client secret.
        client_secret: String,
    },
    /// A bearer token of the resource server's own.
    Bearer(String),
}

impl fmt::Debug for ClientAuth {
    // Secrets stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAuth::Basic { client_id, .. } => write!(f, "Basic({client_id})"),
            ClientAuth::Post { client_id, .. } => write!(f, "Post({client_id})"),
            ClientAuth::Bearer(_) => f.write_str("Bearer(..)"),
        }
    }
}

/// Why an introspection call failed. Logged; the client gets a `503`.
#[derive(Debug)]
#[non_exhaustive]
pub enum IntrospectionError {
    /// The call itself failed (connect, timeout, status, size, body).
    Fetch(FetchError),
    /// The body is not an RFC 7662 response (e.g. `active` missing).
    Invalid(serde_json::Error),
}

impl fmt::Display for IntrospectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntrospectionError::Fetch(e) => write!(f, "introspection call failed: {e}"),
            IntrospectionError::Invalid(e) => write!(f, "not an introspection response: {e}"),
        }
    }
}

impl std::error::Error for IntrospectionError {}

/// Validates opaque tokens through an RFC 7662 introspection endpoint.
///
/// Results are cached: active ones until the token's `exp` and at most
/// [`max_ttl`](IntrospectorBuilder::max_ttl), inactive ones for
/// [`inactive_ttl`](IntrospectorBuilder::inactive_ttl). Concurrent requests with the same
/// uncached token share one call. Failures are not cached and answer `503`.
///
/// ```no_run
/// use tower_bearer::{BearerLayer, Introspector};
///
/// let introspector = Introspector::builder("https://as.example/introspect")
///     .client_secret_basic("my-api", "s3cret")
///     .audience("https://api.example")
///     .build()?;
/// let layer = BearerLayer::new(introspector);
/// # Ok::<(), tower_bearer::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Introspector {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    client: reqwest::Client,
    auth: ClientAuth,
    token_type_hint: Option<String>,
    policy: ClaimPolicy,
    clock: Clock,
    cache: Cache<[u8; 32], Entry>,
    max_ttl: Duration,
    inactive_ttl: Duration,
    max_body_bytes: usize,
    calls: AtomicU64,
}

/// A cached answer, with the time (of our clock) after which it must not be used.
#[derive(Clone)]
struct Entry {
    principal: Result<Principal, InvalidToken>,
    stale_at: SystemTime,
    /// For moka's own eviction (memory), in its monotonic time.
    ttl: Duration,
}

struct EntryExpiry;

impl Expiry<[u8; 32], Entry> for EntryExpiry {
    fn expire_after_create(&self, _: &[u8; 32], entry: &Entry, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// Where the introspection endpoint is: given, or found in the issuer's metadata.
#[derive(Debug)]
enum Endpoint {
    Fixed(reqwest::Url),
    Discovered(Discovery),
}

#[derive(Debug)]
enum EndpointSource {
    Url(String),
    Discovery(Discovery),
}

/// Builder for [`Introspector`].
#[derive(Debug)]
pub struct IntrospectorBuilder {
    endpoint: EndpointSource,
    auth: Option<ClientAuth>,
    token_type_hint: Option<String>,
    issuer: Option<String>,
    audiences: Vec<String>,
    max_ttl: Duration,
    inactive_ttl: Duration,
    max_entries: u64,
    timeout: Duration,
    max_body_bytes: usize,
    leeway: Duration,
    clock: Clock,
    client: Option<reqwest::Client>,
}

impl IntrospectorBuilder {
    /// Authenticates with HTTP Basic (`client_secret_basic`).
    pub fn client_secret_basic(mut self, id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.auth = Some(ClientAuth::Basic { client_id: id.into(), client_secret: secret.into() });
        self
    }
    /// Authenticates with the credentials in the form body (`client_secret_post`).
    pub fn client_secret_post(mut self, id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.auth = Some(ClientAuth::Post { client_id: id.into(), client_secret: secret.into() });
        self
    }
    /// Authenticates with a bearer token of the resource server's own.
    pub fn bearer_auth(mut self, token: impl Into<String>) -> Self {
        self.auth = Some(ClientAuth::Bearer(token.into()));
        self
    }
    /// Sends `token_type_hint` (e.g. `access_token`).
    pub fn token_type_hint(mut self, hint: impl Into<String>) -> Self {
        self.token_type_hint = Some(hint.into());
        self
    }
    /// Requires the response's `iss` to be exactly this.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }
    /// Requires the response's `aud` to contain this (call again to accept several).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }
    /// Longest an active result is reused (default 60 s); this bounds how long a revoked token
    /// can still pass.
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = ttl;
        self
    }
    /// How long an inactive result is reused (default 5 s), so a flood of garbage tokens does
    /// not become a flood of calls.
    pub fn inactive_ttl(mut self, ttl: Duration) -> Self {
        self.inactive_ttl = ttl;
        self
    }
    /// Most cached results (default 100 000).
    pub fn max_entries(mut self, entries: u64) -> Self {
        self.max_entries = entries;
        self
    }
    /// Timeout of one call (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Largest response accepted (default 64 KiB).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }
    /// Clock skew tolerated on `exp`/`nbf` (default 30 s, as for JWTs).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }
    /// Where "now" comes from (default: the system clock). Cache freshness follows it too.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
    /// Uses your own HTTP client.
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Builds the introspector.
    pub fn build(self) -> Result<Introspector, ConfigError> {
        let endpoint = match self.endpoint {
            EndpointSource::Url(url) => Endpoint::Fixed(http_url("introspection_endpoint", &url)?),
            EndpointSource::Discovery(discovery) => Endpoint::Discovered(discovery),
        };
        let auth = self.auth.ok_or(ConfigError::Missing("introspection client authentication"))?;
        let client = match self.client {
            Some(c) => c,
            // Never follow redirects: the form carries the token (and maybe our secret), and an
            // answer from another server must not be trusted.
            None => http_client(
                self.timeout,
                self.timeout.min(Duration::from_secs(2)),
                reqwest::redirect::Policy::none(),
            )?,
        };
        let audience = if self.audiences.is_empty() {
            AudiencePolicy::Unchecked
        } else {
            AudiencePolicy::OneOf(self.audiences)
        };
        Ok(Introspector {
            inner: Arc::new(Inner {
                endpoint,
                client,
                auth,
                token_type_hint: self.token_type_hint,
                policy: ClaimPolicy {
                    issuer: self.issuer,
                    audience,
                    window: TimeWindow {
                        leeway: i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX),
                        // RFC 7662 makes `exp` optional: the endpoint vouches for the token.
                        require_exp: false,
                    },
                },
                clock: self.clock,
                cache: Cache::builder().max_capacity(self.max_entries).expire_after(EntryExpiry).build(),
                max_ttl: self.max_ttl,
                inactive_ttl: self.inactive_ttl,
                max_body_bytes: self.max_body_bytes,
                calls: AtomicU64::new(0),
            }),
        })
    }
}

impl Introspector {
    /// Starts a builder for the `introspection_endpoint` that `discovery` finds in the issuer's
    /// metadata. Until it is found, opaque tokens get `503`; metadata without the endpoint
    /// keeps them at `503` (logged), since nothing can vouch for them.
    pub fn discover(discovery: Discovery) -> IntrospectorBuilder {
        IntrospectorBuilder { endpoint: EndpointSource::Discovery(discovery), ..Introspector::builder("") }
    }

    /// Starts a builder for the endpoint at `url`.
    pub fn builder(url: impl Into<String>) -> IntrospectorBuilder {
        IntrospectorBuilder {
            endpoint: EndpointSource::Url(url.into()),
            auth: None,
            token_type_hint: None,
            issuer: None,
            audiences: Vec::new(),
            max_ttl: defaults::MAX_TTL,
            inactive_ttl: defaults::INACTIVE_TTL,
            max_entries: defaults::MAX_ENTRIES,
            timeout: defaults::TIMEOUT,
            max_body_bytes: defaults::MAX_BODY_BYTES,
            leeway: crate::jwt::defaults::LEEWAY,
            clock: Clock::system(),
            client: None,
        }
    }

    /// How many introspection calls were made.
    pub fn calls(&self) -> u64 {
        self.inner.calls.load(Ordering::Relaxed)
    }

    /// How many results are cached (approximate: moka updates its count lazily).
    pub fn cached_entries(&self) -> u64 {
        self.inner.cache.entry_count()
    }

    /// Validates a token, waiting for the endpoint if the answer is not cached.
    pub async fn introspect(&self, token: &str) -> Result<Principal, AuthError> {
        let inner = &self.inner;
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(entry) = inner.cache.get(&key).await {
            if inner.clock.now() < entry.stale_at {
                return inner.finish(entry.principal);
            }
            inner.cache.invalidate(&key).await;
        }
        let token = token.to_owned();
        match inner.cache.try_get_with(key, inner.call(token)).await {
            Ok(entry) => inner.finish(entry.principal),
            Err(err) => {
                tracing::warn!(reason = "introspection_unavailable", error = %err, "cannot validate opaque token");
                Err(AuthError::Unavailable(Unavailable::Introspection))
            }
        }
    }
}

impl Inner {
    /// A cached or fresh answer becomes a verdict; time is checked on every use.
    fn finish(&self, principal: Result<Principal, InvalidToken>) -> Result<Principal, AuthError> {
        let principal = principal.map_err(AuthError::InvalidToken)?;
        let now = self.clock.unix_now();
        self.policy
            .window
            .check(now, principal.expires_at_unix(), None, None)
            .map_err(AuthError::InvalidToken)?;
        Ok(principal)
    }

    async fn call(&self, token: String) -> Result<Entry, IntrospectionError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let result = self.exchange(token).await;
        let outcome = match &result {
            Ok(entry) if entry.principal.is_ok() => "active",
            Ok(_) => "inactive",
            Err(_) => "error",
        };
        crate::observe::introspection(outcome, started.elapsed());
        result
    }

    async fn exchange(&self, token: String) -> Result<Entry, IntrospectionError> {
        let mut form: Vec<(&str, &str)> = vec![("token", &token)];
        if let Some(hint) = &self.token_type_hint {
            form.push(("token_type_hint", hint));
        }
        let endpoint = match &self.endpoint {
            Endpoint::Fixed(url) => url.clone(),
            Endpoint::Discovered(discovery) => discovery
                .introspection_endpoint()
                .await
                .map_err(|e| IntrospectionError::Fetch(FetchError::Discovery(Box::new(e))))?,
        };
        let mut request = self.client.post(endpoint).header(ACCEPT, "application/json");
        request = match &self.auth {
            ClientAuth::Basic { client_id, client_secret } => {
                // RFC 6749 §2.3.1: form-urlencode id and secret before Basic encoding.
                let id = form_urlencoded::byte_serialize(client_id.as_bytes()).collect::<String>();
                let secret = form_urlencoded::byte_serialize(client_secret.as_bytes()).collect::<String>();
                request.basic_auth(id, Some(secret))
            }
            ClientAuth::Post { client_id, client_secret } => {
                form.push(("client_id", client_id));
                form.push(("client_secret", client_secret));
                request
            }
            ClientAuth::Bearer(own) => request.bearer_auth(own),
        };
        let mut response =
            request.form(&form).send().await.map_err(|e| IntrospectionError::Fetch(FetchError::Http(e)))?;
        if !response.status().is_success() {
            return Err(IntrospectionError::Fetch(FetchError::Status(response.status())));
        }
        let body =
            read_bounded(&mut response, self.max_body_bytes).await.map_err(IntrospectionError::Fetch)?;
        self.entry_from(body)
    }

    fn entry_from(&self, body: Vec<u8>) -> Result<Entry, IntrospectionError> {
        #[derive(Deserialize)]
        struct Active {
            active: bool,
        }
        // A derived struct also reads a JSON array: the answer must be an object.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(IntrospectionError::Invalid(serde::de::Error::custom("not a JSON object")));
        }
        let Active { active } = serde_json::from_slice(&body).map_err(IntrospectionError::Invalid)?;
        let now = self.clock.now();
        if !active {
            return Ok(self.inactive(now));
        }
        let claims: RegisteredClaims = match serde_json::from_slice(&body) {
            Ok(claims) => claims,
            Err(e) => {
                // Active but with claims of the wrong types: refuse the token, not the service.
                tracing::debug!(error = %e, "introspection response has malformed claims");
                return Ok(self.inactive(now));
            }
        };
        if let Err(why) = self.policy.check(&claims, self.clock.unix_now()) {
            tracing::debug!(reason = ?why, "introspected token fails the claim policy");
            return Ok(Entry {
                principal: Err(why),
                stale_at: now + self.inactive_ttl,
                ttl: self.inactive_ttl,
            });
        }
        let mut ttl = self.max_ttl;
        if let Some(exp) = claims.exp {
            let left = exp.saturating_sub(self.clock.unix_now()).max(0);
            ttl = ttl.min(Duration::from_secs(u64::try_from(left).unwrap_or(0)));
        }
        // The body parsed as JSON above, so this cannot fail; if it did, the token is refused.
        let Ok(raw) = serde_json::from_slice::<Box<serde_json::value::RawValue>>(&body) else {
            return Ok(self.inactive(now));
        };
        let scopes = claims.scopes();
        let principal = Principal::new(PrincipalData {
            kind: TokenKind::Opaque,
            client_id: claims.client_id.or(claims.azp),
            subject: claims.sub,
            issuer: claims.iss,
            audience: claims.aud.map(OneOrMany::into_vec).unwrap_or_default(),
            scopes,
            expires_at: claims.exp,
            issued_at: claims.iat,
            claims: raw,
        });
        Ok(Entry { principal: Ok(principal), stale_at: now + ttl, ttl: ttl.max(Duration::from_millis(1)) })
    }

    fn inactive(&self, now: SystemTime) -> Entry {
        Entry {
            principal: Err(InvalidToken::Inactive),
            stale_at: now + self.inactive_ttl,
            ttl: self.inactive_ttl,
        }
    }
}

impl Validator for Introspector {
    fn validate(&self, token: &str) -> Verdict {
        let this = self.clone();
        let token = token.to_owned();
        Verdict::Pending(Box::pin(async move { this.introspect(&token).await }))
    }
}

impl fmt::Debug for Introspector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Introspector")
            .field("endpoint", &self.inner.endpoint)
            .field("auth", &self.inner.auth)
            .field("max_ttl", &self.inner.max_ttl)
            .finish_non_exhaustive()
    }
}

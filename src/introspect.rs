//! Opaque tokens: an RFC 7662 introspection client with a bounded, single-flight cache keyed by
//! SHA-256 of the token (never the token itself).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use moka::Expiry;
use moka::future::Cache;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::config::ConfigError;
use crate::discovery::Discovery;
use crate::error::{AuthError, InvalidToken, JsonErrorShape, Unavailable};
use crate::jwt::jwks::FetchError;
use crate::jwt::policy::{AudiencePolicy, ClaimPolicy, OneOrMany, RegisteredClaims, Str};
use crate::outbound::{Auth, HttpClient, Url, http_url};
use crate::principal::{ClaimsJson, Principal, PrincipalData, Text, TokenKind};
use crate::throttle::Throttle;
use crate::time::{Clock, LONGEST_LIFETIME, TimeWindow, later};
use crate::validate::{RequestView, Validator, Verdict};

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
    /// Introspection calls under way at once, at most.
    pub const MAX_IN_FLIGHT: usize = 32;
    /// Requests waiting for a call slot, at most; beyond them, `503` at once.
    pub const MAX_QUEUED: usize = 256;
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

/// Why an introspection call failed. Logged; the client gets a `503`. Neither `Display` nor
/// `Debug` quotes what the endpoint answered (it may hold personal data): a JSON error says
/// where it was found, not what.
#[non_exhaustive]
pub enum IntrospectionError {
    /// The call itself failed (connect, timeout, status, size, body).
    Fetch(FetchError),
    /// The body is not an RFC 7662 response (e.g. `active` missing).
    Invalid(serde_json::Error),
    /// [`max_in_flight`](IntrospectorBuilder::max_in_flight) calls are under way and
    /// [`max_queued`](IntrospectorBuilder::max_queued) requests wait already: no call was made.
    Busy,
}

impl fmt::Debug for IntrospectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntrospectionError::Fetch(e) => f.debug_tuple("Fetch").field(e).finish(),
            IntrospectionError::Invalid(e) => {
                f.debug_tuple("Invalid").field(&format_args!("{}", JsonErrorShape(e))).finish()
            }
            IntrospectionError::Busy => f.write_str("Busy"),
        }
    }
}

impl fmt::Display for IntrospectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntrospectionError::Fetch(e) => write!(f, "introspection call failed: {e}"),
            IntrospectionError::Invalid(e) => {
                write!(f, "not an introspection response: {}", JsonErrorShape(e))
            }
            IntrospectionError::Busy => f.write_str("too many introspection calls under way"),
        }
    }
}

impl std::error::Error for IntrospectionError {}

/// Counters of an [`Introspector`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IntrospectionStats {
    /// Calls made to the introspection endpoint.
    pub calls: u64,
    /// Answers cached now (approximate: moka updates its count lazily).
    pub cached_entries: u64,
    /// Answers taken from the [shared tier](IntrospectorBuilder::shared_tier) instead of a call.
    pub shared_hits: u64,
}

/// An answer of the introspection endpoint as a [`SharedTier`] keeps it: the response body and
/// the time after which no replica may use it (at most the token's `exp` and
/// [`max_ttl`](IntrospectorBuilder::max_ttl) after the call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedAnswer {
    /// Unix time in milliseconds after which the answer must not be used.
    pub fresh_until_ms: i64,
    /// The endpoint's response body, exactly as received (it is checked again on every use).
    pub body: Vec<u8>,
}

/// What a [`SharedTier`] lookup waits for.
pub type SharedLookup = Pin<Box<dyn Future<Output = Option<SharedAnswer>> + Send>>;

/// A second cache tier shared by replicas (e.g. [`fleet::IntrospectionTier`] with the `redis`
/// feature), consulted after the in-process cache and before the endpoint.
///
/// The introspector hands it a SHA-256 of the token (never the token) and a name for the
/// endpoint, so that two endpoints' answers are never confused. A tier answers in bounded time
/// and treats its own failures as misses: the introspector then calls the endpoint as if the
/// tier were absent.
///
/// [`fleet::IntrospectionTier`]: crate::fleet::IntrospectionTier
pub trait SharedTier: Send + Sync + 'static {
    /// The answer stored for this endpoint and token, if any and still fresh.
    fn get(&self, endpoint: &str, token_hash: &[u8; 32]) -> SharedLookup;
    /// Stores an answer (in the background: the request does not wait for it).
    fn put(&self, endpoint: &str, token_hash: &[u8; 32], answer: SharedAnswer);
}

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
    client: HttpClient,
    auth: ClientAuth,
    token_type_hint: Option<String>,
    policy: ClaimPolicy,
    clock: Clock,
    cache: Cache<[u8; 32], Entry>,
    max_ttl: Duration,
    inactive_ttl: Duration,
    max_body_bytes: usize,
    /// Set on every call, so that a caller's own client cannot make a call unbounded.
    timeout: Duration,
    /// Slots for calls under way.
    in_flight: Semaphore,
    /// Slots for calls under way or waiting for one: what is refused beyond it is never queued.
    admission: Semaphore,
    precheck: Option<Precheck>,
    calls: AtomicU64,
    shared: Option<Shared>,
}

/// The shared tier, with the name of the endpoint its keys are made of.
struct Shared {
    tier: Arc<dyn SharedTier>,
    endpoint: String,
    hits: AtomicU64,
}

/// A cheap test of whether a string can be one of the issuer's tokens at all.
#[derive(Clone)]
struct Precheck(Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl fmt::Debug for Precheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Precheck(..)")
    }
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
        Some(entry.ttl.min(LONGEST_LIFETIME))
    }
}

/// Where the introspection endpoint is: given, or found in the issuer's metadata.
#[derive(Debug)]
enum Endpoint {
    Fixed(Url),
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
    client: Option<HttpClient>,
    connect_timeout: Option<Duration>,
    max_in_flight: usize,
    max_queued: usize,
    precheck: Option<Precheck>,
    shared_tier: Option<SharedTierConfig>,
}

struct SharedTierConfig(Arc<dyn SharedTier>);

impl fmt::Debug for SharedTierConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedTier(..)")
    }
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
    /// Calls with this client instead of the shared one. The per-call
    /// [`timeout`](Self::timeout) is still set on every call.
    pub fn http_client(mut self, client: HttpClient) -> Self {
        self.client = Some(client);
        self
    }
    /// Connect timeout (default 2 s). Setting it gives this introspector a client of its own
    /// instead of the shared one.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }
    /// Remembers no answer: every request is a call (still one per token at a time). Revocation
    /// then takes effect at once, at the cost of a call per request.
    pub fn no_cache(mut self) -> Self {
        self.max_entries = 0;
        self
    }
    /// Most introspection calls under way at once (default 32). Every token the cache does not
    /// know costs a call to the authorization server, so this is what keeps a flood of made-up
    /// tokens from becoming a flood of calls.
    pub fn max_in_flight(mut self, calls: usize) -> Self {
        self.max_in_flight = calls;
        self
    }
    /// Most requests waiting for a call slot (default 256). Beyond them a request is answered
    /// `503` with `Retry-After` at once, never queued without bound. Cached answers never wait.
    pub fn max_queued(mut self, requests: usize) -> Self {
        self.max_queued = requests;
        self
    }
    /// A cheap test of whether a string can be one of the issuer's tokens at all (its length,
    /// alphabet or prefix); a token that fails it is refused (`401 invalid_token`, reason
    /// `malformed`) without a call. Where the issuer's format allows one, this is the first
    /// defence against a flood of made-up tokens.
    ///
    /// ```
    /// use tower_bearer::Introspector;
    ///
    /// // oidc-provider's opaque access tokens: 43 base64url characters.
    /// let introspector = Introspector::builder("https://as.example/token/introspection")
    ///     .client_secret_basic("my-api", "s3cret")
    ///     .precheck(|token| token.len() == 43)
    ///     .build()?;
    /// # Ok::<(), tower_bearer::ConfigError>(())
    /// ```
    pub fn precheck(mut self, can_be_a_token: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        self.precheck = Some(Precheck(Arc::new(can_be_a_token)));
        self
    }

    /// A second cache tier shared by the replicas of a fleet (with the `redis` feature:
    /// [`Fleet::introspection_tier`](crate::fleet::Fleet::introspection_tier)). An answer is
    /// then fetched once per fleet instead of once per replica; a replica keeps a copy only as
    /// long as the shared answer stays fresh, so [`max_ttl`](Self::max_ttl) still bounds how
    /// long a revoked token passes.
    pub fn shared_tier(mut self, tier: impl SharedTier) -> Self {
        self.shared_tier = Some(SharedTierConfig(Arc::new(tier)));
        self
    }

    /// Builds the introspector.
    pub fn build(self) -> Result<Introspector, ConfigError> {
        let endpoint = match self.endpoint {
            EndpointSource::Url(url) => Endpoint::Fixed(http_url("introspection_endpoint", &url)?),
            EndpointSource::Discovery(discovery) => Endpoint::Discovered(discovery),
        };
        let auth = self.auth.ok_or(ConfigError::Missing("introspection client authentication"))?;
        if self.max_in_flight == 0 {
            return Err(ConfigError::Invalid("introspection max_in_flight must be at least 1"));
        }
        let client = match self.client {
            Some(c) => c,
            None => HttpClient::shared_or_with(self.connect_timeout)?,
        };
        let audience = if self.audiences.is_empty() {
            AudiencePolicy::Unchecked
        } else {
            AudiencePolicy::OneOf(self.audiences)
        };
        let shared = self.shared_tier.map(|SharedTierConfig(tier)| Shared {
            tier,
            endpoint: match &endpoint {
                Endpoint::Fixed(url) => url.as_str().to_owned(),
                Endpoint::Discovered(discovery) => format!("discovered:{}", discovery.issuer()),
            },
            hits: AtomicU64::new(0),
        });
        Ok(Introspector {
            inner: Arc::new(Inner {
                shared,
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
                timeout: self.timeout,
                in_flight: Semaphore::new(self.max_in_flight.min(Semaphore::MAX_PERMITS)),
                admission: Semaphore::new(
                    self.max_in_flight.saturating_add(self.max_queued).min(Semaphore::MAX_PERMITS),
                ),
                precheck: self.precheck,
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
        Introspector::builder_for(EndpointSource::Discovery(discovery))
    }

    /// Starts a builder for the endpoint at `url`.
    pub fn builder(url: impl Into<String>) -> IntrospectorBuilder {
        Introspector::builder_for(EndpointSource::Url(url.into()))
    }

    fn builder_for(endpoint: EndpointSource) -> IntrospectorBuilder {
        IntrospectorBuilder {
            endpoint,
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
            connect_timeout: None,
            max_in_flight: defaults::MAX_IN_FLIGHT,
            max_queued: defaults::MAX_QUEUED,
            precheck: None,
            shared_tier: None,
        }
    }

    /// Counters of this introspector.
    pub fn stats(&self) -> IntrospectionStats {
        IntrospectionStats {
            calls: self.inner.calls.load(Ordering::Relaxed),
            cached_entries: self.inner.cache.entry_count(),
            shared_hits: self.inner.shared.as_ref().map_or(0, |s| s.hits.load(Ordering::Relaxed)),
        }
    }

    /// Validates a token, waiting for the endpoint if the answer is not cached.
    pub async fn introspect(&self, token: &str) -> Result<Principal, AuthError> {
        self.inner.precheck(token)?;
        let key = cache_key(token);
        if let Some(answer) = self.inner.cached(&key).await {
            return answer;
        }
        self.load_and_finish(key, token.to_owned()).await
    }

    /// The part of [`introspect`](Self::introspect) past the cache: the shared tier or the
    /// endpoint, one call for all concurrent requests with the same token.
    async fn load_and_finish(&self, key: [u8; 32], token: String) -> Result<Principal, AuthError> {
        let inner = &self.inner;
        match inner.cache.try_get_with(key, inner.load(key, token)).await {
            Ok(entry) => inner.finish(entry.principal),
            Err(err) if matches!(*err, IntrospectionError::Busy) => {
                static BUSY: Throttle = Throttle::new();
                if let Some(repeated) = BUSY.admit() {
                    tracing::warn!(
                        reason = "introspection_busy",
                        repeated,
                        "too many introspection calls under way"
                    );
                }
                Err(AuthError::Unavailable(Unavailable::IntrospectionBusy))
            }
            Err(err) => {
                static FAILED: Throttle = Throttle::new();
                if let Some(repeated) = FAILED.admit() {
                    tracing::warn!(reason = "introspection_unavailable", error = %err, repeated, "cannot validate opaque token");
                }
                Err(AuthError::Unavailable(Unavailable::Introspection))
            }
        }
    }
}

/// The cache's key for a token: its SHA-256 (the token itself is not kept).
fn cache_key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Inner {
    /// A malformed token if the precheck, if any, says `token` cannot be one of the issuer's.
    fn precheck(&self, token: &str) -> Result<(), AuthError> {
        match &self.precheck {
            Some(Precheck(can_be_a_token)) if !can_be_a_token(token) => {
                Err(AuthError::InvalidToken(InvalidToken::Malformed))
            }
            _ => Ok(()),
        }
    }

    /// The cached answer for `key`, unless there is none or it is stale (then it is dropped).
    async fn cached(&self, key: &[u8; 32]) -> Option<Result<Principal, AuthError>> {
        let entry = self.cache.get(key).await?;
        if self.clock.now() < entry.stale_at {
            return Some(self.finish(entry.principal));
        }
        self.cache.invalidate(key).await;
        None
    }

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

    /// The answer for an uncached token: from the shared tier if it has a fresh one, else from
    /// the endpoint (and then shared).
    async fn load(&self, key: [u8; 32], token: String) -> Result<Entry, IntrospectionError> {
        let Some(shared) = &self.shared else { return self.call(token).await.map(|(entry, _)| entry) };
        if let Some(answer) = shared.tier.get(&shared.endpoint, &key).await
            && let Some(entry) = self.entry_from_shared(answer)
        {
            shared.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(entry);
        }
        let (entry, body) = self.call(token).await?;
        let fresh_until = entry.stale_at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let fresh_until_ms = i64::try_from(fresh_until.as_millis()).unwrap_or(i64::MAX);
        shared.tier.put(&shared.endpoint, &key, SharedAnswer { fresh_until_ms, body });
        Ok(entry)
    }

    /// A shared answer read as if it came from the endpoint now, but never fresh for longer
    /// than it is in the tier: the copy here inherits only what remains.
    fn entry_from_shared(&self, answer: SharedAnswer) -> Option<Entry> {
        let now = self.clock.now();
        let until = std::time::UNIX_EPOCH
            .checked_add(Duration::from_millis(u64::try_from(answer.fresh_until_ms).ok()?))?;
        let left = until.duration_since(now).ok().filter(|left| !left.is_zero())?;
        let mut entry = self.entry_from(answer.body).ok()?;
        if entry.stale_at > until {
            entry.stale_at = until;
            entry.ttl = entry.ttl.min(left).max(Duration::from_millis(1));
        }
        Some(entry)
    }

    async fn call(&self, token: String) -> Result<(Entry, Vec<u8>), IntrospectionError> {
        // Refused at once when the calls under way and the queue are full; otherwise wait for a
        // call slot. Both are held until the call ends (or this request is dropped).
        let Ok(_admitted) = self.admission.try_acquire() else {
            return Err(IntrospectionError::Busy);
        };
        let Ok(_slot) = self.in_flight.acquire().await else {
            return Err(IntrospectionError::Busy); // never closed
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let result = self.exchange(token).await;
        let outcome = match &result {
            Ok((entry, _)) if entry.principal.is_ok() => "active",
            Ok(_) => "inactive",
            Err(_) => "error",
        };
        crate::observe::introspection(outcome, started.elapsed());
        result
    }

    async fn exchange(&self, token: String) -> Result<(Entry, Vec<u8>), IntrospectionError> {
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
        // RFC 6749 §2.3.1: form-urlencode id and secret before Basic encoding.
        let basic = |value: &str| form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>();
        let basic_credentials = match &self.auth {
            ClientAuth::Basic { client_id, client_secret } => Some((basic(client_id), basic(client_secret))),
            _ => None,
        };
        let auth = match (&self.auth, &basic_credentials) {
            (_, Some((user, password))) => Auth::Basic { user, password },
            (ClientAuth::Post { client_id, client_secret }, _) => {
                form.push(("client_id", client_id));
                form.push(("client_secret", client_secret));
                Auth::None
            }
            (ClientAuth::Bearer(own), _) => Auth::Bearer(own),
            (ClientAuth::Basic { .. }, None) => Auth::None, // built just above
        };
        // Never follows redirects: the form carries the token (and maybe our secret), and an
        // answer from another server must not be trusted.
        let (_, body) = self
            .client
            .post_form(endpoint, auth, &form, self.timeout, self.max_body_bytes)
            .await
            .map_err(|e| IntrospectionError::Fetch(FetchError::Transport(e)))?;
        let entry = self.entry_from(body.clone())?;
        Ok((entry, body))
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
                tracing::debug!(error = %JsonErrorShape(&e), "introspection response has malformed claims");
                return Ok(self.inactive(now));
            }
        };
        if let Err(why) = self.policy.check(&claims, self.clock.unix_now()) {
            tracing::debug!(reason = ?why, "introspected token fails the claim policy");
            return Ok(Entry {
                principal: Err(why),
                stale_at: later(now, self.inactive_ttl),
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
            client_id: claims.client_id.or(claims.azp).map(own),
            subject: claims.sub.map(own),
            issuer: claims.iss.map(own),
            audience: claims.aud.map(OneOrMany::into_vec).unwrap_or_default(),
            scopes,
            expires_at: claims.exp,
            issued_at: claims.iat,
            cnf: claims.cnf,
            claims: ClaimsJson::Raw(raw),
            json: OnceLock::new(),
        });
        Ok(Entry {
            principal: Ok(principal),
            stale_at: later(now, ttl),
            ttl: ttl.max(Duration::from_millis(1)),
        })
    }

    fn inactive(&self, now: SystemTime) -> Entry {
        Entry {
            principal: Err(InvalidToken::Inactive),
            stale_at: later(now, self.inactive_ttl),
            ttl: self.inactive_ttl,
        }
    }
}

/// A claim of an introspection answer, as the principal's own copy (the answer's text is kept
/// as a `RawValue`, whose ranges differ from the body's).
fn own(claim: Str<'_>) -> Text {
    Text::Own(claim.0.into())
}

impl Validator for Introspector {
    fn validate(&self, token: &str, _request: &RequestView<'_>) -> Verdict {
        if let Err(malformed) = self.inner.precheck(token) {
            return Verdict::Ready(Err(malformed));
        }
        // A cached answer needs no waiting: moka's lookup waits only in rare cases (its queue of
        // pending writes full, or its housekeeping contended), so one poll nearly always
        // finishes it, and a cache hit goes on without a boxed future, a copy of the token or a
        // task switch.
        let key = cache_key(token);
        let looked = std::pin::pin!(self.inner.cached(&key)).poll(&mut Context::from_waker(Waker::noop()));
        let waited = match looked {
            Poll::Ready(Some(answer)) => return Verdict::Ready(answer),
            Poll::Ready(None) => false,
            Poll::Pending => true,
        };
        let (this, token) = (self.clone(), token.to_owned());
        Verdict::Pending(Box::pin(async move {
            // The lookup would have waited: it was dropped (safe: moka finishes an interrupted
            // removal or housekeeping later) and is made again here, where it may wait.
            if waited && let Some(answer) = this.inner.cached(&key).await {
                return answer;
            }
            // Not cached, or stale (and dropped): on to the endpoint.
            this.load_and_finish(key, token).await
        }))
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::UNIX_EPOCH;

    /// What the endpoint answered is not quoted, by `Display` nor by `Debug`.
    #[test]
    fn an_invalid_answer_is_not_quoted() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Active {
            active: bool,
        }
        let e = serde_json::from_str::<Active>(r#"{"active":"alice@example.com"}"#).unwrap_err();
        let err = IntrospectionError::Invalid(e);
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(!shown.contains("alice"), "{shown}");
            assert!(shown.contains("line 1, column"), "{shown}");
        }
    }

    proptest! {
        // Each case builds an HTTP client (loading the TLS roots): a few dozen cases suffice.
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Lifetimes come from the endpoint (`exp`, `iat`, `nbf`) and from configuration; the
        /// clock may be anywhere. No combination may panic: every sum saturates.
        #[test]
        fn no_lifetime_overflows(
            exp in any::<i64>(),
            iat in any::<i64>(),
            nbf in any::<i64>(),
            max_ttl in any::<u64>(),
            inactive_ttl in any::<u64>(),
            clock_secs in 0..i64::MAX as u64,
            active in any::<bool>(),
        ) {
            let now = UNIX_EPOCH.checked_add(Duration::from_secs(clock_secs)).unwrap_or(UNIX_EPOCH);
            let introspector = Introspector::builder("http://127.0.0.1:9/introspect")
                .client_secret_basic("rs", "secret")
                .max_ttl(Duration::from_secs(max_ttl))
                .inactive_ttl(Duration::from_secs(inactive_ttl))
                .leeway(Duration::from_secs(max_ttl))
                .clock(Clock::from_fn(move || now))
                .build()
                .unwrap();
            let body = format!(r#"{{"active":{active},"exp":{exp},"iat":{iat},"nbf":{nbf},"sub":"s"}}"#);
            let inner = &introspector.inner;
            let entry = inner.entry_from(body.into_bytes()).unwrap();
            let _ = inner.finish(entry.principal.clone());
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            runtime.block_on(async {
                inner.cache.insert([0; 32], entry).await;
                inner.cache.run_pending_tasks().await;
            });
        }
    }
}

//! The key-set cache: fetches a JWKS, turns each usable JWK into a verifying key once, and keeps
//! the result fresh without ever making a request wait behind a routine refresh.
//!
//! * Reads are lock-free: the current keys live behind an [`ArcSwap`].
//! * Freshness follows `Cache-Control: max-age`, clamped to `[min_ttl, max_ttl]`. An expired set
//!   keeps serving while one background task refreshes it.
//! * One fetch at a time (single flight): whoever starts it holds a [`Flight`], everyone else waits
//!   for it to land. Whether a fetch may start is decided under a std mutex held for a few
//!   instructions, never across an await; reads never touch it.
//! * An unknown `kid` triggers a refetch, at most once per cooldown. That fetch runs in a task of
//!   its own, so a request dropped mid-fetch (client gone, an outer timeout) cannot take it along
//!   and leave the cooldown standing with nothing fetched.
//! * A failed fetch keeps the last good keys (stale-if-error).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::CACHE_CONTROL;
use tokio::time::Instant;

use crate::discovery::{Discovery, DiscoveryError};
use crate::outbound::{HttpClient, TransportError, Url, max_age};

mod background;
mod builder;
mod flight;
mod keys;

use background::*;
pub use builder::KeySetBuilder;
use builder::Source;
use flight::*;
pub(crate) use keys::*;

/// Defaults of [`KeySetBuilder`].
pub mod defaults {
    use std::time::Duration;
    /// Freshness when the response has no usable `Cache-Control: max-age`.
    pub const TTL: Duration = Duration::from_secs(300);
    /// Lower clamp for `max-age`.
    pub const MIN_TTL: Duration = Duration::from_secs(30);
    /// Upper clamp for `max-age`.
    pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
    /// Least time between two fetches caused by unknown `kid`s.
    pub const COOLDOWN: Duration = Duration::from_secs(30);
    /// Least time between two fetches while no key set was ever loaded.
    pub const RETRY_UNAVAILABLE: Duration = Duration::from_secs(1);
    /// Whole-request timeout of a fetch.
    pub const TIMEOUT: Duration = Duration::from_secs(5);
    /// Connect timeout of a fetch.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    /// Largest JWKS body accepted.
    pub const MAX_BODY_BYTES: usize = 512 * 1024;
    /// Smallest RSA modulus accepted (RFC 7518 §3.3).
    pub const MIN_RSA_BITS: usize = 2048;
}

/// Why a fetch failed. Logged; never shown to clients.
#[derive(Debug)]
#[non_exhaustive]
pub enum FetchError {
    /// Connecting, sending or reading failed, or the answer's status, size or redirect did not
    /// do (timeouts included).
    Transport(TransportError),
    /// The body is not a JWK Set.
    Json(serde_json::Error),
    /// The set holds no key this crate can verify with.
    NoUsableKeys,
    /// The key set is static and cannot be fetched.
    Static,
    /// The `jwks_uri` could not be discovered.
    Discovery(Box<DiscoveryError>),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Transport(e) => fmt::Display::fmt(e, f),
            FetchError::Json(e) => write!(f, "not a JWK Set: {e}"),
            FetchError::NoUsableKeys => f.write_str("no usable signing key in the set"),
            FetchError::Static => f.write_str("static key set"),
            FetchError::Discovery(e) => write!(f, "discovery: {e}"),
        }
    }
}

impl std::error::Error for FetchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FetchError::Transport(e) => Some(e),
            FetchError::Json(e) => Some(e),
            FetchError::Discovery(e) => Some(e),
            _ => None,
        }
    }
}

impl From<TransportError> for FetchError {
    fn from(e: TransportError) -> Self {
        FetchError::Transport(e)
    }
}

/// Counters of a [`KeySet`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeySetStats {
    /// Fetches that gave a usable key set.
    pub fetches_ok: u64,
    /// Fetches that failed (the previous keys stayed in use).
    pub fetches_failed: u64,
    /// Usable keys in the current snapshot.
    pub keys: usize,
}

/// A cached, self-refreshing JSON Web Key Set.
///
/// Cheap to clone: clones share one cache. Build one with [`KeySet::builder`] for a remote
/// `jwks_uri`, or [`KeySet::from_jwks`] for a fixed set.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use tower_bearer::KeySet;
///
/// let keys = KeySet::builder("https://issuer.example/.well-known/jwks.json")
///     .refetch_cooldown(Duration::from_secs(10))
///     .build()?;
/// keys.refresh().await?; // optional warm-up; the first request would fetch anyway
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct KeySet {
    inner: Arc<Inner>,
}

struct Inner {
    remote: Option<Remote>,
    current: ArcSwap<Keys>,
    /// Fetch bookkeeping for the single flight. Reads never touch it.
    refresh: std::sync::Mutex<RefreshState>,
    /// Whether a background refresh is already spawned.
    background: AtomicBool,
    /// Whether the last fetch attempt succeeded.
    last_fetch_ok: AtomicBool,
    /// Dropped with the key set: wakes the background refresh task so that it ends.
    _stop_background: Option<tokio::sync::oneshot::Sender<()>>,
    fetches_ok: AtomicU64,
    fetches_failed: AtomicU64,
    generation: AtomicU64,
}

struct Remote {
    url: Location,
    client: HttpClient,
    config: KeySetConfig,
}

/// Where the JWKS is: a URL given up front, or the `jwks_uri` of an issuer's metadata.
enum Location {
    Fixed(Url),
    Discovered(Discovery),
}

impl Location {
    async fn resolve(&self) -> Result<Url, FetchError> {
        match self {
            Location::Fixed(url) => Ok(url.clone()),
            Location::Discovered(discovery) => {
                discovery.jwks_uri().await.map_err(|e| FetchError::Discovery(Box::new(e)))
            }
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Fixed(url) => f.write_str(url.as_str()),
            Location::Discovered(d) => write!(f, "jwks_uri of {}", d.issuer()),
        }
    }
}

#[derive(Debug, Clone)]
struct KeySetConfig {
    default_ttl: Duration,
    min_ttl: Duration,
    max_ttl: Duration,
    cooldown: Duration,
    retry_unavailable: Duration,
    max_body_bytes: usize,
    /// Set on every request, so that a caller's own client cannot make a fetch unbounded.
    timeout: Duration,
}

fn empty_keys() -> Arc<Keys> {
    Arc::new(Keys { keys: Vec::new(), generation: 0, expires_at: None })
}

impl KeySet {
    /// A key set fetched from `jwks_uri`.
    pub fn builder(jwks_uri: impl Into<String>) -> KeySetBuilder {
        KeySet::builder_for(Source::Url(jwks_uri.into()))
    }

    fn builder_for(url: Source) -> KeySetBuilder {
        KeySetBuilder {
            url,
            background: false,
            config: KeySetConfig {
                default_ttl: defaults::TTL,
                min_ttl: defaults::MIN_TTL,
                max_ttl: defaults::MAX_TTL,
                cooldown: defaults::COOLDOWN,
                retry_unavailable: defaults::RETRY_UNAVAILABLE,
                max_body_bytes: defaults::MAX_BODY_BYTES,
                timeout: defaults::TIMEOUT,
            },
            timeout: defaults::TIMEOUT,
            connect_timeout: None,
            client: None,
        }
    }

    /// A fixed key set from a JWK Set document (never refreshed). Unusable keys are skipped, as
    /// they are for remote sets.
    pub fn from_jwks(json: &str) -> Result<KeySet, FetchError> {
        let keys = parse_jwks(json.as_bytes())?;
        Ok(KeySet::new(None, Arc::new(Keys { keys, generation: 1, expires_at: None }), None))
    }

    /// A key set fetched from the `jwks_uri` that `discovery` finds in the issuer's metadata.
    /// Until discovery and the first fetch succeed, tokens cannot be checked (`503`).
    pub fn discover(discovery: Discovery) -> KeySetBuilder {
        KeySet::builder_for(Source::Discovery(discovery))
    }

    fn new(
        remote: Option<Remote>,
        keys: Arc<Keys>,
        stop_background: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> KeySet {
        let generation = keys.generation;
        KeySet {
            inner: Arc::new(Inner {
                remote,
                current: ArcSwap::new(keys),
                refresh: std::sync::Mutex::new(RefreshState::default()),
                background: AtomicBool::new(false),
                last_fetch_ok: AtomicBool::new(true),
                _stop_background: stop_background,
                fetches_ok: AtomicU64::new(0),
                fetches_failed: AtomicU64::new(0),
                generation: AtomicU64::new(generation),
            }),
        }
    }

    /// Fetches the set now (waiting for a fetch already under way instead of starting another),
    /// and returns how many usable keys it holds. On failure the previous keys stay in use.
    pub async fn refresh(&self) -> Result<usize, FetchError> {
        if self.inner.remote.is_none() {
            return Err(FetchError::Static);
        }
        loop {
            match self.start_fetch(|_, _| true) {
                Start::Lead(flight, _) => return flight.fetch().await,
                // The caller asked for a fetch that starts now, not one that may predate a change.
                Start::Join(rx) => landed(rx).await,
                Start::Refused => return Err(FetchError::Static),
            }
        }
    }

    /// How many usable keys the current snapshot holds.
    pub fn key_count(&self) -> usize {
        self.inner.current.load().keys.len()
    }

    /// Whether `self` and `other` are clones of one key set (one cache).
    pub(crate) fn same_as(&self, other: &KeySet) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Whether a key set was ever loaded (readiness probes use this).
    pub fn is_loaded(&self) -> bool {
        self.inner.current.load().is_loaded()
    }

    /// Counters of this key set.
    pub fn stats(&self) -> KeySetStats {
        KeySetStats {
            fetches_ok: self.inner.fetches_ok.load(Ordering::Relaxed),
            fetches_failed: self.inner.fetches_failed.load(Ordering::Relaxed),
            keys: self.key_count(),
        }
    }

    /// The current snapshot, lock-free. Starts a background refresh when it has expired.
    pub(crate) fn snapshot(&self) -> arc_swap::Guard<Arc<Keys>> {
        let keys = self.inner.current.load();
        if keys.expires_at.is_some_and(|at| Instant::now() >= at) {
            self.spawn_background_refresh();
        }
        keys
    }

    /// Whether the last fetch attempt succeeded.
    pub(crate) fn last_fetch_ok(&self) -> bool {
        self.inner.last_fetch_ok.load(Ordering::Relaxed)
    }

    async fn fetch_and_store(&self, remote: &Remote) -> Result<usize, FetchError> {
        match fetch(remote).await {
            Ok((keys, ttl)) => {
                let count = keys.len();
                let generation = self.inner.generation.fetch_add(1, Ordering::AcqRel) + 1;
                self.inner.current.store(Arc::new(Keys {
                    keys,
                    generation,
                    expires_at: Some(deadline(ttl)),
                }));
                self.inner.last_fetch_ok.store(true, Ordering::Relaxed);
                self.inner.fetches_ok.fetch_add(1, Ordering::Relaxed);
                crate::observe::key_set_fetch(true);
                tracing::debug!(url = %remote.url, keys = count, ttl_secs = ttl.as_secs(), "key set fetched");
                Ok(count)
            }
            Err(err) => {
                self.inner.last_fetch_ok.store(false, Ordering::Relaxed);
                self.inner.fetches_failed.fetch_add(1, Ordering::Relaxed);
                crate::observe::key_set_fetch(false);
                let kept = self.inner.current.load().keys.len();
                tracing::warn!(url = %remote.url, error = %err, kept_keys = kept, "key set fetch failed");
                Err(err)
            }
        }
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.inner.current.load();
        f.debug_struct("KeySet")
            .field("url", &self.inner.remote.as_ref().map(|r| r.url.to_string()))
            .field("keys", &keys.keys.len())
            .field("generation", &keys.generation)
            .finish()
    }
}

async fn fetch(remote: &Remote) -> Result<(Vec<VerifyingKey>, Duration), FetchError> {
    let result = fetch_from(remote, remote.url.resolve().await?).await;
    if let (Err(_), Location::Discovered(discovery)) = (&result, &remote.url) {
        // The `jwks_uri` may have moved: look at the issuer's metadata again next time.
        discovery.mark_stale();
    }
    result
}

async fn fetch_from(remote: &Remote, url: Url) -> Result<(Vec<VerifyingKey>, Duration), FetchError> {
    let accept = "application/jwk-set+json, application/json";
    let config = &remote.config;
    let (headers, body) =
        remote.client.get(url, accept, config.timeout, config.max_body_bytes, MAX_REDIRECTS).await?;
    let ttl = headers
        .get(CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(max_age)
        .map_or(config.default_ttl, |age| age.clamp(config.min_ttl, config.max_ttl));
    Ok((parse_jwks(&body)?, ttl))
}

/// Redirects a JWKS fetch follows (a CDN in front of the issuer); never from https to http.
const MAX_REDIRECTS: usize = 3;

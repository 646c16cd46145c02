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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::CACHE_CONTROL;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::ConfigError;
use crate::discovery::{Discovery, DiscoveryError};
use crate::jwt::signature::PreparedKey;
use crate::outbound::{HttpClient, TransportError, Url, http_url, max_age};

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

/// The curve or key type of a verifying key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyType {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyType {
    fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyType::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyType::P256 => alg == ES256,
            KeyType::P384 => alg == ES384,
            KeyType::Ed25519 => alg == EdDSA,
        }
    }
}

/// A JWK that survived every check, converted once into a verifying key.
pub(crate) struct VerifyingKey {
    pub(crate) kid: Option<String>,
    pub(crate) key_type: KeyType,
    /// The JWK's `alg`, when it pins one.
    pub(crate) alg: Option<Algorithm>,
    pub(crate) decoding: DecodingKey,
    /// The same key parsed once for the native verifier (`None` without one).
    pub(crate) prepared: Option<PreparedKey>,
    /// SHA-256 over the key's identity (kid, alg, type and public parameters): the same JWK in a
    /// later fetch has the same fingerprint, so verified-token cache entries survive a routine
    /// refresh and die when their key leaves the set.
    pub(crate) fingerprint: [u8; 32],
}

impl VerifyingKey {
    pub(crate) fn fits(&self, alg: Algorithm) -> bool {
        self.key_type.fits(alg) && self.alg.is_none_or(|pinned| pinned == alg)
    }
}

/// One snapshot of the key set.
pub(crate) struct Keys {
    pub(crate) keys: Vec<VerifyingKey>,
    /// 0 until a set was loaded; bumped by every successful fetch.
    pub(crate) generation: u64,
    /// `None` for static key sets, which never expire.
    expires_at: Option<Instant>,
}

/// What key selection found.
pub(crate) enum Selection<'a> {
    /// The keys to try, in set order: one, unless the issuer publishes several keys under one
    /// `kid` (some do during a rotation, with another `kty` or `alg`); then each one that fits
    /// the algorithm is tried, as jose does.
    Found(Candidates<'a>),
    /// No key with this `kid` (or, without `kid`, none fitting the algorithm): worth a refetch.
    Unknown,
    /// No `kid` and several keys fit.
    Ambiguous,
    /// The `kid` exists but its key does not fit the algorithm.
    Mismatch,
}

impl Keys {
    pub(crate) fn is_loaded(&self) -> bool {
        self.generation > 0
    }

    pub(crate) fn select<'a>(&'a self, kid: Option<&'a str>, alg: Algorithm) -> Selection<'a> {
        match kid {
            Some(kid) => {
                let Some(first) = self.keys.iter().position(|k| k.kid.as_deref() == Some(kid)) else {
                    return Selection::Unknown;
                };
                let candidates = Candidates { keys: &self.keys[first..], kid: Some(kid), alg };
                if candidates.clone().next().is_none() {
                    return Selection::Mismatch;
                }
                Selection::Found(candidates)
            }
            None => {
                let mut fitting = self.keys.iter().enumerate().filter(|(_, k)| k.fits(alg));
                match (fitting.next(), fitting.next()) {
                    (Some((i, _)), None) => {
                        Selection::Found(Candidates { keys: &self.keys[i..=i], kid: None, alg })
                    }
                    (Some(_), Some(_)) => Selection::Ambiguous,
                    (None, _) => Selection::Unknown,
                }
            }
        }
    }
}

/// The keys of a [`Selection::Found`]: those of `keys` named `kid` (any, without one) that fit
/// `alg`. Never empty; no allocation.
#[derive(Clone)]
pub(crate) struct Candidates<'a> {
    keys: &'a [VerifyingKey],
    kid: Option<&'a str>,
    alg: Algorithm,
}

impl<'a> Iterator for Candidates<'a> {
    type Item = &'a VerifyingKey;

    fn next(&mut self) -> Option<&'a VerifyingKey> {
        while let Some((key, rest)) = self.keys.split_first() {
            self.keys = rest;
            if (self.kid.is_none() || key.kid.as_deref() == self.kid) && key.fits(self.alg) {
                return Some(key);
            }
        }
        None
    }
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

#[derive(Default)]
struct RefreshState {
    last_attempt: Option<Instant>,
    /// The last fetch caused by an unknown `kid` (what the cooldown limits).
    last_miss_fetch: Option<Instant>,
    /// The fetch under way, if any: its channel closes when the fetch lands.
    in_flight: Option<watch::Receiver<()>>,
}

/// The one fetch in flight. Dropping it (the fetch landed, or whoever ran it is gone) frees the
/// slot and wakes everyone waiting for it.
struct Flight {
    set: KeySet,
    _landed: watch::Sender<()>,
}

impl Flight {
    async fn fetch(&self) -> Result<usize, FetchError> {
        match &self.set.inner.remote {
            Some(remote) => self.set.fetch_and_store(remote).await,
            None => Err(FetchError::Static),
        }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        self.set.state().in_flight = None;
    }
}

/// What [`KeySet::start_fetch`] found.
enum Start {
    /// No fetch was under way and one may start: run it.
    Lead(Flight, watch::Receiver<()>),
    /// A fetch is under way: wait for it.
    Join(watch::Receiver<()>),
    /// Nothing under way, and none may start now.
    Refused,
}

/// Waits until the fetch behind `rx` has landed (its sender is dropped).
async fn landed(mut rx: watch::Receiver<()>) {
    while rx.changed().await.is_ok() {}
}

/// Builder for a remote [`KeySet`]. Every setting has a safe default ([`defaults`]).
#[derive(Debug)]
pub struct KeySetBuilder {
    url: Source,
    background: bool,
    config: KeySetConfig,
    timeout: Duration,
    connect_timeout: Option<Duration>,
    client: Option<HttpClient>,
}

impl KeySetBuilder {
    /// Freshness when the JWKS response carries no `Cache-Control: max-age`.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.config.default_ttl = ttl;
        self
    }
    /// Clamp for `Cache-Control: max-age`: never refresh more often than `min`, never keep a set
    /// longer than `max`.
    pub fn ttl_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.config.min_ttl = min;
        self.config.max_ttl = max;
        self
    }
    /// Least time between two refetches caused by unknown `kid`s (default 30 s). This is what
    /// stops a flood of made-up `kid`s from becoming a flood of fetches.
    pub fn refetch_cooldown(mut self, cooldown: Duration) -> Self {
        self.config.cooldown = cooldown;
        self
    }
    /// Least time between two fetch attempts while no key set was ever loaded (default 1 s).
    pub fn retry_unavailable(mut self, interval: Duration) -> Self {
        self.config.retry_unavailable = interval;
        self
    }
    /// Timeout of the whole fetch, body included (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self.config.timeout = timeout;
        self
    }
    /// Connect timeout (default 2 s). Setting it gives this key set a client of its own
    /// instead of the shared one.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }
    /// Largest JWKS body accepted (default 512 KiB).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.config.max_body_bytes = bytes;
        self
    }
    /// Fetches with this client (proxies, private roots) instead of the shared one. The
    /// per-request timeout of this builder is still set on every fetch.
    pub fn http_client(mut self, client: HttpClient) -> Self {
        self.client = Some(client);
        self
    }

    /// Refreshes the set in a background task instead of on the request path: the first load
    /// starts at once (retried with exponential back-off while it fails, from
    /// [`Self::retry_unavailable`] up to [`Self::refetch_cooldown`]), and each later refresh
    /// happens at 90 % of the set's lifetime, so no request waits for a routine refresh. The task
    /// ends when the last clone of the key set is dropped. Needs a tokio runtime at
    /// [`Self::build`]; without one, refreshes stay request-driven.
    pub fn background_refresh(mut self, on: bool) -> Self {
        self.background = on;
        self
    }

    /// Builds the key set. Nothing is fetched yet (unless [`Self::background_refresh`] is on).
    pub fn build(self) -> Result<KeySet, ConfigError> {
        let url = match self.url {
            Source::Url(url) => Location::Fixed(http_url("jwks_uri", &url)?),
            Source::Discovery(discovery) => Location::Discovered(discovery),
        };
        if self.config.min_ttl > self.config.max_ttl {
            return Err(ConfigError::Invalid("key set ttl_bounds: min is above max"));
        }
        let client = match self.client {
            Some(c) => c,
            None => HttpClient::shared_or_with(self.connect_timeout)?,
        };
        let mut config = self.config;
        config.default_ttl = config.default_ttl.clamp(config.min_ttl, config.max_ttl);
        let remote = Remote { url, client, config };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if self.background => {
                let (stop, stopped) = tokio::sync::oneshot::channel();
                let set = KeySet::new(Some(remote), empty_keys(), Some(stop));
                runtime.spawn(background_refresh(Arc::downgrade(&set.inner), stopped));
                Ok(set)
            }
            Ok(_) => Ok(KeySet::new(Some(remote), empty_keys(), None)),
            Err(_) => {
                if self.background {
                    tracing::warn!("no tokio runtime at KeySet::build: background refresh is off");
                }
                Ok(KeySet::new(Some(remote), empty_keys(), None))
            }
        }
    }
}

/// `now + after`, saturating far in the future instead of overflowing (a JWKS may send any
/// `max-age`, and `max_ttl` may be set very large).
fn deadline(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after).unwrap_or_else(|| now + Duration::from_secs(10 * 365 * 24 * 3600))
}

/// The background loop never refetches more often than this, whatever a server's `max-age`
/// and the configured bounds say.
const BACKGROUND_MIN_WAIT: Duration = Duration::from_millis(100);

/// What a builder fetches from.
#[derive(Debug)]
enum Source {
    Url(String),
    Discovery(Discovery),
}

/// The background refresh loop: load, then refresh at 90 % of each set's lifetime; on failure,
/// back off exponentially. Holds only a weak reference between rounds, and ends as soon as the
/// key set is dropped (`stopped` resolves).
async fn background_refresh(set: Weak<Inner>, mut stopped: tokio::sync::oneshot::Receiver<()>) {
    let mut failures = 0u32;
    loop {
        let wait = {
            let Some(inner) = set.upgrade() else { return };
            let Some(remote) = &inner.remote else { return };
            let config = &remote.config;
            let keys = inner.current.load();
            match keys.expires_at {
                _ if failures > 0 => {
                    let backoff = config.retry_unavailable.saturating_mul(1 << (failures - 1).min(16));
                    backoff.min(config.cooldown.max(config.retry_unavailable)).max(BACKGROUND_MIN_WAIT)
                }
                None => Duration::ZERO,
                Some(at) => {
                    at.saturating_duration_since(Instant::now()).mul_f64(0.9).max(BACKGROUND_MIN_WAIT)
                }
            }
        };
        // The channel resolves (with an error) when the key set is dropped.
        if tokio::time::timeout(wait, &mut stopped).await.is_ok() {
            return;
        }
        let Some(inner) = set.upgrade() else { return };
        let keys = KeySet { inner };
        let ok = match keys.start_fetch(|_, _| true) {
            Start::Lead(flight, _) => flight.fetch().await.is_ok(),
            // Someone else's fetch is as good as ours: take its outcome.
            Start::Join(rx) => {
                landed(rx).await;
                keys.last_fetch_ok()
            }
            Start::Refused => true,
        };
        failures = if ok { 0 } else { failures.saturating_add(1) };
    }
}

fn empty_keys() -> Arc<Keys> {
    Arc::new(Keys { keys: Vec::new(), generation: 0, expires_at: None })
}

impl KeySet {
    /// A key set fetched from `jwks_uri`.
    pub fn builder(jwks_uri: impl Into<String>) -> KeySetBuilder {
        KeySetBuilder {
            url: Source::Url(jwks_uri.into()),
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
        KeySetBuilder { url: Source::Discovery(discovery), ..KeySet::builder(String::new()) }
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

    fn state(&self) -> std::sync::MutexGuard<'_, RefreshState> {
        // Nothing panics while holding it; if something did, the bookkeeping is still sound.
        self.inner.refresh.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Joins the fetch under way, or starts one if `may_start` agrees (it may record why it
    /// started). Decided at once, under a lock held for a few instructions.
    fn start_fetch(&self, may_start: impl FnOnce(&mut RefreshState, Instant) -> bool) -> Start {
        let mut state = self.state();
        if let Some(rx) = &state.in_flight {
            return Start::Join(rx.clone());
        }
        let now = Instant::now();
        if !may_start(&mut state, now) {
            return Start::Refused;
        }
        state.last_attempt = Some(now);
        let (tx, rx) = watch::channel(());
        state.in_flight = Some(rx.clone());
        drop(state);
        Start::Lead(Flight { set: self.clone(), _landed: tx }, rx)
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

    /// `(successful, failed)` fetches so far.
    pub fn fetch_counts(&self) -> (u64, u64) {
        (self.inner.fetches_ok.load(Ordering::Relaxed), self.inner.fetches_failed.load(Ordering::Relaxed))
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

    /// Refetches because a token needs a key the snapshot `seen` did not have (`has_key` tells
    /// whether a snapshot has it). Returns the newest snapshot, fetched or not. Concurrent
    /// callers share one fetch; the cooldown bounds how often a fetch happens at all.
    pub(crate) async fn refresh_for_missing_key(
        &self,
        seen: u64,
        has_key: impl Fn(&Keys) -> bool,
    ) -> Arc<Keys> {
        let Some(remote) = &self.inner.remote else {
            return self.inner.current.load_full();
        };
        // A fetch we join may be a routine one that started before the issuer published the key;
        // then one miss fetch of our own may follow, if the cooldown allows. Two rounds at most.
        for _ in 0..2 {
            let current = self.inner.current.load_full();
            if current.generation != seen && has_key(&current) {
                return current;
            }
            // The cooldown counts only fetches caused by unknown kids: a routine refresh or the
            // first load must not make a freshly rotated key wait for it.
            let start = self.start_fetch(|state, now| {
                let (last, interval) = if current.is_loaded() {
                    (&mut state.last_miss_fetch, remote.config.cooldown)
                } else {
                    (&mut state.last_attempt, remote.config.retry_unavailable)
                };
                if last.is_some_and(|at| now.saturating_duration_since(at) < interval) {
                    return false;
                }
                *last = Some(now);
                true
            });
            match start {
                Start::Refused => break,
                Start::Join(rx) => landed(rx).await,
                Start::Lead(flight, rx) => {
                    // In a task of its own: if this request is dropped, the fetch still lands.
                    match tokio::runtime::Handle::try_current() {
                        Ok(runtime) => {
                            runtime.spawn(async move {
                                let _ = flight.fetch().await;
                            });
                            landed(rx).await;
                        }
                        Err(_) => {
                            let _ = flight.fetch().await;
                        }
                    }
                    break;
                }
            }
        }
        self.inner.current.load_full()
    }

    fn spawn_background_refresh(&self) {
        if self.inner.background.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.inner.background.store(false, Ordering::Release);
            return;
        };
        let this = self.clone();
        runtime.spawn(async move {
            if let Some(remote) = &this.inner.remote {
                // Wait for a fetch already under way rather than give up: giving up would let
                // every request on the expired set spawn another task meanwhile.
                loop {
                    let still_expired =
                        this.inner.current.load().expires_at.is_some_and(|at| Instant::now() >= at);
                    if !still_expired {
                        break;
                    }
                    match this.start_fetch(|_, _| true) {
                        Start::Join(rx) => landed(rx).await,
                        Start::Lead(flight, _) => {
                            if flight.fetch().await.is_err() {
                                // Stale-if-error: keep serving the old set, try again after the
                                // cooldown rather than on the very next request.
                                this.extend_expiry(remote.config.cooldown);
                            }
                            break;
                        }
                        Start::Refused => break,
                    }
                }
            }
            this.inner.background.store(false, Ordering::Release);
        });
    }

    fn extend_expiry(&self, by: Duration) {
        let current = self.inner.current.load_full();
        if current.expires_at.is_none() {
            return;
        }
        let keys = current.keys.iter().map(VerifyingKey::clone_shallow).collect();
        self.inner.current.store(Arc::new(Keys {
            keys,
            generation: current.generation,
            expires_at: Some(deadline(by)),
        }));
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

impl VerifyingKey {
    fn clone_shallow(&self) -> VerifyingKey {
        VerifyingKey {
            kid: self.kid.clone(),
            key_type: self.key_type,
            alg: self.alg,
            decoding: self.decoding.clone(),
            prepared: self.prepared.clone(),
            fingerprint: self.fingerprint,
        }
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

#[derive(Deserialize)]
struct JwkSetDoc<'a> {
    #[serde(borrow)]
    keys: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    kid: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// Parses a JWK Set, keeping every usable signature key. One bad key never spoils the others.
pub(crate) fn parse_jwks(body: &[u8]) -> Result<Vec<VerifyingKey>, FetchError> {
    let doc: JwkSetDoc<'_> = serde_json::from_slice(body).map_err(FetchError::Json)?;
    let keys: Vec<VerifyingKey> = doc
        .keys
        .iter()
        .filter_map(|raw| match serde_json::from_str::<RawJwk>(raw.get()) {
            Ok(jwk) => match convert(jwk) {
                Ok(key) => Some(key),
                Err(why) => {
                    tracing::debug!(why, "skipping JWK");
                    None
                }
            },
            Err(e) => {
                tracing::debug!(error = %e, "skipping unparseable JWK");
                None
            }
        })
        .collect();
    if keys.is_empty() {
        return Err(FetchError::NoUsableKeys);
    }
    Ok(keys)
}

fn b64_len(field: &Option<String>) -> Result<usize, &'static str> {
    let value = field.as_deref().ok_or("missing key parameter")?;
    let bytes = URL_SAFE_NO_PAD.decode(value).map_err(|_| "key parameter is not base64url")?;
    // Leading zero octets do not count towards an RSA modulus' size.
    Ok(bytes.len() - bytes.iter().take_while(|&&b| b == 0).count())
}

fn convert(jwk: RawJwk) -> Result<VerifyingKey, &'static str> {
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return Err("use is not sig");
    }
    if jwk.key_ops.as_ref().is_some_and(|ops| !ops.iter().any(|op| op == "verify")) {
        return Err("key_ops does not allow verify");
    }
    let alg = match jwk.alg.as_deref() {
        None => None,
        // RFC 9864's fully-specified name for EdDSA over Ed25519.
        Some("Ed25519") => Some(Algorithm::EdDSA),
        Some(name) => Some(name.parse::<Algorithm>().map_err(|_| "alg not supported")?),
    };
    let opt = |s: &Option<String>| s.as_deref().unwrap_or_default().to_owned();
    let bytes =
        |s: &Option<String>| URL_SAFE_NO_PAD.decode(s.as_deref().unwrap_or_default()).unwrap_or_default();
    let (key_type, decoding, prepared) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("RSA", _) => {
            if b64_len(&jwk.n)? * 8 < defaults::MIN_RSA_BITS {
                return Err("RSA modulus below 2048 bits");
            }
            b64_len(&jwk.e)?;
            let key = DecodingKey::from_rsa_components(&opt(&jwk.n), &opt(&jwk.e))
                .map_err(|_| "bad RSA parameters")?;
            (KeyType::Rsa, key, PreparedKey::rsa(&bytes(&jwk.n), &bytes(&jwk.e), alg))
        }
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let (key_type, len) = if crv == "P-256" { (KeyType::P256, 32) } else { (KeyType::P384, 48) };
            if jwk.x.as_deref().map(|x| URL_SAFE_NO_PAD.decode(x).map(|b| b.len())) != Some(Ok(len))
                || jwk.y.as_deref().map(|y| URL_SAFE_NO_PAD.decode(y).map(|b| b.len())) != Some(Ok(len))
            {
                return Err("bad EC coordinates");
            }
            let key = DecodingKey::from_ec_components(&opt(&jwk.x), &opt(&jwk.y))
                .map_err(|_| "bad EC parameters")?;
            let curve_alg = if key_type == KeyType::P256 { Algorithm::ES256 } else { Algorithm::ES384 };
            (key_type, key, PreparedKey::ec(curve_alg, &bytes(&jwk.x), &bytes(&jwk.y)))
        }
        ("OKP", Some("Ed25519")) => {
            if jwk.x.as_deref().map(|x| URL_SAFE_NO_PAD.decode(x).map(|b| b.len())) != Some(Ok(32)) {
                return Err("bad Ed25519 key");
            }
            let key = DecodingKey::from_ed_components(&opt(&jwk.x)).map_err(|_| "bad OKP parameters")?;
            (KeyType::Ed25519, key, PreparedKey::ed25519(&bytes(&jwk.x)))
        }
        // Symmetric keys are never taken from a key set: that is how HMAC confusion starts.
        ("oct", _) => return Err("symmetric keys are not accepted from a JWKS"),
        _ => return Err("unsupported kty/crv"),
    };
    if alg.is_some_and(|alg| !key_type.fits(alg)) {
        return Err("alg does not fit the key type");
    }
    let fingerprint = fingerprint(&jwk, key_type, alg);
    Ok(VerifyingKey { kid: jwk.kid, key_type, alg, decoding, prepared, fingerprint })
}

fn fingerprint(jwk: &RawJwk, key_type: KeyType, alg: Option<Algorithm>) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(format!("{key_type:?}/{alg:?}/"));
    // Presence-tagged and length-prefixed, so that no two different field lists (a missing
    // `kid` and an empty one, say) hash the same bytes.
    for field in [&jwk.kid, &jwk.n, &jwk.e, &jwk.x, &jwk.y] {
        match field {
            None => hash.update([0]),
            Some(value) => {
                hash.update([1]);
                hash.update((value.len() as u64).to_be_bytes());
                hash.update(value.as_bytes());
            }
        }
    }
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_keys_are_skipped_not_fatal() {
        let ed_x = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let jwks = format!(
            r#"{{"keys":[
                {{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"tiny"}},
                {{"kty":"oct","k":"c2VjcmV0","kid":"hmac"}},
                {{"kty":"OKP","crv":"Ed25519","x":"{ed_x}","kid":"enc","use":"enc"}},
                {{"kty":"OKP","crv":"Ed25519","x":"{ed_x}","kid":"wrong-alg","alg":"RS256"}},
                {{"kty":"EC","crv":"P-256","x":"AA","y":"AA","kid":"short"}},
                {{"kty":"weird"}},
                "not an object",
                {{"kty":"OKP","crv":"Ed25519","x":"{ed_x}","kid":"good"}}
            ]}}"#
        );
        let keys = parse_jwks(jwks.as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("good"));
        assert!(matches!(parse_jwks(br#"{"keys":[]}"#), Err(FetchError::NoUsableKeys)));
        assert!(matches!(parse_jwks(b"<html>"), Err(FetchError::Json(_))));
    }
}

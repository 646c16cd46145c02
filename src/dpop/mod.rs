//! DPoP (RFC 9449): proof-of-possession for access tokens bound to a client key (`cnf.jkt`).
//!
//! [`Dpop`] is the layer's policy ([`BearerLayer::dpop`](crate::BearerLayer::dpop)): whether the
//! `DPoP` scheme is accepted, the public origin `htu` is checked against, the `iat` window, the
//! algorithms, the replay store and optional server nonces.

mod history;
mod nonce;
mod proof;
mod replay;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Uri};
use jsonwebtoken::Algorithm;

use crate::config::ConfigError;
use crate::time::Clock;
pub(crate) use history::OutOfWindow;
pub use history::WindowHistory;
pub use nonce::DpopNonces;
pub(crate) use proof::{Proof, Target, proof_header};
pub use replay::{
    DEFAULT_REPLAY_ENTRIES, DEFAULT_REPLAY_ENTRIES_PER_KEY, InMemoryReplayStore, Recording, ReplayError,
    ReplayKey, ReplayStore,
};

/// The `DPoP` request header (the proof).
pub(crate) const DPOP: HeaderName = HeaderName::from_static("dpop");
/// The `DPoP-Nonce` response header.
pub(crate) const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// Defaults of [`Dpop`].
pub mod defaults {
    use std::time::Duration;
    /// How far `iat` may be from now, either way; also how long a `jti` is remembered.
    pub const IAT_WINDOW: Duration = Duration::from_secs(60);
    /// Longest `jti` accepted, in bytes.
    pub const MAX_JTI_BYTES: usize = 256;
    /// Largest `DPoP` header accepted, in bytes.
    pub const MAX_PROOF_BYTES: usize = 8 * 1024;
    /// The proof algorithms accepted.
    pub const ALGORITHMS: &[jsonwebtoken::Algorithm] = {
        use jsonwebtoken::Algorithm::*;
        &[ES256, ES384, EdDSA, RS256, PS256]
    };
}

/// Whether the layer accepts the `DPoP` scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `DPoP` credentials are not understood (like any other scheme: no credentials).
    Off,
    /// `Bearer` for unbound tokens, `DPoP` for bound ones.
    Allowed,
    /// `DPoP` only.
    Required,
}

/// Where the scheme and host of the expected `htu` come from.
#[derive(Debug, Clone)]
pub(crate) enum HtuOrigin {
    Fixed { scheme: String, authority: String },
    Host { scheme: String },
}

/// The layer's DPoP policy. Whatever it is, a token bound to a DPoP key (`cnf.jkt`) is never
/// accepted as a bearer token.
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::dpop::{Dpop, DpopNonces};
///
/// let dpop = Dpop::allowed("https://api.example")?
///     .iat_window(Duration::from_secs(30))
///     .nonces(DpopNonces::new(b"a secret shared by the replicas", Duration::from_secs(300)));
/// # Ok::<(), tower_bearer::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Dpop {
    pub(crate) mode: Mode,
    pub(crate) origin: HtuOrigin,
    pub(crate) iat_window: Duration,
    /// The windows of earlier configurations sharing the replay store.
    pub(crate) history: Option<WindowHistory>,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) replay: Arc<dyn ReplayStore>,
    pub(crate) nonces: Option<DpopNonces>,
    pub(crate) clock: Clock,
    pub(crate) max_jti_bytes: usize,
    pub(crate) max_proof_bytes: usize,
    /// `algs` of the `DPoP` challenge.
    pub(crate) algs: String,
}

impl fmt::Debug for Dpop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dpop")
            .field("mode", &self.mode)
            .field("origin", &self.origin)
            .field("iat_window", &self.iat_window)
            .field("algorithms", &self.algorithms)
            .field("nonces", &self.nonces.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Dpop {
    fn default() -> Self {
        Dpop::off()
    }
}

impl Dpop {
    /// The `DPoP` scheme is not accepted (the default). Bound tokens are still refused as bearer
    /// tokens.
    pub fn off() -> Self {
        Dpop {
            mode: Mode::Off,
            origin: HtuOrigin::Host { scheme: "https".into() },
            iat_window: defaults::IAT_WINDOW,
            history: None,
            algorithms: defaults::ALGORITHMS.to_vec(),
            replay: Arc::new(InMemoryReplayStore::default()),
            nonces: None,
            clock: Clock::system(),
            max_jti_bytes: defaults::MAX_JTI_BYTES,
            max_proof_bytes: defaults::MAX_PROOF_BYTES,
            algs: algs(defaults::ALGORITHMS),
        }
    }

    /// `Bearer` for unbound tokens, `DPoP` for tokens bound to a key. `origin` is this API's
    /// public origin (`https://api.example`, or its RFC 9728 resource URL: only scheme, host and
    /// port are kept): a proof's `htu` must be that origin plus the request path.
    pub fn allowed(origin: &str) -> Result<Self, ConfigError> {
        crate::jwt::signature::ensure_crypto_provider();
        Ok(Dpop { mode: Mode::Allowed, origin: parse_origin(origin)?, ..Dpop::off() })
    }

    /// `DPoP` only: `Bearer` credentials are answered as missing ones, with a `DPoP` challenge.
    /// `origin` as for [`allowed`](Self::allowed).
    pub fn required(origin: &str) -> Result<Self, ConfigError> {
        crate::jwt::signature::ensure_crypto_provider();
        Ok(Dpop { mode: Mode::Required, origin: parse_origin(origin)?, ..Dpop::off() })
    }

    /// Takes the host of `htu` from the request (its absolute URI, else its `Host` header)
    /// instead of the configured origin, keeping the configured scheme. Only for a server
    /// that cannot know its public name *and* sits behind a proxy that sets `Host` itself: a
    /// client controls `Host`, so a proof made for another server would pass.
    pub fn trust_host_header(mut self) -> Self {
        let scheme = match &self.origin {
            HtuOrigin::Fixed { scheme, .. } | HtuOrigin::Host { scheme } => scheme.clone(),
        };
        self.origin = HtuOrigin::Host { scheme };
        self
    }

    /// How far a proof's `iat` may be from now, either way (default 60 s). A `jti` is remembered
    /// this long after its `iat`.
    pub fn iat_window(mut self, window: Duration) -> Self {
        self.iat_window = window;
        self
    }

    /// Judges proofs issued while earlier configurations were in force by their narrower
    /// windows as well (see [`WindowHistory`]): for configurations that share a replay store
    /// and may widen the window, a reloaded server's.
    pub fn window_history(mut self, history: WindowHistory) -> Self {
        self.history = Some(history);
        self
    }

    /// The `iat` window a proof issued at `iat` is judged by: this configuration's, or a
    /// narrower one its [`WindowHistory`] holds it to.
    pub(crate) fn window_for(&self, iat: i64) -> i64 {
        let window = self.window_secs();
        self.history.as_ref().map_or(window, |history| history.window_for(iat, window))
    }

    /// This configuration's `iat` window, in seconds.
    fn window_secs(&self) -> i64 {
        i64::try_from(self.iat_window.as_secs()).unwrap_or(i64::MAX)
    }

    /// The window a proof issued at `iat` is recorded for: this configuration's, or what its
    /// [`WindowHistory`] says (the window installed last, which may be wider).
    pub(crate) fn record_window(&self, iat: i64) -> i64 {
        let window = self.window_secs();
        self.history.as_ref().map_or(window, |history| history.record_window(iat, window))
    }

    /// Until when the use of `proof`, verified earlier, is recorded, judged again `now`; why
    /// not, when it has left its window. The token's validation may have waited (a key fetch,
    /// an introspection call): what was left of the window may be gone. With a history, a
    /// reload may also have changed the window meanwhile: the proof is judged by the window now,
    /// both ways, and recorded for as long as the window installed last could take it.
    pub(crate) fn record_until(&self, proof: &Proof, now: i64) -> Result<i64, OutOfWindow> {
        if self.history.is_none() {
            return if proof.expires_at > now { Ok(proof.expires_at) } else { Err(OutOfWindow::Stale) };
        }
        history::record_until(
            proof.iat,
            proof.expires_at,
            self.window_for(proof.iat),
            self.record_window(proof.iat),
            now,
        )
    }

    /// The proof algorithms accepted (default ES256, ES384, EdDSA, RS256, PS256). Symmetric
    /// algorithms are dropped: a proof is signed by the client's private key. A list left empty
    /// accepts no proof at all: every `DPoP` request is refused (`invalid_dpop_proof`).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms
            .into_iter()
            .filter(|a| crate::jwt::defaults::ASYMMETRIC_ALGORITHMS.contains(a))
            .collect();
        self.algs = algs(&self.algorithms);
        self
    }

    /// Where accepted proofs are recorded for single use (default: an
    /// [`InMemoryReplayStore`] of [`DEFAULT_REPLAY_ENTRIES`] live entries, of which one proof key
    /// may hold [`DEFAULT_REPLAY_ENTRIES_PER_KEY`]).
    pub fn replay_store(mut self, store: impl ReplayStore) -> Self {
        self.replay = Arc::new(store);
        self
    }

    /// Requires server nonces (RFC 9449 §8): a proof without a valid one gets
    /// `401 DPoP error="use_dpop_nonce"` and a `DPoP-Nonce` header; successful DPoP responses
    /// carry a fresh nonce too.
    pub fn nonces(mut self, nonces: DpopNonces) -> Self {
        self.nonces = Some(nonces);
        self
    }

    /// Where "now" comes from for `iat`, nonces and replay (default: the system clock).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Longest `jti` accepted (default 256 bytes).
    pub fn max_jti_bytes(mut self, bytes: usize) -> Self {
        self.max_jti_bytes = bytes;
        self
    }

    pub(crate) fn is_on(&self) -> bool {
        self.mode != Mode::Off
    }
}

fn algs(algorithms: &[Algorithm]) -> String {
    let names: Vec<String> = algorithms.iter().map(|a| format!("{a:?}")).collect();
    names.join(" ")
}

fn parse_origin(origin: &str) -> Result<HtuOrigin, ConfigError> {
    let invalid = |reason: &str| ConfigError::InvalidUrl { what: "DPoP origin", reason: reason.into() };
    let uri: Uri = origin.parse().map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
    let scheme = uri.scheme_str().ok_or_else(|| invalid("no scheme"))?.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return Err(invalid("not http(s)"));
    }
    let authority = uri.authority().ok_or_else(|| invalid("no host"))?.as_str();
    if authority.contains('@') {
        return Err(invalid("user info"));
    }
    Ok(HtuOrigin::Fixed { authority: proof::normalize_authority(&scheme, authority), scheme })
}

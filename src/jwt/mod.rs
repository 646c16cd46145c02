//! JWT access-token validation (RFC 9068, following the RFC 8725 best practices):
//! header peek → algorithm allowlist → key selection → signature → claim policy.

pub(crate) mod cache;
pub(crate) mod jwks;
pub(crate) mod policy;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use crate::config::ConfigError;
use crate::discovery::Discovery;
use crate::error::{AuthError, InvalidToken, Unavailable};
use crate::throttle::Throttle;
use crate::validate::{
    Clock, Principal, PrincipalData, RequestView, TimeWindow, TokenKind, Validator, Verdict,
};
pub use cache::TokenCacheStats;
use cache::{Hit, KeyRef, TokenCache};
use jwks::{KeySet, Keys, Selection};
use policy::{AudiencePolicy, ClaimPolicy, RegisteredClaims, TypPolicy};

/// Defaults of [`JwtValidatorBuilder`].
pub mod defaults {
    use std::time::Duration;
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub const LEEWAY: Duration = Duration::from_secs(30);
    /// Largest token accepted, in bytes.
    pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
    /// Entries of the verified-token cache.
    pub const TOKEN_CACHE_ENTRIES: u64 = super::cache::defaults::MAX_ENTRIES;
    /// How long a verified-token cache entry may vouch for a token, at most.
    pub const TOKEN_CACHE_TTL: Duration = super::cache::defaults::MAX_TTL;
    /// The algorithms accepted with a key set: every asymmetric algorithm jsonwebtoken supports.
    pub const ASYMMETRIC_ALGORITHMS: &[jsonwebtoken::Algorithm] = {
        use jsonwebtoken::Algorithm::*;
        &[RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA]
    };
}

/// Installs jsonwebtoken's crypto provider explicitly, so a dependency tree that enables both of
/// its backends does not panic at the first verification.
pub(crate) fn ensure_crypto_provider() {
    #[cfg(feature = "aws-lc-rs")]
    let provider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
    let provider = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
    // Err means a provider is already installed (by us, or by the application): keep it.
    let _ = provider.install_default();
}

#[cfg(not(any(feature = "aws-lc-rs", feature = "rust-crypto")))]
compile_error!("tower-bearer needs a crypto backend: enable the `aws-lc-rs` or `rust-crypto` feature");

/// Validates JWT access tokens against a [`KeySet`] (or, if you explicitly ask for it, a shared
/// HMAC secret).
///
/// Cheap to clone. Build it with [`JwtValidator::builder`]:
///
/// ```no_run
/// use tower_bearer::JwtValidator;
///
/// let validator = JwtValidator::builder()
///     .issuer("https://issuer.example")
///     .audience("https://api.example")
///     .jwks_url("https://issuer.example/.well-known/jwks.json")
///     .build()?;
/// # Ok::<(), tower_bearer::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct JwtValidator {
    inner: Arc<Inner>,
}

struct Inner {
    keys: KeySource,
    /// Bit `i` set when `ALGORITHMS[i]` is allowed.
    allowed: u16,
    typ: TypPolicy,
    policy: ClaimPolicy,
    max_token_bytes: usize,
    clock: Clock,
    cache: Option<TokenCache>,
}

enum KeySource {
    KeySet(KeySet),
    Secret(DecodingKey),
}

/// Every algorithm jsonwebtoken knows, in a fixed order for the allowlist bit set.
const ALGORITHMS: [Algorithm; 12] = {
    use Algorithm::*;
    [HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA]
};

fn alg_bit(alg: Algorithm) -> u16 {
    ALGORITHMS.iter().position(|a| *a == alg).map_or(0, |i| 1 << i)
}

/// Builder for [`JwtValidator`]: issuer, audience and a key source are required.
pub struct JwtValidatorBuilder {
    issuer: Option<String>,
    any_issuer: bool,
    audiences: Vec<String>,
    any_audience: bool,
    jwks_url: Option<String>,
    key_set: Option<KeySet>,
    discovery: Option<Discovery>,
    secret: Option<Vec<u8>>,
    algorithms: Option<Vec<Algorithm>>,
    typ: TypPolicy,
    leeway: Duration,
    max_token_bytes: usize,
    clock: Clock,
    /// `(max_entries, max_ttl)`, or `None` for no verified-token cache.
    cache: Option<(u64, Duration)>,
}

impl JwtValidatorBuilder {
    /// The `iss` every token must carry, compared exactly.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }
    /// Accepts any `iss`. Only for key sets that a single issuer owns; prefer [`Self::issuer`].
    pub fn any_issuer(mut self) -> Self {
        self.any_issuer = true;
        self
    }
    /// An audience this resource answers to; the token's `aud` must contain one of them. Call
    /// again to accept several.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }
    /// Switches the audience check off. RFC 9068 requires it: do this only when the issuer
    /// mints tokens for this resource alone.
    pub fn any_audience(mut self) -> Self {
        self.any_audience = true;
        self
    }
    /// Fetches keys from this JWKS URL with the default [`KeySet`] settings.
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.jwks_url = Some(url.into());
        self
    }
    /// Finds the keys through the issuer's metadata (OpenID Connect discovery or RFC 8414):
    /// the `jwks_uri` of the document whose `issuer` equals this validator's issuer. The key set
    /// refreshes in the background ([`KeySetBuilder::background_refresh`](crate::KeySetBuilder::background_refresh)):
    /// start-up failures are retried with back-off, and requests get `503` until keys are loaded.
    /// Sets the issuer too, if none was given.
    pub fn discovery(mut self, discovery: Discovery) -> Self {
        self.discovery = Some(discovery);
        self
    }
    /// Uses this key set (to tune its cache, or to share it between validators).
    pub fn key_set(mut self, keys: KeySet) -> Self {
        self.key_set = Some(keys);
        self
    }
    /// Verifies HMAC-signed tokens with a shared secret instead of a key set. Only `HS256` is
    /// allowed unless [`Self::algorithms`] says otherwise; asymmetric algorithms are then refused.
    pub fn hmac_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Some(secret.as_ref().to_vec());
        self
    }
    /// The algorithm allowlist. Defaults to every asymmetric algorithm with a key set
    /// ([`defaults::ASYMMETRIC_ALGORITHMS`]), `HS256` with a secret.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = Some(algorithms.into_iter().collect());
        self
    }
    /// Which `typ` header values are accepted (default [`TypPolicy::Lenient`]).
    pub fn typ(mut self, policy: TypPolicy) -> Self {
        self.typ = policy;
        self
    }
    /// Clock skew tolerated on `exp`, `nbf` and `iat` (default 30 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }
    /// Largest token accepted (default 8 KiB).
    pub fn max_token_bytes(mut self, bytes: usize) -> Self {
        self.max_token_bytes = bytes;
        self
    }
    /// Where "now" comes from (default: the system clock).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
    /// Sizes the verified-token cache (on by default: [`defaults::TOKEN_CACHE_ENTRIES`] entries,
    /// [`defaults::TOKEN_CACHE_TTL`]).
    ///
    /// A token that passed full validation is remembered, keyed by its SHA-256, so a repeat
    /// costs a hash and a lookup instead of a signature check. An entry vouches for its token
    /// until the token's `exp`, for `max_ttl` at most, and only while the key that verified it
    /// is still in the key set; `exp`/`nbf`/`iat` are checked again on every hit. Only valid
    /// tokens are cached, so memory stays bounded by `max_entries` whatever the traffic.
    pub fn token_cache(mut self, max_entries: u64, max_ttl: Duration) -> Self {
        self.cache = Some((max_entries, max_ttl));
        self
    }
    /// No verified-token cache: every request verifies a signature.
    pub fn no_token_cache(mut self) -> Self {
        self.cache = None;
        self
    }

    /// Checks the settings and builds the validator. Nothing is fetched yet.
    pub fn build(mut self) -> Result<JwtValidator, ConfigError> {
        ensure_crypto_provider();
        if let Some(discovery) = &self.discovery {
            match &self.issuer {
                None => self.issuer = Some(discovery.issuer().to_owned()),
                Some(issuer) if issuer != discovery.issuer() => {
                    return Err(ConfigError::Invalid("the issuer differs from the discovery's issuer"));
                }
                Some(_) => {}
            }
            if self.any_issuer {
                return Err(ConfigError::Invalid("discovery names one issuer: any_issuer() contradicts it"));
            }
        }
        // Both would silently switch a check off: say so instead.
        if self.issuer.is_some() && self.any_issuer {
            return Err(ConfigError::Invalid("issuer() and any_issuer() contradict each other"));
        }
        if !self.audiences.is_empty() && self.any_audience {
            return Err(ConfigError::Invalid("audience() and any_audience() contradict each other"));
        }
        if self.issuer.is_none() && !self.any_issuer {
            return Err(ConfigError::Missing("issuer (or an explicit any_issuer())"));
        }
        if self.audiences.is_empty() && !self.any_audience {
            return Err(ConfigError::Missing("audience (or an explicit any_audience())"));
        }
        if let Some(discovery) = self.discovery.take() {
            if self.jwks_url.is_some() || self.key_set.is_some() {
                return Err(ConfigError::Invalid(
                    "give exactly one of jwks_url, key_set, hmac_secret, discovery",
                ));
            }
            self.key_set = Some(KeySet::discover(discovery).background_refresh(true).build()?);
        }
        let (keys, default_algs): (KeySource, &[Algorithm]) = match (self.jwks_url, self.key_set, self.secret)
        {
            (Some(url), None, None) => {
                (KeySource::KeySet(KeySet::builder(url).build()?), defaults::ASYMMETRIC_ALGORITHMS)
            }
            (None, Some(set), None) => (KeySource::KeySet(set), defaults::ASYMMETRIC_ALGORITHMS),
            (None, None, Some(secret)) => {
                if secret.len() < 32 {
                    return Err(ConfigError::Invalid("an HMAC secret needs at least 32 bytes"));
                }
                (KeySource::Secret(DecodingKey::from_secret(&secret)), &[Algorithm::HS256])
            }
            (None, None, None) => {
                return Err(ConfigError::Missing("jwks_url, key_set or hmac_secret"));
            }
            _ => {
                return Err(ConfigError::Invalid("give exactly one of jwks_url, key_set, hmac_secret"));
            }
        };
        let algorithms = self.algorithms.unwrap_or_else(|| default_algs.to_vec());
        if algorithms.is_empty() {
            return Err(ConfigError::Invalid("the algorithm allowlist is empty"));
        }
        let symmetric = matches!(keys, KeySource::Secret(_));
        for alg in &algorithms {
            let is_hmac = matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
            if is_hmac != symmetric {
                // Mixing families is how algorithm confusion happens (RFC 8725 §2.1).
                return Err(ConfigError::Invalid(
                    "HMAC algorithms need hmac_secret; asymmetric ones need a key set",
                ));
            }
        }
        let leeway = i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX);
        Ok(JwtValidator {
            inner: Arc::new(Inner {
                keys,
                allowed: algorithms.iter().fold(0, |bits, alg| bits | alg_bit(*alg)),
                typ: self.typ,
                policy: ClaimPolicy {
                    issuer: self.issuer.filter(|_| !self.any_issuer),
                    audience: if self.any_audience {
                        AudiencePolicy::Unchecked
                    } else {
                        AudiencePolicy::OneOf(self.audiences)
                    },
                    window: TimeWindow { leeway, require_exp: true },
                },
                max_token_bytes: self.max_token_bytes,
                clock: self.clock,
                cache: match self.cache {
                    Some((entries, ttl)) if entries > 0 && !ttl.is_zero() => {
                        // Entry ages are counted in whole seconds of the validator's clock.
                        if ttl < Duration::from_secs(1) {
                            return Err(ConfigError::Invalid("token_cache: max_ttl below one second"));
                        }
                        Some(TokenCache::new(entries, ttl))
                    }
                    _ => None,
                },
            }),
        })
    }
}

impl JwtValidator {
    /// Starts a builder with safe defaults: asymmetric algorithms only, audience required,
    /// 30 s leeway, 8 KiB tokens.
    pub fn builder() -> JwtValidatorBuilder {
        JwtValidatorBuilder {
            issuer: None,
            any_issuer: false,
            audiences: Vec::new(),
            any_audience: false,
            jwks_url: None,
            key_set: None,
            discovery: None,
            secret: None,
            algorithms: None,
            typ: TypPolicy::default(),
            leeway: defaults::LEEWAY,
            max_token_bytes: defaults::MAX_TOKEN_BYTES,
            clock: Clock::system(),
            cache: Some((defaults::TOKEN_CACHE_ENTRIES, defaults::TOKEN_CACHE_TTL)),
        }
    }

    /// A builder for tokens of `issuer`, whose keys are found by discovery (see
    /// [`JwtValidatorBuilder::discovery`]). An audience is still required.
    ///
    /// ```no_run
    /// use tower_bearer::JwtValidator;
    ///
    /// let validator = JwtValidator::from_issuer("https://as.example/tenant")?
    ///     .audience("https://api.example")
    ///     .build()?;
    /// # Ok::<(), tower_bearer::ConfigError>(())
    /// ```
    pub fn from_issuer(issuer: impl Into<String>) -> Result<JwtValidatorBuilder, ConfigError> {
        let discovery = Discovery::builder(issuer).build()?;
        Ok(JwtValidator::builder().discovery(discovery))
    }

    /// The issuer every token must name, unless the validator accepts any.
    pub fn issuer(&self) -> Option<&str> {
        self.inner.policy.issuer.as_deref()
    }

    /// The largest token accepted, in bytes.
    pub fn max_token_bytes(&self) -> usize {
        self.inner.max_token_bytes
    }

    /// The key set, when the validator uses one.
    pub fn key_set(&self) -> Option<&KeySet> {
        match &self.inner.keys {
            KeySource::KeySet(set) => Some(set),
            KeySource::Secret(_) => None,
        }
    }

    /// Counters of the verified-token cache (all zero without one). Runs the cache's pending
    /// maintenance first, so the entry count is current.
    pub fn token_cache_stats(&self) -> TokenCacheStats {
        self.inner.cache.as_ref().map_or_else(TokenCacheStats::default, TokenCache::stats)
    }
}

impl fmt::Debug for JwtValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtValidator")
            .field("issuer", &self.inner.policy.issuer)
            .field("audience", &self.inner.policy.audience)
            .field("key_set", &self.key_set())
            .finish_non_exhaustive()
    }
}

/// The JOSE header members this crate reads. `jku`, `x5u`, `jwk` and `x5c` are deliberately
/// absent: keys come from the configured key set only (RFC 8725 §3.10).
#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    /// Whether a `crit` member is present at all, whatever its value. `Option<Vec<String>>`
    /// read `"crit": null` as absent and let such a token through; RFC 7515 §4.1.11 has no
    /// "null" form, and we understand no extension, so any `crit` member is refused.
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

/// `true` for any JSON value, `null` included (the member is there).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// A token split into its parts, header parsed, nothing verified.
struct Compact<'a> {
    signing_input: &'a str,
    payload: &'a str,
    signature: &'a str,
    alg: Algorithm,
    kid: Option<String>,
}

fn is_base64url(segment: &str) -> bool {
    segment.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Why a synchronous validation stopped.
enum Halt {
    Rejected(InvalidToken),
    /// The key set lacks a key for this token: a fetch may help.
    NeedKeys,
}

impl From<InvalidToken> for Halt {
    fn from(r: InvalidToken) -> Self {
        Halt::Rejected(r)
    }
}

impl Inner {
    /// Steps that need no key: size, shape, header, algorithm, `crit`, `typ`.
    fn parse<'a>(&self, token: &'a str) -> Result<Compact<'a>, InvalidToken> {
        if token.len() > self.max_token_bytes {
            return Err(InvalidToken::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(InvalidToken::Malformed);
        };
        if [header_b64, payload, signature].iter().any(|s| s.is_empty() || !is_base64url(s)) {
            return Err(InvalidToken::Malformed);
        }
        let header_json = URL_SAFE_NO_PAD.decode(header_b64).map_err(|_| InvalidToken::Malformed)?;
        if header_json.first() != Some(&b'{') {
            return Err(InvalidToken::Malformed);
        }
        let header: JoseHeader = serde_json::from_slice(&header_json).map_err(|_| InvalidToken::Malformed)?;
        // Unknown names, `none` in any case, and algorithms outside the allowlist all stop here.
        let alg = match header.alg.as_str() {
            // RFC 9864's fully-specified name for EdDSA over Ed25519 (the only curve we verify).
            "Ed25519" => Ok(Algorithm::EdDSA),
            name => name.parse::<Algorithm>(),
        };
        let alg = alg
            .ok()
            .filter(|alg| self.allowed & alg_bit(*alg) != 0)
            .ok_or(InvalidToken::AlgorithmNotAllowed)?;
        // RFC 7515 §4.1.11: we understand no extension, so any `crit` entry is fatal; an empty
        // `crit` array is itself invalid.
        if header.crit {
            return Err(InvalidToken::UnsupportedCritical);
        }
        self.typ.check(header.typ.as_deref())?;
        Ok(Compact {
            signing_input: &token[..header_b64.len() + 1 + payload.len()],
            payload,
            signature,
            alg,
            kid: header.kid,
        })
    }

    /// Verifies the signature with `key`, then reads and checks the claims.
    fn verify(&self, compact: &Compact<'_>, key: &DecodingKey, now: i64) -> Result<Verified, InvalidToken> {
        let valid = jsonwebtoken::crypto::verify(
            compact.signature,
            compact.signing_input.as_bytes(),
            key,
            compact.alg,
        )
        .unwrap_or(false);
        if !valid {
            return Err(InvalidToken::BadSignature);
        }
        let payload = URL_SAFE_NO_PAD.decode(compact.payload).map_err(|_| InvalidToken::Malformed)?;
        // A struct also deserializes from a JSON array; claims must be an object.
        if payload.first() != Some(&b'{') {
            return Err(InvalidToken::Malformed);
        }
        let claims: RegisteredClaims = serde_json::from_slice(&payload)
            .map_err(|e| if e.is_data() { InvalidToken::InvalidClaim } else { InvalidToken::Malformed })?;
        self.policy.check(&claims, now)?;
        if claims.is_id_token() {
            return Err(InvalidToken::WrongType);
        }
        // The payload parsed as JSON, so it is UTF-8.
        let raw = String::from_utf8(payload).map_err(|_| InvalidToken::Malformed)?;
        let scopes = claims.scopes();
        let nbf = claims.nbf;
        let principal = Principal::new(PrincipalData {
            kind: TokenKind::Jwt,
            client_id: claims.client_id.or(claims.azp),
            subject: claims.sub,
            issuer: claims.iss,
            audience: claims.aud.map(policy::OneOrMany::into_vec).unwrap_or_default(),
            scopes,
            expires_at: claims.exp,
            issued_at: claims.iat,
            cnf: claims.cnf,
            claims: raw.into_boxed_str(),
        });
        Ok(Verified { principal, nbf, key: None })
    }

    fn validate_with(&self, token: &str, keys: &Keys, now: i64) -> Result<Verified, Halt> {
        let compact = self.parse(token)?;
        match keys.select(compact.kid.as_deref(), compact.alg) {
            Selection::Found(candidates) => {
                for key in candidates {
                    match self.verify(&compact, &key.decoding, now) {
                        Ok(verified) => {
                            let key = KeyRef {
                                fingerprint: key.fingerprint,
                                kid: compact.kid.map(String::into_boxed_str),
                                alg: compact.alg,
                            };
                            return Ok(Verified { key: Some(key), ..verified });
                        }
                        // Another key under the same `kid` may be the one.
                        Err(InvalidToken::BadSignature) => {}
                        // The signature held: what failed is the token itself.
                        Err(why) => return Err(why.into()),
                    }
                }
                Err(InvalidToken::BadSignature.into())
            }
            Selection::Unknown => Err(Halt::NeedKeys),
            Selection::Ambiguous => Err(InvalidToken::AmbiguousKey.into()),
            Selection::Mismatch => Err(InvalidToken::KeyAlgorithmMismatch.into()),
        }
    }
}

/// A token that passed every check, with what the verified-token cache needs to remember.
struct Verified {
    principal: Principal,
    nbf: Option<i64>,
    /// The key that verified it (`None` for the HMAC secret).
    key: Option<KeyRef>,
}

impl Inner {
    /// The verified-token cache's answer, if it has one. An entry counts only while key
    /// selection in `keys` still picks the very key that verified the token.
    fn cached(&self, token: &str, now: i64, keys: Option<&Keys>) -> Option<Result<Principal, AuthError>> {
        let alive = |key: &KeyRef| {
            keys.is_some_and(|keys| {
                matches!(keys.select(key.kid.as_deref(), key.alg),
                    Selection::Found(found) if found.clone().any(|k| k.fingerprint == key.fingerprint))
            })
        };
        match self.cache.as_ref()?.get(token, now, &self.policy.window, alive) {
            Hit::Valid(principal) => Some(Ok(principal)),
            Hit::Invalid(why) => Some(Err(reject(why))),
            Hit::Miss => None,
        }
    }

    /// Remembers a verified token; hands its principal on.
    fn remember(&self, token: &str, verified: Verified, now: i64) -> Principal {
        if let Some(cache) = &self.cache {
            cache.insert(token, verified.principal.clone(), verified.key, verified.nbf, now);
        }
        verified.principal
    }
}

impl Validator for JwtValidator {
    fn validate(&self, token: &str, _request: &RequestView<'_>) -> Verdict {
        let inner = &self.inner;
        // Before anything else: the size bound is what keeps every later step cheap.
        if token.len() > inner.max_token_bytes {
            return Verdict::Ready(Err(reject(InvalidToken::TooLarge)));
        }
        let now = inner.clock.unix_now();
        let (set, keys) = match &inner.keys {
            KeySource::KeySet(set) => (set, set.snapshot()),
            KeySource::Secret(secret) => {
                if let Some(hit) = inner.cached(token, now, None) {
                    return Verdict::Ready(hit);
                }
                let result = inner.parse(token).and_then(|c| inner.verify(&c, secret, now));
                return Verdict::Ready(result.map(|v| inner.remember(token, v, now)).map_err(reject));
            }
        };
        if let Some(hit) = inner.cached(token, now, Some(&keys)) {
            return Verdict::Ready(hit);
        }
        match inner.validate_with(token, &keys, now) {
            Ok(verified) => Verdict::Ready(Ok(inner.remember(token, verified, now))),
            Err(Halt::Rejected(why)) => Verdict::Ready(Err(reject(why))),
            Err(Halt::NeedKeys) => {
                let seen = keys.generation;
                let (this, set, token) = (self.inner.clone(), set.clone(), token.to_owned());
                Verdict::Pending(Box::pin(async move {
                    let has_key = |keys: &Keys| match this.parse(&token) {
                        Ok(c) => !matches!(keys.select(c.kid.as_deref(), c.alg), Selection::Unknown),
                        Err(_) => true,
                    };
                    let keys = set.refresh_for_missing_key(seen, has_key).await;
                    let now = this.clock.unix_now();
                    match this.validate_with(&token, &keys, now) {
                        Ok(verified) => Ok(this.remember(&token, verified, now)),
                        Err(Halt::Rejected(why)) => Err(reject(why)),
                        // Nothing to verify with, and we could not fetch: our problem, not the
                        // client's. A set that is loaded and reachable but lacks the `kid` means
                        // the token is not from this issuer's current keys.
                        Err(Halt::NeedKeys) if !keys.is_loaded() || !set.last_fetch_ok() => {
                            static NO_KEYS: Throttle = Throttle::new();
                            if let Some(repeated) = NO_KEYS.admit() {
                                tracing::warn!(
                                    reason = "key_set_unavailable",
                                    repeated,
                                    "cannot validate: no key set"
                                );
                            }
                            Err(AuthError::Unavailable(Unavailable::KeySet))
                        }
                        Err(Halt::NeedKeys) => Err(reject(InvalidToken::UnknownKey)),
                    }
                }))
            }
        }
    }
}

fn reject(why: InvalidToken) -> AuthError {
    AuthError::InvalidToken(why)
}

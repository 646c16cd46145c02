//! [`JwtValidatorBuilder`]: issuer, audience, key source and the policy knobs, checked together
//! at `build`.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey};

use super::*;

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
    /// See [`JwtValidator::discover`].
    fn discovery(mut self, discovery: Discovery) -> Self {
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
    /// The secret must be at least as long as the hash of every algorithm allowed (RFC 7518
    /// §3.2): 32 bytes for `HS256`, 48 for `HS384`, 64 for `HS512`.
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
    /// A token that passed full validation a second time is remembered (the first success only
    /// marks its hash in a small fixed-size table, so one-shot tokens cost no insertion), and a
    /// repeat then costs a hash and a lookup instead of a signature check. An entry vouches for its token
    /// until the token's `exp`, for `max_ttl` at most, and only while the key that verified it
    /// is still in the key set; `exp`/`nbf`/`iat` are checked again on every hit. Only valid
    /// tokens are cached, so memory stays bounded by `max_entries` whatever the traffic. A full
    /// cache gives up an entry past `max_ttl` or not used lately (CLOCK). Entries do not expire
    /// on a timer: memory stays at its high-water mark, at most `max_entries` entries (and each
    /// thread's copies of up to eight entries it is sent again and again). An entry takes about
    /// 1.4 KiB for a 650-byte token, 1.8 KiB once its principal has been answered as JSON.
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
        let secret_len = self.secret.as_ref().map_or(0, Vec::len);
        let (keys, default_algs): (KeySource, &[Algorithm]) = match (self.jwks_url, self.key_set, self.secret)
        {
            (Some(url), None, None) => {
                (KeySource::KeySet(KeySet::builder(url).build()?), defaults::ASYMMETRIC_ALGORITHMS)
            }
            (None, Some(set), None) => (KeySource::KeySet(set), defaults::ASYMMETRIC_ALGORITHMS),
            (None, None, Some(secret)) => {
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
            // A key at least as long as the hash's output (RFC 7518 §3.2).
            let hash_len = match alg {
                Algorithm::HS256 => Some(32),
                Algorithm::HS384 => Some(48),
                Algorithm::HS512 => Some(64),
                _ => None,
            };
            if hash_len.is_some() != symmetric {
                // Mixing families is how algorithm confusion happens (RFC 8725 §2.1).
                return Err(ConfigError::Invalid(
                    "HMAC algorithms need hmac_secret; asymmetric ones need a key set",
                ));
            }
            if hash_len.is_some_and(|len| secret_len < len) {
                return Err(ConfigError::Invalid(
                    "an HMAC secret needs at least as many bytes as its hash: 32 (HS256), 48 (HS384), 64 (HS512)",
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
    /// [`JwtValidator::discover`]). An audience is still required.
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
        Ok(JwtValidator::discover(discovery))
    }

    /// A builder whose keys are found through the issuer's metadata (OpenID Connect discovery or
    /// RFC 8414): the `jwks_uri` of the document whose `issuer` equals the discovery's, which
    /// also becomes the validator's issuer. The key set refreshes in the background
    /// ([`KeySetBuilder::background_refresh`](crate::KeySetBuilder::background_refresh)): start-up
    /// failures are retried with back-off, and requests get `503` until keys are loaded. An
    /// audience is still required. Like [`KeySet::discover`](crate::KeySet::discover) and
    /// [`Introspector::discover`](crate::Introspector::discover).
    pub fn discover(discovery: Discovery) -> JwtValidatorBuilder {
        JwtValidator::builder().discovery(discovery)
    }
}

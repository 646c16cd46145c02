//! JWT access-token validation (RFC 9068, following the RFC 8725 best practices):
//! header peek → algorithm allowlist → key selection → signature → claim policy.

mod builder;
pub(crate) mod cache;
mod claims_scan;
mod header;
pub(crate) mod jwks;
pub(crate) mod policy;
pub(crate) mod signature;

pub use builder::JwtValidatorBuilder;

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};

use jsonwebtoken::{Algorithm, DecodingKey};

use crate::base64url;
use crate::config::ConfigError;
use crate::discovery::Discovery;
use crate::error::{AuthError, InvalidToken, Unavailable};
use crate::principal::{ClaimsJson, Principal, PrincipalData, Text, TokenKind};
use crate::throttle::Throttle;
use crate::time::{Clock, TimeWindow};
use crate::validate::{RequestView, Validator, Verdict};
pub use cache::TokenCacheStats;
use cache::{Hit, KeyName, KeyRef, Signer, TokenCache};
use jwks::{KeySet, Keys, Selection};
use policy::{AudiencePolicy, ClaimPolicy, RegisteredClaims, Str, TypPolicy};
use signature::{PreparedKey, ensure_crypto_provider};

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

impl JwtValidator {
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

    /// The verified-token cache's answer for `token`, if it has one: no parsing, no signature
    /// check, and a miss is not counted (the caller may not validate the token here at all).
    pub(crate) fn cached_only(&self, token: &[u8]) -> Option<Result<Principal, AuthError>> {
        let inner = &self.inner;
        inner.cache.as_ref()?;
        let now = inner.clock.unix_now();
        match &inner.keys {
            KeySource::KeySet(set) => inner.cached(token, now, Some(&set.snapshot()), false),
            KeySource::Secret(_) => inner.cached(token, now, None, false),
        }
    }

    /// Counters of the verified-token cache (all zero without one).
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

/// A token split into its parts, header and payload decoded, nothing verified.
struct Compact<'a> {
    signing_input: &'a str,
    /// The decoded payload: not yet known to be JSON, nor genuine.
    payload: Vec<u8>,
    /// Still base64url: decoded into a stack buffer by the check itself.
    signature: &'a str,
    alg: Algorithm,
    kid: Option<Arc<str>>,
}

/// The three dot-separated parts of a JWS compact serialization (RFC 7515 §7.1), unchecked; `None`
/// unless there are exactly three. memchr finds the dots with SIMD, where `split('.')` scanned the
/// token's kilobyte a word at a time.
pub(crate) fn compact_parts(token: &str) -> Option<(&str, &str, &str)> {
    let mut dots = memchr::memchr_iter(b'.', token.as_bytes());
    let (Some(first), Some(second), None) = (dots.next(), dots.next(), dots.next()) else {
        return None;
    };
    Some((&token[..first], &token[first + 1..second], &token[second + 1..]))
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
    /// Steps that need no key: size, shape, header, algorithm, `crit`, `typ`, and the payload's
    /// base64url. Decoding checks every character, so a token with one outside base64url is
    /// malformed before any signature is computed, with no separate pass over it.
    fn parse<'a>(&self, token: &'a str) -> Result<Compact<'a>, InvalidToken> {
        if token.len() > self.max_token_bytes {
            return Err(InvalidToken::TooLarge);
        }
        let Some((header_b64, payload, signature)) = compact_parts(token) else {
            return Err(InvalidToken::Malformed);
        };
        if header_b64.is_empty() || payload.is_empty() || signature.is_empty() {
            return Err(InvalidToken::Malformed);
        }
        let header = header::read(header_b64)?;
        // Unknown names, `none` in any case, and algorithms outside the allowlist all stop here.
        let alg = header
            .alg
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
            payload: base64url::decode(payload).ok_or(InvalidToken::Malformed)?,
            signature,
            alg,
            kid: header.kid.clone(),
        })
    }

    /// Whether `key` made the token's signature. An undecodable signature is malformed.
    fn signed_by(
        &self,
        compact: &Compact<'_>,
        prepared: Option<&PreparedKey>,
        key: &DecodingKey,
    ) -> Result<bool, InvalidToken> {
        let message = compact.signing_input.as_bytes();
        signature::verify(prepared, key, compact.alg, message, compact.signature)
            .ok_or(InvalidToken::Malformed)
    }

    /// Reads and checks the claims of a token whose signature held.
    fn claims(&self, payload: Vec<u8>, now: i64) -> Result<Verified, InvalidToken> {
        // A struct also deserializes from a JSON array; claims must be an object.
        if payload.first() != Some(&b'{') {
            return Err(InvalidToken::Malformed);
        }
        // One pass reads the claims we need and checks the whole object as JSON (the quick
        // scanner below, or serde_json, which skips what it does not read with the scanner
        // `RawValue` uses); the decoded buffer itself is then kept verbatim for the principal,
        // not a copy, and its string claims are read in place.
        let mut payload = String::from_utf8(payload).map_err(|_| InvalidToken::Malformed)?;
        // The usual plain shape is read by a quick scanner of our own; anything else (and every
        // error) by serde_json, which the scanner agrees with wherever it answers.
        let claims = match claims_scan::read(&payload) {
            Some(claims) => claims,
            None => read_claims(&payload)?,
        };
        self.policy.check(&claims, now)?;
        if claims.is_id_token() {
            return Err(InvalidToken::WrongType);
        }
        // Borrowed claims become ranges of the payload; only unescaped ones are copies.
        let text = |claim: Option<Str<'_>>| {
            claim.map(|value| match value.0 {
                Cow::Borrowed(value) => Text::within(&payload, value),
                Cow::Owned(value) => Text::Own(value.into()),
            })
        };
        let scopes = claims.scopes();
        let client_id = text(claims.client_id.or(claims.azp));
        let (subject, issuer) = (text(claims.sub), text(claims.iss));
        let audience = claims.aud.map(policy::OneOrMany::into_vec).unwrap_or_default();
        let (expires_at, issued_at, nbf, cnf) = (claims.exp, claims.iat, claims.nbf, claims.cnf);
        // What follows the object can only be JSON whitespace: kept out, as `RawValue` did (the
        // ranges above all lie within the object).
        payload.truncate(payload.trim_end().len());
        let principal = Principal::new(PrincipalData {
            kind: TokenKind::Jwt,
            subject,
            client_id,
            issuer,
            audience,
            scopes,
            expires_at,
            issued_at,
            cnf,
            claims: ClaimsJson::checked(payload),
            json: OnceLock::new(),
        });
        Ok(Verified { principal, nbf, signer: None })
    }

    /// Verifies a token with the HMAC secret.
    fn validate_with_secret(
        &self,
        token: &str,
        secret: &DecodingKey,
        now: i64,
    ) -> Result<Verified, InvalidToken> {
        let compact = self.parse(token)?;
        if !self.signed_by(&compact, None, secret)? {
            return Err(InvalidToken::BadSignature);
        }
        self.claims(compact.payload, now)
    }

    fn validate_with(&self, token: &str, keys: &Keys, now: i64) -> Result<Verified, Halt> {
        let compact = self.parse(token)?;
        let candidates = match keys.select(compact.kid.as_deref(), compact.alg) {
            Selection::Found(candidates) => candidates,
            Selection::Unknown => return Err(Halt::NeedKeys),
            Selection::Ambiguous => return Err(InvalidToken::AmbiguousKey.into()),
            Selection::Mismatch => return Err(InvalidToken::KeyAlgorithmMismatch.into()),
        };
        // Another key under the same `kid` may be the one.
        let mut signer = None;
        for key in candidates {
            if self.signed_by(&compact, key.prepared.as_ref(), &key.decoding)? {
                signer = Some(key);
                break;
            }
        }
        let signer = signer.ok_or(InvalidToken::BadSignature)?;
        let signed_by = Signer {
            generation: keys.generation,
            name: KeyName { fingerprint: signer.fingerprint, kid: compact.kid, alg: compact.alg },
        };
        // The signature held: whatever fails now is the token itself.
        let verified = self.claims(compact.payload, now)?;
        Ok(Verified { signer: Some(signed_by), ..verified })
    }
}

/// serde_json's reading of the claims, with its errors told apart.
fn read_claims(payload: &str) -> Result<RegisteredClaims<'_>, InvalidToken> {
    serde_json::from_str(payload).map_err(|e| {
        // A wrong claim type stops the pass early: the text after it may not be JSON at all,
        // which makes the token malformed, as checking the whole text first used to say.
        if e.is_data() && serde_json::from_str::<serde::de::IgnoredAny>(payload).is_ok() {
            InvalidToken::InvalidClaim
        } else {
            InvalidToken::Malformed
        }
    })
}

/// A token that passed every check, with what the verified-token cache needs to remember.
struct Verified {
    principal: Principal,
    nbf: Option<i64>,
    /// The key that verified it (`None` for the HMAC secret).
    signer: Option<Signer>,
}

impl Inner {
    /// The verified-token cache's answer, if it has one. An entry counts only while key
    /// selection in `keys` still picks the very key that verified the token.
    fn cached(
        &self,
        token: &[u8],
        now: i64,
        keys: Option<&Keys>,
        count_miss: bool,
    ) -> Option<Result<Principal, AuthError>> {
        let alive = |key: &KeyRef| {
            keys.is_some_and(|keys| {
                // A generation names one content of the set: the same one selects the same key.
                key.generation == keys.generation
                    || matches!(keys.select(key.name.kid.as_deref(), key.name.alg),
                        Selection::Found(found) if found.clone().any(|k| k.fingerprint == key.name.fingerprint))
            })
        };
        match self.cache.as_ref()?.get(token, now, &self.policy.window, alive, count_miss) {
            Hit::Valid(principal) => Some(Ok(principal)),
            Hit::Invalid(why) => Some(Err(reject(why))),
            Hit::Miss => None,
        }
    }

    /// Remembers a verified token; hands its principal on.
    fn remember(&self, token: &str, verified: Verified, now: i64) -> Principal {
        if let Some(cache) = &self.cache {
            cache.insert(token, &verified.principal, verified.signer, verified.nbf, now);
        }
        verified.principal
    }
}

impl Validator for JwtValidator {
    /// What the verified-token cache holds for `token`, when it is valid now.
    fn remembered(&self, token: &[u8]) -> Option<Principal> {
        // A token never inserted (every new one) costs a bit test here, not the key set's
        // snapshot and a clock read: it is about to be looked up again by `validate`.
        if !self.inner.cache.as_ref()?.may_contain(token) {
            return None;
        }
        self.cached_only(token)?.ok()
    }

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
                if let Some(hit) = inner.cached(token.as_bytes(), now, None, true) {
                    return Verdict::Ready(hit);
                }
                let result = inner.validate_with_secret(token, secret, now);
                return Verdict::Ready(result.map(|v| inner.remember(token, v, now)).map_err(reject));
            }
        };
        if let Some(hit) = inner.cached(token.as_bytes(), now, Some(&keys), true) {
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

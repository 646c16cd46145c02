//! Minting tokens directly (tests and examples): JWT access tokens with any claims, and opaque
//! tokens the introspection endpoint vouches for.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::*;

/// An opaque token being issued. See [`DevIssuer::opaque_token`].
#[derive(Debug)]
pub struct OpaqueTokenBuilder<'a> {
    pub(super) jwt: TokenBuilder<'a>,
}

impl OpaqueTokenBuilder<'_> {
    /// Sets `sub`.
    pub fn subject(self, sub: &str) -> Self {
        OpaqueTokenBuilder { jwt: self.jwt.subject(sub) }
    }
    /// Sets `aud`.
    pub fn audience(self, aud: &str) -> Self {
        OpaqueTokenBuilder { jwt: self.jwt.audience(aud) }
    }
    /// Sets `scope`.
    pub fn scope(self, scope: &str) -> Self {
        OpaqueTokenBuilder { jwt: self.jwt.scope(scope) }
    }
    /// Sets `exp` to now + `ttl` (now by the issuer's [`clock`](DevIssuerBuilder::clock)).
    pub fn expires_in(self, ttl: Duration) -> Self {
        OpaqueTokenBuilder { jwt: self.jwt.expires_in(ttl) }
    }
    /// Sets any claim of the introspection response; `Value::Null` removes it.
    pub fn claim(self, name: &str, value: impl Into<Value>) -> Self {
        OpaqueTokenBuilder { jwt: self.jwt.claim(name, value) }
    }
    /// Registers the token and returns its value (32 random bytes, base64url).
    pub fn issue(self) -> String {
        let token = format!("{}{}", random_id(), random_id());
        let grant = OpaqueGrant { claims: self.jwt.claims, revoked: false };
        write(&self.jwt.issuer.opaque).insert(token.clone(), grant);
        token
    }
}

pub(super) enum Kid {
    Auto,
    None,
    Fixed(String),
}

/// A token being minted. See [`DevIssuer::token`].
pub struct TokenBuilder<'a> {
    pub(super) issuer: &'a Shared,
    pub(super) claims: Map<String, Value>,
    pub(super) header: Map<String, Value>,
    pub(super) alg: Option<Algorithm>,
    pub(super) kid: Kid,
}

impl std::fmt::Debug for TokenBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenBuilder").field("claims", &self.claims).finish_non_exhaustive()
    }
}

impl TokenBuilder<'_> {
    /// Sets `sub`.
    pub fn subject(self, sub: &str) -> Self {
        self.claim("sub", sub)
    }
    /// Sets `aud` (a string).
    pub fn audience(self, aud: &str) -> Self {
        self.claim("aud", aud)
    }
    /// Sets `scope` (space-delimited).
    pub fn scope(self, scope: &str) -> Self {
        self.claim("scope", scope)
    }
    /// Sets `exp` to now + `ttl` (now by the issuer's [`clock`](DevIssuerBuilder::clock)).
    pub fn expires_in(self, ttl: Duration) -> Self {
        let now = self.issuer.auth.clock.unix_now();
        self.claim("exp", now.saturating_add(token::secs(ttl)))
    }
    /// Sets `exp` to `ago` in the past (and `iat` before it), by the issuer's
    /// [`clock`](DevIssuerBuilder::clock).
    pub fn expired(self, ago: Duration) -> Self {
        let exp = self.issuer.auth.clock.unix_now().saturating_sub(token::secs(ago));
        self.claim("exp", exp).claim("iat", exp.saturating_sub(300))
    }
    /// Sets any claim; `Value::Null` removes it.
    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        match value.into() {
            Value::Null => self.claims.remove(name),
            v => self.claims.insert(name.into(), v),
        };
        self
    }
    /// Sets any header member (except `alg` and `kid`, see [`Self::alg`], [`Self::kid`]);
    /// `Value::Null` removes it.
    pub fn header(mut self, name: &str, value: impl Into<Value>) -> Self {
        match value.into() {
            Value::Null => self.header.remove(name),
            v => self.header.insert(name.into(), v),
        };
        self
    }
    /// Signs with the newest key of `alg`.
    pub fn alg(mut self, alg: Algorithm) -> Self {
        self.alg = Some(alg);
        self
    }
    /// Puts this `kid` in the header and signs with that key (if the issuer has it; otherwise
    /// the key of the algorithm signs and the header still names `kid`).
    pub fn kid(mut self, kid: &str) -> Self {
        self.kid = Kid::Fixed(kid.into());
        self
    }
    /// Leaves `kid` out of the header.
    pub fn no_kid(mut self) -> Self {
        self.kid = Kid::None;
        self
    }

    /// Signs the token.
    pub fn sign(self) -> String {
        let by_kid = match &self.kid {
            Kid::Fixed(kid) => self.issuer.find_key(|k| &k.kid == kid),
            _ => None,
        };
        let key = by_kid
            .or_else(|| match self.alg {
                Some(alg) => self.issuer.find_key(|k| k.alg == alg),
                None => self.issuer.find_key(|k| k.alg == Algorithm::RS256),
            })
            .or_else(|| read(&self.issuer.keys).first().cloned())
            .expect("the dev issuer has no key");
        let alg = self.alg.unwrap_or(key.alg);
        let mut header = Map::new();
        header.insert("alg".into(), alg_name(alg).into());
        match self.kid {
            Kid::Auto => drop(header.insert("kid".into(), key.kid.clone().into())),
            Kid::Fixed(kid) => drop(header.insert("kid".into(), kid.into())),
            Kid::None => {}
        }
        header.extend(self.header);
        let input = format!(
            "{}.{}",
            b64(Value::Object(header).to_string().as_bytes()),
            b64(Value::Object(self.claims).to_string().as_bytes())
        );
        let signature = key.sign(alg, input.as_bytes());
        format!("{input}.{}", b64(&signature))
    }
}

// A panic while a lock is held (a bug, or a `sign()` that found no key) must not turn every
// later request into a panic too: the guarded data stays usable (at worst one grant is half
// recorded, which a development server can live with), so poisoning is ignored.

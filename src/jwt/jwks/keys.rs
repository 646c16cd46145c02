//! Keys: each usable JWK of a set turned once into a verifying key, and key selection for a
//! token's `kid` and `alg`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::jwt::signature::PreparedKey;

use super::*;

/// The curve or key type of a verifying key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyType {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyType {
    pub(super) fn fits(self, alg: Algorithm) -> bool {
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
    pub(super) expires_at: Option<Instant>,
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
    pub(super) keys: &'a [VerifyingKey],
    pub(super) kid: Option<&'a str>,
    pub(super) alg: Algorithm,
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

#[derive(Deserialize)]
pub(super) struct JwkSetDoc<'a> {
    #[serde(borrow)]
    pub(super) keys: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
pub(super) struct RawJwk {
    pub(super) kty: String,
    #[serde(rename = "use")]
    pub(super) use_: Option<String>,
    pub(super) key_ops: Option<Vec<String>>,
    pub(super) alg: Option<String>,
    pub(super) kid: Option<String>,
    pub(super) crv: Option<String>,
    pub(super) n: Option<String>,
    pub(super) e: Option<String>,
    pub(super) x: Option<String>,
    pub(super) y: Option<String>,
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

pub(super) fn b64_len(field: &Option<String>) -> Result<usize, &'static str> {
    let value = field.as_deref().ok_or("missing key parameter")?;
    let bytes = URL_SAFE_NO_PAD.decode(value).map_err(|_| "key parameter is not base64url")?;
    // Leading zero octets do not count towards an RSA modulus' size.
    Ok(bytes.len() - bytes.iter().take_while(|&&b| b == 0).count())
}

pub(super) fn convert(jwk: RawJwk) -> Result<VerifyingKey, &'static str> {
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

pub(super) fn fingerprint(jwk: &RawJwk, key_type: KeyType, alg: Option<Algorithm>) -> [u8; 32] {
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

impl VerifyingKey {
    pub(super) fn clone_shallow(&self) -> VerifyingKey {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn bad_keys_are_skipped_not_fatal() {
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

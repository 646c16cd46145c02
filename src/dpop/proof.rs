//! Verifying one DPoP proof JWT (RFC 9449 §4.3) against the request it came with.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, Method, Uri};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::replay::ReplayKey;
use super::{Dpop, HtuOrigin};
use crate::error::{AuthError, InvalidDpopProof as Why, InvalidRequest};

/// A proof that passed every check but single use, which the layer records once the token's
/// binding matched.
#[derive(Debug)]
pub(crate) struct Proof {
    /// RFC 7638 SHA-256 thumbprint of the proof key, base64url.
    pub(crate) jkt: String,
    pub(crate) replay_key: ReplayKey,
    pub(crate) iat: i64,
    pub(crate) expires_at: i64,
    pub(crate) nonce_ok: bool,
}

/// JWK members that only private (or symmetric) keys have.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// RSA moduli accepted, in bytes (2048 to 4096 bits): a huge key is a denial of service.
const RSA_MODULUS_BYTES: std::ops::RangeInclusive<usize> = 256..=512;

#[derive(Deserialize)]
struct Header {
    typ: Option<String>,
    alg: Option<String>,
    jwk: Option<Map<String, Value>>,
    crit: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Claims {
    jti: Option<String>,
    htm: Option<String>,
    htu: Option<String>,
    iat: Option<Value>,
    ath: Option<String>,
    nonce: Option<String>,
}

/// The one `DPoP` header of a request.
pub(crate) fn proof_header(headers: &HeaderMap, max_bytes: usize) -> Result<&str, AuthError> {
    let mut all = headers.get_all(super::DPOP).iter();
    let Some(value) = all.next() else { return Err(InvalidRequest::MissingDpopProof.into()) };
    if all.next().is_some() {
        return Err(Why::Multiple.into());
    }
    if value.len() > max_bytes {
        return Err(Why::Malformed.into());
    }
    value.to_str().map_err(|_| Why::Malformed.into())
}

fn b64(part: &str) -> Result<Vec<u8>, Why> {
    crate::base64url::decode(part).ok_or(Why::Malformed)
}

fn object<T: for<'de> Deserialize<'de>>(bytes: &[u8], malformed: Why) -> Result<T, Why> {
    // A struct also deserializes from a JSON array: insist on an object.
    if bytes.first() != Some(&b'{') {
        return Err(malformed);
    }
    serde_json::from_slice(bytes).map_err(|e| if e.is_data() { Why::InvalidClaim } else { malformed })
}

/// The public key of the proof and its RFC 7638 thumbprint input.
struct ProofKey {
    key: DecodingKey,
    thumbprint_input: String,
    /// Fixed size of the signature, for ECDSA (r||s, never DER) and EdDSA.
    signature_len: Option<usize>,
}

fn member<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<&'a str, Why> {
    jwk.get(name).and_then(Value::as_str).ok_or(Why::MissingKey)
}

/// Reads the `jwk` and checks that it fits `alg`.
fn proof_key(jwk: &Map<String, Value>, alg: Algorithm) -> Result<ProofKey, Why> {
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(Why::PrivateKey);
    }
    let kty = member(jwk, "kty")?;
    match kty {
        "EC" => {
            let crv = member(jwk, "crv")?;
            let (want_crv, size) = match alg {
                Algorithm::ES256 => ("P-256", 32),
                Algorithm::ES384 => ("P-384", 48),
                _ => return Err(Why::KeyAlgorithmMismatch),
            };
            if crv != want_crv {
                return Err(Why::KeyAlgorithmMismatch);
            }
            let (x, y) = (member(jwk, "x")?, member(jwk, "y")?);
            if b64(x).map_err(|_| Why::MissingKey)?.len() != size
                || b64(y).map_err(|_| Why::MissingKey)?.len() != size
            {
                return Err(Why::MissingKey);
            }
            Ok(ProofKey {
                key: DecodingKey::from_ec_components(x, y).map_err(|_| Why::MissingKey)?,
                thumbprint_input: format!(r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#),
                signature_len: Some(2 * size),
            })
        }
        "OKP" => {
            if alg != Algorithm::EdDSA || member(jwk, "crv")? != "Ed25519" {
                return Err(Why::KeyAlgorithmMismatch);
            }
            let x = member(jwk, "x")?;
            if b64(x).map_err(|_| Why::MissingKey)?.len() != 32 {
                return Err(Why::MissingKey);
            }
            Ok(ProofKey {
                key: DecodingKey::from_ed_components(x).map_err(|_| Why::MissingKey)?,
                thumbprint_input: format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
                signature_len: Some(64),
            })
        }
        "RSA" => {
            if !matches!(
                alg,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ) {
                return Err(Why::KeyAlgorithmMismatch);
            }
            let (n, e) = (member(jwk, "n")?, member(jwk, "e")?);
            let (n_bytes, e_bytes) =
                (b64(n).map_err(|_| Why::MissingKey)?, b64(e).map_err(|_| Why::MissingKey)?);
            // RFC 7518 §6.3.1.1: no leading zero octets, so the length is the size.
            if n_bytes.first() == Some(&0) || !RSA_MODULUS_BYTES.contains(&n_bytes.len()) {
                return Err(Why::KeyAlgorithmMismatch);
            }
            // Leading zeros too (RFC 7518 §6.3.1.2): the same key would have another thumbprint.
            if e_bytes.first().is_none_or(|b| *b == 0) || e_bytes.len() > 8 {
                return Err(Why::MissingKey);
            }
            Ok(ProofKey {
                key: DecodingKey::from_rsa_raw_components(&n_bytes, &e_bytes),
                thumbprint_input: format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
                signature_len: Some(n_bytes.len()),
            })
        }
        _ => Err(Why::KeyAlgorithmMismatch),
    }
}

/// The RFC 7638 SHA-256 thumbprint of a JWK given as its canonical JSON (base64url, it is the
/// `jkt` of a bound token).
fn thumbprint(canonical: &str) -> [u8; 32] {
    Sha256::digest(canonical.as_bytes()).into()
}

/// What the request looks like to `htu`.
pub(crate) struct Target<'a> {
    pub(crate) method: &'a Method,
    pub(crate) uri: &'a Uri,
    pub(crate) headers: &'a HeaderMap,
}

impl Dpop {
    /// Every RFC 9449 §4.3 check of `proof` for `token` sent with `target`, but single use.
    /// `token` is `None` at a token endpoint (§5), where no access token exists yet: `ath` is
    /// then not checked.
    pub(crate) fn verify(
        &self,
        proof: &str,
        token: Option<&str>,
        target: &Target<'_>,
        now: i64,
    ) -> Result<Proof, Why> {
        let mut parts = proof.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Why::Malformed);
        };
        let header: Header = object(&b64(header)?, Why::Malformed).map_err(|_| Why::Malformed)?;
        if !header.typ.is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt")) {
            return Err(Why::WrongType);
        }
        let alg = header.alg.as_deref().ok_or(Why::AlgorithmNotAllowed)?;
        let alg: Algorithm = alg.parse().map_err(|_| Why::AlgorithmNotAllowed)?;
        if !self.algorithms.contains(&alg) {
            return Err(Why::AlgorithmNotAllowed);
        }
        if header.crit.is_some() {
            return Err(Why::UnsupportedCritical);
        }
        let jwk = header.jwk.ok_or(Why::MissingKey)?;
        let key = proof_key(&jwk, alg)?;
        let signature_bytes = b64(signature)?;
        if key.signature_len.is_some_and(|len| len != signature_bytes.len()) {
            return Err(Why::BadSignature);
        }
        let signing_input_len = proof.len() - signature.len() - 1;
        let valid =
            jsonwebtoken::crypto::verify(signature, &proof.as_bytes()[..signing_input_len], &key.key, alg)
                .unwrap_or(false);
        if !valid {
            return Err(Why::BadSignature);
        }
        let claims: Claims = object(&b64(payload)?, Why::Malformed)?;
        let jti = claims.jti.filter(|j| !j.is_empty()).ok_or(Why::InvalidClaim)?;
        if jti.len() > self.max_jti_bytes {
            return Err(Why::JtiTooLong);
        }
        let iat = match claims.iat {
            Some(Value::Number(n)) => n.as_i64().ok_or(Why::InvalidClaim)?,
            _ => return Err(Why::InvalidClaim),
        };
        let window = self.window_for(iat);
        if iat < now.saturating_sub(window) {
            return Err(Why::Stale);
        }
        if iat > now.saturating_add(window) {
            return Err(Why::IssuedInFuture);
        }
        let htm = claims.htm.ok_or(Why::InvalidClaim)?;
        if htm != target.method.as_str() {
            return Err(Why::WrongMethod);
        }
        let htu = claims.htu.ok_or(Why::InvalidClaim)?;
        if !self.htu_matches(&htu, target) {
            return Err(Why::WrongUri);
        }
        if let Some(token) = token {
            let ath = claims.ath.ok_or(Why::WrongTokenHash)?;
            if ath != URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes())) {
                return Err(Why::WrongTokenHash);
            }
        }
        let nonce_ok = match &self.nonces {
            None => true,
            Some(nonces) => claims.nonce.as_deref().is_some_and(|n| nonces.is_valid(n, now)),
        };
        let owner = thumbprint(&key.thumbprint_input);
        let jkt = URL_SAFE_NO_PAD.encode(owner);
        let mut hash = Sha256::new();
        hash.update(jkt.as_bytes());
        hash.update([0]);
        hash.update(jti.as_bytes());
        Ok(Proof {
            jkt,
            replay_key: ReplayKey::new(hash.finalize().into(), owner),
            iat,
            expires_at: iat.saturating_add(self.record_window(iat)).saturating_add(1),
            nonce_ok,
        })
    }

    /// `htu` against the configured origin and the request path (RFC 9449 §4.3 item 9: query and
    /// fragment ignored; scheme and host compared without case, default ports dropped).
    fn htu_matches(&self, htu: &str, target: &Target<'_>) -> bool {
        let htu = htu.split_once('#').map_or(htu, |(before, _)| before);
        let htu = htu.split_once('?').map_or(htu, |(before, _)| before);
        let Ok(htu) = htu.parse::<Uri>() else { return false };
        let (Some(scheme), Some(authority)) = (htu.scheme_str(), htu.authority()) else { return false };
        if authority.as_str().contains('@') {
            return false;
        }
        let path = if htu.path().is_empty() { "/" } else { htu.path() };
        let request_path = if target.uri.path().is_empty() { "/" } else { target.uri.path() };
        if !same_path(path, request_path) {
            return false;
        }
        let (want_scheme, want_authority) = match &self.origin {
            HtuOrigin::Fixed { scheme, authority } => (scheme.as_str(), authority.as_str()),
            HtuOrigin::Host { scheme } => {
                let host = target
                    .uri
                    .authority()
                    .map(|a| a.as_str())
                    .or_else(|| target.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()));
                match host {
                    Some(host) => (scheme.as_str(), host),
                    None => return false,
                }
            }
        };
        scheme.eq_ignore_ascii_case(want_scheme)
            && normalize_authority(scheme, authority.as_str())
                == normalize_authority(want_scheme, want_authority)
    }
}

/// Whether two paths are the same after RFC 3986 §6.2.2's syntax-based normalisation (as RFC
/// 9449 §4.3 asks): `%7e` and `%7E` are `~`, and `%2f` is `%2F` (still not `/`). Dot segments
/// are not removed: clients send paths without them. A path with a `%` that starts no escape
/// is not a valid one: it equals only itself.
fn same_path(a: &str, b: &str) -> bool {
    /// One character of a path: a plain byte, or an octet that must stay percent-encoded.
    #[derive(PartialEq)]
    enum Unit {
        Plain(u8),
        Encoded(u8),
    }
    fn units(path: &str) -> impl Iterator<Item = Unit> + '_ {
        let mut bytes = path.as_bytes().iter();
        std::iter::from_fn(move || {
            let &b = bytes.next()?;
            if b != b'%' {
                return Some(Unit::Plain(b));
            }
            let hex = |b: Option<&u8>| b.and_then(|&b| (b as char).to_digit(16));
            let rest = bytes.as_slice();
            match (hex(rest.first()), hex(rest.get(1))) {
                (Some(hi), Some(lo)) => {
                    bytes.nth(1);
                    // Both digits are below 16: the octet fits.
                    let octet = (hi * 16 + lo) as u8;
                    let unreserved = octet.is_ascii_alphanumeric() || b"-._~".contains(&octet);
                    Some(if unreserved { Unit::Plain(octet) } else { Unit::Encoded(octet) })
                }
                // Unreachable after `well_formed`, and never equal to a decoded byte.
                _ => Some(Unit::Encoded(b'%')),
            }
        })
    }
    fn well_formed(path: &str) -> bool {
        let bytes = path.as_bytes();
        bytes.iter().enumerate().all(|(i, &b)| {
            b != b'%' || bytes.get(i + 1..i + 3).is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
        })
    }
    a == b || (well_formed(a) && well_formed(b) && units(a).eq(units(b)))
}

/// Lower-case host, default port dropped.
pub(crate) fn normalize_authority(scheme: &str, authority: &str) -> String {
    let mut a = authority.to_ascii_lowercase();
    let default = if scheme.eq_ignore_ascii_case("https") { ":443" } else { ":80" };
    if a.ends_with(default) {
        a.truncate(a.len() - default.len());
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_compare_after_rfc_3986_normalisation() {
        for (a, b) in [
            ("/a/b", "/a/b"),
            ("/~user", "/%7Euser"),
            ("/%7euser", "/%7Euser"),
            ("/%41%62c", "/Abc"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%20b", "/a%20b"),
            ("/50%", "/50%"),
            ("/%zz", "/%zz"),
            ("/%%41", "/%%41"),
        ] {
            assert!(same_path(a, b), "{a} {b}");
            assert!(same_path(b, a), "{b} {a}");
        }
        for (a, b) in [
            ("/a/b", "/a%2Fb"),
            ("/a b", "/a%20b"),
            ("/abc", "/ABC"),
            ("/a", "/a/"),
            ("/%41", "/%4"),
            ("/50%", "/50%25"),
            ("/%7e", "/%7e%"),
            ("/%%41", "/%A"),
            ("/%A", "/%41"),
            ("/~%", "/%7E%"),
        ] {
            assert!(!same_path(a, b), "{a} {b}");
            assert!(!same_path(b, a), "{b} {a}");
        }
    }

    #[test]
    fn rfc_9449_thumbprint() {
        // The key and `jkt` of RFC 9449 §4.1 and §6.1.
        let jwk: Map<String, Value> = serde_json::from_str(
            r#"{"kty":"EC","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
                "y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA","crv":"P-256"}"#,
        )
        .unwrap();
        let key = proof_key(&jwk, Algorithm::ES256).unwrap_or_else(|_| panic!("a valid key"));
        assert_eq!(
            URL_SAFE_NO_PAD.encode(thumbprint(&key.thumbprint_input)),
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
        );
        assert!(matches!(proof_key(&jwk, Algorithm::ES384), Err(Why::KeyAlgorithmMismatch)));
        let mut private = jwk.clone();
        private.insert("d".into(), "x".into());
        assert!(matches!(proof_key(&private, Algorithm::ES256), Err(Why::PrivateKey)));
    }
}

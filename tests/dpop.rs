//! DPoP (RFC 9449) at the layer: proofs made here with aws-lc-rs keys, tokens bound to them by
//! the dev issuer (`cnf.jkt`). The hostile table runs in-process (tower `oneshot`) against a
//! real key set fetched over 127.0.0.1; the flows (nonces, DPoP only, challenges) run over real
//! HTTP.
#![cfg(all(feature = "dev", feature = "axum"))]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::*;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tower::ServiceExt;
use tower_bearer::dev::DevIssuer;
use tower_bearer::dpop::{Dpop, DpopNonces, InMemoryReplayStore, ReplayError, ReplayKey, ReplayStore};
use tower_bearer::{Algorithm, BearerLayer, Clock};

const ORIGIN: &str = "https://api.example";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

static JTI: AtomicU64 = AtomicU64::new(0);

fn fresh_jti() -> String {
    format!("jti-{}-{}", JTI.fetch_add(1, Ordering::Relaxed), std::process::id())
}

/// A client's proof key.
enum Key {
    Ec(EcdsaKeyPair, &'static str, usize),
    Ed(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

impl Key {
    fn p256() -> Key {
        Key::Ec(EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(), "P-256", 32)
    }
    fn p384() -> Key {
        Key::Ec(EcdsaKeyPair::generate(&sig::ECDSA_P384_SHA384_FIXED_SIGNING).unwrap(), "P-384", 48)
    }
    fn ed25519() -> Key {
        Key::Ed(Ed25519KeyPair::generate().unwrap())
    }
    fn rsa() -> Key {
        Key::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).unwrap())
    }

    /// The public JWK, members in RFC 7638 order (the thumbprint input is this JSON).
    fn jwk(&self) -> Value {
        match self {
            Key::Ec(pair, crv, len) => {
                let (x, y) = pair.public_key().as_ref()[1..].split_at(*len);
                json!({"crv": crv, "kty": "EC", "x": b64(x), "y": b64(y)})
            }
            Key::Ed(pair) => json!({"crv": "Ed25519", "kty": "OKP", "x": b64(pair.public_key().as_ref())}),
            Key::Rsa(pair) => {
                let public = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
                json!({"e": b64(&public.e), "kty": "RSA", "n": b64(&public.n)})
            }
        }
    }

    /// RFC 7638 thumbprint, computed here from the canonical members.
    fn jkt(&self) -> String {
        let jwk = self.jwk();
        let members: &[&str] = match self {
            Key::Ec(..) => &["crv", "kty", "x", "y"],
            Key::Ed(_) => &["crv", "kty", "x"],
            Key::Rsa(_) => &["e", "kty", "n"],
        };
        let body: Vec<String> =
            members.iter().map(|m| format!("\"{m}\":\"{}\"", jwk[m].as_str().unwrap())).collect();
        b64(&Sha256::digest(format!("{{{}}}", body.join(",")).as_bytes()))
    }

    fn alg(&self) -> &'static str {
        match self {
            Key::Ec(_, "P-256", _) => "ES256",
            Key::Ec(..) => "ES384",
            Key::Ed(_) => "EdDSA",
            Key::Rsa(_) => "RS256",
        }
    }

    fn sign(&self, input: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Key::Ec(pair, ..) => pair.sign(&rng, input).unwrap().as_ref().to_vec(),
            Key::Ed(pair) => pair.sign(input).as_ref().to_vec(),
            Key::Rsa(pair) => {
                let mut out = vec![0; pair.public_modulus_len()];
                pair.sign(&sig::RSA_PKCS1_SHA256, &rng, input, &mut out).unwrap();
                out
            }
        }
    }
}

/// A proof being made: header and claims to tamper with before signing.
struct ProofBuilder<'a> {
    key: &'a Key,
    header: Map<String, Value>,
    claims: Map<String, Value>,
}

impl<'a> ProofBuilder<'a> {
    fn new(key: &'a Key, method: &str, path: &str, token: &str, iat: i64) -> Self {
        let header = json!({"typ": "dpop+jwt", "alg": key.alg(), "jwk": key.jwk()});
        let claims = json!({
            "jti": fresh_jti(),
            "htm": method,
            "htu": format!("{ORIGIN}{path}"),
            "iat": iat,
            "ath": b64(&Sha256::digest(token.as_bytes())),
        });
        ProofBuilder {
            key,
            header: header.as_object().unwrap().clone(),
            claims: claims.as_object().unwrap().clone(),
        }
    }
    fn header(mut self, name: &str, value: Value) -> Self {
        match value {
            Value::Null => self.header.remove(name),
            v => self.header.insert(name.into(), v),
        };
        self
    }
    fn claim(mut self, name: &str, value: Value) -> Self {
        match value {
            Value::Null => self.claims.remove(name),
            v => self.claims.insert(name.into(), v),
        };
        self
    }
    fn input(&self) -> String {
        format!(
            "{}.{}",
            b64(Value::Object(self.header.clone()).to_string().as_bytes()),
            b64(Value::Object(self.claims.clone()).to_string().as_bytes())
        )
    }
    fn sign(self) -> String {
        let input = self.input();
        format!("{input}.{}", b64(&self.key.sign(input.as_bytes())))
    }
    /// Signed with raw signature bytes of the caller's choosing.
    fn sign_with(self, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
        let input = self.input();
        format!("{input}.{}", b64(&sign(input.as_bytes())))
    }
}

/// The P-256 group order.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc,
    0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// `r || (n − s)`: the other valid ECDSA signature of the same message.
fn malleate(proof: &str) -> String {
    let (input, sig) = proof.rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let (r, s) = sig.split_at(32);
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(P256_N[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        out[i] = (d + 256 * borrow) as u8;
    }
    assert_ne!(out.as_slice(), s);
    format!("{input}.{}", b64(&[r, &out].concat()))
}

/// The fixed-size `r || s` signature of a proof, DER-encoded (ASN.1 SEQUENCE of two INTEGERs).
fn to_der(proof: &str) -> String {
    let (input, sig) = proof.rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let int = |b: &[u8]| {
        let mut b = b.to_vec();
        while b.len() > 1 && b[0] == 0 && b[1] < 0x80 {
            b.remove(0);
        }
        if b[0] >= 0x80 {
            b.insert(0, 0);
        }
        [vec![0x02, b.len() as u8], b].concat()
    };
    let body = [int(&sig[..32]), int(&sig[32..])].concat();
    format!("{input}.{}", b64(&[vec![0x30, body.len() as u8], body].concat()))
}

/// A clock the test sets by hand (Unix seconds).
#[derive(Clone)]
struct TestClock(Arc<AtomicI64>);

impl TestClock {
    fn new() -> Self {
        TestClock(Arc::new(AtomicI64::new(unix_now())))
    }
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
    fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
    fn clock(&self) -> Clock {
        let at = self.0.clone();
        Clock::from_fn(move || UNIX_EPOCH + Duration::from_secs(at.load(Ordering::SeqCst) as u64))
    }
}

struct Setup {
    dev: DevIssuer,
    clock: TestClock,
    app: Router,
}

async fn setup(configure: impl FnOnce(Dpop) -> Dpop, allowed: bool) -> Setup {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let clock = TestClock::new();
    let dpop = if allowed { Dpop::allowed(ORIGIN) } else { Dpop::required(ORIGIN) }.unwrap();
    let dpop = configure(dpop.clock(clock.clock()));
    let app = routes().layer(BearerLayer::new(validator(&dev)).realm(REALM).dpop(dpop));
    Setup { dev, clock, app }
}

impl Setup {
    fn token_for(&self, key: &Key) -> String {
        self.dev.token().alg(Algorithm::ES256).claim("cnf", json!({"jkt": key.jkt()})).sign()
    }
    async fn send(&self, req: Request<Body>) -> (StatusCode, HeaderMap) {
        let res = self.app.clone().oneshot(req).await.unwrap();
        (res.status(), res.headers().clone())
    }
}

fn dpop_request(method: &str, uri: &str, token: &str, proofs: &[&str]) -> Request<Body> {
    let mut req =
        Request::builder().method(method).uri(uri).header(header::AUTHORIZATION, format!("DPoP {token}"));
    for proof in proofs {
        req = req.header("dpop", *proof);
    }
    req.body(Body::empty()).unwrap()
}

/// `(scheme, error)` of the one challenge of a response.
fn challenge_of(headers: &HeaderMap) -> (String, Option<String>) {
    let value = headers.get(header::WWW_AUTHENTICATE).expect("a challenge").to_str().unwrap();
    let all = tower_bearer::challenge::Challenge::parse_all(value).unwrap();
    // A bound token sent as Bearer also gets a bare DPoP challenge (how to send it).
    let how = |c: &tower_bearer::challenge::Challenge| c.scheme == "DPoP" && c.param("error").is_none();
    assert!(all.len() == 1 || (all.len() == 2 && how(&all[1])), "{value}");
    (all[0].scheme.clone(), all[0].param("error").map(str::to_owned))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Ok,
    /// 401 `DPoP error="invalid_dpop_proof"`.
    BadProof,
    /// The same, because the proof (key and `jti`) was seen before: the signature verified, so
    /// this is the replay check speaking (its own description).
    Replayed,
    /// 401 `invalid_token` under the scheme used.
    BadToken(&'static str),
    /// 400 `invalid_request`.
    BadRequest,
}

/// The reason each refusal must be logged with (`AuthError::reason`, the metrics label): it
/// shows the intended check answered, not an earlier one.
fn expected_reason(what: &str) -> &'static str {
    match what {
        w if w.starts_with("ath") && w != "ath as a number" => "dpop_wrong_ath",
        w if w.starts_with("htu") && w != "htu missing" => "dpop_wrong_htu",
        "htm lower-case" | "htm other method" => "dpop_wrong_htm",
        "iat stale" => "dpop_stale",
        "iat in the future" => "dpop_issued_in_future",
        "ath as a number" | "htu missing" | "htm missing" | "iat as a string" | "iat as a fraction"
        | "iat missing" | "jti missing" | "jti empty" => "dpop_invalid_claim",
        "jti of 300 bytes" => "dpop_jti_too_long",
        // Over the 8 KiB bound on the header.
        "jti of 10 KB" => "dpop_malformed",
        "alg none" | "HS256 with an oct key" | "HS256 over the EC key" => "dpop_algorithm_not_allowed",
        "RS256 over an EC key"
        | "ES256 over a P-384 key"
        | "ES384 over a P-256 key"
        | "EdDSA over an EC key"
        | "a 16384-bit RSA key" => "dpop_key_algorithm_mismatch",
        "DER-encoded ECDSA signature" | "tampered payload" => "dpop_bad_signature",
        "jwk with d" | "jwk with k" => "dpop_private_jwk",
        "no jwk" | "an RSA exponent with a leading zero" => "dpop_missing_jwk",
        "typ JWT" | "typ at+jwt" | "no typ" | "the access token as the proof" => "dpop_wrong_typ",
        "crit header" => "dpop_unsupported_crit",
        "jwk not an object" | "two segments" | "claims are an array" | "not base64url" => "dpop_malformed",
        "two DPoP headers" => "multiple_dpop_proofs",
        "DPoP scheme without a proof" => "missing_dpop_proof",
        "proof by another key than cnf.jkt" => "dpop_key_mismatch",
        "unbound token with the DPoP scheme" => "unbound_token_as_dpop",
        w if w.contains("again") || w.starts_with("replay") || w.starts_with("same key") => "dpop_replayed",
        other => panic!("no reason for row {other:?}"),
    }
}

/// Records the `reason` field of every tracing event (the layer logs each refusal with it).
#[derive(Clone, Default)]
struct Reasons(Arc<std::sync::Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Reasons {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Visit<'a>(&'a Reasons);
        impl tracing::field::Visit for Visit<'_> {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "reason" {
                    self.0.0.lock().unwrap().push(value.to_owned());
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        event.record(&mut Visit(self));
    }
}

impl Reasons {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// What, method, URI, token, proofs, expected.
type Row = (&'static str, &'static str, &'static str, String, Vec<String>, Expect);

#[tokio::test]
async fn hostile_proofs() {
    let s = setup(|d| d, true).await;
    let key = Key::p256();
    let token = s.token_for(&key);
    let other_token =
        s.dev.token().alg(Algorithm::ES256).claim("cnf", json!({"jkt": key.jkt()})).claim("n", 2).sign();
    let now = s.clock.now();
    let p = |m: &str, path: &str| ProofBuilder::new(&key, m, path, &token, now);
    let hs256 =
        |input: &[u8]| hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, b"secret"), input).as_ref().to_vec();
    let p384 = Key::p384();
    let rsa = Key::rsa();
    let ed = Key::ed25519();
    let stranger = Key::p256();
    let unbound = s.dev.token().alg(Algorithm::ES256).sign();
    let replayed = p("GET", "/me").sign();
    let resigned = p("GET", "/me").claim("jti", json!("same-jti")).sign();
    let resigned_again = p("GET", "/me").claim("jti", json!("same-jti")).sign();
    let malleated_source = p("GET", "/me").sign();
    let huge_n = b64(&[0xc5; 2048]);

    // (what, method, uri, token, proofs, expected)
    let mut rows: Vec<Row> = vec![
        ("valid proof", "GET", "/me", token.clone(), vec![replayed.clone()], Expect::Ok),
        ("the same proof again", "GET", "/me", token.clone(), vec![replayed.clone()], Expect::Replayed),
        ("first use of a jti", "GET", "/me", token.clone(), vec![resigned], Expect::Ok),
        (
            "same key and jti, new signature",
            "GET",
            "/me",
            token.clone(),
            vec![resigned_again],
            Expect::Replayed,
        ),
        ("first use, then s -> n-s", "GET", "/me", token.clone(), vec![malleated_source.clone()], Expect::Ok),
        (
            "replay with s replaced by n-s",
            "GET",
            "/me",
            token.clone(),
            vec![malleate(&malleated_source)],
            Expect::Replayed,
        ),
        (
            "ath missing",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").claim("ath", Value::Null).sign()],
            Expect::BadProof,
        ),
        (
            "ath of another token",
            "GET",
            "/me",
            token.clone(),
            vec![ProofBuilder::new(&key, "GET", "/me", &other_token, now).sign()],
            Expect::BadProof,
        ),
        (
            "ath in padded standard base64",
            "GET",
            "/me",
            token.clone(),
            vec![
                p("GET", "/me").claim("ath", json!(STANDARD.encode(Sha256::digest(token.as_bytes())))).sign(),
            ],
            Expect::BadProof,
        ),
        (
            "ath as a number",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").claim("ath", json!(1)).sign()],
            Expect::BadProof,
        ),
        ("htu other path", "GET", "/me", token.clone(), vec![p("GET", "/items").sign()], Expect::BadProof),
        (
            "htu other host",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").claim("htu", json!("https://evil.example/me")).sign()],
            Expect::BadProof,
        ),
        (
            "htu other scheme",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").claim("htu", json!("http://api.example/me")).sign()],
            Expect::BadProof,
        ),
        (
            "htu other port",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").claim("htu", json!("https://api.example:8443/me")).sign()],
            Expect::BadProof,
        ),
        ("htu trailing slash", "GET", "/me", token.clone(), vec![p("GET", "/me/").sign()], Expect::BadProof),
        (
            "htu with user info",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").claim("htu", json!("https://u@api.example/me")).sign()],
            Expect::BadProof,
        ),
        (
            "htu relative",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").claim("htu", json!("/me")).sign()],
            Expect::BadProof,
        ),
        (
            "htu missing",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").claim("htu", Value::Null).sign()],
            Expect::BadProof,
        ),
        (
            "htu with a different query",
            "GET",
            "/me?a=1",
            token.clone(),
            vec![p("GET", "/me?b=2#frag").sign()],
            Expect::Ok,
        ),
        (
            "htu upper-case host, explicit default port",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").claim("htu", json!("HTTPS://API.EXAMPLE:443/me")).sign()],
            Expect::Ok,
        ),
        ("htm lower-case", "GET", "/me", token.clone(), vec![p("get", "/me").sign()], Expect::BadProof),
        ("htm other method", "GET", "/me", token.clone(), vec![p("POST", "/me").sign()], Expect::BadProof),
        (
            "htm missing",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").claim("htm", Value::Null).sign()],
            Expect::BadProof,
        ),
        (
            "iat stale",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").claim("iat", json!(now - 61)).sign()],
            Expect::BadProof,
        ),
        (
            "iat at the edge of the window",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").claim("iat", json!(now - 60)).sign()],
            Expect::Ok,
        ),
        (
            "iat in the future",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").claim("iat", json!(now + 61)).sign()],
            Expect::BadProof,
        ),
        (
            "iat as a string",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").claim("iat", json!(now.to_string())).sign()],
            Expect::BadProof,
        ),
        (
            "iat as a fraction",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").claim("iat", json!(now as f64 + 0.5)).sign()],
            Expect::BadProof,
        ),
        (
            "iat missing",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").claim("iat", Value::Null).sign()],
            Expect::BadProof,
        ),
        (
            "jti missing",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").claim("jti", Value::Null).sign()],
            Expect::BadProof,
        ),
        (
            "jti empty",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").claim("jti", json!("")).sign()],
            Expect::BadProof,
        ),
        (
            "jti of 300 bytes",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").claim("jti", json!("j".repeat(300))).sign()],
            Expect::BadProof,
        ),
        (
            "jti of 10 KB",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").claim("jti", json!("j".repeat(10 * 1024))).sign()],
            Expect::BadProof,
        ),
        (
            "alg none",
            "GET",
            "/me",
            token.clone(),
            vec![format!("{}.", p("GET", "/me").header("alg", json!("none")).input())],
            Expect::BadProof,
        ),
        (
            "HS256 with an oct key",
            "GET",
            "/me",
            token.clone(),
            vec![
                p("GET", "/me")
                    .header("alg", json!("HS256"))
                    .header("jwk", json!({"kty": "oct", "k": b64(b"secret")}))
                    .sign_with(hs256),
            ],
            Expect::BadProof,
        ),
        (
            "HS256 over the EC key",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").header("alg", json!("HS256")).sign_with(hs256)],
            Expect::BadProof,
        ),
        (
            "RS256 over an EC key",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").header("alg", json!("RS256")).sign()],
            Expect::BadProof,
        ),
        (
            "ES256 over a P-384 key",
            "GET",
            "/me",
            token.clone(),
            vec![ProofBuilder::new(&p384, "GET", "/me", &token, now).header("alg", json!("ES256")).sign()],
            Expect::BadProof,
        ),
        (
            "ES384 over a P-256 key",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").header("alg", json!("ES384")).sign()],
            Expect::BadProof,
        ),
        (
            "EdDSA over an EC key",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").header("alg", json!("EdDSA")).sign()],
            Expect::BadProof,
        ),
        (
            "a 16384-bit RSA key",
            "GET",
            "/me",
            token.clone(),
            vec![
                ProofBuilder::new(&rsa, "GET", "/me", &token, now)
                    .header("jwk", json!({"kty": "RSA", "e": "AQAB", "n": huge_n}))
                    .sign(),
            ],
            Expect::BadProof,
        ),
        (
            // The same key, another thumbprint: RFC 7518 wants no leading zero octets.
            "an RSA exponent with a leading zero",
            "GET",
            "/me",
            token.clone(),
            vec![
                ProofBuilder::new(&rsa, "GET", "/me", &token, now)
                    .header("jwk", json!({"kty": "RSA", "e": "AAEAAQ", "n": rsa.jwk()["n"]}))
                    .sign(),
            ],
            Expect::BadProof,
        ),
        (
            "DER-encoded ECDSA signature",
            "GET",
            "/me",
            token.clone(),
            vec![to_der(&p("GET", "/me").sign())],
            Expect::BadProof,
        ),
        (
            "jwk with d",
            "GET",
            "/me",
            token.clone(),
            vec![{
                let mut jwk = key.jwk();
                jwk["d"] = json!(b64(&[1; 32]));
                p("GET", "/me").header("jwk", jwk).sign()
            }],
            Expect::BadProof,
        ),
        (
            "jwk with k",
            "GET",
            "/me",
            token.clone(),
            vec![{
                let mut jwk = key.jwk();
                jwk["k"] = json!("AA");
                p("GET", "/me").header("jwk", jwk).sign()
            }],
            Expect::BadProof,
        ),
        (
            "no jwk",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").header("jwk", Value::Null).sign()],
            Expect::BadProof,
        ),
        (
            "jwk not an object",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").header("jwk", json!("key")).sign()],
            Expect::BadProof,
        ),
        (
            "typ JWT",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").header("typ", json!("JWT")).sign()],
            Expect::BadProof,
        ),
        (
            "typ at+jwt",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").header("typ", json!("at+jwt")).sign()],
            Expect::BadProof,
        ),
        (
            "no typ",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").header("typ", Value::Null).sign()],
            Expect::BadProof,
        ),
        (
            "crit header",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").header("crit", json!(["exp"])).sign()],
            Expect::BadProof,
        ),
        (
            "tampered payload",
            "GET",
            "/me",
            token.clone(),
            vec![{
                let good = p("GET", "/me").sign();
                let other = p("GET", "/me").sign();
                let g: Vec<_> = good.split('.').collect();
                let o: Vec<_> = other.split('.').collect();
                format!("{}.{}.{}", g[0], o[1], g[2])
            }],
            Expect::BadProof,
        ),
        ("the access token as the proof", "GET", "/me", token.clone(), vec![token.clone()], Expect::BadProof),
        ("two segments", "GET", "/me", token.clone(), vec![p("GET", "/me").input()], Expect::BadProof),
        (
            "claims are an array",
            "GET",
            "/me",
            token.clone(),
            vec![{
                let h =
                    b64(json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk()}).to_string().as_bytes());
                let input = format!("{h}.{}", b64(b"[1]"));
                format!("{input}.{}", b64(&key.sign(input.as_bytes())))
            }],
            Expect::BadProof,
        ),
        ("not base64url", "GET", "/me", token.clone(), vec!["a+b.c/d.e".into()], Expect::BadProof),
        (
            "two DPoP headers",
            "GET",
            "/me",
            token.clone(),
            vec![p("GET", "/me").sign(), p("GET", "/me").sign()],
            // RFC 9449 §4.3's first check: an invalid proof, not a malformed request.
            Expect::BadProof,
        ),
        ("DPoP scheme without a proof", "GET", "/me", token.clone(), vec![], Expect::BadRequest),
        (
            "proof by another key than cnf.jkt",
            "GET",
            "/me",
            token.clone(),
            vec![ProofBuilder::new(&stranger, "GET", "/me", &token, now).sign()],
            Expect::BadToken("DPoP"),
        ),
        (
            "unbound token with the DPoP scheme",
            "GET",
            "/me",
            unbound.clone(),
            vec![ProofBuilder::new(&key, "GET", "/me", &unbound, now).sign()],
            Expect::BadToken("DPoP"),
        ),
        ("EdDSA proof", "GET", "/me", s.token_for(&ed), vec![], Expect::Ok),
        ("RS256 proof", "GET", "/me", s.token_for(&rsa), vec![], Expect::Ok),
        (
            "POST with a POST proof",
            "POST",
            "/items",
            token.clone(),
            vec![p("POST", "/items").sign()],
            Expect::Ok,
        ),
    ];
    // The EdDSA and RS256 rows need proofs for their own tokens.
    for row in rows.iter_mut() {
        if row.4.is_empty() && row.5 == Expect::Ok {
            let k = if row.0.starts_with("EdDSA") { &ed } else { &rsa };
            row.4 = vec![ProofBuilder::new(k, "GET", "/me", &row.3, now).sign()];
        }
    }
    assert!(rows.len() >= 40, "{} rows", rows.len());
    // `POST /items` needs a scope the dev token may lack: a 403 comes after the proof passed.
    // The test runs on one thread (current-thread runtime): the subscriber sees every event.
    use tracing_subscriber::layer::SubscriberExt;
    let reasons = Reasons::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(reasons.clone()));
    for (what, method, uri, token, proofs, expect) in rows {
        let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let (status, headers) = s.send(dpop_request(method, uri, &token, &proofs)).await;
        let logged = reasons.take();
        if expect != Expect::Ok {
            assert_eq!(logged, [expected_reason(what)], "{what}");
        }
        match expect {
            Expect::Ok => assert!(
                status == StatusCode::OK || status == StatusCode::FORBIDDEN,
                "{what}: {status} {headers:?}"
            ),
            Expect::BadProof => {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {headers:?}");
                assert_eq!(
                    challenge_of(&headers),
                    ("DPoP".into(), Some("invalid_dpop_proof".into())),
                    "{what}"
                );
            }
            Expect::Replayed => {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {headers:?}");
                let value = headers.get(header::WWW_AUTHENTICATE).unwrap().to_str().unwrap();
                let c = tower_bearer::challenge::Challenge::find_dpop(value).unwrap().unwrap();
                assert_eq!(c.error_description(), Some("the DPoP proof was used before"), "{what}");
            }
            Expect::BadToken(scheme) => {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {headers:?}");
                assert_eq!(challenge_of(&headers), (scheme.into(), Some("invalid_token".into())), "{what}");
            }
            Expect::BadRequest => {
                assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {headers:?}");
                assert_eq!(challenge_of(&headers).1.as_deref(), Some("invalid_request"), "{what}");
            }
        }
    }
}

#[tokio::test]
async fn bearer_side_of_the_policy() {
    let s = setup(|d| d, true).await;
    let key = Key::p256();
    let bound = s.token_for(&key);
    let unbound = s.dev.token().alg(Algorithm::ES256).sign();
    let bearer = |token: &str| {
        Request::get("/me")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    // Unbound as Bearer: fine with DPoP allowed.
    assert_eq!(s.send(bearer(&unbound)).await.0, StatusCode::OK);
    // Bound as Bearer: refused under Bearer.
    let (status, headers) = s.send(bearer(&bound)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge_of(&headers), ("Bearer".into(), Some("invalid_token".into())));
    // Bearer together with a proof: which did the client mean?
    let proof = ProofBuilder::new(&key, "GET", "/me", &unbound, s.clock.now()).sign();
    let mut req = bearer(&unbound);
    req.headers_mut().insert("dpop", proof.parse().unwrap());
    let (status, headers) = s.send(req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(challenge_of(&headers), ("Bearer".into(), Some("invalid_request".into())));
    // No credentials: one challenge per accepted scheme.
    let (status, headers) = s.send(Request::get("/me").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let value = headers.get(header::WWW_AUTHENTICATE).unwrap().to_str().unwrap();
    let all = tower_bearer::challenge::Challenge::parse_all(value).unwrap();
    let schemes: Vec<&str> = all.iter().map(|c| c.scheme.as_str()).collect();
    assert_eq!(schemes, ["Bearer", "DPoP"], "{value}");
    assert_eq!(all[1].param("algs"), Some("ES256 ES384 EdDSA RS256 PS256"));
    assert_eq!(all[0].param("error"), None);
}

#[tokio::test]
async fn scope_errors_after_the_layer_use_the_scheme_of_the_request() {
    let s = setup(|d| d, true).await;
    let key = Key::p256();
    // No `items:write`: `POST /items` is refused by `RequireScope`, after the layer.
    let token = s
        .dev
        .token()
        .alg(Algorithm::ES256)
        .scope("items:read")
        .claim("cnf", json!({"jkt": key.jkt()}))
        .sign();
    for _ in 0..2 {
        let proof = ProofBuilder::new(&key, "POST", "/items", &token, s.clock.now()).sign();
        let (status, headers) = s.send(dpop_request("POST", "/items", &token, &[&proof])).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(challenge_of(&headers), ("DPoP".into(), Some("insufficient_scope".into())));
    }
    let unbound = s.dev.token().alg(Algorithm::ES256).scope("items:read").sign();
    let req = Request::post("/items")
        .header(header::AUTHORIZATION, format!("Bearer {unbound}"))
        .body(Body::empty());
    let (status, headers) = s.send(req.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(challenge_of(&headers), ("Bearer".into(), Some("insufficient_scope".into())));
}

#[tokio::test]
async fn off_still_refuses_bound_tokens_and_ignores_the_dpop_scheme() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let key = Key::p256();
    let app = routes().layer(BearerLayer::new(validator(&dev)).realm(REALM));
    let bound = dev.token().alg(Algorithm::ES256).claim("cnf", json!({"jkt": key.jkt()})).sign();
    let proof = ProofBuilder::new(&key, "GET", "/me", &bound, unix_now()).sign();
    let res = app.clone().oneshot(dpop_request("GET", "/me", &bound, &[&proof])).await.unwrap();
    // The DPoP scheme is not understood: no credentials, and a Bearer-only challenge.
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge_of(res.headers()), ("Bearer".into(), None));
    let req = Request::get("/me")
        .header(header::AUTHORIZATION, format!("Bearer {bound}"))
        .body(Body::empty())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(challenge_of(res.headers()), ("Bearer".into(), Some("invalid_token".into())));
}

#[tokio::test]
async fn replay_store_refuses_when_full_and_never_evicts_live_entries() {
    // The store alone: one live entry, then a flood of 100 000 others.
    let store = InMemoryReplayStore::new(50_000);
    let live = ReplayKey::from_bytes([7; 32]);
    assert_eq!(store.record(live, 1_060, 1_000), Ok(()));
    let mut full = 0;
    for i in 0..100_000u32 {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&i.to_be_bytes());
        k[31] = 1;
        if store.record(ReplayKey::from_bytes(k), 1_060, 1_000) == Err(ReplayError::Full) {
            full += 1;
        }
    }
    assert_eq!(full, 100_000 - 49_999);
    assert_eq!(store.record(live, 1_060, 1_059), Err(ReplayError::Replayed), "the live entry survived");
    // Once the window is over, everything expires and the room is back.
    assert_eq!(store.record(live, 1_200, 1_060), Ok(()));
    assert_eq!(store.len(), 1);

    // Through the layer: a store of 20 fills up with valid proofs, the next one is a 503, and
    // the first proof is still refused as a replay.
    // (A share as large as the store is none: one key may fill it here.)
    let s = setup(|d| d.replay_store(InMemoryReplayStore::new(20).per_key(20)), true).await;
    let key = Key::p256();
    let token = s.token_for(&key);
    let first = ProofBuilder::new(&key, "GET", "/me", &token, s.clock.now()).sign();
    assert_eq!(s.send(dpop_request("GET", "/me", &token, &[&first])).await.0, StatusCode::OK);
    for _ in 0..19 {
        let proof = ProofBuilder::new(&key, "GET", "/me", &token, s.clock.now()).sign();
        assert_eq!(s.send(dpop_request("GET", "/me", &token, &[&proof])).await.0, StatusCode::OK);
    }
    let one_more = ProofBuilder::new(&key, "GET", "/me", &token, s.clock.now()).sign();
    let (status, headers) = s.send(dpop_request("GET", "/me", &token, &[&one_more])).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.get(header::WWW_AUTHENTICATE).is_none());
    let (status, headers) = s.send(dpop_request("GET", "/me", &token, &[&first])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge_of(&headers).1.as_deref(), Some("invalid_dpop_proof"));
    // 61 s later the entries are dead: room again (for a proof of that time).
    s.clock.advance(61);
    let later = ProofBuilder::new(&key, "GET", "/me", &token, s.clock.now()).sign();
    assert_eq!(s.send(dpop_request("GET", "/me", &token, &[&later])).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_minting_proofs_cannot_take_the_store_from_the_others() {
    // The default share, a tenth: in a store of 1 000 a key holds at most 100 live proofs. One
    // client floods from four tasks at once with valid proofs of its key; it gets its 100, then
    // `429` with `Retry-After` and no challenge (its credentials are fine), while another
    // client's key is served throughout and afterwards.
    let s = Arc::new(setup(|d| d.replay_store(InMemoryReplayStore::new(1_000)), true).await);
    let (flooder, other) = (Arc::new(Key::ed25519()), Key::p256());
    let (flood_token, other_token) = (s.token_for(&flooder), s.token_for(&other));
    let flood = (0..4).map(|_| {
        let (s, key, token) = (s.clone(), flooder.clone(), flood_token.clone());
        tokio::spawn(async move {
            let (mut ok, mut throttled) = (0u32, 0u32);
            for _ in 0..100 {
                let proof = ProofBuilder::new(&key, "GET", "/me", &token, s.clock.now()).sign();
                let (status, headers) = s.send(dpop_request("GET", "/me", &token, &[&proof])).await;
                match status {
                    StatusCode::OK => ok += 1,
                    StatusCode::TOO_MANY_REQUESTS => {
                        assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "5");
                        assert!(headers.get(header::WWW_AUTHENTICATE).is_none());
                        throttled += 1
                    }
                    other => panic!("a valid proof got {other}"),
                }
            }
            (ok, throttled)
        })
    });
    let mut others = 0;
    let flood: Vec<_> = flood.collect();
    // (At most 50: the other key has its own share of 100.)
    while others < 50 && flood.iter().any(|task| !task.is_finished()) {
        let proof = ProofBuilder::new(&other, "GET", "/me", &other_token, s.clock.now()).sign();
        assert_eq!(s.send(dpop_request("GET", "/me", &other_token, &[&proof])).await.0, StatusCode::OK);
        others += 1;
        tokio::task::yield_now().await;
    }
    let (mut ok, mut throttled) = (0, 0);
    for task in flood {
        let (o, t) = task.await.unwrap();
        ok += o;
        throttled += t;
    }
    assert_eq!((ok, throttled), (100, 300));
    assert!(others >= 1);
    let proof = ProofBuilder::new(&other, "GET", "/me", &other_token, s.clock.now()).sign();
    assert_eq!(s.send(dpop_request("GET", "/me", &other_token, &[&proof])).await.0, StatusCode::OK);
    // Once the flooder's proofs expire (at most 121 s after they were made), it is served again.
    s.clock.advance(121);
    let later = ProofBuilder::new(&flooder, "GET", "/me", &flood_token, s.clock.now()).sign();
    assert_eq!(s.send(dpop_request("GET", "/me", &flood_token, &[&later])).await.0, StatusCode::OK);
}

/// A layer inside `Router::nest("/api", …)` sees `/me`; the client signed `/api/me`, which is
/// what counts. And `htu` is compared after RFC 3986 normalisation (`%7E` is `~`).
#[tokio::test]
async fn htu_is_the_path_the_client_sent() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let clock = TestClock::new();
    let dpop = Dpop::allowed(ORIGIN).unwrap().clock(clock.clock());
    // axum routes on the raw path, so `/%7Eitems` would find no route: the fallback answers
    // whatever the layer let through.
    let inner = routes()
        .route("/~items", axum::routing::get(|| async { "tilde\n" }))
        .fallback(|| async { "fallback\n" })
        .layer(BearerLayer::new(validator(&dev)).realm(REALM).dpop(dpop));
    let app = Router::new().nest("/api", inner);
    let key = Key::p256();
    let token = dev.token().alg(Algorithm::ES256).claim("cnf", json!({"jkt": key.jkt()})).sign();
    let send = |uri: &str, proof: String| app.clone().oneshot(dpop_request("GET", uri, &token, &[&proof]));
    let proof = |path: &str| ProofBuilder::new(&key, "GET", path, &token, clock.now()).sign();
    assert_eq!(send("/api/me", proof("/api/me")).await.unwrap().status(), StatusCode::OK);
    // A proof for the path the layer sees is one for another URI.
    let res = send("/api/me", proof("/me")).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge_of(res.headers()).1.as_deref(), Some("invalid_dpop_proof"));
    // Signed `%7Eitems` or `%7eitems`, sent `~items` (and the other way round): the same URI.
    for (signed, sent) in [("/api/%7Eitems", "/api/~items"), ("/api/%7eitems", "/api/~items")] {
        let res = send(sent, proof(signed)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "signed {signed}, sent {sent}");
    }
    let res = send("/api/%7Eitems", proof("/api/~items")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "signed ~, sent %7E: the proof is good");
    // Still another path: `%2F` is not `/`, and another letter is another path.
    for (signed, sent) in [("/api/~items", "/api/~itemz"), ("/api/a/b", "/api/a%2Fb")] {
        let res = send(sent, proof(signed)).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "signed {signed}, sent {sent}");
    }
}

#[tokio::test]
async fn over_http_nonces_and_dpop_only() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let clock = TestClock::new();
    let nonces = DpopNonces::new(b"shared by the replicas", Duration::from_secs(300));
    let dpop = Dpop::required(ORIGIN).unwrap().clock(clock.clock()).nonces(nonces.clone());
    let base = serve(routes().layer(BearerLayer::new(validator(&dev)).realm(REALM).dpop(dpop))).await;
    let http = client();
    let key = Key::p256();
    let token = dev.token().alg(Algorithm::ES256).claim("cnf", json!({"jkt": key.jkt()})).sign();
    let get = |proof: String| {
        http.get(format!("{base}/me")).header("authorization", format!("DPoP {token}")).header("dpop", proof)
    };
    // Without a nonce: 401 use_dpop_nonce with one.
    let reply = send(get(ProofBuilder::new(&key, "GET", "/me", &token, clock.now()).sign())).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    assert_eq!(challenge_of(&reply.headers), ("DPoP".into(), Some("use_dpop_nonce".into())));
    let nonce = reply.headers.get("dpop-nonce").expect("a nonce").to_str().unwrap().to_owned();
    assert_eq!(reply.headers.get_all("dpop-nonce").iter().count(), 1);
    // A made-up nonce is no better.
    let bad =
        ProofBuilder::new(&key, "GET", "/me", &token, clock.now()).claim("nonce", json!("made-up")).sign();
    assert_eq!(challenge_of(&send(get(bad)).await.headers).1.as_deref(), Some("use_dpop_nonce"));
    // With it: 200, and a fresh nonce for next time.
    let good = ProofBuilder::new(&key, "GET", "/me", &token, clock.now()).claim("nonce", json!(nonce)).sign();
    let reply = send(get(good)).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.json()["subject"], "alice");
    assert!(reply.headers.get("dpop-nonce").is_some());
    // A replica with the same secret accepts the nonce; two steps later it is stale.
    assert!(nonces.is_valid(&nonce, clock.now()));
    clock.advance(601);
    let stale =
        ProofBuilder::new(&key, "GET", "/me", &token, clock.now()).claim("nonce", json!(nonce)).sign();
    assert_eq!(challenge_of(&send(get(stale)).await.headers).1.as_deref(), Some("use_dpop_nonce"));
    // DPoP only: a bearer token is no credentials, answered with a DPoP challenge only.
    let unbound = dev.token().alg(Algorithm::ES256).sign();
    let reply = send(http.get(format!("{base}/me")).bearer_auth(&unbound)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge_of(&reply.headers), ("DPoP".into(), None));
}

#[tokio::test]
async fn introspected_tokens_bound_to_a_key_need_its_proof() {
    use tower_bearer::Introspector;
    use tower_bearer::dev::{RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET};
    let dev = dev_issuer([Algorithm::ES256]).await;
    let introspector = Introspector::builder(dev.introspection_url())
        .client_secret_basic(RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET)
        .build()
        .unwrap();
    let clock = TestClock::new();
    let dpop = Dpop::allowed(ORIGIN).unwrap().clock(clock.clock());
    let app = routes().layer(BearerLayer::new(introspector).realm(REALM).dpop(dpop));
    let key = Key::p256();
    let token = dev.opaque_token().claim("cnf", json!({"jkt": key.jkt()})).issue();
    // Twice with fresh proofs: the second answer comes from the introspection cache and the
    // binding is checked all the same.
    for _ in 0..2 {
        let proof = ProofBuilder::new(&key, "GET", "/me", &token, clock.now()).sign();
        let res = app.clone().oneshot(dpop_request("GET", "/me", &token, &[&proof])).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let calls = dev.introspection_calls();
    let stranger = Key::p256();
    let proof = ProofBuilder::new(&stranger, "GET", "/me", &token, clock.now()).sign();
    let res = app.clone().oneshot(dpop_request("GET", "/me", &token, &[&proof])).await.unwrap();
    assert_eq!(challenge_of(res.headers()), ("DPoP".into(), Some("invalid_token".into())));
    let bearer =
        Request::get("/me").header(header::AUTHORIZATION, format!("Bearer {token}")).body(Body::empty());
    let res = app.oneshot(bearer.unwrap()).await.unwrap();
    assert_eq!(challenge_of(res.headers()), ("Bearer".into(), Some("invalid_token".into())));
    let challenges = tower_bearer::challenge::Challenge::parse_all(
        res.headers()[header::WWW_AUTHENTICATE].to_str().unwrap(),
    )
    .unwrap();
    assert_eq!(challenges.len(), 2, "{challenges:?}");
    assert_eq!((challenges[1].scheme.as_str(), challenges[1].param("algs").is_some()), ("DPoP", true));
    assert_eq!(dev.introspection_calls(), calls, "answered from the cache");
}

/// The proof's window is judged again when its use is recorded: a validation that took longer
/// than what was left of it (an introspection call, a key fetch) must not record an entry that
/// is already expired, which the store would drop, letting the same proof through again.
#[tokio::test]
async fn a_proof_whose_window_ends_during_validation_is_refused() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let start = unix_now();
    let reads = Arc::new(AtomicI64::new(0));
    let counter = reads.clone();
    // Each read of the DPoP clock is 31 s after the one before: verification sees the proof
    // fresh, the recording sees its 30 s window over.
    let clock = Clock::from_fn(move || {
        UNIX_EPOCH + Duration::from_secs((start + 31 * counter.fetch_add(1, Ordering::SeqCst)) as u64)
    });
    let dpop = Dpop::allowed(ORIGIN).unwrap().iat_window(Duration::from_secs(30)).clock(clock);
    let app = routes().layer(BearerLayer::new(validator(&dev)).realm(REALM).dpop(dpop));
    let key = Key::p256();
    let token = dev.token().alg(Algorithm::ES256).claim("cnf", json!({"jkt": key.jkt()})).sign();
    let proof = ProofBuilder::new(&key, "GET", "/me", &token, start).sign();
    let res = app.oneshot(dpop_request("GET", "/me", &token, &[&proof])).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge_of(res.headers()), ("DPoP".into(), Some("invalid_dpop_proof".into())));
    assert_eq!(reads.load(Ordering::SeqCst), 2, "read to verify, then to record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_100_000_valid_proofs_through_the_layer_never_evicts_a_live_entry() {
    // A store of 50 000 entries, one live proof, then 100 000 valid proofs (every one signed by
    // the bound key, so each passes every check up to single use), from four tasks at once: the
    // store fills, the rest get 503, and the live proof is still a replay at the end.
    let s = Arc::new(setup(|d| d.replay_store(InMemoryReplayStore::new(50_000).per_key(50_000)), true).await);
    let key = Arc::new(Key::ed25519());
    let token = s.token_for(&key);
    let live = ProofBuilder::new(&key, "GET", "/me", &token, s.clock.now()).sign();
    assert_eq!(s.send(dpop_request("GET", "/me", &token, &[&live])).await.0, StatusCode::OK);
    let flood = (0..4).map(|_| {
        let (s, key, token) = (s.clone(), key.clone(), token.clone());
        tokio::spawn(async move {
            let (mut ok, mut unavailable) = (0u32, 0u32);
            for _ in 0..25_000 {
                let proof = ProofBuilder::new(&key, "GET", "/me", &token, s.clock.now()).sign();
                match s.send(dpop_request("GET", "/me", &token, &[&proof])).await.0 {
                    StatusCode::OK => ok += 1,
                    StatusCode::SERVICE_UNAVAILABLE => unavailable += 1,
                    other => panic!("a valid proof got {other}"),
                }
            }
            (ok, unavailable)
        })
    });
    let (mut ok, mut unavailable) = (0, 0);
    for task in flood.collect::<Vec<_>>() {
        let (o, u) = task.await.unwrap();
        ok += o;
        unavailable += u;
    }
    assert_eq!((ok, unavailable), (49_999, 50_001));
    let (status, headers) = s.send(dpop_request("GET", "/me", &token, &[&live])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the live entry was evicted");
    assert_eq!(challenge_of(&headers).1.as_deref(), Some("invalid_dpop_proof"));
    // Once the window is over the room is back.
    s.clock.advance(61);
    let later = ProofBuilder::new(&key, "GET", "/me", &token, s.clock.now()).sign();
    assert_eq!(s.send(dpop_request("GET", "/me", &token, &[&later])).await.0, StatusCode::OK);
}

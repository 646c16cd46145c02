//! Property tests (proptest) of the whole `BearerService`, driven in-process with
//! `tower::ServiceExt::oneshot`: no network, a static key set, so validation never waits on I/O.
//!
//! * arbitrary bytes in `Authorization` headers never panic and never give `200` or `5xx`;
//! * arbitrary token-shaped strings (three base64url segments of JSON-ish content) never give `200`;
//! * a valid token with any one byte changed never gives `200`.
//!
//! Case counts are chosen so the file runs in a few seconds in a debug build. Set
//! `PROPTEST_CASES` to run more.
#![cfg(all(feature = "dev", feature = "axum"))]

use std::convert::Infallible;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Empty;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_bearer::dev::{DEFAULT_AUDIENCE, DevIssuer};
use tower_bearer::{Algorithm, BearerLayer, JwtValidator, KeySet};

const ISSUER: &str = "https://issuer.example";

/// The service under test, a runtime to drive it, and valid tokens.
struct Fixture {
    rt: tokio::runtime::Runtime,
    layer: BearerLayer<JwtValidator>,
    /// Valid tokens: ES256 and EdDSA.
    valid: Vec<String>,
    /// Keep the issuer alive (its keys sign the tokens).
    _dev: DevIssuer,
}

impl Fixture {
    fn new() -> Fixture {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dev = rt
            .block_on(DevIssuer::builder().algorithms([Algorithm::ES256, Algorithm::EdDSA]).start())
            .unwrap();
        // A static key set: validation never fetches anything.
        let keys = KeySet::from_jwks(&dev.jwks_json()).unwrap();
        let validator =
            JwtValidator::builder().issuer(ISSUER).audience(DEFAULT_AUDIENCE).key_set(keys).build().unwrap();
        let valid = [Algorithm::ES256, Algorithm::EdDSA]
            .map(|alg| dev.token().alg(alg).claim("iss", ISSUER).scope("items:read").sign())
            .to_vec();
        let fixture = Fixture { rt, layer: BearerLayer::new(validator), valid, _dev: dev };
        for token in &fixture.valid {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
            assert_eq!(fixture.status(&[value]), StatusCode::OK, "the fixture's own tokens must pass");
        }
        fixture
    }

    /// The status `BearerService` answers for these `Authorization` values. A panic anywhere in
    /// the layer fails the property.
    fn status(&self, authorization: &[HeaderValue]) -> StatusCode {
        let inner = tower::service_fn(|_req: Request<Empty<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        });
        let service = tower::Layer::layer(&self.layer, inner);
        let mut request = Request::get("/");
        for value in authorization {
            request = request.header(AUTHORIZATION, value.clone());
        }
        let request = request.body(Empty::new()).unwrap();
        let response = self.rt.block_on(service.oneshot(request)).unwrap();
        response.status()
    }

    fn token_status(&self, token: &str) -> Option<StatusCode> {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
        Some(self.status(&[value]))
    }
}

fn runner(cases: u32) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
    TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() })
}

/// Header bytes: pure noise, or noise behind a (variously spelled) `Bearer ` prefix, or
/// b64token-ish characters behind it.
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    let noise = prop::collection::vec(any::<u8>(), 0..120);
    let prefix =
        prop::sample::select(vec!["Bearer ", "bearer ", "BEARER  ", "Bearer", "Basic ", "Bearer\t", ""]);
    let b64ish = "[A-Za-z0-9._~+/=-]{0,120}".prop_map(String::into_bytes);
    prop_oneof![
        noise.clone(),
        (prefix.clone(), noise).prop_map(|(p, n)| [p.as_bytes(), &n].concat()),
        (prefix, b64ish).prop_map(|(p, n)| [p.as_bytes(), &n].concat()),
    ]
}

#[test]
fn arbitrary_authorization_bytes_never_pass_and_never_fail_the_server() {
    let fixture = Fixture::new();
    // Cases where at least one header value reached the layer.
    let reached = std::cell::Cell::new(0u32);
    runner(8000)
        .run(&prop::collection::vec(header_bytes(), 0..4), |values| {
            // Only what the http crate lets into a header can reach the layer.
            let values: Vec<HeaderValue> =
                values.iter().filter_map(|v| HeaderValue::from_bytes(v).ok()).collect();
            if !values.is_empty() {
                reached.set(reached.get() + 1);
            }
            let status = fixture.status(&values);
            prop_assert_ne!(status, StatusCode::OK, "{:?}", values);
            prop_assert!(!status.is_server_error(), "{:?} → {}", values, status);
            prop_assert!(
                [StatusCode::UNAUTHORIZED, StatusCode::BAD_REQUEST].contains(&status),
                "{:?} → {}",
                values,
                status
            );
            Ok(())
        })
        .unwrap();
    assert!(reached.get() > 0, "no generated header reached the layer");
}

/// JSON-ish bytes: real JSON objects with header or claim names and hostile values, or noise.
fn json_ish(names: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    let value = prop_oneof![
        Just(json!(null)),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(vec![
            "ES256",
            "EdDSA",
            "none",
            "HS256",
            "RS256",
            "at+jwt",
            "JWT",
            "es256-1",
            "eddsa-1",
            ISSUER,
            DEFAULT_AUDIENCE,
            "",
            "../../x",
        ])
        .prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::from),
        Just(json!([])),
        Just(json!([DEFAULT_AUDIENCE, "x"])),
        Just(json!({})),
    ];
    let object = prop::collection::vec((prop::sample::select(names), value), 0..8).prop_map(|members| {
        // Duplicate names are kept as written: serialize by hand.
        let body: Vec<String> = members.iter().map(|(k, v)| format!("{}:{v}", Value::from(*k))).collect();
        format!("{{{}}}", body.join(",")).into_bytes()
    });
    let text = "[ -~]{0,40}".prop_map(String::into_bytes);
    prop_oneof![6 => object, 1 => text, 1 => prop::collection::vec(any::<u8>(), 0..40)]
}

#[test]
fn arbitrary_token_shaped_strings_never_pass() {
    let fixture = Fixture::new();
    let header = json_ish(&["alg", "kid", "typ", "crit", "jku", "jwk", "b64", "x5c"]);
    let payload = json_ish(&["iss", "aud", "exp", "nbf", "iat", "sub", "scope", "client_id"]);
    let signature = prop::collection::vec(any::<u8>(), 0..100);
    runner(4000)
        .run(&(header, payload, signature), |(h, p, s)| {
            let token = format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(h),
                URL_SAFE_NO_PAD.encode(p),
                URL_SAFE_NO_PAD.encode(s)
            );
            if let Some(status) = fixture.token_status(&token) {
                prop_assert!(
                    [StatusCode::UNAUTHORIZED, StatusCode::BAD_REQUEST].contains(&status),
                    "token of {} bytes → {}",
                    token.len(),
                    status
                );
            }
            Ok(())
        })
        .unwrap();
}

/// One change to a valid token: a character replaced by another b64token character, a byte
/// of a decoded segment flipped, a character removed or inserted.
#[derive(Debug, Clone)]
enum Mutation {
    Replace { at: usize, with: u8 },
    FlipDecoded { segment: usize, at: usize, mask: u8 },
    Remove { at: usize },
    Insert { at: usize, byte: u8 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let b64token = prop::sample::select(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=".to_vec(),
    );
    prop_oneof![
        (any::<usize>(), b64token.clone()).prop_map(|(at, with)| Mutation::Replace { at, with }),
        (0..3usize, any::<usize>(), 1..=255u8).prop_map(|(segment, at, mask)| Mutation::FlipDecoded {
            segment,
            at,
            mask
        }),
        any::<usize>().prop_map(|at| Mutation::Remove { at }),
        (any::<usize>(), b64token).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
    ]
}

fn apply(token: &str, mutation: &Mutation) -> String {
    let mut bytes = token.as_bytes().to_vec();
    match *mutation {
        Mutation::Replace { at, with } => {
            let at = at % bytes.len();
            // Replace by a *different* character.
            bytes[at] = if bytes[at] == with { if with == b'A' { b'B' } else { b'A' } } else { with };
        }
        Mutation::Remove { at } => {
            bytes.remove(at % bytes.len());
        }
        Mutation::Insert { at, byte } => bytes.insert(at % (bytes.len() + 1), byte),
        Mutation::FlipDecoded { segment, at, mask } => {
            let mut segments: Vec<String> = token.split('.').map(str::to_owned).collect();
            let mut decoded = URL_SAFE_NO_PAD.decode(&segments[segment]).unwrap();
            let at = at % decoded.len();
            decoded[at] ^= mask;
            segments[segment] = URL_SAFE_NO_PAD.encode(decoded);
            return segments.join(".");
        }
    }
    String::from_utf8(bytes).expect("ASCII in, ASCII out")
}

#[test]
fn a_valid_token_with_one_byte_changed_never_passes() {
    let fixture = Fixture::new();
    let tokens = fixture.valid.clone();
    runner(5000)
        .run(&(prop::sample::select(tokens), mutation()), |(token, mutation)| {
            let mutated = apply(&token, &mutation);
            prop_assert_ne!(&mutated, &token);
            if let Some(status) = fixture.token_status(&mutated) {
                prop_assert!(
                    [StatusCode::UNAUTHORIZED, StatusCode::BAD_REQUEST].contains(&status),
                    "{:?} → {}",
                    mutation,
                    status
                );
            }
            Ok(())
        })
        .unwrap();
}

//! The hostile-token table: one row per attack or malformation, each driven through a real
//! `BearerLayer` over real HTTP, with the status and RFC 6750 `error` code the client must get.
//!
//! Print the table (to paste into a note) with
//! `cargo test --all-features --test hostile_tokens -- --nocapture`.
//!
//! Rules the table encodes: a JWT problem is `401 invalid_token`; a malformed `Authorization`
//! header is `400 invalid_request`; no credentials (or another scheme) is a bare `401`. Never
//! `200` for a hostile token, never `5xx`. The few `200` rows are controls (a valid token, the
//! accepted spellings of the scheme) that show the harness can tell success from failure.
#![cfg(all(feature = "dev", feature = "axum"))]

mod common;

use std::fmt::Write as _;

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::{REALM, TestApp, b64url, jwk_by_kid, send, split_token, unix_now, validator_builder};
use serde_json::{Value, json};
use tower_bearer::dev::{DEFAULT_AUDIENCE, DevIssuer, TokenBuilder};
use tower_bearer::{Algorithm, RequestView, TypPolicy, Validator};

use Algorithm::{ES256, ES384, EdDSA, PS256, RS256};

const INVALID_TOKEN: Option<&str> = Some("invalid_token");
const INVALID_REQUEST: Option<&str> = Some("invalid_request");

/// Which validator the row is sent to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Default settings (`TypPolicy::Lenient`).
    Lenient,
    /// `TypPolicy::Strict` (RFC 9068 `at+jwt` only).
    Strict,
}

/// One row: how to build the request's `Authorization` header values, and the answer it must get.
struct Case {
    name: &'static str,
    mode: Mode,
    /// The raw `Authorization` header values (none, one or several).
    auth: fn(&Ctx) -> Vec<Vec<u8>>,
    status: u16,
    error: Option<&'static str>,
}

/// What the rows build their tokens from: our issuer and an attacker's.
struct Ctx {
    dev: DevIssuer,
    evil: DevIssuer,
}

impl Ctx {
    /// A token of our issuer that passes every check (ES256, kid `es256-1`).
    fn token(&self) -> TokenBuilder<'_> {
        self.dev.token().alg(ES256)
    }

    /// Claims that pass every check.
    fn claims(&self) -> Value {
        json!({
            "iss": self.dev.issuer(),
            "aud": DEFAULT_AUDIENCE,
            "sub": "mallory",
            "scope": "items:read admin",
            "iat": unix_now(),
            "exp": unix_now() + 300,
        })
    }

    /// `claims()` with one member replaced (`Value::Null` removes it).
    fn claims_with(&self, name: &str, value: Value) -> Value {
        let mut claims = self.claims();
        match value {
            Value::Null => drop(claims.as_object_mut().unwrap().remove(name)),
            v => claims[name] = v,
        }
        claims
    }

    /// Signs raw header and payload bytes with our key `kid` (a genuine signature).
    fn signed(&self, kid: &str, alg: Algorithm, header: &str, payload: &str) -> String {
        self.dev.sign_raw(kid, alg, header.as_bytes(), payload.as_bytes())
    }

    /// A genuine ES256 token with this payload text.
    fn es256_payload(&self, payload: &str) -> String {
        self.signed("es256-1", ES256, r#"{"alg":"ES256","kid":"es256-1","typ":"at+jwt"}"#, payload)
    }

    /// A genuine ES256 token with this header text and good claims.
    fn es256_header(&self, header: &str) -> String {
        self.signed("es256-1", ES256, header, &self.claims().to_string())
    }
}

/// `Authorization: Bearer <token>`.
fn bearer(token: impl AsRef<str>) -> Vec<Vec<u8>> {
    vec![format!("Bearer {}", token.as_ref()).into_bytes()]
}

/// `header.payload.signature` with unsigned, hand-made JSON.
fn compact(header: &Value, payload: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(payload.to_string().as_bytes()),
        b64url(signature)
    )
}

fn alg_none(c: &Ctx, alg: &str, signature: &[u8]) -> Vec<Vec<u8>> {
    bearer(compact(&json!({"alg": alg, "typ": "at+jwt", "kid": "es256-1"}), &c.claims(), signature))
}

// ---- HMAC with the RSA public key as the secret ------------------------------------------------

/// The SPKI DER and PEM of our RS256 public key.
fn rsa_spki(c: &Ctx) -> (Vec<u8>, String) {
    let keys = common::rsa_public_encodings(&jwk_by_kid(&c.dev.jwks_json(), "rs256-1"));
    (keys.spki, keys.pem)
}

fn hs256_with(c: &Ctx, secret: &[u8]) -> Vec<Vec<u8>> {
    use aws_lc_rs::hmac;
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": "rs256-1"});
    let input = compact(&header, &c.claims(), b"");
    let input = input.trim_end_matches('.');
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
    bearer(format!("{input}.{}", b64url(tag.as_ref())))
}

// ---- Segment surgery on a valid token ----------------------------------------------------------

fn with_segments(c: &Ctx, f: fn([&str; 3]) -> String) -> Vec<Vec<u8>> {
    let token = c.token().sign();
    bearer(f(split_token(&token)))
}

/// Our ES256 token with `header` replaced by these raw (unsigned) bytes.
fn with_raw_header(c: &Ctx, header: &[u8]) -> Vec<Vec<u8>> {
    let token = c.token().sign();
    let [_, p, s] = split_token(&token);
    bearer(format!("{}.{p}.{s}", b64url(header)))
}

/// Raw header bytes (no `Bearer` prefix added).
fn raw(value: &[u8]) -> Vec<Vec<u8>> {
    vec![value.to_vec()]
}

fn raw_with_token(c: &Ctx, f: fn(&str) -> Vec<u8>) -> Vec<Vec<u8>> {
    vec![f(&c.token().sign())]
}

/// The table. Order matters only for reading.
static CASES: &[Case] = &[
    // ---- controls: what must pass ----
    Case {
        name: "control: valid ES256 token",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().sign()),
        status: 200,
        error: None,
    },
    Case {
        name: "control: valid RS256 token",
        mode: Mode::Lenient,
        auth: |c| bearer(c.dev.token().alg(RS256).sign()),
        status: 200,
        error: None,
    },
    Case {
        name: "control: valid at+jwt token, strict typ",
        mode: Mode::Strict,
        auth: |c| bearer(c.token().sign()),
        status: 200,
        error: None,
    },
    Case {
        name: "scheme in lower case `bearer` (RFC 7235: case-insensitive)",
        mode: Mode::Lenient,
        auth: |c| raw_with_token(c, |t| format!("bearer {t}").into_bytes()),
        status: 200,
        error: None,
    },
    Case {
        name: "scheme `BEARER`",
        mode: Mode::Lenient,
        auth: |c| raw_with_token(c, |t| format!("BEARER {t}").into_bytes()),
        status: 200,
        error: None,
    },
    Case {
        name: "`Bearer` + two spaces (1*SP)",
        mode: Mode::Lenient,
        auth: |c| raw_with_token(c, |t| format!("Bearer  {t}").into_bytes()),
        status: 200,
        error: None,
    },
    Case {
        name: "control: exp 1e300 signed by our issuer (saturates to i64::MAX; issuer's choice)",
        mode: Mode::Lenient,
        auth: |c| bearer(c.es256_payload(&c.claims_with("exp", json!(1e300)).to_string())),
        status: 200,
        error: None,
    },
    // ---- no credentials ----
    Case { name: "no Authorization header", mode: Mode::Lenient, auth: |_| vec![], status: 401, error: None },
    Case {
        name: "`Basic` scheme",
        mode: Mode::Lenient,
        auth: |_| raw(b"Basic dXNlcjpwYXNzd29yZA=="),
        status: 401,
        error: None,
    },
    Case {
        name: "tab instead of space after `Bearer` (not the Bearer scheme)",
        mode: Mode::Lenient,
        auth: |c| raw_with_token(c, |t| format!("Bearer\t{t}").into_bytes()),
        status: 401,
        error: None,
    },
    // ---- malformed Authorization headers ----
    Case {
        name: "`Bearer` and nothing",
        mode: Mode::Lenient,
        auth: |_| raw(b"Bearer"),
        status: 400,
        error: INVALID_REQUEST,
    },
    Case {
        name: "10 Authorization headers (all the same valid token)",
        mode: Mode::Lenient,
        auth: |c| {
            let token = c.token().sign();
            (0..10).map(|_| format!("Bearer {token}").into_bytes()).collect()
        },
        status: 400,
        error: INVALID_REQUEST,
    },
    Case {
        name: "token of 100 KB",
        mode: Mode::Lenient,
        auth: |c| {
            let token = c.token().claim("pad", "x".repeat(100 * 1024)).sign();
            bearer(token)
        },
        status: 400,
        error: INVALID_REQUEST,
    },
    Case {
        name: "obs-text bytes 0x80-0xFF after the token",
        mode: Mode::Lenient,
        auth: |c| raw_with_token(c, |t| [format!("Bearer {t}").as_bytes(), b"\x80\xfe\xff"].concat()),
        status: 400,
        error: INVALID_REQUEST,
    },
    Case {
        name: "UTF-8 non-ASCII in the token",
        mode: Mode::Lenient,
        auth: |_| raw("Bearer t\u{f6}ken.\u{e9}.x".as_bytes()),
        status: 400,
        error: INVALID_REQUEST,
    },
    Case {
        name: "tab inside the token",
        mode: Mode::Lenient,
        auth: |c| {
            raw_with_token(c, |t| {
                let (h, rest) = t.split_once('.').unwrap();
                format!("Bearer {h}.\t{rest}").into_bytes()
            })
        },
        status: 400,
        error: INVALID_REQUEST,
    },
    Case {
        name: "space inside the token",
        mode: Mode::Lenient,
        auth: |c| {
            raw_with_token(c, |t| {
                let (h, rest) = t.split_once('.').unwrap();
                format!("Bearer {h}. {rest}").into_bytes()
            })
        },
        status: 400,
        error: INVALID_REQUEST,
    },
    Case {
        name: "base64 padding `=` inside the token (header segment)",
        mode: Mode::Lenient,
        auth: |c| with_segments(c, |[h, p, s]| format!("{h}=.{p}.{s}")),
        status: 400,
        error: INVALID_REQUEST,
    },
    Case {
        name: "quotes and commas (`\"tok\"`, not b64token)",
        mode: Mode::Lenient,
        auth: |_| raw(b"Bearer \"a.b.c\", x"),
        status: 400,
        error: INVALID_REQUEST,
    },
    // ---- alg none ----
    Case {
        name: "alg `none`, empty signature",
        mode: Mode::Lenient,
        auth: |c| alg_none(c, "none", b""),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "alg `none`, some signature",
        mode: Mode::Lenient,
        auth: |c| alg_none(c, "none", b"sig"),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "alg `None`",
        mode: Mode::Lenient,
        auth: |c| alg_none(c, "None", b"sig"),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "alg `NONE`",
        mode: Mode::Lenient,
        auth: |c| alg_none(c, "NONE", b"sig"),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "alg `nOnE`",
        mode: Mode::Lenient,
        auth: |c| alg_none(c, "nOnE", b"sig"),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "alg missing",
        mode: Mode::Lenient,
        auth: |c| bearer(c.es256_header(r#"{"kid":"es256-1","typ":"at+jwt"}"#)),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "alg `ES256 ` (trailing space)",
        mode: Mode::Lenient,
        auth: |c| bearer(c.es256_header(r#"{"alg":"ES256 ","kid":"es256-1","typ":"at+jwt"}"#)),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "duplicate `alg` (ES256 then none)",
        mode: Mode::Lenient,
        auth: |c| bearer(c.es256_header(r#"{"alg":"ES256","kid":"es256-1","typ":"at+jwt","alg":"none"}"#)),
        status: 401,
        error: INVALID_TOKEN,
    },
    // ---- algorithm confusion ----
    Case {
        name: "HS256 signed with our RSA public key (SPKI PEM as secret)",
        mode: Mode::Lenient,
        auth: |c| hs256_with(c, rsa_spki(c).1.as_bytes()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "HS256 signed with our RSA public key (SPKI DER as secret)",
        mode: Mode::Lenient,
        auth: |c| hs256_with(c, &rsa_spki(c).0),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "HS256 signed with the JWK JSON as secret",
        mode: Mode::Lenient,
        auth: |c| hs256_with(c, jwk_by_kid(&c.dev.jwks_json(), "rs256-1").to_string().as_bytes()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "PS256 signature under a JWK pinned to RS256",
        mode: Mode::Lenient,
        auth: |c| bearer(c.dev.token().kid("rs256-1").alg(PS256).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "RS256 signature under a JWK pinned to PS256",
        mode: Mode::Lenient,
        auth: |c| bearer(c.dev.token().kid("ps256-1").alg(RS256).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "ES256 r=s=0 (psychic signature, CVE-2022-21449), 64 zero bytes",
        mode: Mode::Lenient,
        auth: |c| {
            bearer(compact(&json!({"alg":"ES256","kid":"es256-1","typ":"at+jwt"}), &c.claims(), &[0; 64]))
        },
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "ES256 r=s=0 without kid",
        mode: Mode::Lenient,
        auth: |c| bearer(compact(&json!({"alg":"ES256","typ":"at+jwt"}), &c.claims(), &[0; 64])),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "ES256 r=s=0 as DER (30 06 02 01 00 02 01 00)",
        mode: Mode::Lenient,
        auth: |c| {
            let der = [0x30, 6, 2, 1, 0, 2, 1, 0];
            bearer(compact(&json!({"alg":"ES256","kid":"es256-1","typ":"at+jwt"}), &c.claims(), &der))
        },
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "ES384 r=s=0, 96 zero bytes",
        mode: Mode::Lenient,
        auth: |c| {
            bearer(compact(&json!({"alg":"ES384","kid":"es384-1","typ":"at+jwt"}), &c.claims(), &[0; 96]))
        },
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "ES256 r=s=n (the curve order) instead of 0",
        mode: Mode::Lenient,
        auth: |c| {
            // P-256 order n; r = s = n is as invalid as r = s = 0.
            let n = hex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
            let sig = [n.clone(), n].concat();
            bearer(compact(&json!({"alg":"ES256","kid":"es256-1","typ":"at+jwt"}), &c.claims(), &sig))
        },
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "EdDSA all-zero signature",
        mode: Mode::Lenient,
        auth: |c| {
            bearer(compact(&json!({"alg":"EdDSA","kid":"eddsa-1","typ":"at+jwt"}), &c.claims(), &[0; 64]))
        },
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "ES384 header, P-256 key (genuine P-256 signature)",
        mode: Mode::Lenient,
        auth: |c| {
            let header = r#"{"alg":"ES384","kid":"es256-1","typ":"at+jwt"}"#;
            bearer(c.signed("es256-1", ES384, header, &c.claims().to_string()))
        },
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "ES256 header, P-384 key (genuine P-384 signature)",
        mode: Mode::Lenient,
        auth: |c| {
            let header = r#"{"alg":"ES256","kid":"es384-1","typ":"at+jwt"}"#;
            bearer(c.signed("es384-1", ES256, header, &c.claims().to_string()))
        },
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "ES256 header naming the Ed25519 key",
        mode: Mode::Lenient,
        auth: |c| {
            let header = r#"{"alg":"ES256","kid":"eddsa-1","typ":"at+jwt"}"#;
            bearer(c.signed("es256-1", ES256, header, &c.claims().to_string()))
        },
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "EdDSA header naming the RSA key (genuine RSA signature)",
        mode: Mode::Lenient,
        auth: |c| {
            let header = r#"{"alg":"EdDSA","kid":"rs256-1","typ":"at+jwt"}"#;
            bearer(c.signed("rs256-1", RS256, header, &c.claims().to_string()))
        },
        status: 401,
        error: INVALID_TOKEN,
    },
    // ---- segments ----
    Case {
        name: "2 segments",
        mode: Mode::Lenient,
        auth: |c| with_segments(c, |[h, p, _]| format!("{h}.{p}")),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "4 segments",
        mode: Mode::Lenient,
        auth: |c| with_segments(c, |[h, p, s]| format!("{h}.{p}.{s}.{s}")),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "5 segments (JWE shape)",
        mode: Mode::Lenient,
        auth: |c| with_segments(c, |[h, p, s]| format!("{h}.{p}.{s}.{p}.{s}")),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "trailing dot",
        mode: Mode::Lenient,
        auth: |c| with_segments(c, |[h, p, s]| format!("{h}.{p}.{s}.")),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "empty header segment",
        mode: Mode::Lenient,
        auth: |c| with_segments(c, |[_, p, s]| format!(".{p}.{s}")),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "empty payload segment",
        mode: Mode::Lenient,
        auth: |c| with_segments(c, |[h, _, s]| format!("{h}..{s}")),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "empty signature segment",
        mode: Mode::Lenient,
        auth: |c| with_segments(c, |[h, p, _]| format!("{h}.{p}.")),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "only dots `..`",
        mode: Mode::Lenient,
        auth: |_| bearer(".."),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "one segment",
        mode: Mode::Lenient,
        auth: |_| bearer("abc"),
        status: 401,
        error: INVALID_TOKEN,
    },
    // ---- base64url ----
    Case {
        name: "padding `==` at the end (signature segment)",
        mode: Mode::Lenient,
        auth: |c| with_segments(c, |[h, p, s]| format!("{h}.{p}.{s}==")),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "`+` and `/` (base64, not base64url) in the signature",
        mode: Mode::Lenient,
        auth: |c| {
            with_segments(c, |[h, p, s]| {
                let sig = STANDARD.encode(URL_SAFE_NO_PAD.decode(s).unwrap());
                format!("{h}.{p}.{}+/", sig.trim_end_matches('='))
            })
        },
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "`+` and `/` in the header",
        mode: Mode::Lenient,
        auth: |c| with_segments(c, |[h, p, s]| format!("{}+/{}.{p}.{s}", &h[..4], &h[4..])),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "`~` in the payload",
        mode: Mode::Lenient,
        auth: |c| with_segments(c, |[h, p, s]| format!("{h}.~{p}.{s}")),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "header base64url of impossible length (4n+1)",
        mode: Mode::Lenient,
        auth: |c| with_segments(c, |[h, p, s]| format!("{h}{}.{p}.{s}", "A".repeat(4 - h.len() % 4 + 1))),
        status: 401,
        error: INVALID_TOKEN,
    },
    // ---- non-JSON ----
    Case {
        name: "header not JSON",
        mode: Mode::Lenient,
        auth: |c| with_raw_header(c, b"not json"),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "header a JSON array",
        mode: Mode::Lenient,
        auth: |c| with_raw_header(c, br#"["ES256"]"#),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "header with leading whitespace / BOM",
        mode: Mode::Lenient,
        auth: |c| with_raw_header(c, "\u{feff}{\"alg\":\"ES256\",\"kid\":\"es256-1\"}".as_bytes()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "header with trailing garbage after `}`",
        mode: Mode::Lenient,
        auth: |c| bearer(c.es256_header(r#"{"alg":"ES256","kid":"es256-1","typ":"at+jwt"}x"#)),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "header invalid UTF-8",
        mode: Mode::Lenient,
        auth: |c| with_raw_header(c, b"{\"alg\":\"\xff\xfe\"}"),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "payload not JSON (signed)",
        mode: Mode::Lenient,
        auth: |c| bearer(c.es256_payload("hello")),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "payload a JSON array (signed)",
        mode: Mode::Lenient,
        auth: |c| bearer(c.es256_payload("[1,2,3]")),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "payload a JSON string (signed)",
        mode: Mode::Lenient,
        auth: |c| bearer(c.es256_payload("\"{}\"")),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "header nested 1000 deep in an extra member (unsigned)",
        mode: Mode::Lenient,
        auth: |c| {
            let deep =
                format!(r#"{{"alg":"ES256","kid":"es256-1","x":{}{}}}"#, "[".repeat(1000), "]".repeat(1000));
            with_raw_header(c, deep.as_bytes())
        },
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "control: claims nested 1000 deep in an extra claim, signed by our issuer (legal JSON)",
        mode: Mode::Lenient,
        auth: |c| {
            let mut claims = c.claims().to_string();
            claims.pop();
            let deep = format!("{claims},\"x\":{}{}}}", "[".repeat(1000), "]".repeat(1000));
            bearer(c.es256_payload(&deep))
        },
        status: 200,
        error: None,
    },
    // ---- duplicate members ----
    Case {
        name: "duplicate `exp` (past, then future) (signed)",
        mode: Mode::Lenient,
        auth: |c| {
            let mut claims = c.claims_with("exp", Value::Null).to_string();
            claims.pop();
            let now = unix_now();
            bearer(c.es256_payload(&format!("{claims},\"exp\":{},\"exp\":{}}}", now - 3600, now + 3600)))
        },
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "duplicate `iss` (ours, then evil) (signed)",
        mode: Mode::Lenient,
        auth: |c| {
            let mut claims = c.claims().to_string();
            claims.pop();
            bearer(c.es256_payload(&format!("{claims},\"iss\":\"https://evil.example\"}}")))
        },
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "duplicate `aud` (signed)",
        mode: Mode::Lenient,
        auth: |c| {
            let mut claims = c.claims().to_string();
            claims.pop();
            bearer(c.es256_payload(&format!("{claims},\"aud\":\"other\"}}")))
        },
        status: 401,
        error: INVALID_TOKEN,
    },
    // ---- exp / nbf / iat ----
    Case {
        name: "`exp` missing",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().claim("exp", Value::Null).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "`exp` as a string",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().claim("exp", (unix_now() + 300).to_string()).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "`exp` null",
        mode: Mode::Lenient,
        auth: |c| {
            bearer(c.es256_payload(&c.claims_with("exp", Value::Null).to_string().replacen(
                '{',
                "{\"exp\":null,",
                1,
            )))
        },
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "`exp` true",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().claim("exp", true).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "`exp` an array",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().claim("exp", json!([unix_now() + 300])).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "`exp` negative (-1)",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().claim("exp", -1).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "`exp` 0",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().claim("exp", 0).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "`exp` fractional, in the past",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().claim("exp", unix_now() as f64 - 100.5).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "`exp` -1e300",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().claim("exp", -1e300).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "`exp` i64::MIN",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().claim("exp", i64::MIN).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "`exp` 1e400 (beyond f64)",
        mode: Mode::Lenient,
        auth: |c| {
            bearer(c.es256_payload(
                &c.claims_with("exp", json!(1)).to_string().replace("\"exp\":1", "\"exp\":1e400"),
            ))
        },
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "`exp` 400-digit integer",
        mode: Mode::Lenient,
        auth: |c| {
            bearer(
                c.es256_payload(
                    &c.claims_with("exp", json!(1))
                        .to_string()
                        .replace("\"exp\":1", &format!("\"exp\":{}", "9".repeat(400))),
                ),
            )
        },
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "`nbf` in the future (+10 min)",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().claim("nbf", unix_now() + 600).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "`nbf` 1e300",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().claim("nbf", 1e300).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "`nbf` as a string",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().claim("nbf", "0").sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "`iat` far in the future (+1 year)",
        mode: Mode::Lenient,
        auth: |c| {
            bearer(
                c.token()
                    .claim("iat", unix_now() + 365 * 86400)
                    .claim("exp", unix_now() + 366 * 86400)
                    .sign(),
            )
        },
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "`iat` u64::MAX",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().claim("iat", u64::MAX).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    // ---- iss / aud ----
    Case {
        name: "`iss` with a trailing slash",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().claim("iss", format!("{}/", c.dev.issuer())).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "`iss` in different case",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().claim("iss", c.dev.issuer().to_uppercase()).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "`iss` missing",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().claim("iss", Value::Null).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "`iss` an array with ours",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().claim("iss", json!([c.dev.issuer()])).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "`aud` missing",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().claim("aud", Value::Null).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "`aud` another resource",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().audience("https://other.example").sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "`aud` array without ours",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().claim("aud", json!(["a", "b"])).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "`aud` empty array",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().claim("aud", json!([])).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "`aud` ours in a different case",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().audience(&DEFAULT_AUDIENCE.to_uppercase()).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    // ---- typ ----
    Case {
        name: "typ `JWT` (ID-token style), strict",
        mode: Mode::Strict,
        auth: |c| bearer(c.token().header("typ", "JWT").sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "typ absent, strict",
        mode: Mode::Strict,
        auth: |c| bearer(c.token().header("typ", Value::Null).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "typ `dpop+jwt`, strict",
        mode: Mode::Strict,
        auth: |c| bearer(c.token().header("typ", "dpop+jwt").sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "typ `dpop+jwt`, lenient",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().header("typ", "dpop+jwt").sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "typ `id_token+jwt`, lenient",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().header("typ", "id_token+jwt").sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "typ `logout+jwt`, lenient",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().header("typ", "logout+jwt").sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "typ a number",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().header("typ", 1).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    // ---- crit ----
    Case {
        name: "crit unknown extension",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().header("crit", json!(["urn:x"])).header("urn:x", 1).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "crit `[\"exp\"]`",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().header("crit", json!(["exp"])).header("exp", unix_now()).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "crit empty array",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().header("crit", json!([])).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "crit null (present but not an array)",
        mode: Mode::Lenient,
        auth: |c| bearer(c.es256_header(r#"{"alg":"ES256","kid":"es256-1","typ":"at+jwt","crit":null}"#)),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "crit a string",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().header("crit", "b64").sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    // ---- keys named by the token ----
    Case {
        name: "jku → attacker JWKS, attacker-signed, same kid name",
        mode: Mode::Lenient,
        auth: |c| {
            bearer(
                c.evil
                    .token()
                    .alg(ES256)
                    .claim("iss", c.dev.issuer())
                    .header("jku", c.evil.jwks_url())
                    .sign(),
            )
        },
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "x5u → attacker URL, attacker-signed, no kid",
        mode: Mode::Lenient,
        auth: |c| {
            bearer(
                c.evil
                    .token()
                    .alg(ES256)
                    .no_kid()
                    .claim("iss", c.dev.issuer())
                    .header("x5u", c.evil.jwks_url())
                    .sign(),
            )
        },
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "embedded `jwk` = attacker public key, attacker-signed",
        mode: Mode::Lenient,
        auth: |c| {
            let jwk = jwk_by_kid(&c.evil.jwks_json(), "es256-1");
            bearer(c.evil.token().alg(ES256).claim("iss", c.dev.issuer()).header("jwk", jwk).sign())
        },
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "embedded `jwk`, attacker kid, attacker-signed",
        mode: Mode::Lenient,
        auth: |c| {
            let jwk = jwk_by_kid(&c.evil.jwks_json(), "es256-1");
            bearer(
                c.evil
                    .token()
                    .alg(ES256)
                    .kid("evil-1")
                    .claim("iss", c.dev.issuer())
                    .header("jwk", jwk)
                    .sign(),
            )
        },
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "`x5c` with a made-up chain, attacker-signed",
        mode: Mode::Lenient,
        auth: |c| {
            let x5c = json!([STANDARD.encode(b"\x30\x82\x01\x00 not a certificate")]);
            bearer(c.evil.token().alg(ES256).claim("iss", c.dev.issuer()).header("x5c", x5c).sign())
        },
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "kid `../../etc/passwd`",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().kid("../../etc/passwd").sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "kid `' OR 1=1 --`",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().kid("' OR 1=1 --").sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "kid with NUL and CR/LF",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().kid("es256-1\u{0}\r\nx").sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "kid 4 KB long",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().kid(&"k".repeat(4096)).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "kid a number",
        mode: Mode::Lenient,
        auth: |c| bearer(c.token().header("kid", 1).sign()),
        status: 401,
        error: INVALID_TOKEN,
    },
    // ---- tampering ----
    Case {
        name: "payload changed (scope escalated), signature kept",
        mode: Mode::Lenient,
        auth: |c| {
            let token = c.token().sign();
            let [h, _, s] = split_token(&token);
            bearer(format!("{h}.{}.{s}", b64url(c.claims().to_string().as_bytes())))
        },
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "signature truncated by one byte",
        mode: Mode::Lenient,
        auth: |c| with_segments(c, |[h, p, s]| format!("{h}.{p}.{}", &s[..s.len() - 2])),
        status: 401,
        error: INVALID_TOKEN,
    },
    Case {
        name: "signature of another valid token (RS256 sig on ES256 token)",
        mode: Mode::Lenient,
        auth: |c| {
            let rs = c.dev.token().alg(RS256).sign();
            let es = c.token().sign();
            let [h, p, _] = split_token(&es);
            bearer(format!("{h}.{p}.{}", split_token(&rs)[2]))
        },
        status: 401,
        error: INVALID_TOKEN,
    },
];

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// What a row got: status, `error` code, and the exact in-process reason (for the note).
struct Outcome {
    status: u16,
    error: Option<String>,
    reason: String,
}

async fn run(app: &TestApp, auth: &[Vec<u8>]) -> Outcome {
    let mut request = app.request(reqwest::Method::GET, "/me");
    let mut headers = HeaderMap::new();
    for value in auth {
        let value = HeaderValue::from_bytes(value).expect("a value the http crate accepts");
        headers.append(header::AUTHORIZATION, value.clone());
        request = request.header(header::AUTHORIZATION, value);
    }
    let reply = send(request).await;
    let error = reply.headers.get(header::WWW_AUTHENTICATE).map(|h| {
        let challenge = common::Challenge::parse(h.to_str().expect("ASCII challenge"));
        assert_eq!(challenge.get("realm"), Some(REALM), "{challenge:?}");
        challenge.get("error").map(str::to_owned)
    });
    // The precise reason, in-process with the same validator (same key cache). HTTP strips
    // leading/trailing whitespace of header values; do the same.
    let reason = match tower_bearer::extract::bearer_token(&headers, 8 * 1024) {
        Err(e) => e.reason().to_owned(),
        Ok(token) => match app.validator.validate(token.trim(), &RequestView::detached()).resolve().await {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.reason().to_owned(),
        },
    };
    Outcome { status: reply.status.as_u16(), error: error.flatten(), reason }
}

fn cell(error: Option<&str>) -> &str {
    error.unwrap_or("—")
}

#[tokio::test]
async fn hostile_token_table() {
    let dev = DevIssuer::builder().algorithms([RS256, PS256, ES256, ES384, EdDSA]).start().await.unwrap();
    let evil = DevIssuer::builder().algorithms([ES256]).start().await.unwrap();
    let lenient = validator_builder(&dev).jwks_url(dev.jwks_url()).build().unwrap();
    let strict = validator_builder(&dev).jwks_url(dev.jwks_url()).typ(TypPolicy::Strict).build().unwrap();
    let lenient = TestApp::start(lenient).await;
    let strict = TestApp::start(strict).await;
    let ctx = Ctx { dev, evil };

    let mut table = String::from("| case | expected | got | reason |\n|---|---|---|---|\n");
    let mut wrong = Vec::new();
    for case in CASES {
        let auth = (case.auth)(&ctx);
        let app = if case.mode == Mode::Strict { &strict } else { &lenient };
        let got = run(app, &auth).await;
        // Never a server error; never 200 for a row that expects a rejection.
        let ok = got.status == case.status && got.error.as_deref() == case.error && got.status < 500;
        let mode = if case.mode == Mode::Strict { " [strict]" } else { "" };
        let expected = format!("{} {}", case.status, cell(case.error));
        let actual = format!("{} {}", got.status, cell(got.error.as_deref()));
        let mark = if ok { "" } else { " **MISMATCH**" };
        writeln!(table, "| {}{mode} | {expected} | {actual}{mark} | {} |", case.name, got.reason).unwrap();
        if !ok {
            wrong.push(format!("{}: expected {expected}, got {actual} ({})", case.name, got.reason));
        }
    }
    println!("{table}");
    println!("{} cases, {} mismatches", CASES.len(), wrong.len());
    assert!(
        wrong.is_empty(),
        "{} of {} rows got a different answer:\n{}",
        wrong.len(),
        CASES.len(),
        wrong.join("\n")
    );
    // The attacker's key set was never consulted.
    assert_eq!(ctx.evil.jwks_fetches(), 0, "a jku/x5u URL was fetched");
}

//! JWT access-token validation over real HTTP: algorithms, claims, `typ`, and the classic attacks
//! (`alg: none`, HMAC with the RSA public key, RS/PS confusion, `crit`, `jku`/`jwk`, tampering).
#![cfg(all(feature = "dev", feature = "axum"))]

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{
    TestApp, b64url, dev_issuer, jwk_by_kid, segment_json, split_token, unix_now, validator,
    validator_builder,
};
use serde_json::{Value, json};
use tower_bearer::dev::{DEFAULT_AUDIENCE, DevIssuer};
use tower_bearer::{Algorithm, ConfigError, InvalidToken, JwtValidator, TypPolicy};

async fn es256() -> (DevIssuer, TestApp) {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let app = TestApp::start(validator(&dev)).await;
    (dev, app)
}

#[tokio::test]
async fn valid_tokens_of_every_default_algorithm_are_accepted() {
    // The default dev issuer has one key each for RS256, PS256, ES256 and EdDSA.
    let dev = DevIssuer::start().await.unwrap();
    let app = TestApp::start(validator(&dev)).await;
    for alg in [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::EdDSA] {
        let subject = format!("user-{alg:?}");
        let token = dev
            .token()
            .alg(alg)
            .subject(&subject)
            .scope("items:read profile")
            .claim("scp", json!(["extra"]))
            .sign();
        assert_eq!(segment_json(split_token(&token)[0])["alg"], format!("{alg:?}"));
        let principal = app.get("/me", &token).await.assert_ok_json();
        assert_eq!(principal["subject"], subject.as_str(), "{alg:?}");
        assert_eq!(principal["scopes"], json!(["items:read", "profile", "extra"]), "{alg:?}");
        assert_eq!(principal["issuer"], dev.issuer(), "{alg:?}");
        assert_eq!(principal["audience"], json!([DEFAULT_AUDIENCE]), "{alg:?}");
        assert_eq!(principal["client_id"], "dev-client", "{alg:?}");
        assert_eq!(principal["kind"], "jwt", "{alg:?}");
        // The raw claims travel verbatim.
        assert_eq!(principal["claims"]["sub"], subject.as_str(), "{alg:?}");
        assert_eq!(principal["claims"]["scp"], json!(["extra"]), "{alg:?}");
    }
}

#[tokio::test]
async fn expired_token_is_invalid_token() {
    let (dev, app) = es256().await;
    let token = dev.token().alg(Algorithm::ES256).expired(Duration::from_secs(600)).sign();
    let description = app.assert_rejected(&token, InvalidToken::Expired).await;
    assert!(description.contains("expired"), "{description}");

    // Within the 30 s leeway it still passes: the check is on `exp`, not on something else.
    let token = dev.token().alg(Algorithm::ES256).expired(Duration::from_secs(5)).sign();
    app.get("/me", &token).await.assert_ok_json();
}

#[tokio::test]
async fn not_before_in_the_future_is_invalid_token() {
    let (dev, app) = es256().await;
    let token = dev.token().alg(Algorithm::ES256).claim("nbf", unix_now() + 600).sign();
    let description = app.assert_rejected(&token, InvalidToken::NotYetValid).await;
    assert!(description.contains("not valid yet"), "{description}");

    let token = dev.token().alg(Algorithm::ES256).claim("nbf", unix_now() - 10).sign();
    app.get("/me", &token).await.assert_ok_json();
}

#[tokio::test]
async fn issued_far_in_the_future_is_invalid_token() {
    let (dev, app) = es256().await;
    let token = dev
        .token()
        .alg(Algorithm::ES256)
        .claim("iat", unix_now() + 3600)
        .claim("exp", unix_now() + 7200)
        .sign();
    app.assert_rejected(&token, InvalidToken::IssuedInFuture).await;
    // A few seconds ahead (clock skew) is tolerated.
    let token = dev.token().alg(Algorithm::ES256).claim("iat", unix_now() + 5).sign();
    app.get("/me", &token).await.assert_ok_json();
}

#[tokio::test]
async fn wrong_or_missing_issuer_is_invalid_token() {
    let (dev, app) = es256().await;
    for (iss, reason) in [
        (json!("https://evil.example"), InvalidToken::WrongIssuer),
        (json!(format!("{}/", dev.issuer())), InvalidToken::WrongIssuer),
        (json!(dev.issuer().to_uppercase()), InvalidToken::WrongIssuer),
        (Value::Null, InvalidToken::WrongIssuer), // removes the claim
        (json!([dev.issuer()]), InvalidToken::InvalidClaim),
    ] {
        let token = dev.token().alg(Algorithm::ES256).claim("iss", iss.clone()).sign();
        let description = app.assert_rejected(&token, reason).await;
        if reason == InvalidToken::WrongIssuer {
            assert!(description.contains("issuer"), "{iss}: {description}");
        }
    }
}

#[tokio::test]
async fn wrong_or_missing_audience_is_invalid_token() {
    let (dev, app) = es256().await;
    for aud in [json!("https://other-api.example"), json!(["a", "b"]), json!([]), Value::Null] {
        let token = dev.token().alg(Algorithm::ES256).claim("aud", aud.clone()).sign();
        let description = app.assert_rejected(&token, InvalidToken::WrongAudience).await;
        assert!(description.contains("not meant for"), "{aud}: {description}");
    }
}

#[tokio::test]
async fn audience_array_containing_ours_is_accepted() {
    let (dev, app) = es256().await;
    let token = dev
        .token()
        .alg(Algorithm::ES256)
        .claim("aud", json!(["https://other-api.example", DEFAULT_AUDIENCE]))
        .sign();
    let principal = app.get("/me", &token).await.assert_ok_json();
    assert_eq!(principal["audience"], json!(["https://other-api.example", DEFAULT_AUDIENCE]));
}

#[tokio::test]
async fn missing_or_malformed_expiry_is_invalid_token() {
    let (dev, app) = es256().await;
    for (exp, reason) in [
        (Value::Null, InvalidToken::MissingExpiry),
        (json!("9999999999"), InvalidToken::InvalidClaim),
        (json!(true), InvalidToken::InvalidClaim),
    ] {
        let token = dev.token().alg(Algorithm::ES256).claim("exp", exp).sign();
        app.assert_rejected(&token, reason).await;
    }
}

#[tokio::test]
async fn typ_jwt_or_absent_is_accepted_by_default_but_not_id_tokens() {
    let (dev, app) = es256().await;
    let with_typ = |typ: Value| dev.token().alg(Algorithm::ES256).header("typ", typ).sign();
    for typ in [json!("at+jwt"), json!("application/at+jwt"), json!("JWT"), Value::Null] {
        app.get("/me", &with_typ(typ)).await.assert_ok_json();
    }
    for typ in [json!("id+jwt"), json!("dpop+jwt"), json!("")] {
        app.assert_rejected(&with_typ(typ), InvalidToken::WrongType).await;
    }
    app.assert_rejected(&with_typ(json!(42)), InvalidToken::Malformed).await;
}

/// An OIDC ID token signed with the same keys, `typ: JWT`, audience ours (the common mistake of
/// a client id as the API audience): its ID-token-only claims give it away even when the
/// lenient `typ` policy lets `JWT` through.
#[tokio::test]
async fn id_tokens_are_refused_even_with_a_lenient_typ() {
    let (dev, app) = es256().await;
    for claim in ["nonce", "at_hash", "c_hash"] {
        let token =
            dev.token().alg(Algorithm::ES256).header("typ", "JWT").claim(claim, "n-0S6_WzA2Mj").sign();
        assert_eq!(app.assert_rejected(&token, InvalidToken::WrongType).await, "the access token is invalid");
    }
    // A plain access token with `typ: JWT` still passes.
    app.get("/me", &dev.token().alg(Algorithm::ES256).header("typ", "JWT").sign()).await.assert_ok_json();
}

#[test]
fn contradictory_settings_are_refused() {
    let base = || JwtValidator::builder().jwks_url("https://as.example/jwks");
    assert!(base().issuer("https://as.example").any_issuer().audience("a").build().is_err());
    assert!(base().issuer("https://as.example").audience("a").any_audience().build().is_err());
    assert!(
        base()
            .issuer("i")
            .audience("a")
            .token_cache(10, std::time::Duration::from_millis(500))
            .build()
            .is_err()
    );
    assert!(
        base().issuer("i").audience("a").token_cache(10, std::time::Duration::from_secs(1)).build().is_ok()
    );
}

#[tokio::test]
async fn strict_typ_policy_accepts_only_at_jwt() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let strict = validator_builder(&dev).jwks_url(dev.jwks_url()).typ(TypPolicy::Strict).build().unwrap();
    let app = TestApp::start(strict).await;
    let with_typ = |typ: Value| dev.token().alg(Algorithm::ES256).header("typ", typ).sign();
    app.get("/me", &with_typ(json!("at+jwt"))).await.assert_ok_json();
    app.get("/me", &with_typ(json!("application/at+jwt"))).await.assert_ok_json();
    for typ in [json!("JWT"), Value::Null, json!("id+jwt")] {
        app.assert_rejected(&with_typ(typ), InvalidToken::WrongType).await;
    }
}

/// Builds `header.payload.signature` by hand.
fn compact(header: &Value, payload: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64url(header.to_string().as_bytes()),
        b64url(payload.to_string().as_bytes())
    )
}

/// Claims that would pass every check.
fn good_claims(dev: &DevIssuer) -> Value {
    json!({
        "iss": dev.issuer(),
        "aud": DEFAULT_AUDIENCE,
        "sub": "mallory",
        "scope": "items:read items:write admin",
        "iat": unix_now(),
        "exp": unix_now() + 300,
    })
}

#[tokio::test]
async fn alg_none_is_rejected() {
    let (dev, app) = es256().await;
    let payload = good_claims(&dev);
    for alg in ["none", "None", "NONE", "nOnE"] {
        for header in [
            json!({ "alg": alg }),
            json!({ "alg": alg, "typ": "at+jwt" }),
            json!({ "alg": alg, "typ": "at+jwt", "kid": "es256-1" }),
        ] {
            // An empty signature already fails the shape check.
            let token = compact(&header, &payload, "");
            app.assert_rejected(&token, InvalidToken::Malformed).await;
            for signature in ["c2lnbmF0dXJl", "AAAA"] {
                let token = compact(&header, &payload, signature);
                app.assert_rejected(&token, InvalidToken::AlgorithmNotAllowed).await;
            }
        }
    }
}

/// Every common serialization of the RSA public key that an attacker might try as the HMAC
/// secret: raw modulus, PKCS#1 DER, SPKI DER, SPKI PEM (with and without the final newline) and
/// the JWK JSON itself.
fn rsa_public_key_encodings(jwk: &Value) -> Vec<Vec<u8>> {
    let keys = common::rsa_public_encodings(jwk);
    vec![
        keys.modulus,
        keys.pkcs1,
        keys.spki,
        keys.pem.clone().into_bytes(),
        keys.pem.trim_end().as_bytes().to_vec(),
        jwk.to_string().into_bytes(),
    ]
}

fn hs256(key: &[u8], input: &str) -> String {
    use aws_lc_rs::hmac;
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), input.as_bytes());
    b64url(tag.as_ref())
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_rejected() {
    let dev = dev_issuer([Algorithm::RS256]).await;
    let app = TestApp::start(validator(&dev)).await;
    let jwk = jwk_by_kid(&dev.jwks_json(), "rs256-1");
    let payload = good_claims(&dev);
    for key in rsa_public_key_encodings(&jwk) {
        for header in [
            json!({ "alg": "HS256", "typ": "at+jwt", "kid": "rs256-1" }),
            json!({ "alg": "HS256", "typ": "at+jwt" }),
        ] {
            let unsigned = compact(&header, &payload, "x");
            let input = unsigned.rsplit_once('.').unwrap().0;
            let token = format!("{input}.{}", hs256(&key, input));
            app.assert_rejected(&token, InvalidToken::AlgorithmNotAllowed).await;
        }
    }
    // And a genuine RS256 token with the same claims is fine: the rejection is about `alg`.
    let header = json!({ "alg": "RS256", "typ": "at+jwt", "kid": "rs256-1" });
    let token = dev.sign_raw(
        "rs256-1",
        Algorithm::RS256,
        header.to_string().as_bytes(),
        payload.to_string().as_bytes(),
    );
    app.get("/me", &token).await.assert_ok_json();
}

#[tokio::test]
async fn hmac_cannot_be_allowed_together_with_a_key_set() {
    for algs in [vec![Algorithm::HS256], vec![Algorithm::RS256, Algorithm::HS256]] {
        let err = JwtValidator::builder()
            .issuer("http://127.0.0.1:1")
            .audience(DEFAULT_AUDIENCE)
            .jwks_url("http://127.0.0.1:1/jwks.json")
            .algorithms(algs)
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::Invalid(_)), "{err:?}");
    }
}

/// An HMAC secret at least as long as the hash of every algorithm allowed (RFC 7518 §3.2).
#[test]
fn an_hmac_secret_is_as_long_as_its_hash() {
    let build = |len: usize, algs: &[Algorithm]| {
        JwtValidator::builder()
            .issuer("https://issuer.example")
            .audience(DEFAULT_AUDIENCE)
            .hmac_secret(vec![7u8; len])
            .algorithms(algs.iter().copied())
            .build()
    };
    for (algs, needed) in [
        (&[Algorithm::HS256][..], 32),
        (&[Algorithm::HS384][..], 48),
        (&[Algorithm::HS512][..], 64),
        (&[Algorithm::HS256, Algorithm::HS512][..], 64),
    ] {
        let err = build(needed - 1, algs).map(|_| ()).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid(_)), "{algs:?} with {} bytes: {err:?}", needed - 1);
        assert!(build(needed, algs).is_ok(), "{algs:?} with {needed} bytes");
    }
}

#[tokio::test]
async fn pss_signature_under_a_key_pinned_to_rs256_is_rejected() {
    // The JWK of `rs256-1` says `"alg": "RS256"`: a PS256 token naming that kid must not verify,
    // even though the signature is genuine.
    let dev = dev_issuer([Algorithm::RS256]).await;
    assert_eq!(jwk_by_kid(&dev.jwks_json(), "rs256-1")["alg"], "RS256");
    let app = TestApp::start(validator(&dev)).await;
    let token = dev.token().kid("rs256-1").alg(Algorithm::PS256).sign();
    let header = segment_json(split_token(&token)[0]);
    assert_eq!((header["alg"].as_str(), header["kid"].as_str()), (Some("PS256"), Some("rs256-1")));
    app.assert_rejected(&token, InvalidToken::KeyAlgorithmMismatch).await;
    // The RS256 token of the same key passes.
    let token = dev.token().alg(Algorithm::RS256).sign();
    app.get("/me", &token).await.assert_ok_json();

    // Control: when the JWK does not pin `alg`, the same kind of token is a valid PS256 token,
    // which shows that the rejection above came from the pin.
    let unpinned = DevIssuer::builder().algorithms([Algorithm::RS256]).pin_alg(false).start().await.unwrap();
    assert!(jwk_by_kid(&unpinned.jwks_json(), "rs256-1").get("alg").is_none());
    let app = TestApp::start(validator(&unpinned)).await;
    let token = unpinned.token().kid("rs256-1").alg(Algorithm::PS256).sign();
    app.get("/me", &token).await.assert_ok_json();
}

#[tokio::test]
async fn tampered_tokens_are_rejected() {
    let (dev, app) = es256().await;
    let token = dev.token().alg(Algorithm::ES256).scope("items:read").sign();
    app.get("/me", &token).await.assert_ok_json();
    let [header, payload, signature] = split_token(&token);

    // Escalate the scope, keep header and signature.
    let mut claims = segment_json(payload);
    claims["scope"] = json!("items:read admin");
    let forged = format!("{header}.{}.{signature}", b64url(claims.to_string().as_bytes()));
    app.assert_rejected(&forged, InvalidToken::BadSignature).await;

    // Same claims, re-serialized differently (whitespace): still a different signing input.
    let respaced = serde_json::to_string_pretty(&segment_json(payload)).unwrap();
    let forged = format!("{header}.{}.{signature}", b64url(respaced.as_bytes()));
    app.assert_rejected(&forged, InvalidToken::BadSignature).await;

    // A signature borrowed from another genuine token.
    let other = dev.token().alg(Algorithm::ES256).subject("bob").sign();
    let forged = format!("{header}.{payload}.{}", split_token(&other)[2]);
    app.assert_rejected(&forged, InvalidToken::BadSignature).await;

    // A flipped bit in the signature.
    let mut sig = URL_SAFE_NO_PAD.decode(signature).unwrap();
    sig[10] ^= 1;
    let forged = format!("{header}.{payload}.{}", b64url(&sig));
    app.assert_rejected(&forged, InvalidToken::BadSignature).await;
}

#[tokio::test]
async fn unknown_crit_is_rejected() {
    let (dev, app) = es256().await;
    for crit in [json!(["exp"]), json!(["b64"]), json!(["urn:example:ext"]), json!([])] {
        let token = dev
            .token()
            .alg(Algorithm::ES256)
            .header("crit", crit.clone())
            .header("exp", unix_now() + 60)
            .header("b64", true)
            .header("urn:example:ext", "x")
            .sign();
        app.assert_rejected(&token, InvalidToken::UnsupportedCritical).await;
    }
    // The same token without `crit` is fine: the extra header members are not the problem.
    let token = dev
        .token()
        .alg(Algorithm::ES256)
        .header("exp", unix_now() + 60)
        .header("urn:example:ext", "x")
        .sign();
    app.get("/me", &token).await.assert_ok_json();
}

#[tokio::test]
async fn jku_and_embedded_jwk_headers_are_ignored() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let app = TestApp::start(validator(&dev)).await;
    // An attacker's issuer with its own ES256 key (same kid name as ours) and its own JWKS.
    let evil = dev_issuer([Algorithm::ES256]).await;
    let evil_jwk = jwk_by_kid(&evil.jwks_json(), "es256-1");

    // Attacker-signed tokens with claims for us, pointing at the attacker's keys.
    let forged = [
        evil.token().alg(Algorithm::ES256).claim("iss", dev.issuer()).header("jku", evil.jwks_url()).sign(),
        evil.token()
            .alg(Algorithm::ES256)
            .claim("iss", dev.issuer())
            .kid("attacker-kid")
            .header("jku", evil.jwks_url())
            .sign(),
        evil.token().alg(Algorithm::ES256).claim("iss", dev.issuer()).header("jwk", evil_jwk.clone()).sign(),
        evil.token()
            .alg(Algorithm::ES256)
            .claim("iss", dev.issuer())
            .no_kid()
            .header("jwk", evil_jwk)
            .header("x5u", evil.jwks_url())
            .sign(),
    ];
    let reasons = [
        InvalidToken::BadSignature, // our key of the same kid does not verify it
        InvalidToken::UnknownKey,   // the attacker's kid is not in our set
        InvalidToken::BadSignature,
        InvalidToken::BadSignature, // no kid: our only ES256 key is tried, and fails
    ];
    for (token, reason) in forged.iter().zip(reasons) {
        app.assert_rejected(token, reason).await;
    }
    assert_eq!(evil.jwks_fetches(), 0, "the jku URL must never be fetched");

    // Our own token with a jku pointing elsewhere is validated against our keys and passes.
    let token = dev.token().alg(Algorithm::ES256).header("jku", evil.jwks_url()).sign();
    app.get("/me", &token).await.assert_ok_json();
    assert_eq!(evil.jwks_fetches(), 0);
    assert!(dev.jwks_fetches() >= 1);
}

#[tokio::test]
async fn large_headers_and_escaped_header_values_are_read_like_any_other() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let app = TestApp::start(validator(&dev)).await;
    // A header that decodes to kilobytes (vendor members, certificate hints): not on the stack.
    let token = dev.token().alg(Algorithm::ES256).header("x-vendor", "v".repeat(2000)).sign();
    app.get("/me", &token).await.assert_ok_json();
    // Header values with characters JSON escapes are read unescaped: a `kid` that is not ours is
    // an unknown key, not a malformed token.
    let token = dev.token().alg(Algorithm::ES256).kid("es256\"1\\").sign();
    app.assert_rejected(&token, InvalidToken::UnknownKey).await;
    let token = dev.token().alg(Algorithm::ES256).header("typ", "at+jwt\u{1}").sign();
    app.assert_rejected(&token, InvalidToken::WrongType).await;
}

#[tokio::test]
async fn token_without_kid_is_accepted_when_exactly_one_key_fits() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let app = TestApp::start(validator(&dev)).await;
    let token = dev.token().alg(Algorithm::ES256).no_kid().sign();
    assert!(segment_json(split_token(&token)[0]).get("kid").is_none());
    let principal = app.get("/me", &token).await.assert_ok_json();
    assert_eq!(principal["subject"], "alice");
}

#[tokio::test]
async fn token_without_kid_is_rejected_when_several_keys_fit() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let second = dev.rotate(Algorithm::ES256);
    assert_eq!(second, "es256-2");
    let app = TestApp::start(validator(&dev)).await;
    // Warm the cache with a token that names its key: both keys are now known.
    let named = dev.token().alg(Algorithm::ES256).sign();
    app.get("/me", &named).await.assert_ok_json();

    let token = dev.token().alg(Algorithm::ES256).no_kid().sign();
    app.assert_rejected(&token, InvalidToken::AmbiguousKey).await;
    // Signed by the older key, still ambiguous.
    let token = dev.token().kid("es256-1").no_kid().sign();
    app.assert_rejected(&token, InvalidToken::AmbiguousKey).await;
}

#[tokio::test]
async fn malformed_compact_serializations_are_invalid_token() {
    let (dev, app) = es256().await;
    let token = dev.token().alg(Algorithm::ES256).sign();
    let [h, p, s] = split_token(&token);
    for bad in [
        format!("{h}.{p}"),
        format!("{h}.{p}.{s}.{s}"),
        format!("{h}..{s}"),
        format!("{h}.{p}.{s}=="),
        format!("{}.{p}.{s}", b64url(b"[1,2]")),
        format!("{}.{p}.{s}", b64url(b"not json")),
        format!("{}.{p}.{s}", b64url(br#"{"alg":"ES256","alg":"none"}"#)),
        "abc".to_owned(),
        // Correctly signed, but the claims are not a JSON object.
        dev.sign_raw("es256-1", Algorithm::ES256, br#"{"alg":"ES256","kid":"es256-1"}"#, b"[]"),
    ] {
        app.assert_rejected(&bad, InvalidToken::Malformed).await;
    }
    // Sanity: the untouched token passes.
    assert_eq!(app.get("/me", &token).await.status, StatusCode::OK);
}

/// String claims are read unescaped, whether they are kept as ranges of the claims text (no
/// escapes: `é` travels as UTF-8) or copied (a quote or backslash is escaped in JSON); scopes
/// are split, deduplicated and kept in order whatever the spacing.
#[tokio::test]
async fn string_claims_with_and_without_escapes_read_back_as_signed() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let app = TestApp::start(validator(&dev)).await;
    for (subject, client) in [("ré-mi 😀", "plain-client"), ("a\"b\\c\n", "c\u{1}\"q\"")] {
        let token = dev
            .token()
            .alg(Algorithm::ES256)
            .subject(subject)
            .claim("client_id", json!(client))
            .scope("  b a  b ")
            .claim("scp", json!(["c a", "d"]))
            .sign();
        let principal = app.get("/me", &token).await.assert_ok_json();
        assert_eq!(principal["subject"], subject, "{principal}");
        assert_eq!(principal["client_id"], client, "{principal}");
        assert_eq!(principal["issuer"], dev.issuer());
        assert_eq!(principal["scopes"], json!(["b", "a", "c", "d"]));
        assert_eq!(principal["claims"]["sub"], subject);
    }
}

//! Sender-constrained tokens (RFC 9449, RFC 8705) are never accepted as bearer tokens: a JWT or
//! an introspection answer with any `cnf` is refused when sent as `Authorization: Bearer`, on
//! every request (verified-token cache hits included). Real HTTP on 127.0.0.1.
#![cfg(all(feature = "dev", feature = "axum"))]

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};
use tower_bearer::{Algorithm, BearerLayer, Confirmation};

fn bound_cnfs() -> Vec<(Value, &'static str)> {
    vec![
        (json!({ "jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I" }), "bound_token_as_bearer"),
        (json!({ "x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2" }), "missing_client_certificate"),
        (json!({ "jwk": { "kty": "EC" } }), "unknown_cnf"),
        (json!({ "jkt": "a", "x5t#S256": "b" }), "unknown_cnf"),
        (json!({}), "unknown_cnf"),
        (json!("jkt"), "unknown_cnf"),
        (Value::Null, "unknown_cnf"),
    ]
}

#[tokio::test]
async fn bound_jwts_are_refused_as_bearer_tokens_every_time() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let app = TestApp::start(validator(&dev)).await;
    // The control: the same token without `cnf` passes, so what fails below is the binding.
    let unbound = dev.token().alg(Algorithm::ES256).sign();
    assert_eq!(app.get("/me", &unbound).await.status, StatusCode::OK);
    for (cnf, reason) in bound_cnfs() {
        // `Value::Null` would remove the claim: write a literal null instead.
        let token = if cnf.is_null() {
            let t = dev.token().alg(Algorithm::ES256).claim("cnf", json!("placeholder")).sign();
            // Re-sign with a JSON null `cnf` through the raw signer.
            let [h, p, _] = split_token(&t);
            let mut payload = segment_json(p);
            payload["cnf"] = Value::Null;
            let header = segment_json(h);
            dev.sign_raw(
                header["kid"].as_str().unwrap(),
                Algorithm::ES256,
                header.to_string().as_bytes(),
                payload.to_string().as_bytes(),
            )
        } else {
            dev.token().alg(Algorithm::ES256).claim("cnf", cnf.clone()).sign()
        };
        // Twice: the second request is a verified-token cache hit, and is refused all the same.
        for _ in 0..2 {
            app.get("/me", &token).await.assert_invalid_token();
        }
        // In-process, the validator itself accepts the token and reports the binding; the layer
        // is what refuses it.
        use tower_bearer::Validator;
        let principal = app
            .validator
            .validate(&token, &tower_bearer::RequestView::detached())
            .resolve()
            .await
            .expect("the token itself is valid");
        assert!(principal.confirmation().is_bound(), "{cnf}");
        let err = tower_bearer::AuthError::InvalidToken(match reason {
            "bound_token_as_bearer" => tower_bearer::InvalidToken::BoundTokenAsBearer,
            "missing_client_certificate" => tower_bearer::InvalidToken::MissingClientCertificate,
            _ => tower_bearer::InvalidToken::UnknownConfirmation,
        });
        assert_eq!(err.reason(), reason);
    }
    // And the unbound token still passes after all that (from the cache).
    assert_eq!(app.get("/me", &unbound).await.status, StatusCode::OK);
}

#[tokio::test]
async fn bound_introspection_answers_are_refused_as_bearer_tokens() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let introspector = introspector(&dev);
    let base = serve(routes().layer(BearerLayer::new(introspector.clone()).realm(REALM))).await;
    let app = TestApp { base, client: client(), validator: validator(&dev) };
    let unbound = dev.opaque_token().issue();
    assert_eq!(app.get("/me", &unbound).await.status, StatusCode::OK);
    for (cnf, _) in bound_cnfs().into_iter().filter(|(c, _)| !c.is_null()) {
        let token = dev.opaque_token().claim("cnf", cnf.clone()).issue();
        for _ in 0..2 {
            app.get("/me", &token).await.assert_invalid_token();
        }
    }
    let calls = dev.introspection_calls();
    let jkt = dev.opaque_token().claim("cnf", json!({ "jkt": "abc" })).issue();
    app.get("/me", &jkt).await.assert_invalid_token();
    app.get("/me", &jkt).await.assert_invalid_token();
    assert_eq!(dev.introspection_calls(), calls + 1, "the second refusal came from the cache");
    use tower_bearer::Validator;
    let p = introspector.validate(&jkt, &tower_bearer::RequestView::detached()).resolve().await.unwrap();
    assert_eq!(p.confirmation(), &Confirmation::Jkt("abc".into()));
}

//! The verified-token cache of `JwtValidator`, over real HTTP against the dev issuer: what a
//! cached entry may and may not vouch for.
#![cfg(all(feature = "dev", feature = "axum"))]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use common::{TestApp, dev_issuer, validator_builder};
use reqwest::StatusCode;
use tower_bearer::dev::DevIssuer;
use tower_bearer::{Algorithm, Clock, InvalidToken, KeySet, TokenCacheStats};

/// A clock the test moves by hand: seconds added to the real time.
#[derive(Clone, Default)]
struct Offset(Arc<AtomicI64>);

impl Offset {
    fn clock(&self) -> Clock {
        let offset = self.0.clone();
        Clock::from_fn(move || {
            let secs = offset.load(Ordering::SeqCst);
            let now = SystemTime::now();
            if secs >= 0 {
                now + Duration::from_secs(secs as u64)
            } else {
                now - Duration::from_secs(secs.unsigned_abs())
            }
        })
    }
    fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

async fn setup(
    tune: impl FnOnce(tower_bearer::JwtValidatorBuilder) -> tower_bearer::JwtValidatorBuilder,
) -> (DevIssuer, TestApp) {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let keys = KeySet::builder(dev.jwks_url()).refetch_cooldown(Duration::ZERO).build().unwrap();
    let validator = tune(validator_builder(&dev).key_set(keys)).build().unwrap();
    let app = TestApp::start(validator).await;
    (dev, app)
}

fn token(dev: &DevIssuer, subject: &str) -> String {
    dev.token().alg(Algorithm::ES256).subject(subject).expires_in(Duration::from_secs(600)).sign()
}

fn stats(app: &TestApp) -> TokenCacheStats {
    app.validator.token_cache_stats()
}

/// The `kid` in a token's header.
fn kid_of(token: &str) -> String {
    use base64::Engine;
    let header =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(common::split_token(token)[0]).unwrap();
    serde_json::from_slice::<serde_json::Value>(&header).unwrap()["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_verified_token_is_remembered_and_served_from_the_cache() {
    let (dev, app) = setup(|b| b).await;
    let token = token(&dev, "ada");
    for _ in 0..4 {
        assert_eq!(app.get("/me", &token).await.assert_ok_json()["subject"], "ada");
    }
    // Two full validations (the first only marks the token, the second admits it), then two
    // answers from the cache.
    let s = stats(&app);
    assert_eq!((s.entries, s.hits, s.misses), (1, 2, 2));
    // Another token is another entry: exact match only.
    let bob = self::token(&dev, "bob");
    app.get("/me", &bob).await.assert_ok_json();
    app.get("/me", &bob).await.assert_ok_json();
    assert_eq!((stats(&app).entries, stats(&app).misses), (2, 4));
}

/// A token verified once is not remembered: one-shot tokens (new users, a token-spraying
/// client) cost no insertion. Its second success admits it.
#[tokio::test]
async fn a_token_seen_once_is_not_remembered_and_its_second_success_admits_it() {
    let (dev, app) = setup(|b| b).await;
    let tokens: Vec<String> = (0..50).map(|i| token(&dev, &format!("user-{i}"))).collect();
    for token in &tokens {
        app.get("/me", token).await.assert_ok_json();
    }
    assert_eq!((stats(&app).entries, stats(&app).hits, stats(&app).misses), (0, 0, 50));
    app.get("/me", &tokens[7]).await.assert_ok_json();
    assert_eq!((stats(&app).entries, stats(&app).hits), (1, 0));
    assert_eq!(app.get("/me", &tokens[7]).await.assert_ok_json()["subject"], "user-7");
    assert_eq!((stats(&app).entries, stats(&app).hits), (1, 1));
}

#[tokio::test]
async fn a_cached_token_with_one_byte_changed_is_not_a_hit() {
    let (dev, app) = setup(|b| b).await;
    let token = token(&dev, "ada");
    app.get("/me", &token).await.assert_ok_json();
    app.get("/me", &token).await.assert_ok_json();
    // Same header and signature, one payload byte changed: must be verified, and fail.
    let [header, payload, signature] = common::split_token(&token);
    let mut forged = payload.as_bytes().to_vec();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = format!("{header}.{}.{signature}", String::from_utf8(forged).unwrap());
    assert_eq!(
        app.rejection(&forged).await,
        tower_bearer::AuthError::InvalidToken(InvalidToken::BadSignature)
    );
    // A trailing character added to the signature: also a different token.
    app.get("/me", &format!("{token}A")).await.assert_invalid_token();
    assert_eq!(stats(&app).entries, 1, "failures are never cached");
}

#[tokio::test]
async fn expiry_is_checked_on_every_hit() {
    let offset = Offset::default();
    let clock = offset.clock();
    let (dev, app) = setup(move |b| b.clock(clock).leeway(Duration::ZERO)).await;
    let token = dev.token().alg(Algorithm::ES256).expires_in(Duration::from_secs(60)).sign();
    // Sent again and again: the thread serving it holds its own copy of the entry by now.
    for _ in 0..6 {
        app.get("/me", &token).await.assert_ok_json();
    }
    assert_eq!(stats(&app).entries, 1);
    offset.advance(61);
    let description = app.get("/me", &token).await.assert_invalid_token();
    assert!(description.contains("expired"), "{description}");
    assert_eq!(app.rejection(&token).await, tower_bearer::AuthError::InvalidToken(InvalidToken::Expired));
}

#[tokio::test]
async fn an_entry_vouches_for_at_most_max_ttl_then_the_token_is_verified_again() {
    let offset = Offset::default();
    let clock = offset.clock();
    let (dev, app) = setup(move |b| b.clock(clock).token_cache(100, Duration::from_secs(30))).await;
    let token = token(&dev, "ada");
    // Two full validations, then hits (from the thread's own copy after the second).
    for _ in 0..6 {
        app.get("/me", &token).await.assert_ok_json();
    }
    assert_eq!((stats(&app).hits, stats(&app).misses), (4, 2));
    // Past max_ttl (but well before exp) the entry, and the copy, no longer count: verified
    // again, and remembered again at once (the token was admitted before).
    offset.advance(31);
    app.get("/me", &token).await.assert_ok_json();
    assert_eq!((stats(&app).hits, stats(&app).misses), (4, 3));
    app.get("/me", &token).await.assert_ok_json();
    assert_eq!((stats(&app).hits, stats(&app).misses), (5, 3));
}

#[tokio::test]
async fn entries_die_with_the_key_that_verified_them() {
    let (dev, app) = setup(|b| b).await;
    let old = token(&dev, "ada");
    for _ in 0..6 {
        app.get("/me", &old).await.assert_ok_json();
    }
    assert_eq!((stats(&app).entries, stats(&app).hits), (1, 4));
    // Rotation: a new key is published and the old one removed from the JWKS.
    let old_kid = kid_of(&old);
    let new_kid = dev.rotate(Algorithm::ES256);
    dev.retire(&old_kid);
    // A token of the new key makes the validator fetch the new set (unknown kid).
    let new = dev.token().alg(Algorithm::ES256).kid(&new_kid).sign();
    app.get("/me", &new).await.assert_ok_json();
    // The old token was cached, but its key is gone: no longer accepted.
    let misses = stats(&app).misses;
    app.get("/me", &old).await.assert_invalid_token();
    assert_eq!(stats(&app).misses, misses + 1, "the dead entry is not a hit");
}

/// A token without `kid` was accepted because exactly one key fitted. Once a second fitting key
/// is published, full validation would call it ambiguous: the cached entry must not keep
/// accepting it.
#[tokio::test]
async fn an_entry_dies_when_its_kidless_token_becomes_ambiguous() {
    let (dev, app) = setup(|b| b).await;
    let token = dev.token().alg(Algorithm::ES256).no_kid().sign();
    for _ in 0..6 {
        app.get("/me", &token).await.assert_ok_json();
    }
    assert_eq!(stats(&app).hits, 4);
    dev.rotate(Algorithm::ES256);
    app.validator.key_set().unwrap().refresh().await.unwrap();
    assert_eq!(
        app.rejection(&token).await,
        tower_bearer::AuthError::InvalidToken(InvalidToken::AmbiguousKey)
    );
    app.get("/me", &token).await.assert_invalid_token();
}

#[tokio::test]
async fn a_routine_refresh_keeps_entries_whose_key_is_still_published() {
    let (dev, app) = setup(|b| b).await;
    let token = token(&dev, "ada");
    app.get("/me", &token).await.assert_ok_json();
    app.get("/me", &token).await.assert_ok_json();
    let fetches = dev.jwks_fetches();
    app.validator.key_set().unwrap().refresh().await.unwrap();
    assert_eq!(dev.jwks_fetches(), fetches + 1);
    app.get("/me", &token).await.assert_ok_json();
    assert_eq!(stats(&app).entries, 1);
}

#[tokio::test]
async fn garbage_tokens_add_nothing() {
    let (dev, app) = setup(|b| b).await;
    let valid = token(&dev, "ada");
    let [header, payload, _] = common::split_token(&valid);
    for i in 0..200 {
        let garbage =
            format!("{header}.{payload}.{}", common::b64url(format!("not a signature {i}").as_bytes()));
        app.get("/me", &garbage).await.assert_invalid_token();
    }
    assert_eq!(stats(&app).entries, 0);
}

#[tokio::test]
async fn the_cache_is_bounded_by_its_entry_count() {
    let (dev, app) = setup(|b| b.token_cache(16, Duration::from_secs(300))).await;
    for i in 0..100 {
        let token = token(&dev, &format!("user-{i}"));
        app.get("/me", &token).await.assert_ok_json();
        app.get("/me", &token).await.assert_ok_json();
    }
    let entries = stats(&app).entries;
    assert!(entries <= 16, "{entries} entries for a bound of 16");
    assert!(entries > 0);
}

#[tokio::test]
async fn no_token_cache_means_nothing_is_remembered() {
    let (dev, app) = setup(|b| b.no_token_cache()).await;
    let token = token(&dev, "ada");
    app.get("/me", &token).await.assert_ok_json();
    app.get("/me", &token).await.assert_ok_json();
    assert_eq!(stats(&app).entries, 0);
}

#[tokio::test]
async fn scopes_are_still_enforced_per_route_on_a_hit() {
    let (dev, app) = setup(|b| b).await;
    let token = dev.token().alg(Algorithm::ES256).scope("items:read").sign();
    for _ in 0..2 {
        assert_eq!(app.get("/items", &token).await.status, StatusCode::OK);
        let reply = app.post("/items", &token).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
    }
    assert_eq!(stats(&app).entries, 1);
}

/// A principal returned as the response is its JSON: the same bytes as `Json(principal)`, on a
/// full validation as on hits from the shared entries and from the thread's copy.
#[tokio::test]
async fn a_principal_answers_as_its_json() {
    use axum::routing::get;
    use tower_bearer::{BearerLayer, Principal};

    let (dev, app) = setup(|b| b).await;
    let router = axum::Router::new()
        .route("/principal", get(|p: Principal| async move { p }))
        .route("/json", get(|p: Principal| async move { axum::Json(p) }))
        .layer(BearerLayer::new(app.validator.clone()));
    let base = common::serve(router).await;
    let token = token(&dev, "ada");
    let mut bodies = Vec::new();
    for path in ["/principal", "/json"].repeat(4) {
        let reply = app.client.get(format!("{base}{path}")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(reply.status(), StatusCode::OK);
        assert_eq!(reply.headers()["content-type"], "application/json", "{path}");
        bodies.push(reply.text().await.unwrap());
    }
    assert!(bodies.iter().all(|body| *body == bodies[0]), "{bodies:#?}");
    let json: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!((&json["subject"], &json["claims"]["sub"]), (&"ada".into(), &"ada".into()));
    assert_eq!(stats(&app).hits, 6);
}

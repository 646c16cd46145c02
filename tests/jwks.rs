//! The key-set cache against real JWKS endpoints on loopback: rotation, the unknown-`kid`
//! cooldown, single flight, stale-if-error, fetch failures of every kind, `use`, and
//! `Cache-Control: max-age`.
//!
//! No test measures time. Where a fault needs time (a slow body, a slow server), only the
//! outcome is asserted; waits for background work are event-driven (hit counters).
#![cfg(all(feature = "dev", feature = "axum"))]

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{
    EnteredCounter, Fault, FaultServer, Reply, TestApp, closed_port_url, dev_issuer, guarded, jwk_by_kid,
    jwks_of, validator, validator_with_keys,
};
use tokio::task::JoinSet;
use tower_bearer::dev::DevIssuer;
use tower_bearer::{Algorithm, BearerLayer, KeySet, key_set_defaults};

/// A key set for `url` with the given settings.
fn key_set(
    url: &str,
    tune: impl FnOnce(tower_bearer::KeySetBuilder) -> tower_bearer::KeySetBuilder,
) -> KeySet {
    tune(KeySet::builder(url)).build().expect("build the key set")
}

/// Fires one `GET /me` per token, all at once; returns the replies in token order.
async fn concurrently(app: &TestApp, tokens: Vec<String>) -> Vec<Reply> {
    burst(app.client.clone(), app.url("/me"), tokens).await
}

async fn burst(client: reqwest::Client, url: String, tokens: Vec<String>) -> Vec<Reply> {
    let mut set = JoinSet::new();
    for (i, token) in tokens.into_iter().enumerate() {
        let request = client.get(&url).bearer_auth(token);
        set.spawn(async move { (i, common::send(request).await) });
    }
    let mut replies: Vec<(usize, Reply)> = guarded(set.join_all()).await;
    replies.sort_by_key(|(i, _)| *i);
    replies.into_iter().map(|(_, r)| r).collect()
}

// ---------------------------------------------------------------------------------------------
// Rotation and the unknown-kid cooldown
// ---------------------------------------------------------------------------------------------

/// With default settings, as an application would run it: the issuer rotates right after the
/// resource server loaded its keys, and the first token with the new `kid` must trigger one
/// refetch and pass.
#[tokio::test]
async fn rotated_key_is_accepted_after_one_refetch_with_default_settings() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let app = TestApp::start(validator(&dev)).await;
    app.get("/me", &dev.token().alg(Algorithm::ES256).sign()).await.assert_ok_json();
    assert_eq!(dev.jwks_fetches(), 1);

    let new_kid = dev.rotate(Algorithm::ES256);
    let token = dev.token().alg(Algorithm::ES256).sign();
    assert!(token.starts_with(
        &common::b64url(
            serde_json::json!({"alg":"ES256","kid":new_kid,"typ":"at+jwt"}).to_string().as_bytes()
        )[..4]
    ));
    app.get("/me", &token).await.assert_ok_json();
    assert_eq!(dev.jwks_fetches(), 2, "exactly one refetch for the new kid");
    app.get("/me", &token).await.assert_ok_json();
    assert_eq!(dev.jwks_fetches(), 2, "the new key is now cached");
}

/// The rotation mechanics, with the cooldown out of the way: a new `kid` causes exactly one
/// refetch, and a retired key stops working once the set was refetched.
#[tokio::test]
async fn rotated_key_is_fetched_on_first_sight_and_retired_key_dropped() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let keys = key_set(&dev.jwks_url(), |b| b.refetch_cooldown(Duration::ZERO));
    let app = TestApp::start(validator_with_keys(&dev, keys)).await;
    let old_token = dev.token().alg(Algorithm::ES256).sign();
    app.get("/me", &old_token).await.assert_ok_json();
    assert_eq!(dev.jwks_fetches(), 1);

    let new_kid = dev.rotate(Algorithm::ES256);
    dev.retire("es256-1");
    let new_token = dev.token().alg(Algorithm::ES256).sign();
    assert_eq!(common::segment_json(common::split_token(&new_token)[0])["kid"], new_kid.as_str());
    app.get("/me", &new_token).await.assert_ok_json();
    assert_eq!(dev.jwks_fetches(), 2, "exactly one refetch for the new kid");
    assert_eq!(app.fetch_counts(), (2, 0));
    app.get("/me", &new_token).await.assert_ok_json();
    assert_eq!(dev.jwks_fetches(), 2, "the new key is cached");

    // The refetched set no longer has es256-1: its tokens are unknown now (one more refetch
    // for the unknown kid, with the cooldown at zero).
    app.get("/me", &old_token).await.assert_invalid_token();
    assert_eq!(dev.jwks_fetches(), 3);
}

/// The brief's scenario: warm up with one valid request, then a burst of made-up `kid`s causes
/// exactly one extra fetch (and all of them are `401`), and so does a later trickle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_kids_after_warm_up_cause_exactly_one_fetch() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let keys = key_set(&dev.jwks_url(), |b| b.refetch_cooldown(Duration::from_secs(3600)));
    let app = TestApp::start(validator_with_keys(&dev, keys)).await;
    app.get("/me", &dev.token().alg(Algorithm::ES256).sign()).await.assert_ok_json();
    assert_eq!(dev.jwks_fetches(), 1);

    let tokens =
        (0..20).map(|i| dev.token().alg(Algorithm::ES256).kid(&format!("made-up-{i}")).sign()).collect();
    for reply in concurrently(&app, tokens).await {
        reply.assert_invalid_token();
    }
    assert_eq!(dev.jwks_fetches(), 2, "one refetch for the whole burst");
    for i in 0..10 {
        let token = dev.token().alg(Algorithm::ES256).kid(&format!("later-{i}")).sign();
        app.get("/me", &token).await.assert_invalid_token();
    }
    assert_eq!(dev.jwks_fetches(), 2, "the cooldown holds later misses back");
}

/// The property the cooldown exists for, which holds today: however many made-up `kid`s
/// arrive, concurrently or one after another, they cause at most one fetch per cooldown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_kids_cannot_cause_a_fetch_flood() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let keys = key_set(&dev.jwks_url(), |b| b.refetch_cooldown(Duration::from_secs(3600)));
    let app = TestApp::start(validator_with_keys(&dev, keys)).await;
    let good = dev.token().alg(Algorithm::ES256).sign();
    app.get("/me", &good).await.assert_ok_json();
    assert_eq!(dev.jwks_fetches(), 1);

    let tokens =
        (0..20).map(|i| dev.token().alg(Algorithm::ES256).kid(&format!("made-up-{i}")).sign()).collect();
    for reply in concurrently(&app, tokens).await {
        let description = reply.assert_invalid_token();
        assert!(!description.contains("made-up"), "no kid echoed: {description}");
    }
    for i in 0..10 {
        let token = dev.token().alg(Algorithm::ES256).kid(&format!("later-{i}")).sign();
        app.get("/me", &token).await.assert_invalid_token();
    }
    // The 20 concurrent misses shared one fetch; the cooldown held the 10 later ones back.
    assert_eq!(dev.jwks_fetches(), 2, "30 unknown kids caused {} fetches", dev.jwks_fetches());
    // Known keys are unaffected.
    app.get("/me", &good).await.assert_ok_json();
}

/// Control for the test above: with the cooldown at zero every unknown `kid` refetches, so the
/// bound observed above really is the cooldown's doing.
#[tokio::test]
async fn without_cooldown_every_unknown_kid_refetches() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let keys = key_set(&dev.jwks_url(), |b| b.refetch_cooldown(Duration::ZERO));
    let app = TestApp::start(validator_with_keys(&dev, keys)).await;
    app.get("/me", &dev.token().alg(Algorithm::ES256).sign()).await.assert_ok_json();
    for i in 0..5 {
        let token = dev.token().alg(Algorithm::ES256).kid(&format!("made-up-{i}")).sign();
        app.get("/me", &token).await.assert_invalid_token();
    }
    assert_eq!(dev.jwks_fetches(), 6);
}

/// A request whose unknown `kid` started a refetch is dropped before the (slow) JWKS answers:
/// the client went away, or an outer timeout fired first. The fetch must land all the same;
/// otherwise the cooldown it started stands with nothing fetched, and for 30 s every token of
/// the freshly rotated key is refused as `unknown_kid`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_request_does_not_take_the_key_refresh_with_it() {
    use tower::ServiceExt;
    let dev = dev_issuer([Algorithm::ES256]).await;
    let server = FaultServer::start(Fault::Jwks(dev.jwks_json())).await;
    // Default cooldown (30 s): far longer than this test.
    let app = common::app(validator_with_keys(&dev, key_set(server.url(), |b| b)));
    let get_me = |token: String| {
        axum::http::Request::get("/me")
            .header("authorization", format!("Bearer {token}"))
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let old = dev.token().alg(Algorithm::ES256).sign();
    assert_eq!(app.clone().oneshot(get_me(old)).await.unwrap().status(), StatusCode::OK);
    assert_eq!(server.hits(), 1);

    dev.rotate(Algorithm::ES256);
    server.set(Fault::Jwks(dev.jwks_json()));
    server.close_gate();
    let rotated = dev.token().alg(Algorithm::ES256).sign();
    // The first request with the new `kid` starts the refetch, which the JWKS holds back...
    let first = tokio::spawn(app.clone().oneshot(get_me(rotated.clone())));
    server.wait_for_hits(2).await;
    // ...and is dropped while waiting for it.
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    server.open_gate();

    // The next request with that key passes: the fetch landed (or it joins the fetch still
    // under way), instead of meeting a cooldown with nothing fetched.
    let second = guarded(app.oneshot(get_me(rotated))).await.unwrap();
    assert_eq!(second.status(), StatusCode::OK, "{:?}", second.headers());
    assert_eq!(server.hits(), 2, "one fetch for the rotation, no more");
}

// ---------------------------------------------------------------------------------------------
// Single flight on a cold cache
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_share_one_fetch() {
    const N: usize = 20;
    let dev = dev_issuer([Algorithm::ES256]).await;
    let server = FaultServer::start(Fault::Jwks(dev.jwks_json())).await;
    // Hold the first fetch until all N requests have started validating against the empty set.
    server.close_gate();
    let keys = key_set(server.url(), |b| b);
    let validator = validator_with_keys(&dev, keys);
    let entered = EnteredCounter::default();
    let router = common::routes()
        .layer(BearerLayer::new(validator.clone()).realm(common::REALM))
        .layer(entered.clone());
    let app = TestApp::start_router(validator, router).await;

    let tokens: Vec<String> =
        (0..N).map(|i| dev.token().alg(Algorithm::ES256).subject(&format!("u{i}")).sign()).collect();
    let in_flight = tokio::spawn(burst(app.client.clone(), app.url("/me"), tokens));
    entered.wait_for(N).await;
    server.wait_for_hits(1).await;
    assert_eq!(server.hits(), 1, "fetches beyond the first while it is under way");
    server.open_gate();

    let replies = guarded(in_flight).await.unwrap();
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply.assert_ok_json()["subject"], format!("u{i}"));
    }
    assert_eq!(server.hits(), 1, "all {N} cold requests shared one fetch");
    assert_eq!(app.fetch_counts(), (1, 0));
}

// ---------------------------------------------------------------------------------------------
// Outages
// ---------------------------------------------------------------------------------------------

/// Lines written at `WARN` and above, through a subscriber of this thread only.
#[derive(Clone, Default)]
struct WarnLines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for WarnLines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl WarnLines {
    fn count(&self) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap()).lines().count()
    }
}

/// An outage must not become a log flood: 1 000 requests while no key set can be fetched are
/// each answered `503` (and counted by the metrics), but write a handful of warning lines (the
/// first of each kind, then a summary every few seconds), not one or two per request.
#[tokio::test]
async fn an_outage_writes_a_few_warnings_not_one_per_request() {
    use tower::ServiceExt;
    let lines = WarnLines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dev = dev_issuer([Algorithm::ES256]).await;
    let unreachable = closed_port_url("/jwks.json").await;
    let app = common::app(validator_with_keys(&dev, key_set(&unreachable, |b| b)));
    let token = dev.token().alg(Algorithm::ES256).sign();
    for _ in 0..1000 {
        let request = axum::http::Request::get("/me")
            .header("authorization", format!("Bearer {token}"))
            .body(axum::body::Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    // Each throttled site writes its first line (unless a test running beside this one in the
    // process already did), then one every 5 s; fetch failures at most one per second.
    let written = lines.count();
    assert!((1..20).contains(&written), "{written} warning lines for 1 000 requests");
}

#[tokio::test]
async fn known_keys_survive_a_failing_jwks_endpoint() {
    // max-age 0 with no lower clamp: the set is stale at once, so every request also tries a
    // background refresh, which fails.
    let dev = DevIssuer::builder().algorithms([Algorithm::ES256]).jwks_max_age(0).start().await.unwrap();
    let keys = key_set(&dev.jwks_url(), |b| {
        b.refetch_cooldown(Duration::ZERO).ttl_bounds(Duration::ZERO, Duration::from_secs(3600))
    });
    let app = TestApp::start(validator_with_keys(&dev, keys)).await;
    let good = dev.token().alg(Algorithm::ES256).sign();
    app.get("/me", &good).await.assert_ok_json();

    dev.set_jwks_failing(true);
    // A token that needs a fetch forces one (no cooldown) and it fails: the failure is ours.
    let before = dev.jwks_fetches();
    app.get("/me", &dev.token().alg(Algorithm::ES256).kid("new-kid").sign()).await.assert_unavailable();
    assert!(dev.jwks_fetches() > before, "the refetch was attempted");
    assert!(app.fetch_counts().1 >= 1, "{:?}", app.fetch_counts());
    // Known keys keep working from the last good set.
    for _ in 0..3 {
        app.get("/me", &good).await.assert_ok_json();
    }

    // Recovery: the next fetch succeeds, and a made-up kid is the client's problem again.
    dev.set_jwks_failing(false);
    app.get("/me", &dev.token().alg(Algorithm::ES256).kid("made-up").sign()).await.assert_invalid_token();
    app.get("/me", &good).await.assert_ok_json();
}

#[tokio::test]
async fn known_keys_survive_a_stopped_jwks_server() {
    let mut dev = dev_issuer([Algorithm::ES256]).await;
    // No idle connections: every fetch dials anew, so "stopped" means "connection refused".
    let client = tower_bearer::HttpClient::builder().no_proxy().max_idle_per_host(0).build().unwrap();
    let keys = key_set(&dev.jwks_url(), |b| b.refetch_cooldown(Duration::ZERO).http_client(client));
    let app = TestApp::start(validator_with_keys(&dev, keys)).await;
    let good = dev.token().alg(Algorithm::ES256).sign();
    app.get("/me", &good).await.assert_ok_json();
    let (ok_before, failed_before) = app.fetch_counts();
    assert_eq!((ok_before, failed_before), (1, 0));

    dev.stop();
    common::wait_until_refused(dev.addr()).await;
    // Force a fetch attempt against the dead server.
    app.get("/me", &dev.token().alg(Algorithm::ES256).kid("new-kid").sign()).await.assert_unavailable();
    assert_eq!(app.fetch_counts(), (1, 1));
    for _ in 0..3 {
        app.get("/me", &good).await.assert_ok_json();
    }
}

#[tokio::test]
async fn unreachable_jwks_is_503_not_invalid_token() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let url = closed_port_url("/jwks.json").await;
    let keys = key_set(&url, |b| b.retry_unavailable(Duration::ZERO));
    let app = TestApp::start(validator_with_keys(&dev, keys)).await;
    let token = dev.token().alg(Algorithm::ES256).sign();
    for _ in 0..3 {
        app.get("/me", &token).await.assert_unavailable();
    }
    assert_eq!(app.fetch_counts(), (0, 3));
    // A token that is broken regardless of keys is still the client's problem.
    app.get("/me", "not-a-jwt").await.assert_invalid_token();
}

/// Without `retry_unavailable(0)`: repeated requests during an outage at start-up do not each
/// hit the dead endpoint.
#[tokio::test]
async fn unreachable_jwks_is_not_hammered() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let server = FaultServer::start(Fault::Status(StatusCode::INTERNAL_SERVER_ERROR, dev.jwks_json())).await;
    let keys = key_set(server.url(), |b| b.retry_unavailable(Duration::from_secs(3600)));
    let app = TestApp::start(validator_with_keys(&dev, keys)).await;
    let token = dev.token().alg(Algorithm::ES256).sign();
    for _ in 0..5 {
        app.get("/me", &token).await.assert_unavailable();
    }
    assert_eq!(server.hits(), 1);
}

/// Starts an app whose key set is served by a fault server answering `fault`; the key set has
/// `retry_unavailable(0)` and the given `timeout`.
async fn app_with_fault(dev: &DevIssuer, fault: Fault, timeout: Duration) -> (FaultServer, TestApp) {
    let server = FaultServer::start(fault).await;
    let keys = key_set(server.url(), |b| b.retry_unavailable(Duration::ZERO).timeout(timeout));
    let app = TestApp::start(validator_with_keys(dev, keys)).await;
    (server, app)
}

/// A fault at start-up gives `503`; the same server, once it serves the set, gives `200` — so
/// the `503` came from the fault and nothing else.
async fn assert_fault_at_start_is_503(fault: Fault, timeout: Duration) {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let (server, app) = app_with_fault(&dev, fault, timeout).await;
    let token = dev.token().alg(Algorithm::ES256).sign();
    app.get("/me", &token).await.assert_unavailable();
    assert_eq!(app.fetch_counts(), (0, 1));
    assert_eq!(server.hits(), 1);

    server.set(Fault::Jwks(dev.jwks_json()));
    app.get("/me", &token).await.assert_ok_json();
    assert_eq!(app.fetch_counts(), (1, 1));
}

#[tokio::test]
async fn garbage_json_at_start_is_503() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let jwks = dev.jwks_json();
    for garbage in [
        jwks[..jwks.len() / 2].to_owned(),
        "<html>Service Temporarily Unavailable</html>".to_owned(),
        r#"{"keys":"nope"}"#.to_owned(),
        r#"{"keys":[]}"#.to_owned(),
        "[]".to_owned(),
        String::new(),
    ] {
        assert_fault_at_start_is_503(Fault::Garbage(garbage), key_set_defaults::TIMEOUT).await;
    }
}

#[tokio::test]
async fn error_status_at_start_is_503_even_with_a_valid_body() {
    for status in [
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::NOT_FOUND,
        StatusCode::FORBIDDEN,
    ] {
        let dev = dev_issuer([Algorithm::ES256]).await;
        assert_fault_at_start_is_503(Fault::Status(status, dev.jwks_json()), key_set_defaults::TIMEOUT).await;
    }
}

#[tokio::test]
async fn oversized_body_at_start_is_503() {
    for content_length in [true, false] {
        let dev = dev_issuer([Algorithm::ES256]).await;
        assert_fault_at_start_is_503(
            Fault::Oversized {
                jwks: dev.jwks_json(),
                size: key_set_defaults::MAX_BODY_BYTES + 1,
                content_length,
            },
            key_set_defaults::TIMEOUT,
        )
        .await;
    }
}

#[tokio::test]
async fn body_at_exactly_the_size_bound_is_accepted() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    for content_length in [true, false] {
        let server =
            FaultServer::start(Fault::Oversized { jwks: dev.jwks_json(), size: 4096, content_length }).await;
        let keys = key_set(server.url(), |b| b.max_body_bytes(4096));
        let app = TestApp::start(validator_with_keys(&dev, keys)).await;
        app.get("/me", &dev.token().alg(Algorithm::ES256).sign()).await.assert_ok_json();

        let server =
            FaultServer::start(Fault::Oversized { jwks: dev.jwks_json(), size: 4097, content_length }).await;
        let keys = key_set(server.url(), |b| b.max_body_bytes(4096));
        let app = TestApp::start(validator_with_keys(&dev, keys)).await;
        app.get("/me", &dev.token().alg(Algorithm::ES256).sign()).await.assert_unavailable();
    }
}

#[tokio::test]
async fn slow_body_beyond_the_timeout_at_start_is_503() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    assert_fault_at_start_is_503(
        Fault::Drip {
            jwks: dev.jwks_json(),
            // Far beyond the key-set timeout: if the timeout did not cover the body, the
            // fetch would complete with a valid set and the request would pass.
            pause: Duration::from_secs(5),
        },
        Duration::from_millis(300),
    )
    .await;
}

#[tokio::test]
async fn slow_headers_beyond_the_timeout_at_start_is_503() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    assert_fault_at_start_is_503(
        Fault::SlowHeaders { jwks: dev.jwks_json(), pause: Duration::from_secs(5) },
        Duration::from_millis(300),
    )
    .await;
}

/// `KeySetBuilder::client` documents that "the per-request timeout of this builder is still set
/// on every fetch". An application's client often has no timeout at all (reqwest's default).
#[tokio::test]
async fn custom_client_still_gets_the_key_set_timeout() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let server = FaultServer::start(Fault::SlowHeaders {
        jwks: dev.jwks_json(),
        // Long enough that a fetch without the 300 ms timeout succeeds only much later, short
        // enough that the failing run of this test stays bounded.
        pause: Duration::from_secs(3),
    })
    .await;
    let client = tower_bearer::HttpClient::builder().no_proxy().build().unwrap();
    let keys = key_set(server.url(), |b| b.http_client(client).timeout(Duration::from_millis(300)));
    let app = TestApp::start(validator_with_keys(&dev, keys)).await;
    app.get("/me", &dev.token().alg(Algorithm::ES256).sign()).await.assert_unavailable();
}

#[tokio::test]
async fn garbage_after_warm_up_keeps_known_keys() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let server = FaultServer::start(Fault::Jwks(dev.jwks_json())).await;
    let keys = key_set(server.url(), |b| b.refetch_cooldown(Duration::ZERO));
    let app = TestApp::start(validator_with_keys(&dev, keys)).await;
    let good = dev.token().alg(Algorithm::ES256).sign();
    app.get("/me", &good).await.assert_ok_json();
    assert_eq!(server.hits(), 1);

    for (i, fault) in [
        Fault::Garbage("{\"keys\": [".into()),
        Fault::Garbage("{\"keys\": []}".into()),
        Fault::Status(StatusCode::BAD_GATEWAY, dev.jwks_json()),
    ]
    .into_iter()
    .enumerate()
    {
        server.set(fault);
        // An unknown kid forces a refetch, which now fails.
        app.get("/me", &dev.token().alg(Algorithm::ES256).kid("unknown").sign()).await.assert_unavailable();
        assert_eq!(server.hits(), 2 + i);
        assert_eq!(app.fetch_counts(), (1, 1 + i as u64));
        // The keys from before are still used.
        app.get("/me", &good).await.assert_ok_json();
    }
}

// ---------------------------------------------------------------------------------------------
// What the set contains
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn encryption_keys_are_ignored() {
    let dev = dev_issuer([Algorithm::ES256, Algorithm::EdDSA]).await;
    let jwks = dev.jwks_json();
    let es = jwk_by_kid(&jwks, "es256-1");
    let mut ed = jwk_by_kid(&jwks, "eddsa-1");
    let es_token = dev.token().alg(Algorithm::ES256).sign();
    let ed_token = dev.token().alg(Algorithm::EdDSA).sign();

    // Control: both keys marked for signatures work.
    let server = FaultServer::start(Fault::Jwks(jwks_of([es.clone(), ed.clone()]))).await;
    let app = TestApp::start(validator_with_keys(&dev, key_set(server.url(), |b| b))).await;
    app.get("/me", &es_token).await.assert_ok_json();
    app.get("/me", &ed_token).await.assert_ok_json();

    for (field, value) in
        [("use", serde_json::json!("enc")), ("key_ops", serde_json::json!(["encrypt", "wrapKey"]))]
    {
        ed.as_object_mut().unwrap().remove("use");
        ed[field] = value;
        let server = FaultServer::start(Fault::Jwks(jwks_of([es.clone(), ed.clone()]))).await;
        let app = TestApp::start(validator_with_keys(&dev, key_set(server.url(), |b| b))).await;
        app.get("/me", &es_token).await.assert_ok_json();
        app.get("/me", &ed_token).await.assert_invalid_token();
    }
}

/// Some issuers publish two keys under one `kid` during a rotation. Each key that fits the
/// token's algorithm is tried, not only the first; the verified-token cache then recognises the
/// very key that verified the token among them.
#[tokio::test]
async fn two_keys_under_one_kid_are_both_tried() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let new_kid = dev.rotate(Algorithm::ES256);
    let jwks = dev.jwks_json();
    let mut old = jwk_by_kid(&jwks, "es256-1");
    let new = jwk_by_kid(&jwks, &new_kid);
    // The old key under the new key's `kid`, listed first.
    old["kid"] = serde_json::json!(new_kid);
    let token = dev.token().alg(Algorithm::ES256).kid(&new_kid).sign();

    let server = FaultServer::start(Fault::Jwks(jwks_of([old.clone(), new.clone()]))).await;
    let app = TestApp::start(validator_with_keys(&dev, key_set(server.url(), |b| b))).await;
    app.get("/me", &token).await.assert_ok_json();
    app.get("/me", &token).await.assert_ok_json(); // a cache hit: the key is still found
    // Neither key verifies a token signed by a key outside the set.
    let stranger = dev_issuer([Algorithm::ES256]).await;
    let forged = stranger.token().alg(Algorithm::ES256).kid(&new_kid).sign();
    app.get("/me", &forged).await.assert_invalid_token();

    // Control: with the new key alone under that kid, the token passes too; with the old key
    // alone, it does not (so the pass above needed the second candidate).
    let only_old = FaultServer::start(Fault::Jwks(jwks_of([old]))).await;
    let app = TestApp::start(validator_with_keys(&dev, key_set(only_old.url(), |b| b))).await;
    app.get("/me", &token).await.assert_invalid_token();
}

// ---------------------------------------------------------------------------------------------
// Cache-Control: max-age
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn max_age_zero_makes_the_next_request_refresh_in_the_background() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let server = FaultServer::start(Fault::Jwks(dev.jwks_json())).await;
    server.set_cache_control(Some("public, max-age=0"));
    let keys = key_set(server.url(), |b| b.ttl_bounds(Duration::ZERO, Duration::from_secs(3600)));
    let app = TestApp::start(validator_with_keys(&dev, keys)).await;
    let good = dev.token().alg(Algorithm::ES256).sign();
    app.get("/me", &good).await.assert_ok_json();
    assert_eq!(server.hits(), 1);

    // The set is stale: the request is answered from it at once, and a refresh follows.
    server.close_gate();
    app.get("/me", &good).await.assert_ok_json();
    server.wait_for_hits(2).await;
    // The held refresh did not block the request, nor does it block the next ones.
    app.get("/me", &good).await.assert_ok_json();
    server.open_gate();
}

#[tokio::test]
async fn long_max_age_means_no_refetch() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let server = FaultServer::start(Fault::Jwks(dev.jwks_json())).await;
    server.set_cache_control(Some("max-age=3600"));
    // Default TTL zero: without honouring max-age, every request would refresh.
    let keys = key_set(server.url(), |b| {
        b.default_ttl(Duration::ZERO).ttl_bounds(Duration::ZERO, Duration::from_secs(24 * 3600))
    });
    let app = TestApp::start(validator_with_keys(&dev, keys)).await;
    let good = dev.token().alg(Algorithm::ES256).sign();
    for _ in 0..10 {
        app.get("/me", &good).await.assert_ok_json();
    }
    assert_eq!(server.hits(), 1);
    assert_eq!(app.fetch_counts(), (1, 0));
}

/// Control for the test above: the same set-up without a `Cache-Control` header falls back to
/// the (zero) default TTL and refreshes.
#[tokio::test]
async fn without_cache_control_the_default_ttl_applies() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let server = FaultServer::start(Fault::Jwks(dev.jwks_json())).await;
    let keys = key_set(server.url(), |b| {
        b.default_ttl(Duration::ZERO).ttl_bounds(Duration::ZERO, Duration::from_secs(24 * 3600))
    });
    let app = TestApp::start(validator_with_keys(&dev, keys)).await;
    let good = dev.token().alg(Algorithm::ES256).sign();
    app.get("/me", &good).await.assert_ok_json();
    app.get("/me", &good).await.assert_ok_json();
    server.wait_for_hits(2).await;
}

#[tokio::test]
async fn no_store_is_clamped_to_the_minimum_ttl() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let server = FaultServer::start(Fault::Jwks(dev.jwks_json())).await;
    server.set_cache_control(Some("no-store"));
    // Default bounds: min 30 s. A JWKS asking not to be cached is not fetched per request.
    let keys = key_set(server.url(), |b| b);
    let app = TestApp::start(validator_with_keys(&dev, keys)).await;
    let good = dev.token().alg(Algorithm::ES256).sign();
    for _ in 0..10 {
        app.get("/me", &good).await.assert_ok_json();
    }
    assert_eq!(server.hits(), 1);
}

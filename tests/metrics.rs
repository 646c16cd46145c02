//! The `metrics` feature: decisions, token-cache hits, key-set fetches and introspection calls
//! are counted with stable labels, over real HTTP.
#![cfg(all(feature = "metrics", feature = "dev", feature = "axum"))]

mod common;
mod dpop_key;

use std::collections::HashMap;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tower_bearer::dev::{DEFAULT_AUDIENCE, DevIssuer, RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET};
use tower_bearer::dpop::{Dpop, InMemoryReplayStore};
use tower_bearer::{Algorithm, BearerLayer, Introspector, JwtOrOpaque, JwtValidator};

/// `name{label=value,…}` → value, for counters; histograms as their sample count.
fn snapshot(recorder: &metrics_util::debugging::Snapshotter) -> HashMap<String, u64> {
    recorder
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<String> =
                key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
            labels.sort();
            let value = match value {
                DebugValue::Counter(n) => n,
                DebugValue::Histogram(samples) => samples.len() as u64,
                DebugValue::Gauge(g) => g.into_inner() as u64,
            };
            (format!("{}{{{}}}", key.name(), labels.join(",")), value)
        })
        .collect()
}

// One test per binary: the recorder is global.
#[test]
fn decisions_cache_fetches_and_introspection_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("the only recorder of this test binary");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let dev = DevIssuer::builder().algorithms([Algorithm::ES256]).start().await.unwrap();
        let jwt = JwtValidator::builder()
            .issuer(dev.issuer())
            .audience(DEFAULT_AUDIENCE)
            .jwks_url(dev.jwks_url())
            .build()
            .unwrap();
        let opaque = Introspector::builder(dev.introspection_url())
            .client_secret_basic(RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET)
            .build()
            .unwrap();
        let layer = BearerLayer::new(JwtOrOpaque::new(jwt.clone(), opaque)).realm(common::REALM);
        let app = common::TestApp::start_router(jwt, common::routes().layer(layer)).await;

        let valid = dev.token().alg(Algorithm::ES256).scope("items:read").sign();
        app.get("/me", &valid).await.assert_ok_json();
        app.get("/items", &valid).await.assert_ok_json();
        app.post("/items", &valid).await; // 403 insufficient_scope
        let expired = dev.token().alg(Algorithm::ES256).expired(Duration::from_secs(3600)).sign();
        app.get("/me", &expired).await.assert_invalid_token();
        common::send(app.request(reqwest::Method::GET, "/me")).await; // no token
        let opaque = dev.opaque_token().issue();
        app.get("/me", &opaque).await.assert_ok_json();
        app.get("/me", &opaque).await.assert_ok_json(); // cached: one call

        // An outage: every request is counted, though only a few lines are logged.
        let unreachable = JwtValidator::builder()
            .issuer(dev.issuer())
            .audience(DEFAULT_AUDIENCE)
            .jwks_url(common::closed_port_url("/jwks.json").await)
            .build()
            .unwrap();
        let down = common::TestApp::start(unreachable).await;
        for _ in 0..5 {
            down.get("/me", &valid).await.assert_unavailable();
        }

        // A DPoP key past its share of the replay store (one live proof here): `429`, counted
        // as `throttled`.
        let dpop = Dpop::allowed("http://localhost")
            .unwrap()
            .trust_host_header()
            .replay_store(InMemoryReplayStore::new(10).per_key(1));
        let bound_app = common::TestApp::start_router(
            app.validator.clone(),
            common::routes().layer(BearerLayer::new(app.validator.clone()).dpop(dpop)),
        )
        .await;
        let key = dpop_key::DpopKey::new();
        let bound =
            dev.token().alg(Algorithm::ES256).claim("cnf", serde_json::json!({"jkt": key.jkt()})).sign();
        for expected in [200, 429] {
            let proof = key.proof("GET", &bound_app.url("/me"), Some(&bound), None);
            let res = common::send(
                bound_app
                    .request(reqwest::Method::GET, "/me")
                    .header("authorization", format!("DPoP {bound}"))
                    .header("dpop", proof),
            )
            .await;
            assert_eq!(res.status.as_u16(), expected);
        }
    });

    let metrics = snapshot(&snapshotter);
    let get = |key: &str| metrics.get(key).copied().unwrap_or(0);
    eprintln!("{metrics:#?}");
    // The layer authenticated 3 JWT requests (one of them then refused by the route's scope
    // check, counted on its own), 2 opaque ones and the DPoP one.
    assert_eq!(get("tower_bearer_decisions_total{outcome=authenticated,reason=valid}"), 6);
    assert_eq!(get("tower_bearer_scope_rejections_total{reason=insufficient_scope}"), 1);
    assert_eq!(get("tower_bearer_decisions_total{outcome=rejected,reason=insufficient_scope}"), 0);
    assert_eq!(get("tower_bearer_decisions_total{outcome=rejected,reason=expired}"), 1);
    assert_eq!(get("tower_bearer_decisions_total{outcome=rejected,reason=missing_token}"), 1);
    // Three requests with `valid`: two full validations (the second admits it to the cache), one
    // cache hit; `expired` was a miss; the five outage requests each looked their token up
    // first (another validator's cache); and the two DPoP requests missed (a token is admitted
    // the second time it verifies, and the throttled one was verified before its proof was
    // recorded).
    assert_eq!(get("tower_bearer_token_cache_total{result=hit}"), 1);
    assert_eq!(get("tower_bearer_token_cache_total{result=miss}"), 3 + 5 + 2);
    assert_eq!(get("tower_bearer_key_set_fetches_total{result=ok}"), 1);
    assert_eq!(get("tower_bearer_introspection_calls_total{result=active}"), 1);
    assert_eq!(get("tower_bearer_introspection_duration_seconds{}"), 1);
    assert_eq!(get("tower_bearer_decisions_total{outcome=unavailable,reason=key_set_unavailable}"), 5);
    assert_eq!(get("tower_bearer_decisions_total{outcome=throttled,reason=dpop_key_over_budget}"), 1);
    // Labels come from a closed vocabulary: nothing from a request (a token, a kid, a URL) ever
    // becomes one. Every label seen must be one of these.
    let vocabulary = [
        "outcome=authenticated",
        "outcome=rejected",
        "outcome=unavailable",
        "outcome=throttled",
        "outcome=anonymous",
        "reason=dpop_key_over_budget",
        "reason=valid",
        "reason=expired",
        "reason=missing_token",
        "reason=insufficient_scope",
        "reason=key_set_unavailable",
        "result=hit",
        "result=miss",
        "result=ok",
        "result=error",
        "result=active",
        "result=inactive",
    ];
    for key in metrics.keys() {
        let labels = key.split_once('{').map_or("", |(_, l)| l.trim_end_matches('}'));
        for label in labels.split(',').filter(|l| !l.is_empty()) {
            assert!(vocabulary.contains(&label), "label {label} of {key} is outside the vocabulary");
        }
    }
}

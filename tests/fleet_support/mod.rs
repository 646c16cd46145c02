//! What the fleet tests share (tests/fleet.rs on one server, tests/fleet_cluster.rs on a Redis
//! Cluster): replicas as separate layers with their own `Fleet` handles, a DPoP proof key, and
//! the scenarios every backend must pass.
#![allow(dead_code)]

use std::time::{Duration, Instant};

#[path = "../dpop_key/mod.rs"]
mod dpop_key;

use crate::redis_support::wait_until;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing;
use dpop_key::DpopKey;
use serde_json::json;
use tower::ServiceExt;
use tower_bearer::dev::{DEFAULT_AUDIENCE, DevIssuer, RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET};
use tower_bearer::dpop::{Dpop, InMemoryReplayStore};
use tower_bearer::fleet::{Fleet, FleetBuilder, Revocation};
use tower_bearer::{Algorithm, BearerLayer, Introspector, JwtValidator, Principal};

pub const FLEET_KEY: &[u8] = b"a fleet key of the tests, 32 B!!";
pub const ORIGIN: &str = "https://api.example";

/// Where the fleet's Redis is: one server or a cluster.
pub trait Backend {
    /// A fleet builder on this backend, with the tests' key.
    fn fleet(&self) -> FleetBuilder;
    /// Keys matching `pattern`, on every node.
    async fn keys(&self, pattern: &str) -> usize;
}

pub fn routes() -> Router {
    Router::new()
        .route("/me", routing::get(|p: Principal| async move { p.subject().unwrap_or("-").to_owned() }))
}

pub fn introspector(dev: &DevIssuer, fleet: Option<&Fleet>) -> Introspector {
    let builder = Introspector::builder(dev.introspection_url())
        .client_secret_basic(RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET)
        .issuer(dev.issuer())
        .audience(DEFAULT_AUDIENCE);
    match fleet {
        Some(fleet) => builder.shared_tier(fleet.introspection_tier()),
        None => builder,
    }
    .build()
    .expect("introspector")
}

pub fn jwt_validator(dev: &DevIssuer) -> JwtValidator {
    JwtValidator::builder()
        .issuer(dev.issuer())
        .audience(DEFAULT_AUDIENCE)
        .jwks_url(dev.jwks_url())
        .build()
        .expect("validator")
}

pub async fn dev_issuer() -> DevIssuer {
    DevIssuer::builder().algorithms([Algorithm::ES256]).start().await.expect("dev issuer")
}

/// Status, `WWW-Authenticate` and body of one request to `app`.
pub async fn call(
    app: &Router,
    scheme: &str,
    token: &str,
    proof: Option<&str>,
) -> (StatusCode, String, String) {
    let mut req = Request::get("/me").header(header::AUTHORIZATION, format!("{scheme} {token}"));
    if let Some(proof) = proof {
        req = req.header("dpop", proof);
    }
    let res = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = res.status();
    let challenge = res
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
    (status, challenge, String::from_utf8_lossy(&body).into_owned())
}

pub async fn get(app: &Router, token: &str) -> StatusCode {
    call(app, "Bearer", token, None).await.0
}

pub struct Replica {
    pub fleet: Fleet,
    pub app: Router,
}

pub fn jwt_replica(dev: &DevIssuer, builder: FleetBuilder) -> Replica {
    let fleet = builder.build().unwrap();
    let app = routes().layer(BearerLayer::new(jwt_validator(dev)).revocations(fleet.deny_list()));
    Replica { fleet, app }
}

/// A client's DPoP key, making proofs for `GET {ORIGIN}/me` (the key and proof code is the one
/// the other real-server tests share, `tests/dpop_key`).
pub struct ProofKey(DpopKey);

impl ProofKey {
    pub fn new() -> Self {
        ProofKey(DpopKey::new())
    }
    pub fn jkt(&self) -> String {
        self.0.jkt()
    }
    pub fn proof(&self, token: &str) -> String {
        self.0.proof("GET", &format!("{ORIGIN}/me"), Some(token), None)
    }
}

pub fn dpop_replica(dev: &DevIssuer, fleet: &Fleet) -> Router {
    let dpop = Dpop::allowed(ORIGIN).unwrap().replay_store(fleet.replay_store());
    routes().layer(BearerLayer::new(jwt_validator(dev)).dpop(dpop))
}

/// Latencies of `n` requests, sorted.
pub async fn latencies(
    n: usize,
    mut one: impl AsyncFnMut(usize) -> StatusCode,
    expect: &[StatusCode],
) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let status = one(i).await;
        out.push(started.elapsed());
        assert!(expect.contains(&status), "request {i}: {status}, expected one of {expect:?}");
    }
    out.sort();
    out
}

pub fn p99(sorted: &[Duration]) -> Duration {
    sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)]
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

/// Three replicas, one token, 3 000 requests: one introspection call with the shared tier,
/// three without it (the control).
pub async fn one_introspection_call_for_the_whole_fleet(backend: &impl Backend) {
    for shared in [true, false] {
        let dev = dev_issuer().await;
        let token = dev.opaque_token().subject("alice").issue();
        let fleets: Vec<Fleet> =
            (0..3).map(|_| backend.fleet().prefix(format!("t1-{shared}:")).build().unwrap()).collect();
        let replicas: Vec<Router> = fleets
            .iter()
            .map(|f| routes().layer(BearerLayer::new(introspector(&dev, shared.then_some(f)))))
            .collect();
        // The first replica asks the authorization server and shares the answer.
        assert_eq!(get(&replicas[0], &token).await, StatusCode::OK);
        if shared {
            wait_until("the answer is shared", async || backend.keys("t1-true:i:*").await == 1).await;
        }
        for i in 0..3000 {
            assert_eq!(get(&replicas[i % 3], &token).await, StatusCode::OK);
        }
        let calls = dev.introspection_calls();
        println!("shared tier {shared}: {calls} introspection calls for 3 replicas, 3 001 requests");
        assert_eq!(calls, if shared { 1 } else { 3 });
    }
}

/// A revocation written on one replica stops the token on every other one; the time it took is
/// printed (pub/sub latency while Redis is healthy).
pub async fn a_revocation_reaches_every_replica(backend: &impl Backend) {
    let dev = dev_issuer().await;
    let replicas: Vec<Replica> = (0..3).map(|_| jwt_replica(&dev, backend.fleet().prefix("t3:"))).collect();
    for r in &replicas {
        wait_until("the deny-list is loaded", async || r.fleet.deny_list().is_current()).await;
    }
    let by_jti = dev.token().subject("bob").claim("jti", "token-1").sign();
    let by_sub = dev.token().subject("carol").sign();
    let by_client = dev.token().subject("dave").claim("client_id", "rogue-app").sign();
    let untouched = dev.token().subject("erin").claim("jti", "token-2").sign();
    for token in [&by_jti, &by_sub, &by_client, &untouched] {
        for r in &replicas {
            assert_eq!(get(&r.app, token).await, StatusCode::OK);
        }
    }
    let hour = Duration::from_secs(3600);
    for (revocation, token) in [
        (Revocation::Jti("token-1".into()), &by_jti),
        (Revocation::Subject("carol".into()), &by_sub),
        (Revocation::ClientId("rogue-app".into()), &by_client),
    ] {
        let started = Instant::now();
        replicas[0].fleet.revoke(revocation.clone(), hour).await.expect("revoke");
        for (i, r) in replicas.iter().enumerate() {
            let took = wait_until("revoked everywhere", async || {
                get(&r.app, token).await == StatusCode::UNAUTHORIZED
            })
            .await;
            println!(
                "{revocation:?}: refused by replica {i} {:?} after the call ({took:?} of polling)",
                started.elapsed()
            );
        }
        let (_, challenge, _) = call(&replicas[2].app, "Bearer", token, None).await;
        assert!(challenge.contains("invalid_token"), "{challenge}");
    }
    for r in &replicas {
        assert_eq!(get(&r.app, &untouched).await, StatusCode::OK, "only what was revoked");
    }
    // A replica started afterwards loads the list whole.
    let late = jwt_replica(&dev, backend.fleet().prefix("t3:"));
    wait_until("the late deny-list is loaded", async || late.fleet.deny_list().is_current()).await;
    assert_eq!(late.fleet.deny_list().len(), 3);
    for token in [&by_jti, &by_sub, &by_client] {
        assert_eq!(get(&late.app, token).await, StatusCode::UNAUTHORIZED);
    }
}

/// A proof accepted by replica A and replayed to replica B is refused.
pub async fn a_dpop_proof_replayed_to_another_replica_is_refused(backend: &impl Backend) {
    let dev = dev_issuer().await;
    let key = ProofKey::new();
    let token = dev.token().subject("frank").claim("cnf", json!({"jkt": key.jkt()})).sign();
    let a = backend.fleet().prefix("t4:").build().unwrap();
    let b = backend.fleet().prefix("t4:").build().unwrap();
    let (replica_a, replica_b) = (dpop_replica(&dev, &a), dpop_replica(&dev, &b));
    let proof = key.proof(&token);
    assert_eq!(call(&replica_a, "DPoP", &token, Some(&proof)).await.0, StatusCode::OK);
    let (status, challenge, _) = call(&replica_b, "DPoP", &token, Some(&proof)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("invalid_dpop_proof"), "{challenge}");
    // A fresh proof passes on B: only the replay was refused.
    assert_eq!(call(&replica_b, "DPoP", &token, Some(&key.proof(&token))).await.0, StatusCode::OK);

    // A replica whose own record gives a key two live proofs: the third gets 429 (before Redis
    // is asked) while another key is served.
    let store = b.replay_store().local_store(InMemoryReplayStore::new(100).per_key(2));
    let replica_c = routes().layer(
        BearerLayer::new(jwt_validator(&dev)).dpop(Dpop::allowed(ORIGIN).unwrap().replay_store(store)),
    );
    for _ in 0..2 {
        assert_eq!(call(&replica_c, "DPoP", &token, Some(&key.proof(&token))).await.0, StatusCode::OK);
    }
    assert_eq!(
        call(&replica_c, "DPoP", &token, Some(&key.proof(&token))).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    let other = ProofKey::new();
    let other_token = dev.token().subject("grace").claim("cnf", json!({"jkt": other.jkt()})).sign();
    assert_eq!(
        call(&replica_c, "DPoP", &other_token, Some(&other.proof(&other_token))).await.0,
        StatusCode::OK
    );

    // The control: replicas with their own in-memory stores let the replay through.
    let own = |dev: &DevIssuer| {
        routes().layer(BearerLayer::new(jwt_validator(dev)).dpop(Dpop::allowed(ORIGIN).unwrap()))
    };
    let (alone_a, alone_b) = (own(&dev), own(&dev));
    let proof = key.proof(&token);
    assert_eq!(call(&alone_a, "DPoP", &token, Some(&proof)).await.0, StatusCode::OK);
    assert_eq!(call(&alone_b, "DPoP", &token, Some(&proof)).await.0, StatusCode::OK);
}

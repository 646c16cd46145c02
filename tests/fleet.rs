//! Fleet state in a real Redis (feature `redis`): replicas are separate `BearerLayer`s, each
//! with its own `Fleet` handle (its own connections), in front of the dev authorization server,
//! which counts its introspection calls. Redis is a real `redis-server` started here, and its
//! faults are real: `kill -9`, `kill -STOP`, `FLUSHALL`, `maxmemory`.
//!
//! Nothing waits on a clock for an assertion: conditions are polled until they hold (under a
//! hang guard), and the measured latencies are printed, not asserted.
#![cfg(all(feature = "dev", feature = "axum", feature = "redis"))]

mod redis_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, KeyPair as _};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use redis_support::{RedisServer, wait_until};
use serde_json::json;
use sha2::{Digest, Sha256};
use tower::ServiceExt;
use tower_bearer::dev::{DEFAULT_AUDIENCE, DevIssuer, RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET};
use tower_bearer::dpop::Dpop;
use tower_bearer::fleet::{Fleet, FleetBuilder, ReplayPolicy, Revocation};
use tower_bearer::{Algorithm, BearerLayer, Introspector, JwtValidator, Principal};

const FLEET_KEY: &[u8] = b"a fleet key of the tests, 32 B!!";
const ORIGIN: &str = "https://api.example";

fn fleet(redis: &RedisServer) -> FleetBuilder {
    Fleet::builder(redis.url()).key(FLEET_KEY)
}

fn routes() -> Router {
    Router::new()
        .route("/me", routing::get(|p: Principal| async move { p.subject().unwrap_or("-").to_owned() }))
}

fn introspector(dev: &DevIssuer, fleet: Option<&Fleet>) -> Introspector {
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

fn jwt_validator(dev: &DevIssuer) -> JwtValidator {
    JwtValidator::builder()
        .issuer(dev.issuer())
        .audience(DEFAULT_AUDIENCE)
        .jwks_url(dev.jwks_url())
        .build()
        .expect("validator")
}

async fn dev_issuer() -> DevIssuer {
    DevIssuer::builder().algorithms([Algorithm::ES256]).start().await.expect("dev issuer")
}

/// Status, `WWW-Authenticate` and body of one request to `app`.
async fn call(app: &Router, scheme: &str, token: &str, proof: Option<&str>) -> (StatusCode, String, String) {
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

async fn get(app: &Router, token: &str) -> StatusCode {
    call(app, "Bearer", token, None).await.0
}

async fn keys_in(redis: &RedisServer, pattern: &str) -> usize {
    redis.cli(&["--scan", "--pattern", pattern]).map_or(0, |out| out.lines().count())
}

// ---------------------------------------------------------------------------------------------
// Shared introspection tier
// ---------------------------------------------------------------------------------------------

/// Three replicas, one token, 3 000 requests: one introspection call with the shared tier,
/// three without it (the control).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_introspection_call_for_the_whole_fleet() {
    let Some(redis) = RedisServer::start().await else { return };
    for shared in [true, false] {
        let dev = dev_issuer().await;
        let token = dev.opaque_token().subject("alice").issue();
        let fleets: Vec<Fleet> =
            (0..3).map(|_| fleet(&redis).prefix(format!("t1-{shared}:")).build().unwrap()).collect();
        let replicas: Vec<Router> = fleets
            .iter()
            .map(|f| routes().layer(BearerLayer::new(introspector(&dev, shared.then_some(f)))))
            .collect();
        // The first replica asks the authorization server and shares the answer.
        assert_eq!(get(&replicas[0], &token).await, StatusCode::OK);
        if shared {
            wait_until("the answer is shared", async || keys_in(&redis, "t1-true:i:*").await == 1).await;
        }
        for i in 0..3000 {
            assert_eq!(get(&replicas[i % 3], &token).await, StatusCode::OK);
        }
        let calls = dev.introspection_calls();
        println!("shared tier {shared}: {calls} introspection calls for 3 replicas, 3 001 requests");
        assert_eq!(calls, if shared { 1 } else { 3 });
    }
}

/// Whoever can write to Redis without the fleet key cannot make up an answer: a forged value
/// is a miss, and the authorization server is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_shared_answer_is_a_miss() {
    let Some(redis) = RedisServer::start().await else { return };
    let dev = dev_issuer().await;
    let token = dev.opaque_token().subject("alice").issue();
    let a = fleet(&redis).prefix("t2:").build().unwrap();
    let first = routes().layer(BearerLayer::new(introspector(&dev, Some(&a))));
    assert_eq!(call(&first, "Bearer", &token, None).await.2, "alice");
    wait_until("the answer is shared", async || keys_in(&redis, "t2:i:*").await == 1).await;
    let key = redis.cli(&["--scan", "--pattern", "t2:i:*"]).unwrap().trim().to_owned();
    // Same length, another subject: only the MAC can tell.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut value: Vec<u8> = redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap();
    let at = value.windows(5).position(|w| w == b"alice").expect("the subject is in the body");
    value[at..at + 5].copy_from_slice(b"mallo");
    let _: () = redis::cmd("SET").arg(&key).arg(&value).query_async(&mut conn).await.unwrap();

    let b = fleet(&redis).prefix("t2:").build().unwrap();
    let second = routes().layer(BearerLayer::new(introspector(&dev, Some(&b))));
    assert_eq!(call(&second, "Bearer", &token, None).await.2, "alice", "never the forged subject");
    assert_eq!(dev.introspection_calls(), 2, "the forged answer was not used");
}

// ---------------------------------------------------------------------------------------------
// Revocation
// ---------------------------------------------------------------------------------------------

struct Replica {
    fleet: Fleet,
    app: Router,
}

fn jwt_replica(dev: &DevIssuer, builder: FleetBuilder) -> Replica {
    let fleet = builder.build().unwrap();
    let app = routes().layer(BearerLayer::new(jwt_validator(dev)).revocations(fleet.deny_list()));
    Replica { fleet, app }
}

/// A revocation written on one replica stops the token on every other one; the time it took is
/// printed (pub/sub latency while Redis is healthy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_every_replica() {
    let Some(redis) = RedisServer::start().await else { return };
    let dev = dev_issuer().await;
    let replicas: Vec<Replica> = (0..3).map(|_| jwt_replica(&dev, fleet(&redis).prefix("t3:"))).collect();
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
    let late = jwt_replica(&dev, fleet(&redis).prefix("t3:"));
    wait_until("the late deny-list is loaded", async || late.fleet.deny_list().is_current()).await;
    assert_eq!(late.fleet.deny_list().len(), 3);
    for token in [&by_jti, &by_sub, &by_client] {
        assert_eq!(get(&late.app, token).await, StatusCode::UNAUTHORIZED);
    }
}

// ---------------------------------------------------------------------------------------------
// DPoP replay across replicas
// ---------------------------------------------------------------------------------------------

struct ProofKey(EcdsaKeyPair);

impl ProofKey {
    fn new() -> Self {
        ProofKey(EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap())
    }
    fn jwk(&self) -> serde_json::Value {
        let (x, y) = self.0.public_key().as_ref()[1..].split_at(32);
        json!({"crv": "P-256", "kty": "EC", "x": b64(x), "y": b64(y)})
    }
    fn jkt(&self) -> String {
        let jwk = self.jwk();
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        b64(&Sha256::digest(canonical.as_bytes()))
    }
    fn proof(&self, token: &str) -> String {
        static JTI: AtomicU64 = AtomicU64::new(0);
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk()});
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let claims = json!({
            "jti": format!("{}-{}", std::process::id(), JTI.fetch_add(1, Ordering::Relaxed)),
            "htm": "GET",
            "htu": format!("{ORIGIN}/me"),
            "iat": now,
            "ath": b64(&Sha256::digest(token.as_bytes())),
        });
        let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let signature = self.0.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", b64(signature.as_ref()))
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn dpop_replica(dev: &DevIssuer, fleet: &Fleet) -> Router {
    let dpop = Dpop::allowed(ORIGIN).unwrap().replay_store(fleet.replay_store());
    routes().layer(BearerLayer::new(jwt_validator(dev)).dpop(dpop))
}

/// A proof accepted by replica A and replayed to replica B is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dpop_proof_replayed_to_another_replica_is_refused() {
    let Some(redis) = RedisServer::start().await else { return };
    let dev = dev_issuer().await;
    let key = ProofKey::new();
    let token = dev.token().subject("frank").claim("cnf", json!({"jkt": key.jkt()})).sign();
    let a = fleet(&redis).prefix("t4:").build().unwrap();
    let b = fleet(&redis).prefix("t4:").build().unwrap();
    let (replica_a, replica_b) = (dpop_replica(&dev, &a), dpop_replica(&dev, &b));
    let proof = key.proof(&token);
    assert_eq!(call(&replica_a, "DPoP", &token, Some(&proof)).await.0, StatusCode::OK);
    let (status, challenge, _) = call(&replica_b, "DPoP", &token, Some(&proof)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("invalid_dpop_proof"), "{challenge}");
    // A fresh proof passes on B: only the replay was refused.
    assert_eq!(call(&replica_b, "DPoP", &token, Some(&key.proof(&token))).await.0, StatusCode::OK);

    // The control: replicas with their own in-memory stores let the replay through.
    let own = |dev: &DevIssuer| {
        routes().layer(BearerLayer::new(jwt_validator(dev)).dpop(Dpop::allowed(ORIGIN).unwrap()))
    };
    let (alone_a, alone_b) = (own(&dev), own(&dev));
    let proof = key.proof(&token);
    assert_eq!(call(&alone_a, "DPoP", &token, Some(&proof)).await.0, StatusCode::OK);
    assert_eq!(call(&alone_b, "DPoP", &token, Some(&proof)).await.0, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------------

/// Latencies of `n` requests, sorted.
async fn latencies(
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

fn p99(sorted: &[Duration]) -> Duration {
    sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)]
}

/// Redis killed (`kill -9`), then paused (`kill -STOP`): each kind of state keeps its policy,
/// no request waits on Redis beyond the deadline, and everything recovers after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_or_paused_each_state_keeps_its_policy() {
    let Some(mut redis) = RedisServer::start().await else { return };
    let dev = dev_issuer().await;
    let url = redis.url();
    let builder =
        || Fleet::builder(url.clone()).key(FLEET_KEY).prefix("t5:").max_staleness(Duration::from_secs(1));
    let jwt = jwt_replica(&dev, builder());
    let deny = jwt.fleet.deny_list();
    wait_until("the deny-list is loaded", async || deny.is_current()).await;
    let opaque_fleet = builder().build().unwrap();
    let opaque = routes().layer(BearerLayer::new(introspector(&dev, Some(&opaque_fleet))));
    let lenient = builder().build().unwrap();
    let strict = builder().replay_policy(ReplayPolicy::Strict).build().unwrap();
    let (dpop_lenient, dpop_strict) = (dpop_replica(&dev, &lenient), dpop_replica(&dev, &strict));
    let key = ProofKey::new();
    let bound = dev.token().subject("grace").claim("cnf", json!({"jkt": key.jkt()})).sign();
    let jwt_token = dev.token().subject("heidi").sign();
    jwt.fleet.revoke_subject("ivan", Duration::from_secs(3600)).await.unwrap();
    let ivan = dev.token().subject("ivan").sign();
    wait_until("revoked", async || get(&jwt.app, &ivan).await == StatusCode::UNAUTHORIZED).await;

    for fault in ["kill -9", "kill -STOP"] {
        match fault {
            "kill -9" => redis.kill9(),
            _ => redis.pause(),
        }
        let faulted = Instant::now();
        // Introspection: a miss, answered by the authorization server; never a hang.
        let tokens: Vec<String> = (0..50).map(|_| dev.opaque_token().issue()).collect();
        let calls_before = dev.introspection_calls();
        let lat = latencies(50, async |i| get(&opaque, &tokens[i]).await, &[StatusCode::OK]).await;
        assert_eq!(dev.introspection_calls() - calls_before, 50, "{fault}: every new token asked the AS");
        println!("{fault}: introspection with Redis down: p99 {:?}, max {:?}", p99(&lat), lat[lat.len() - 1]);

        // DPoP replay: the lenient replica records locally (a replay to it is still caught), the
        // strict one answers 503. A Redis error is never a replay.
        let proof = key.proof(&bound);
        assert_eq!(call(&dpop_lenient, "DPoP", &bound, Some(&proof)).await.0, StatusCode::OK, "{fault}");
        assert_eq!(call(&dpop_lenient, "DPoP", &bound, Some(&proof)).await.0, StatusCode::UNAUTHORIZED);
        assert!(lenient.stats().replay_local_only >= 1);
        let lat = latencies(
            20,
            async |_| call(&dpop_strict, "DPoP", &bound, Some(&key.proof(&bound))).await.0,
            &[StatusCode::SERVICE_UNAVAILABLE],
        )
        .await;
        println!("{fault}: strict DPoP with Redis down: p99 {:?}", p99(&lat));

        // Deny-list: the local copy still refuses what was revoked, until the bound; then 503.
        let stale = wait_until("the deny-list turns stale", async || {
            get(&jwt.app, &jwt_token).await == StatusCode::SERVICE_UNAVAILABLE
        })
        .await;
        println!(
            "{fault}: deny-list stale {:?} after the fault (bound 1 s + heartbeat)",
            faulted.elapsed().max(stale)
        );
        assert_eq!(get(&jwt.app, &ivan).await, StatusCode::SERVICE_UNAVAILABLE, "stale is 503, for everyone");
        assert!(jwt.fleet.stats().circuit_open || jwt.fleet.stats().failures > 0);

        let back = Instant::now();
        match fault {
            // The data dies with the server: the replicas that remember a revocation write it
            // back when they reload.
            "kill -9" => redis.restart().await,
            _ => redis.resume(),
        }
        let took = wait_until("the deny-list is current again", async || deny.is_current()).await;
        wait_until("requests pass again", async || get(&jwt.app, &jwt_token).await == StatusCode::OK).await;
        println!(
            "{fault}: recovered {:?} after Redis came back (deny-list current after {took:?})",
            back.elapsed()
        );
        assert_eq!(get(&jwt.app, &ivan).await, StatusCode::UNAUTHORIZED, "{fault}: still revoked");
        let late = jwt_replica(&dev, builder());
        wait_until("a new replica loads the list", async || late.fleet.deny_list().is_current()).await;
        assert_eq!(
            get(&late.app, &ivan).await,
            StatusCode::UNAUTHORIZED,
            "{fault}: revoked for a new replica too"
        );
        wait_until("the replay store is shared again", async || {
            let proof = key.proof(&bound);
            call(&dpop_strict, "DPoP", &bound, Some(&proof)).await.0 == StatusCode::OK
        })
        .await;
    }
}

/// `FLUSHALL` and `maxmemory`: a Redis that answers but has lost or cannot take the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushed_or_full_redis_is_never_a_replay_or_a_revocation() {
    let Some(redis) = RedisServer::start().await else { return };
    let dev = dev_issuer().await;
    let a = fleet(&redis).prefix("t6:").build().unwrap();
    let strict = fleet(&redis).prefix("t6:").replay_policy(ReplayPolicy::Strict).build().unwrap();
    let jwt = jwt_replica(&dev, fleet(&redis).prefix("t6:"));
    let deny = jwt.fleet.deny_list();
    wait_until("loaded", async || deny.is_current()).await;
    jwt.fleet.revoke_subject("judy", Duration::from_secs(3600)).await.unwrap();
    let judy = dev.token().subject("judy").sign();
    wait_until("revoked", async || get(&jwt.app, &judy).await == StatusCode::UNAUTHORIZED).await;

    // FLUSHALL: shared answers are gone (a miss, the AS is asked again); the local deny-list
    // keeps what it had while its subscription lives.
    let token = dev.opaque_token().issue();
    let opaque = routes().layer(BearerLayer::new(introspector(&dev, Some(&a))));
    assert_eq!(get(&opaque, &token).await, StatusCode::OK);
    wait_until("shared", async || keys_in(&redis, "t6:i:*").await == 1).await;
    assert_eq!(redis.cli(&["FLUSHALL"]).unwrap().trim(), "OK");
    let other = routes()
        .layer(BearerLayer::new(introspector(&dev, Some(&fleet(&redis).prefix("t6:").build().unwrap()))));
    let before = dev.introspection_calls();
    assert_eq!(get(&other, &token).await, StatusCode::OK);
    assert_eq!(dev.introspection_calls(), before + 1);
    assert_eq!(get(&jwt.app, &judy).await, StatusCode::UNAUTHORIZED, "the local copy still has it");

    // maxmemory reached: writes fail with OOM; a proof is then not recorded in Redis, which is
    // never taken for a replay (lenient: accepted locally; strict: 503).
    let key = ProofKey::new();
    let bound = dev.token().subject("ken").claim("cnf", json!({"jkt": key.jkt()})).sign();
    let used: u64 = redis
        .cli(&["INFO", "memory"])
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    redis.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]).unwrap();
    redis.cli(&["CONFIG", "SET", "maxmemory", &(used / 2).max(1).to_string()]).unwrap();
    let lenient_app = dpop_replica(&dev, &a);
    let strict_app = dpop_replica(&dev, &strict);
    for _ in 0..5 {
        assert_eq!(call(&lenient_app, "DPoP", &bound, Some(&key.proof(&bound))).await.0, StatusCode::OK);
        assert_eq!(
            call(&strict_app, "DPoP", &bound, Some(&key.proof(&bound))).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    assert!(a.stats().replay_local_only >= 1);
    assert_eq!(get(&jwt.app, &dev.token().subject("liam").sign()).await, StatusCode::OK, "reads still work");
    redis.cli(&["CONFIG", "SET", "maxmemory", "0"]).unwrap();
    wait_until("writes work again", async || {
        call(&strict_app, "DPoP", &bound, Some(&key.proof(&bound))).await.0 == StatusCode::OK
    })
    .await;
}

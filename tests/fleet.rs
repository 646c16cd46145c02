//! Fleet state in a real Redis (feature `redis`): replicas are separate `BearerLayer`s, each
//! with its own `Fleet` handle (its own connections), in front of the dev authorization server,
//! which counts its introspection calls. Redis is a real `redis-server` started here, and its
//! faults are real: `kill -9`, `kill -STOP`, `FLUSHALL`, `maxmemory`.
//!
//! Nothing waits on a clock for an assertion: conditions are polled until they hold (under a
//! hang guard), and the measured latencies are printed, not asserted.
#![cfg(all(feature = "dev", feature = "axum", feature = "redis"))]

mod fleet_support;
mod redis_support;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use fleet_support::*;
use redis_support::{RedisServer, wait_until};
use serde_json::json;
use tower_bearer::BearerLayer;
use tower_bearer::fleet::{Fleet, FleetBuilder, ReplayPolicy};

impl Backend for RedisServer {
    fn fleet(&self) -> FleetBuilder {
        Fleet::builder(self.url()).key(FLEET_KEY)
    }
    async fn keys(&self, pattern: &str) -> usize {
        self.cli(&["--scan", "--pattern", pattern]).map_or(0, |out| out.lines().count())
    }
}

/// Three replicas, one token, 3 000 requests: one introspection call with the shared tier,
/// three without it (the control).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_introspection_call_for_the_whole_fleet() {
    let Some(redis) = RedisServer::start().await else { return };
    fleet_support::one_introspection_call_for_the_whole_fleet(&redis).await;
}

/// A revocation written on one replica stops the token on every other one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_every_replica() {
    let Some(redis) = RedisServer::start().await else { return };
    fleet_support::a_revocation_reaches_every_replica(&redis).await;
}

/// A proof accepted by replica A and replayed to replica B is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dpop_proof_replayed_to_another_replica_is_refused() {
    let Some(redis) = RedisServer::start().await else { return };
    fleet_support::a_dpop_proof_replayed_to_another_replica_is_refused(&redis).await;
}

// ---------------------------------------------------------------------------------------------
// Shared introspection tier
// ---------------------------------------------------------------------------------------------

/// Whoever can write to Redis without the fleet key cannot make up an answer: a forged value
/// is a miss, and the authorization server is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_shared_answer_is_a_miss() {
    let Some(redis) = RedisServer::start().await else { return };
    let dev = dev_issuer().await;
    let token = dev.opaque_token().subject("alice").issue();
    let a = redis.fleet().prefix("t2:").build().unwrap();
    let first = routes().layer(BearerLayer::new(introspector(&dev, Some(&a))));
    assert_eq!(call(&first, "Bearer", &token, None).await.2, "alice");
    wait_until("the answer is shared", async || redis.keys("t2:i:*").await == 1).await;
    let key = redis.cli(&["--scan", "--pattern", "t2:i:*"]).unwrap().trim().to_owned();
    // Same length, another subject: only the MAC can tell.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut value: Vec<u8> = redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap();
    let at = value.windows(5).position(|w| w == b"alice").expect("the subject is in the body");
    value[at..at + 5].copy_from_slice(b"mallo");
    let _: () = redis::cmd("SET").arg(&key).arg(&value).query_async(&mut conn).await.unwrap();

    let b = redis.fleet().prefix("t2:").build().unwrap();
    let second = routes().layer(BearerLayer::new(introspector(&dev, Some(&b))));
    assert_eq!(call(&second, "Bearer", &token, None).await.2, "alice", "never the forged subject");
    assert_eq!(dev.introspection_calls(), 2, "the forged answer was not used");
}

// ---------------------------------------------------------------------------------------------
// Revocation
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// DPoP replay across replicas
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------------

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
    let a = redis.fleet().prefix("t6:").build().unwrap();
    let strict = redis.fleet().prefix("t6:").replay_policy(ReplayPolicy::Strict).build().unwrap();
    let jwt = jwt_replica(&dev, redis.fleet().prefix("t6:"));
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
    wait_until("shared", async || redis.keys("t6:i:*").await == 1).await;
    assert_eq!(redis.cli(&["FLUSHALL"]).unwrap().trim(), "OK");
    let other = routes()
        .layer(BearerLayer::new(introspector(&dev, Some(&redis.fleet().prefix("t6:").build().unwrap()))));
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

/// What the deadline protects from: redis-rs's `ConnectionManager` with its default settings,
/// asked while its server is gone, waits for its own reconnect attempts. Measured and printed
/// (the number depends on the client's back-off); ours is bounded by `deadline` (see above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_own_reconnect_is_measured() {
    let Some(mut redis) = RedisServer::start().await else { return };
    let client = redis::Client::open(redis.url()).unwrap();
    let mut manager = redis::aio::ConnectionManager::new(client).await.unwrap();
    let _: () = redis::cmd("SET").arg("k").arg(1).query_async(&mut manager).await.unwrap();
    redis.kill9();
    let started = Instant::now();
    let first: redis::RedisResult<Option<String>> =
        redis::cmd("GET").arg("k").query_async(&mut manager).await;
    let second_started = Instant::now();
    let second = tokio::time::timeout(
        redis_support::HANG_GUARD,
        redis::cmd("GET").arg("k").query_async::<Option<String>>(&mut manager),
    )
    .await;
    println!(
        "redis-rs ConnectionManager defaults, server killed: first call failed after {:?} ({}), \
         the next one waited {:?} ({})",
        second_started - started,
        if first.is_err() { "error" } else { "answered" },
        second_started.elapsed(),
        match &second {
            Ok(Ok(_)) => "answered",
            Ok(Err(_)) => "error",
            Err(_) => "still waiting at the hang guard",
        }
    );
    assert!(first.is_err(), "the server is gone");
}

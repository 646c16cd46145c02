//! The fleet scenarios of tests/fleet.rs against a 3-master Redis Cluster on loopback, made
//! here with `redis-cli --cluster create`: the keys spread over the masters, the deny-list's
//! announcements cross the cluster bus. And a fault: every master paused, then resumed.
#![cfg(all(feature = "dev", feature = "axum", feature = "redis"))]

mod fleet_support;
mod redis_support;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use fleet_support::*;
use redis_support::{RedisCluster, wait_until};
use serde_json::json;
use tower_bearer::BearerLayer;
use tower_bearer::fleet::{Fleet, FleetBuilder, ReplayPolicy};

impl Backend for RedisCluster {
    fn fleet(&self) -> FleetBuilder {
        Fleet::cluster(self.urls()).key(FLEET_KEY)
    }
    async fn keys(&self, pattern: &str) -> usize {
        self.nodes
            .iter()
            .map(|n| n.cli(&["--scan", "--pattern", pattern]).map_or(0, |o| o.lines().count()))
            .sum()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_one_introspection_call_for_the_whole_fleet() {
    let Some(cluster) = RedisCluster::start().await else { return };
    fleet_support::one_introspection_call_for_the_whole_fleet(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_revocation_reaches_every_replica() {
    let Some(cluster) = RedisCluster::start().await else { return };
    fleet_support::a_revocation_reaches_every_replica(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_dpop_proof_replayed_to_another_replica_is_refused() {
    let Some(cluster) = RedisCluster::start().await else { return };
    fleet_support::a_dpop_proof_replayed_to_another_replica_is_refused(&cluster).await;
}

/// Every master paused (`kill -STOP`): the policies hold as on one server, then it recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_paused_each_state_keeps_its_policy() {
    let Some(cluster) = RedisCluster::start().await else { return };
    let dev = dev_issuer().await;
    let builder = || cluster.fleet().prefix("c5:").max_staleness(Duration::from_secs(1));
    let jwt = jwt_replica(&dev, builder());
    let deny = jwt.fleet.deny_list();
    wait_until("the deny-list is loaded", async || deny.is_current()).await;
    let opaque_fleet = builder().build().unwrap();
    let opaque = routes().layer(BearerLayer::new(introspector(&dev, Some(&opaque_fleet))));
    let strict = builder().replay_policy(ReplayPolicy::Strict).build().unwrap();
    let dpop_strict = dpop_replica(&dev, &strict);
    let key = ProofKey::new();
    let bound = dev.token().subject("grace").claim("cnf", json!({"jkt": key.jkt()})).sign();
    assert_eq!(call(&dpop_strict, "DPoP", &bound, Some(&key.proof(&bound))).await.0, StatusCode::OK);
    let jwt_token = dev.token().subject("heidi").sign();

    for node in &cluster.nodes {
        node.pause();
    }
    let tokens: Vec<String> = (0..30).map(|_| dev.opaque_token().issue()).collect();
    let lat = latencies(30, async |i| get(&opaque, &tokens[i]).await, &[StatusCode::OK]).await;
    println!("cluster paused: introspection p99 {:?}, max {:?}", p99(&lat), lat[lat.len() - 1]);
    let lat = latencies(
        10,
        async |_| call(&dpop_strict, "DPoP", &bound, Some(&key.proof(&bound))).await.0,
        &[StatusCode::SERVICE_UNAVAILABLE],
    )
    .await;
    println!("cluster paused: strict DPoP p99 {:?}", p99(&lat));
    let stale = wait_until("the deny-list turns stale", async || {
        get(&jwt.app, &jwt_token).await == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    println!("cluster paused: deny-list stale after {stale:?}");

    let back = Instant::now();
    for node in &cluster.nodes {
        node.resume();
    }
    wait_until("requests pass again", async || get(&jwt.app, &jwt_token).await == StatusCode::OK).await;
    wait_until("the replay store is shared again", async || {
        call(&dpop_strict, "DPoP", &bound, Some(&key.proof(&bound))).await.0 == StatusCode::OK
    })
    .await;
    println!("cluster resumed: recovered after {:?}", back.elapsed());
}

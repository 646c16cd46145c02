//! Three `tower-bearer proxy` replicas behind a real nginx (round-robin), sharing a real
//! `redis-server` through `[redis]`, in front of the dev authorization server, which counts
//! its introspection calls. One token, 3 000 requests: one call with Redis, three without it
//! (the control); `tower-bearer revoke` stops a token on every replica; a DPoP proof accepted by
//! one replica is a replay at the others.
//!
//! Needs nginx (`.ci/install-gateways.sh`) and redis-server (`.ci/install-redis.sh`): skipped
//! loudly without them, except under CI, where it fails.
#![cfg(all(feature = "gateway", feature = "dev", feature = "redis"))]

mod common;
mod dpop_key;
mod gateway_support;
mod redis_support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Instant;

use gateway_support::{
    Gateway, Process, Upstream, dev_config, find_program, free_port, run, temp_dir, wait_for_port,
    write_config,
};
use redis_support::{RedisServer, wait_until};
use tempfile::TempDir;
use tower_bearer::dev::{DevIssuer, RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET};

fn nginx() -> Option<std::path::PathBuf> {
    let found = find_program("nginx");
    if found.is_none() {
        assert!(std::env::var_os("CI").is_none(), "nginx is missing under CI (.ci/install-gateways.sh)");
        eprintln!("\n!!! SKIPPED: nginx is not installed !!!\n");
    }
    found
}

/// nginx round-robin over `replicas`, on a free port.
fn start_nginx(nginx: &std::path::Path, replicas: &[SocketAddr]) -> (Process, SocketAddr) {
    let port = free_port();
    let dir = temp_dir("nginx-fleet");
    let servers: String = replicas.iter().map(|r| format!("        server {r};\n")).collect();
    let conf = format!(
        "worker_processes 1;\npid nginx.pid;\nerror_log stderr notice;\nevents {{ worker_connections 1024; }}\n\
         http {{\n    access_log off;\n    client_body_temp_path client_body_temp;\n    proxy_temp_path proxy_temp;\n\
         fastcgi_temp_path fastcgi_temp;\n    uwsgi_temp_path uwsgi_temp;\n    scgi_temp_path scgi_temp;\n\
         upstream replicas {{\n{servers}        keepalive 32;\n    }}\n\
         server {{\n        listen 127.0.0.1:{port};\n        location / {{\n            proxy_pass http://replicas;\n\
         proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n        }}\n    }}\n}}\n"
    );
    let file = dir.path().join("nginx.conf");
    std::fs::write(&file, conf).expect("write nginx.conf");
    let mut command = Command::new(nginx);
    command.arg("-p").arg(dir.path()).arg("-c").arg(&file).arg("-g").arg("daemon off;");
    (Process::spawn("nginx", command).keeping(dir), ([127, 0, 0, 1], port).into())
}

/// Secrets go through files (`key_file`, `client_secret_file`), as in production.
fn secret_file(dir: &TempDir, name: &str, secret: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, format!("{secret}\n")).expect("write a secret");
    path.to_str().expect("utf-8 path").to_owned()
}

/// The replicas' configuration; its secret files are written to `secrets`, which must outlive them.
fn replica_config(
    dev: &DevIssuer,
    upstream: &Upstream,
    redis: Option<&RedisServer>,
    prefix: &str,
    secrets: &TempDir,
) -> String {
    let key = secret_file(secrets, "fleet.key", "a fleet key for the nginx test");
    let secret = secret_file(secrets, "introspection.secret", RESOURCE_CLIENT_SECRET);
    let redis = redis.map_or(String::new(), |r| {
        format!("\n[redis]\nurl = \"{}\"\nkey_file = \"{key}\"\nprefix = \"{prefix}\"\n", r.url())
    });
    let text = dev_config(dev, &format!("\n[upstream]\nurl = \"{}\"\n{redis}", upstream.url()));
    // Opaque tokens through the dev issuer's introspection endpoint.
    text.replacen(
        "algorithms = [\"ES256\"]\n",
        &format!(
            "algorithms = [\"ES256\"]\n\n[issuers.introspection]\nendpoint = \"{}\"\nclient_id = \"{RESOURCE_CLIENT_ID}\"\nclient_secret_file = \"{secret}\"\n",
            dev.introspection_url()
        ),
        1,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_behind_nginx_share_introspection_and_revocations() {
    let Some(nginx) = nginx() else { return };
    let Some(redis) = RedisServer::start().await else { return };
    let upstream = Upstream::start().await;
    let client = common::client();
    for shared in [true, false] {
        let dev = DevIssuer::builder()
            .algorithms([tower_bearer::Algorithm::ES256])
            .start()
            .await
            .expect("dev issuer");
        let prefix = format!("gw-{shared}:");
        let secrets = temp_dir("fleet-secrets");
        let config = replica_config(&dev, &upstream, shared.then_some(&redis), &prefix, &secrets);
        let replicas: Vec<Gateway> = (0..3).map(|_| Gateway::start("proxy", &config)).collect();
        let addrs: Vec<SocketAddr> = replicas.iter().map(|g| g.addr).collect();
        let (_nginx, front) = start_nginx(&nginx, &addrs);
        wait_for_port(front).await;
        let token = dev.opaque_token().subject("alice").issue();
        let me = format!("http://{front}/me");
        let send = async |token: &str| {
            client.get(&me).bearer_auth(token).send().await.expect("through nginx").status().as_u16()
        };
        // Ready: keys loaded, and (with Redis) the deny-list too.
        for r in &replicas {
            gateway_support::wait_for_ok(&r.url("/readyz")).await;
        }
        assert_eq!(send(&token).await, 200);
        if shared {
            wait_until("the answer is shared", async || {
                redis
                    .cli(&["--scan", "--pattern", &format!("{prefix}i:*")])
                    .is_some_and(|o| o.lines().count() == 1)
            })
            .await;
        }
        let started = Instant::now();
        for _ in 1..3000 {
            assert_eq!(send(&token).await, 200);
        }
        let took = started.elapsed();
        let calls = dev.introspection_calls();
        println!(
            "redis {shared}: 3 000 requests through nginx to 3 replicas in {took:?}: {calls} introspection call(s)"
        );
        assert_eq!(calls, if shared { 1 } else { 3 });

        if shared {
            // `tower-bearer revoke` on the same configuration: every replica refuses alice.
            let path = write_config(&config);
            let before = Instant::now();
            let (status, out, err) =
                run(&["revoke", "-c", path.to_str().unwrap(), "--sub", "alice", "--for", "600"]);
            assert!(status.success(), "revoke: {out}{err}");
            for r in &replicas {
                let url = r.url("/me");
                wait_until("refused by every replica", async || {
                    client.get(&url).bearer_auth(&token).send().await.is_ok_and(|res| res.status() == 401)
                })
                .await;
            }
            println!("revoke: refused by all 3 replicas {:?} after the command started", before.elapsed());
            let other = dev.opaque_token().subject("bob").issue();
            assert_eq!(send(&other).await, 200, "only alice");

            // check-config shows the table, without secrets.
            let (status, out, err) = run(&["check-config", "-c", path.to_str().unwrap()]);
            assert!(status.success(), "{err}");
            assert!(out.contains("redis redis://127.0.0.1"), "{out}");
        }
    }
}

/// A DPoP proof accepted by replica A is refused by replica B as a replay when the replicas share
/// `[redis]`; without it (the control) B accepts it, since each replica only knows its own proofs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dpop_proof_used_at_one_replica_is_a_replay_at_the_others() {
    let Some(redis) = RedisServer::start().await else { return };
    let upstream = Upstream::start().await;
    let client = common::client();
    let dev =
        DevIssuer::builder().algorithms([tower_bearer::Algorithm::ES256]).start().await.expect("dev issuer");
    let key = dpop_key::DpopKey::new();
    let token = dev.token().subject("alice").claim("cnf", serde_json::json!({ "jkt": key.jkt() })).sign();
    // Every replica checks `htu` against the public origin clients call (nginx's, in production).
    let dpop = "\n[dpop]\norigin = \"https://api.example\"\n";
    for shared in [true, false] {
        let prefix = format!("dpop-{shared}:");
        let secrets = temp_dir("fleet-secrets");
        let config = replica_config(&dev, &upstream, shared.then_some(&redis), &prefix, &secrets) + dpop;
        let replicas: Vec<Gateway> = (0..3).map(|_| Gateway::start("proxy", &config)).collect();
        for r in &replicas {
            gateway_support::wait_for_ok(&r.url("/readyz")).await;
        }
        let send = async |replica: &Gateway, proof: &str| {
            client
                .get(replica.url("/me"))
                .header("authorization", format!("DPoP {token}"))
                .header("dpop", proof)
                .send()
                .await
                .expect("to a replica")
                .status()
                .as_u16()
        };
        let proof = key.proof("GET", "https://api.example/me", Some(&token), None);
        assert_eq!(send(&replicas[0], &proof).await, 200, "replica A accepts a fresh proof");
        let elsewhere = [send(&replicas[1], &proof).await, send(&replicas[2], &proof).await];
        if shared {
            assert_eq!(elsewhere, [401, 401], "the same proof replayed to replicas B and C");
        } else {
            assert_eq!(
                elsewhere,
                [200, 200],
                "control: without Redis each replica knows only its own proofs"
            );
        }
        assert_eq!(send(&replicas[0], &proof).await, 401, "replica A knows its own proof in any case");
        let fresh = key.proof("GET", "https://api.example/me", Some(&token), None);
        assert_eq!(send(&replicas[1], &fresh).await, 200, "a new proof passes anywhere");
    }
}

//! Real `redis-server` processes for the fleet tests: on free loopback ports, without
//! persistence, killed when their guard drops. Faults are real too: `kill -9`, `kill -STOP`,
//! `FLUSHALL`, `maxmemory`.
//!
//! Without `redis-server` on the PATH a test is skipped loudly, unless `CI` is set: then it
//! fails (`.ci/install-redis.sh` installs it).
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Upper bound on any wait for an event (a hang guard, never an assertion).
pub const HANG_GUARD: Duration = Duration::from_secs(30);

/// Whether `redis-server` can be run here; `None` means "skip" (never under CI).
pub fn redis_server_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|p| p.join("redis-server")).find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "redis-server is missing under CI: .ci/install-redis.sh should have installed it"
        );
        eprintln!("\n!!! SKIPPED: redis-server is not installed (apt-get install redis-server) !!!\n");
    }
    found
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// One `redis-server`, killed on drop.
pub struct RedisServer {
    binary: PathBuf,
    pub port: u16,
    child: Option<Child>,
    extra: Vec<String>,
    /// Its `--dir`, removed after the server is killed (fields drop after `drop`).
    dir: Option<tempfile::TempDir>,
}

impl RedisServer {
    /// A server on a free port, or `None` when redis-server is missing (and not under CI).
    pub async fn start() -> Option<RedisServer> {
        Self::start_with(&[]).await
    }

    /// A server with extra command-line options (e.g. `--cluster-enabled yes`).
    pub async fn start_with(extra: &[&str]) -> Option<RedisServer> {
        let binary = redis_server_binary()?;
        let mut server = RedisServer {
            binary,
            port: free_port(),
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            dir: None,
        };
        server.spawn().await;
        Some(server)
    }

    /// A node for a Redis Cluster: cluster mode on, and a port whose bus port (+10000) is free.
    pub async fn start_cluster_node() -> Option<RedisServer> {
        let binary = redis_server_binary()?;
        let port = loop {
            let port = free_port();
            if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
                break port;
            }
        };
        let extra = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            &format!("nodes-{port}.conf"),
            "--cluster-node-timeout",
            "2000",
        ];
        let mut server = RedisServer {
            binary,
            port,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            dir: None,
        };
        server.spawn().await;
        Some(server)
    }

    async fn spawn(&mut self) {
        // One work dir for the server's whole life (a restart reuses it), removed on drop.
        let dir = self.dir.get_or_insert_with(|| {
            tempfile::Builder::new().prefix("tb-redis-").tempdir().expect("redis work dir")
        });
        let dir = dir.path().to_owned();
        let child = Command::new(&self.binary)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--dir", dir.to_str().expect("utf-8 dir")])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + HANG_GUARD;
        while self.cli(&["PING"]).is_none_or(|out| out.trim() != "PONG") {
            assert!(tokio::time::Instant::now() < deadline, "redis-server on {} did not start", self.port);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli -p PORT args…`; its output, or `None` if it failed.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn pid(&self) -> String {
        self.child.as_ref().expect("running").id().to_string()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.pid()]).status().expect("kill");
        assert!(status.success(), "kill {signal}");
    }

    /// `kill -9`: the server is gone, its data too.
    pub fn kill9(&mut self) {
        self.signal("-9");
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    /// `kill -STOP`: the server holds its connections but answers nothing.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// `kill -CONT`.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// A fresh server on the same port (after [`kill9`](Self::kill9)).
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "kill it first");
        self.spawn().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A paused server must be continued to die cleanly; SIGKILL works either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `condition` until it holds, for at most [`HANG_GUARD`]; the time it took.
pub async fn wait_until(what: &str, mut condition: impl AsyncFnMut() -> bool) -> Duration {
    let started = tokio::time::Instant::now();
    while !condition().await {
        assert!(started.elapsed() < HANG_GUARD, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

/// A 3-master Redis Cluster on loopback, made by `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub async fn start() -> Option<RedisCluster> {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(RedisServer::start_cluster_node().await?);
        }
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli --cluster create");
        assert!(out.status.success(), "cluster create: {}", String::from_utf8_lossy(&out.stdout));
        for node in &nodes {
            wait_until("the cluster is ok", async || {
                node.cli(&["CLUSTER", "INFO"]).is_some_and(|info| info.contains("cluster_state:ok"))
            })
            .await;
        }
        Some(RedisCluster { nodes })
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

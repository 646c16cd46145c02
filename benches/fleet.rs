//! What the fleet's shared state costs on a warm path, and what it saves the authorization
//! server. Starts its own `redis-server` on a free loopback port (skips without one).
//!
//! * `fleet/warm/*`: one `BearerService` call with a token cached in the process: a JWT with
//!   and without the deny-list, an opaque token with and without the shared tier + deny-list.
//!   The shared state must cost nothing there (no Redis round trip on a cache hit).
//! * Then, printed: introspection calls per second at the authorization server for 1, 2 and 3
//!   replicas, with and without the shared tier, under the same load (requests spread round-robin
//!   over the replicas, a new token every 30 requests).
//!
//! `cargo bench --all-features --bench fleet`

use std::convert::Infallible;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::Criterion;
use http::{Request, Response};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_bearer::dev::{DEFAULT_AUDIENCE, DevIssuer, RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET};
use tower_bearer::fleet::Fleet;
use tower_bearer::{BearerLayer, Introspector, JwtValidator, Validator};

const KEY: &[u8] = b"the fleet key of the benchmark!!";

/// `redis-server` on a free port, killed on drop.
struct Redis(Child, u16);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis() -> Option<Redis> {
    let port = TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    let redis = Redis(child, port);
    for _ in 0..500 {
        let pong = Command::new("redis-cli").args(["-p", &port.to_string(), "PING"]).output().ok()?;
        if pong.stdout.starts_with(b"PONG") {
            return Some(redis);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn introspector(dev: &DevIssuer, fleet: Option<&Fleet>) -> Introspector {
    let builder = Introspector::builder(dev.introspection_url())
        .client_secret_basic(RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET)
        .audience(DEFAULT_AUDIENCE);
    match fleet {
        Some(f) => builder.shared_tier(f.introspection_tier()),
        None => builder,
    }
    .build()
    .unwrap()
}

type Svc = tower::util::BoxCloneService<Request<()>, Response<tower_bearer::AuthBody<()>>, Infallible>;

fn service<V: Validator>(layer: BearerLayer<V>) -> Svc {
    let inner = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    tower::util::BoxCloneService::new(layer.layer(inner))
}

fn request(token: &str) -> Request<()> {
    let mut req = Request::new(());
    req.headers_mut().insert(http::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    req
}

fn main() {
    let Some(redis) = redis() else {
        eprintln!("fleet bench: SKIPPED: redis-server is not installed");
        return;
    };
    let url = format!("redis://127.0.0.1:{}", redis.1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let dev = rt.block_on(DevIssuer::start()).unwrap();
    let fleet = Fleet::builder(url.clone()).key(KEY).prefix("bench:").build().unwrap();
    let deny = fleet.deny_list();
    rt.block_on(async {
        while !deny.is_current() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let jwt = JwtValidator::builder()
        .issuer(dev.issuer())
        .audience(DEFAULT_AUDIENCE)
        .jwks_url(dev.jwks_url())
        .build()
        .unwrap();
    let token = dev.token().subject("bench").sign();
    let opaque = dev.opaque_token().subject("bench").issue();

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("fleet/warm");
    let cases: [(&str, Svc, &str); 4] = [
        ("jwt_cached", service(BearerLayer::new(jwt.clone())), &token),
        ("jwt_cached+deny_list", service(BearerLayer::new(jwt.clone()).revocations(deny.clone())), &token),
        ("opaque_cached", service(BearerLayer::new(introspector(&dev, None))), &opaque),
        (
            "opaque_cached+shared_tier+deny_list",
            service(BearerLayer::new(introspector(&dev, Some(&fleet))).revocations(deny.clone())),
            &opaque,
        ),
    ];
    for (label, svc, token) in cases {
        // Warm the caches (and check the answer) outside the timed part.
        let res = rt.block_on(svc.clone().oneshot(request(token))).unwrap();
        assert_eq!(res.status(), 200, "{label}");
        let calls_before = fleet.stats().calls;
        let mut svc = svc;
        group.bench_function(label, |b| {
            b.iter(|| rt.block_on(async { svc.ready().await.unwrap().call(request(token)).await.unwrap() }))
        });
        let redis_calls = fleet.stats().calls - calls_before;
        println!("{label}: {redis_calls} Redis calls during the run (heartbeats included)");
    }
    group.finish();

    println!("\nintrospection calls per second at the authorization server (2 s per row):");
    println!("| replicas | without Redis | with the shared tier |");
    println!("|---|---|---|");
    for replicas in 1..=3usize {
        let mut row = Vec::new();
        for shared in [false, true] {
            let dev = rt.block_on(DevIssuer::start()).unwrap();
            // One prefix per row, shared by its replicas.
            let fleets: Vec<Fleet> = (0..replicas)
                .map(|_| {
                    Fleet::builder(url.clone())
                        .key(KEY)
                        .prefix(format!("scale-{replicas}-{shared}:"))
                        .build()
                        .unwrap()
                })
                .collect();
            let services: Vec<Svc> = fleets
                .iter()
                .map(|f| service(BearerLayer::new(introspector(&dev, shared.then_some(f)))))
                .collect();
            let started = Instant::now();
            let mut requests = 0usize;
            let mut token = dev.opaque_token().issue();
            rt.block_on(async {
                while started.elapsed() < Duration::from_secs(2) {
                    if requests.is_multiple_of(30) {
                        token = dev.opaque_token().issue();
                    }
                    let svc = services[requests % replicas].clone();
                    let res = svc.oneshot(request(&token)).await.unwrap();
                    assert_eq!(res.status(), 200);
                    requests += 1;
                    if requests % 30 == 1 {
                        // Let the first answer reach Redis before the other replicas ask, as a
                        // load balancer's spread of requests over time does (both columns).
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            });
            let secs = started.elapsed().as_secs_f64();
            row.push(format!("{:.0}/s ({requests} requests)", dev.introspection_calls() as f64 / secs));
        }
        println!("| {replicas} | {} | {} |", row[0], row[1]);
    }
    c.final_summary();
}

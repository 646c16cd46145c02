//! Hostile networks: JWKS and introspection endpoints that are raw TCP servers on loopback,
//! answering with hand-written HTTP (or not at all), and a key rotation under load.
//!
//! Complements `tests/jwks.rs` and `tests/introspection.rs` (down, 5xx, garbage, 512 KiB
//! bodies, drip, slow headers): here the server holds the socket forever, redirects in a loop,
//! sends 50 MB, or publishes only keys we must not use. No assertion measures time; waits are
//! event-driven and bounded by the hang guard.
#![cfg(all(feature = "dev", feature = "axum"))]

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{
    EnteredCounter, Reply, TestApp, client, guarded, jwk_by_kid, jwks_of, send, serve, validator_with_keys,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower_bearer::dev::{DevIssuer, RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET};
use tower_bearer::{Algorithm, BearerLayer, Introspector, KeySet};

const TIMEOUT: Duration = Duration::from_millis(300);
const FIFTY_MB: u64 = 50 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// A raw HTTP/1.1 server
// ---------------------------------------------------------------------------------------------

/// What a raw server does once it has read a request.
#[derive(Clone, Debug)]
enum Behavior {
    /// Reads the request, then says nothing and keeps the socket open.
    Hold,
    /// Accepts the connection and never reads from it nor writes to it.
    Deaf,
    /// Closes the connection right after reading the request.
    Hangup,
    /// `302` to this path (itself: a loop).
    Redirect(&'static str),
    /// This status line and body.
    Answer { status: &'static str, body: String },
    /// `200` with a body of `FIFTY_MB` bytes, announced by `Content-Length` or sent chunked.
    Huge { content_length: bool },
}

/// Counters of a raw server: requests read, bytes of body written, connections finished.
#[derive(Default)]
struct Stats {
    hits: watch::Sender<usize>,
    finished: watch::Sender<usize>,
    body_bytes: AtomicU64,
}

struct RawServer {
    base: String,
    stats: Arc<Stats>,
}

type Handler = Arc<dyn Fn(TcpStream, Arc<Stats>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

impl RawServer {
    async fn start(behavior: Behavior) -> RawServer {
        Self::start_with(Arc::new(move |stream, stats| Box::pin(behave(stream, stats, behavior.clone()))))
            .await
    }

    /// Serves every connection with `handler` (which reads the request itself).
    async fn start_with(handler: Handler) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stats = Arc::new(Stats::default());
        let server_stats = stats.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (handler, stats) = (handler.clone(), server_stats.clone());
                tokio::spawn(async move {
                    handler(stream, stats.clone()).await;
                    stats.finished.send_modify(|n| *n += 1);
                });
            }
        });
        RawServer { base, stats }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn hits(&self) -> usize {
        *self.stats.hits.borrow()
    }

    /// Waits until `n` connections were fully handled (the handler returned).
    async fn wait_finished(&self, n: usize) {
        let mut rx = self.stats.finished.subscribe();
        guarded(rx.wait_for(|f| *f >= n)).await.unwrap();
    }

    fn body_bytes(&self) -> u64 {
        self.stats.body_bytes.load(Ordering::SeqCst)
    }
}

/// Reads one request (head, and a `Content-Length` body). `None` if the peer went away.
async fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf)
}

async fn behave(mut stream: TcpStream, stats: Arc<Stats>, behavior: Behavior) {
    if let Behavior::Deaf = behavior {
        stats.hits.send_modify(|h| *h += 1);
        std::future::pending::<()>().await;
    }
    if read_request(&mut stream).await.is_none() {
        return;
    }
    stats.hits.send_modify(|h| *h += 1);
    match behavior {
        Behavior::Deaf => unreachable!(),
        Behavior::Hold => {
            // Keep the socket (and say nothing) until the client gives up and closes it.
            let mut sink = [0u8; 1024];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        }
        Behavior::Hangup => {}
        Behavior::Redirect(path) => {
            let response = format!(
                "HTTP/1.1 302 Found\r\nLocation: {path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = stream.write_all(response.as_bytes()).await;
        }
        Behavior::Answer { status, body } => {
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        }
        Behavior::Huge { content_length } => {
            let head = if content_length {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {FIFTY_MB}\r\n\
                     Connection: close\r\n\r\n"
                )
            } else {
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
                 Connection: close\r\n\r\n"
                    .to_owned()
            };
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            // A JSON document that never ends: `{"keys":[` and then padding.
            let mut chunk = vec![b' '; 64 * 1024];
            chunk[..9].copy_from_slice(b"{\"keys\":[");
            let mut sent = 0u64;
            while sent < FIFTY_MB {
                let piece: &[u8] = if sent == 0 { &chunk } else { &chunk[9..] };
                let piece = &piece[..piece.len().min((FIFTY_MB - sent) as usize)];
                let ok = if content_length {
                    stream.write_all(piece).await.is_ok()
                } else {
                    let framed = [format!("{:x}\r\n", piece.len()).as_bytes(), piece, b"\r\n"].concat();
                    stream.write_all(&framed).await.is_ok()
                };
                if !ok {
                    // The client closed the connection: it gave up, as it should.
                    return;
                }
                sent += piece.len() as u64;
                stats.body_bytes.fetch_add(piece.len() as u64, Ordering::SeqCst);
            }
            if !content_length {
                let _ = stream.write_all(b"0\r\n\r\n").await;
            }
            // All 50 MB went out: wait for the client to close.
            let mut sink = [0u8; 1024];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JWKS endpoints
// ---------------------------------------------------------------------------------------------

async fn es256_issuer() -> DevIssuer {
    common::dev_issuer([Algorithm::ES256]).await
}

/// An app whose key set is `url`, with a short timeout and no retry pause.
async fn jwks_app(dev: &DevIssuer, url: &str) -> TestApp {
    let keys = KeySet::builder(url).timeout(TIMEOUT).retry_unavailable(Duration::ZERO).build().unwrap();
    TestApp::start(validator_with_keys(dev, keys)).await
}

/// `behavior` at the JWKS URL of a cold cache gives `503`, twice (nothing was cached, nothing
/// hangs), and the fetch counter saw the failures.
async fn assert_jwks_503(behavior: Behavior) -> (DevIssuer, RawServer, TestApp) {
    let dev = es256_issuer().await;
    let server = RawServer::start(behavior.clone()).await;
    let app = jwks_app(&dev, &server.url("/jwks.json")).await;
    let token = dev.token().alg(Algorithm::ES256).sign();
    for attempt in 1..=2 {
        let reply = app.get("/me", &token).await;
        assert_eq!(reply.status, 503, "{behavior:?}, attempt {attempt}: {reply:?}");
        reply.assert_unavailable();
    }
    assert_eq!(app.fetch_counts(), (0, 2), "{behavior:?}");
    (dev, server, app)
}

#[tokio::test]
async fn jwks_server_that_never_answers_is_503() {
    for behavior in [Behavior::Hold, Behavior::Deaf, Behavior::Hangup] {
        let (_dev, server, _app) = assert_jwks_503(behavior).await;
        assert_eq!(server.hits(), 2);
    }
}

#[tokio::test]
async fn jwks_redirect_loop_is_503_and_bounded() {
    let (_dev, server, _app) = assert_jwks_503(Behavior::Redirect("/jwks.json")).await;
    // Two fetches, each following at most 3 redirects: 4 requests per fetch at most.
    assert!((2..=8).contains(&server.hits()), "{} requests for 2 fetches", server.hits());
}

#[tokio::test]
async fn jwks_404_is_503() {
    let (_dev, server, _app) =
        assert_jwks_503(Behavior::Answer { status: "404 Not Found", body: "{\"keys\":[]}".into() }).await;
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn jwks_invalid_json_is_503() {
    for body in
        ["{\"keys\":[{\"kty\":\"EC\",", "{\"keys\": nope}", "\u{0}\u{1}binary", "null", "{\"keys\":{}}"]
    {
        assert_jwks_503(Behavior::Answer { status: "200 OK", body: body.into() }).await;
    }
}

/// A 50 MB body, announced or chunked: the fetch gives up at the 512 KiB bound, the request gets
/// `503`, and the server managed to write only a small part of the 50 MB before the client hung up.
#[tokio::test]
async fn jwks_body_of_50_mb_is_503_and_not_read_to_the_end() {
    for content_length in [true, false] {
        let (_dev, server, _app) = assert_jwks_503(Behavior::Huge { content_length }).await;
        server.wait_finished(2).await;
        let written = server.body_bytes();
        println!("content_length={content_length}: {written} body bytes written for 2 requests");
        assert!(
            written < 2 * FIFTY_MB / 5,
            "content_length={content_length}: the server wrote {written} bytes of 2 × 50 MB; the client read on"
        );
    }
}

fn rsa_1024_jwk() -> serde_json::Value {
    let mut n = vec![0xc5u8; 128];
    n[127] = 0x01;
    json!({"kty": "RSA", "kid": "rsa-1024", "use": "sig", "alg": "RS256",
           "n": URL_SAFE_NO_PAD.encode(&n), "e": "AQAB"})
}

fn unsupported_jwks() -> Vec<serde_json::Value> {
    vec![
        json!({"kty": "oct", "kid": "hmac", "k": URL_SAFE_NO_PAD.encode([7u8; 32]), "alg": "HS256"}),
        json!({"kty": "OKP", "kid": "x25519", "crv": "X25519", "x": URL_SAFE_NO_PAD.encode([9u8; 32])}),
        json!({"kty": "OKP", "kid": "ed448", "crv": "Ed448", "x": URL_SAFE_NO_PAD.encode([9u8; 57])}),
        json!({"kty": "EC", "kid": "p521", "crv": "P-521",
               "x": URL_SAFE_NO_PAD.encode([1u8; 66]), "y": URL_SAFE_NO_PAD.encode([1u8; 66])}),
        json!({"kty": "EC", "kid": "secp256k1", "crv": "secp256k1",
               "x": URL_SAFE_NO_PAD.encode([1u8; 32]), "y": URL_SAFE_NO_PAD.encode([1u8; 32])}),
        rsa_1024_jwk(),
    ]
}

#[tokio::test]
async fn jwks_with_only_unsupported_keys_is_503() {
    let body = jwks_of(unsupported_jwks());
    let (_dev, server, _app) = assert_jwks_503(Behavior::Answer { status: "200 OK", body }).await;
    assert_eq!(server.hits(), 2);
}

/// Next to one good key, the unsupported ones are ignored: the good key works, and tokens that
/// name an ignored key (signed by the good key or by the attacker's HMAC secret) are refused.
#[tokio::test]
async fn unsupported_keys_next_to_a_good_one_are_ignored() {
    let dev = es256_issuer().await;
    let mut keys = unsupported_jwks();
    keys.push(jwk_by_kid(&dev.jwks_json(), "es256-1"));
    let server = RawServer::start(Behavior::Answer { status: "200 OK", body: jwks_of(keys) }).await;
    let app = jwks_app(&dev, &server.url("/jwks.json")).await;
    app.get("/me", &dev.token().alg(Algorithm::ES256).sign()).await.assert_ok_json();
    assert_eq!(app.validator.key_set().unwrap().key_count(), 1);
    for kid in ["hmac", "x25519", "ed448", "p521", "secp256k1", "rsa-1024"] {
        let token = dev.token().alg(Algorithm::ES256).kid(kid).sign();
        app.get("/me", &token).await.assert_invalid_token();
    }
    // HS256 with the `oct` key's own secret: the key is not in the set and HS256 is not allowed.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","kid":"hmac","typ":"at+jwt"}"#);
    let claims = json!({"iss": dev.issuer(), "aud": tower_bearer::dev::DEFAULT_AUDIENCE,
                        "exp": common::unix_now() + 300, "sub": "mallory"});
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let tag = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &[7u8; 32]),
        input.as_bytes(),
    );
    app.get("/me", &format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))).await.assert_invalid_token();
}

// ---------------------------------------------------------------------------------------------
// Rotation under load
// ---------------------------------------------------------------------------------------------

/// Fires one `GET /me` per token, all at once, each in its own task.
fn fire(set: &mut JoinSet<(String, Reply)>, app: &TestApp, label: &str, tokens: Vec<String>) {
    for token in tokens {
        let request = app.client.get(app.url("/me")).bearer_auth(token);
        let label = label.to_owned();
        set.spawn(async move { (label, send(request).await) });
    }
}

async fn false_rejections(set: JoinSet<(String, Reply)>) -> Vec<String> {
    guarded(set.join_all())
        .await
        .into_iter()
        .filter(|(_, reply)| reply.status != 200)
        .map(|(label, reply)| {
            format!("{label}: {} {:?}", reply.status, reply.headers.get("www-authenticate"))
        })
        .collect()
}

/// The issuer rotates (old + new published, then old withdrawn) while ~200 requests are in
/// flight, with a key set that refreshes on every request (`max-age=0`, no lower clamp). Every
/// token's key is published for the whole time its request is in flight: none may be refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_has_no_false_rejections() {
    let dev = DevIssuer::builder().algorithms([Algorithm::ES256]).jwks_max_age(0).start().await.unwrap();
    let keys = KeySet::builder(dev.jwks_url())
        .ttl_bounds(Duration::ZERO, Duration::from_secs(3600))
        .build()
        .unwrap();
    let app = TestApp::start(validator_with_keys(&dev, keys.clone())).await;
    let old = |n: usize| (0..n).map(|_| dev.token().alg(Algorithm::ES256).kid("es256-1").sign()).collect();
    app.get("/me", &dev.token().alg(Algorithm::ES256).sign()).await.assert_ok_json();

    // Phase 1: old-key requests in flight; the new key is published; new-key requests join.
    let mut set = JoinSet::new();
    fire(&mut set, &app, "phase 1, old key", old(100));
    let new_kid = dev.rotate(Algorithm::ES256);
    let new = |n: usize| (0..n).map(|_| dev.token().alg(Algorithm::ES256).kid(&new_kid).sign()).collect();
    fire(&mut set, &app, "phase 1, new key", new(100));
    let wrong = false_rejections(set).await;
    assert!(wrong.is_empty(), "{} false rejections:\n{}", wrong.len(), wrong.join("\n"));

    // Phase 2: new-key requests in flight while the old key is withdrawn.
    let mut set = JoinSet::new();
    fire(&mut set, &app, "phase 2, before retire", new(100));
    dev.retire("es256-1");
    fire(&mut set, &app, "phase 2, after retire", new(100));
    let wrong = false_rejections(set).await;
    assert!(wrong.is_empty(), "{} false rejections:\n{}", wrong.len(), wrong.join("\n"));

    // Control: once the set is refreshed, the withdrawn key is no longer trusted.
    keys.refresh().await.unwrap();
    app.get("/me", &old(1)[0]).await.assert_invalid_token();
    app.get("/me", &new(1)[0]).await.assert_ok_json();
}

/// The race behind rotation false rejections, made deterministic: a routine refresh (the set
/// expired) starts *before* the issuer publishes a new key and finishes *after* a request with
/// that key looked at the cache. The request must not take the routine refresh's (old) answer
/// as the answer to its unknown `kid`.
#[tokio::test]
async fn a_refresh_that_started_before_a_rotation_does_not_hide_the_new_key() {
    let dev = DevIssuer::builder().algorithms([Algorithm::ES256]).start().await.unwrap();
    let first = jwk_by_kid(&dev.jwks_json(), "es256-1");
    let new_kid = dev.rotate(Algorithm::ES256);
    let second = jwk_by_kid(&dev.jwks_json(), &new_kid);

    // A JWKS server whose document is taken when a request *arrives*; requests can be held.
    let published = Arc::new(std::sync::Mutex::new(jwks_of([first.clone()])));
    let (hold_tx, hold_rx) = watch::channel(false);
    let handler: Handler = {
        let (published, hold_rx) = (published.clone(), hold_rx.clone());
        Arc::new(move |mut stream, stats| {
            let (published, mut hold_rx) = (published.clone(), hold_rx.clone());
            Box::pin(async move {
                if read_request(&mut stream).await.is_none() {
                    return;
                }
                let body = published.lock().unwrap().clone();
                stats.hits.send_modify(|h| *h += 1);
                let _ = hold_rx.wait_for(|held| !*held).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: max-age=0\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            })
        })
    };
    let server = RawServer::start_with(handler).await;
    let keys = KeySet::builder(server.url("/jwks.json"))
        .ttl_bounds(Duration::ZERO, Duration::from_secs(3600))
        .build()
        .unwrap();
    let validator = validator_with_keys(&dev, keys);
    let entered = EnteredCounter::default();
    let router =
        common::routes().layer(BearerLayer::new(validator).realm(common::REALM)).layer(entered.clone());
    let base = serve(router).await;
    let http = client();
    let get = |token: String| send(http.get(format!("{base}/me")).bearer_auth(token));

    let old_token = dev.token().alg(Algorithm::ES256).kid("es256-1").sign();
    assert_eq!(get(old_token.clone()).await.status, 200);
    assert_eq!(server.hits(), 1);

    // The set has expired (max-age=0): this request passes on the cached key and starts a
    // routine refresh, which the server holds after reading the old document.
    hold_tx.send_replace(true);
    assert_eq!(get(old_token).await.status, 200);
    let mut hits = server.stats.hits.subscribe();
    guarded(hits.wait_for(|h| *h >= 2)).await.unwrap();

    // The issuer publishes its new key, and a token of it arrives while the refresh is held.
    *published.lock().unwrap() = jwks_of([first, second]);
    let new_token = dev.token().alg(Algorithm::ES256).kid(&new_kid).sign();
    let before = entered.get();
    let pending = tokio::spawn(get(new_token));
    entered.wait_for(before + 1).await;
    hold_tx.send_replace(false);

    let reply = guarded(pending).await.unwrap();
    assert_eq!(
        reply.status,
        200,
        "a token of a published key was refused: {:?} (JWKS requests: {})",
        reply.headers.get("www-authenticate"),
        server.hits()
    );
}

// ---------------------------------------------------------------------------------------------
// Introspection endpoints
// ---------------------------------------------------------------------------------------------

/// `behavior` at the introspection endpoint gives `503`, twice (nothing cached).
async fn assert_introspection_503(behavior: Behavior) -> RawServer {
    let server = RawServer::start(behavior.clone()).await;
    let introspector = Introspector::builder(server.url("/introspect"))
        .client_secret_basic(RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET)
        .timeout(TIMEOUT)
        .build()
        .unwrap();
    let base =
        serve(common::routes().layer(BearerLayer::new(introspector.clone()).realm(common::REALM))).await;
    let http = client();
    for attempt in 1..=2 {
        let reply = send(http.get(format!("{base}/me")).bearer_auth("opaque-token-value")).await;
        assert_eq!(reply.status, 503, "{behavior:?}, attempt {attempt}: {reply:?}");
        reply.assert_unavailable();
    }
    assert_eq!(introspector.stats().calls, 2, "{behavior:?}: a failure must not be cached");
    server
}

#[tokio::test]
async fn introspection_endpoint_that_never_answers_is_503() {
    for behavior in [Behavior::Hold, Behavior::Deaf, Behavior::Hangup] {
        let server = assert_introspection_503(behavior).await;
        assert_eq!(server.hits(), 2);
    }
}

#[tokio::test]
async fn introspection_redirect_loop_is_503() {
    let server = assert_introspection_503(Behavior::Redirect("/introspect")).await;
    assert_eq!(server.hits(), 2, "redirects are not followed");
}

#[tokio::test]
async fn introspection_body_of_50_mb_is_503_and_not_read_to_the_end() {
    for content_length in [true, false] {
        let server = assert_introspection_503(Behavior::Huge { content_length }).await;
        server.wait_finished(2).await;
        let written = server.body_bytes();
        println!("content_length={content_length}: {written} body bytes written for 2 requests");
        assert!(
            written < 2 * FIFTY_MB / 5,
            "content_length={content_length}: the server wrote {written} bytes of 2 × 50 MB; the client read on"
        );
    }
}

#[tokio::test]
async fn introspection_invalid_json_is_503() {
    for body in ["{\"active\":tru", "{\"active\": \"yes\"}", "[{\"active\":true}]", "\u{0}", "{}"] {
        assert_introspection_503(Behavior::Answer { status: "200 OK", body: body.into() }).await;
    }
}

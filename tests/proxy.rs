//! `tower-bearer proxy` in production shape, through real processes on 127.0.0.1: TLS with a
//! run-time CA (rcgen), HTTP/2, client certificates, an HTTPS upstream, WebSockets, forwarding
//! headers from trusted and untrusted peers, several upstreams, `SIGHUP` reload, and hostile
//! HTTP/1.1 (smuggling, slowloris, oversized headers).
#![cfg(all(feature = "gateway", feature = "dev", feature = "axum"))]

mod common;
mod gateway_support;

#[allow(dead_code)]
#[path = "../examples/grpc.rs"]
mod grpc_example;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use gateway_support::*;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tower_bearer::Algorithm;
use tower_bearer::dev::DevIssuer;

async fn issuer() -> DevIssuer {
    common::dev_issuer([Algorithm::ES256]).await
}

fn token(dev: &DevIssuer, scope: &str) -> String {
    dev.token().subject("alice").scope(scope).claim("tenant", "acme").claim("client_id", "app-1").sign()
}

/// A certificate authority made for one test, and the PEM files of what it signs.
struct Pki {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
    dir: PathBuf,
    /// Removes `dir` when the test is done with it.
    _guard: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "tower-bearer test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA cert");
        let guard = temp_dir("pki");
        let dir = guard.path().to_owned();
        let ca_pem = cert.pem();
        std::fs::write(dir.join("ca.pem"), &ca_pem).expect("write CA");
        Pki { issuer: Issuer::new(params, key), ca_pem, dir, _guard: guard }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Signs a leaf for `names`; writes `<tag>.pem` and `<tag>.key`; returns (cert PEM, key PEM).
    fn leaf(&self, tag: &str, names: &[&str], client: bool) -> (String, String) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, names.first().copied().unwrap_or(tag));
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
        std::fs::write(self.dir.join(format!("{tag}.pem")), &cert_pem).expect("write cert");
        std::fs::write(self.dir.join(format!("{tag}.key")), &key_pem).expect("write key");
        (cert_pem, key_pem)
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    /// A `[tls]` table with a fresh server certificate for localhost and 127.0.0.1.
    fn tls_table(&self, extra: &str) -> String {
        self.leaf("server", &["localhost", "127.0.0.1"], false);
        format!(
            "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n{extra}\n",
            self.path("server.pem"),
            self.path("server.key")
        )
    }

    fn ca_cert(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("CA for reqwest")
    }

    /// A client trusting this CA only.
    fn client(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder().tls_certs_only([self.ca_cert()]).timeout(common::HANG_GUARD)
    }
}

fn upstream_table(upstream: &Upstream) -> String {
    format!("[upstream]\nurl = \"{}\"\n", upstream.url())
}

fn https(gw: &Gateway, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", gw.addr.port())
}

async fn json(res: reqwest::Response) -> serde_json::Value {
    serde_json::from_str(&res.text().await.expect("body")).expect("JSON from the echo upstream")
}

// ---------------------------------------------------------------------------------------------
// TLS and HTTP/2
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn tls_listener_speaks_http2_and_http1() {
    let dev = issuer().await;
    let pki = Pki::new();
    let upstream = Upstream::start().await;
    let gw = Gateway::start(
        "proxy",
        &dev_config(&dev, &format!("{}{}", pki.tls_table(""), upstream_table(&upstream))),
    );
    let read = token(&dev, "items:read");

    // HTTP/2 by ALPN.
    let h2 = pki.client().build().expect("client");
    wait_for_log(&gw.process, "key set loaded").await;
    let res = h2.get(https(&gw, "/items/1")).bearer_auth(&read).send().await.expect("h2 request");
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(res.status(), 200);
    let seen = json(res).await;
    assert_eq!(seen["headers"]["x-auth-subject"][0], "alice");
    assert_eq!(seen["headers"]["x-forwarded-proto"][0], "https");
    assert_eq!(seen["headers"]["x-forwarded-host"][0], format!("127.0.0.1:{}", gw.addr.port()));
    let res = h2.get(https(&gw, "/items/1")).send().await.expect("h2 request");
    assert_eq!((res.version(), res.status().as_u16()), (reqwest::Version::HTTP_2, 401));
    assert!(res.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));

    // HTTP/1.1 on the same port.
    let h1 = pki.client().http1_only().build().expect("client");
    let res = h1.get(https(&gw, "/items/1")).bearer_auth(&read).send().await.expect("h1 request");
    assert_eq!((res.version(), res.status().as_u16()), (reqwest::Version::HTTP_11, 200));

    // A client that does not trust the CA cannot talk to it at all.
    let stranger = Pki::new();
    assert!(stranger.client().build().unwrap().get(https(&gw, "/public/x")).send().await.is_err());
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn plain_listener_speaks_h2c_with_prior_knowledge() {
    let dev = issuer().await;
    let upstream = Upstream::start().await;
    let gw = Gateway::ready("proxy", &dev_config(&dev, &upstream_table(&upstream))).await;
    let client = reqwest::Client::builder().http2_prior_knowledge().build().expect("client");
    let res =
        client.get(gw.url("/items/1")).bearer_auth(token(&dev, "items:read")).send().await.expect("h2c");
    assert_eq!((res.version(), res.status().as_u16()), (reqwest::Version::HTTP_2, 200));
    assert_eq!(json(res).await["headers"]["x-forwarded-proto"][0], "http");
}

#[tokio::test]
async fn grpc_passes_over_http2_both_ways() {
    let dev = issuer().await;
    // The example's tonic server (h2c, its own bearer layer) as the upstream.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_addr = listener.local_addr().unwrap();
    tokio::spawn(grpc_example::serve(listener, common::validator(&dev)));
    let routes = "[[routes]]\npath = \"/demo.Items/*\"\naccess = \"authenticated\"\n";
    let text = dev_config(&dev, &format!("[upstream]\nurl = \"http://{grpc_addr}\"\nhttp2 = true\n"))
        .replacen("[headers.claims]", &format!("{routes}\n[headers.claims]"), 1);
    let gw = Gateway::ready("proxy", &text).await;
    let channel = common::guarded(grpc_example::connect(gw.addr)).await.expect("connect to the proxy");
    let mut client = grpc_example::ItemsClient::new(channel);
    let t = format!("Bearer {}", dev.token().subject("alice").scope("items:read").sign());
    let item = common::guarded(client.call(grpc_example::GET, "7", Some(&t)))
        .await
        .expect("a call through the proxy");
    assert_eq!(item.get_ref().id, "7");
    // Refused by the proxy, as a gRPC status (trailers-only).
    let status = common::guarded(client.call(grpc_example::GET, "7", None)).await.expect_err("no token");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    // Refused by the upstream's own layer (scope), its status and trailers passed through.
    let status =
        common::guarded(client.call(grpc_example::DELETE, "7", Some(&t))).await.expect_err("no scope");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
}

#[tokio::test]
async fn certificate_files_are_reloaded_when_they_change() {
    let dev = issuer().await;
    let pki = Pki::new();
    let upstream = Upstream::start().await;
    let gw = Gateway::start(
        "proxy",
        &dev_config(&dev, &format!("{}{}", pki.tls_table(""), upstream_table(&upstream))),
    );
    let client = pki.client().build().unwrap();
    assert_eq!(client.get(https(&gw, "/public/x")).send().await.expect("first cert").status(), 200);
    // A new certificate from another CA: once picked up, the old CA no longer verifies it.
    let other = Pki::new();
    other.leaf("server", &["localhost", "127.0.0.1"], false);
    // Write the key first, then the certificate, each atomically (rename), as certbot does.
    for file in ["server.key", "server.pem"] {
        let tmp = pki.dir.join(format!("{file}.new"));
        std::fs::copy(other.dir.join(file), &tmp).unwrap();
        std::fs::rename(&tmp, pki.dir.join(file)).unwrap();
    }
    wait_for_log(&gw.process, "TLS certificate reloaded").await;
    let fresh = other.client().build().unwrap();
    assert_eq!(fresh.get(https(&gw, "/public/x")).send().await.expect("new cert").status(), 200);
    assert!(pki.client().build().unwrap().get(https(&gw, "/public/x")).send().await.is_err());

    // A broken file is refused; the running certificate stays.
    std::fs::write(pki.dir.join("server.pem"), "not a certificate").unwrap();
    wait_for_log(&gw.process, "cannot be used: the running certificate stays").await;
    assert_eq!(fresh.get(https(&gw, "/public/x")).send().await.expect("kept cert").status(), 200);
}

#[tokio::test]
async fn client_certificates_are_requested_and_reach_the_request() {
    let dev = issuer().await;
    let pki = Pki::new();
    let clients = Pki::new();
    let upstream = Upstream::start().await;
    let tls = pki.tls_table(&format!(
        "client_ca_file = \"{}\"\nrequire_client_cert = true",
        clients.ca_file().display()
    ));
    let gw = Gateway::start("proxy", &dev_config(&dev, &format!("{tls}{}", upstream_table(&upstream))));
    let (cert, key) = clients.leaf("alice", &["alice.example"], true);
    let identity = reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).expect("identity");
    let with = pki.client().identity(identity).build().unwrap();
    assert_eq!(with.get(https(&gw, "/public/x")).send().await.expect("with a cert").status(), 200);
    // Which certificate the request carried, as the layer gets it (`ClientCertificate`).
    let der = rustls_pem_der(&cert);
    let thumbprint = tower_bearer::ClientCertificate::from_der(der).thumbprint_sha256();
    wait_for_log(&gw.process, &thumbprint).await;
    // Required: no certificate, no connection; a certificate from another CA neither.
    assert!(pki.client().build().unwrap().get(https(&gw, "/public/x")).send().await.is_err());
    let (cert, key) = pki.leaf("mallory", &["mallory.example"], true);
    let wrong = reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap();
    assert!(pki.client().identity(wrong).build().unwrap().get(https(&gw, "/public/x")).send().await.is_err());
    assert_eq!(upstream.count(), 1);
}

/// The DER inside a one-certificate PEM.
fn rustls_pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).expect("PEM base64")
}

#[tokio::test]
async fn https_upstream_with_a_configured_ca_and_http2() {
    let dev = issuer().await;
    let pki = Pki::new();
    let upstream = Upstream::start().await;
    // The upstream is a second proxy with a TLS listener (trusting the first as a front proxy).
    let back = Gateway::start(
        "proxy",
        &dev_config(
            &dev,
            &format!(
                "{}{}[forwarded]\ntrusted_proxies = [\"127.0.0.1\"]\n",
                pki.tls_table(""),
                upstream_table(&upstream)
            ),
        ),
    );
    // `localhost`: a name to check the certificate against and to send as SNI.
    let front_upstream = format!(
        "[upstream]\nurl = \"https://localhost:{}\"\nca_file = \"{}\"\nhttp2 = true\n",
        back.addr.port(),
        pki.ca_file().display()
    );
    let front = Gateway::ready("proxy", &dev_config(&dev, &front_upstream)).await;
    let res = common::client()
        .get(front.url("/items/1"))
        .bearer_auth(token(&dev, "items:read"))
        .header("x-forwarded-for", "198.51.100.1")
        .send()
        .await
        .expect("through both");
    assert_eq!(res.status(), 200);
    let seen = json(res).await;
    // The front replaced what the client claimed; the back appended the front's address.
    assert_eq!(seen["headers"]["x-forwarded-for"][0], "127.0.0.1, 127.0.0.1");
    assert_eq!(seen["headers"]["x-forwarded-proto"][0], "http", "the front's client used http");
    assert_eq!(seen["headers"]["x-forwarded-host"][0], front.addr.to_string());
    // The front reached the back over HTTP/2.
    wait_for_log(&back.process, "HTTP/2.0").await;

    // Without the CA, the system roots do not know the test CA: 502.
    let untrusting = Gateway::start(
        "proxy",
        &dev_config(&dev, &format!("[upstream]\nurl = \"https://localhost:{}\"\n", back.addr.port())),
    );
    let r = raw_get(untrusting.addr, "/public/x", None, &[]).await;
    assert_eq!(r.status, 502, "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// Forwarding headers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn forwarding_headers_trust_only_trusted_proxies() {
    let dev = issuer().await;
    let upstream = Upstream::start().await;
    let claimed = [
        ("X-Forwarded-For", "203.0.113.9"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "api.example"),
        ("Forwarded", "for=203.0.113.9;proto=https"),
    ];

    // 127.0.0.1 is not trusted: everything the client claimed is replaced.
    let untrusted = format!("{}[forwarded]\ntrusted_proxies = [\"10.0.0.0/8\"]\n", upstream_table(&upstream));
    let gw = Gateway::start("proxy", &dev_config(&dev, &untrusted));
    let r = raw_get(gw.addr, "/public/x", None, &claimed).await;
    assert_eq!(r.upstream_header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(r.upstream_header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(r.upstream_header("x-forwarded-host"), Some(gw.addr.to_string()));
    assert_eq!(r.upstream_header("forwarded"), None);

    // Trusted: extended.
    let trusted = format!("{}[forwarded]\ntrusted_proxies = [\"127.0.0.0/8\"]\n", upstream_table(&upstream));
    let gw = Gateway::start("proxy", &dev_config(&dev, &trusted));
    let r = raw_get(gw.addr, "/public/x", None, &claimed).await;
    assert_eq!(r.upstream_header("x-forwarded-for").as_deref(), Some("203.0.113.9, 127.0.0.1"));
    assert_eq!(r.upstream_header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(r.upstream_header("x-forwarded-host").as_deref(), Some("api.example"));

    // RFC 7239 style.
    let rfc = format!(
        "{}[forwarded]\nstyle = \"forwarded\"\ntrusted_proxies = [\"127.0.0.1\"]\n",
        upstream_table(&upstream)
    );
    let gw = Gateway::start("proxy", &dev_config(&dev, &rfc));
    let r = raw_get(gw.addr, "/public/x", None, &claimed).await;
    assert_eq!(
        r.upstream_header("forwarded"),
        Some(format!("for=203.0.113.9;proto=https, for=127.0.0.1;proto=http;host=\"{}\"", gw.addr))
    );
    assert_eq!(r.upstream_header("x-forwarded-for"), None);

    assert_config_error(
        &dev_config(&dev, "[forwarded]\ntrusted_proxies = [\"10.0.0.0/40\"]"),
        "forwarded.trusted_proxies",
    );
    assert_config_error(&dev_config(&dev, "[forwarded]\nstyle = \"both\""), "forwarded.style");
}

#[track_caller]
fn assert_config_error(text: &str, needle: &str) {
    let path = write_config(text);
    let (status, _, stderr) = run(&["check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(needle), "stderr lacks {needle:?}: {stderr}");
}

// ---------------------------------------------------------------------------------------------
// WebSockets
// ---------------------------------------------------------------------------------------------

/// A WebSocket echo server; records the subject header of each handshake.
// tungstenite's handshake callback type has a large error variant: not ours to shrink.
#[allow(clippy::result_large_err)]
async fn ws_echo() -> (SocketAddr, Arc<Mutex<Vec<Option<String>>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let subjects = Arc::new(Mutex::new(Vec::new()));
    let seen = subjects.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let callback = |req: &tokio_tungstenite::tungstenite::handshake::server::Request, res| {
                    let subject = req.headers().get("x-auth-subject").map(|v| v.to_str().unwrap().to_owned());
                    seen.lock().unwrap().push(subject);
                    Ok(res)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else { return };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        let _ = ws.send(msg).await;
                    }
                }
            });
        }
    });
    (addr, subjects)
}

#[tokio::test]
async fn websockets_pass_with_a_valid_token_only() {
    let dev = issuer().await;
    let (echo, subjects) = ws_echo().await;
    let routes = format!(
        "[upstream]\nurl = \"http://{echo}\"\n\n[[routes]]\npath = \"/ws/**\"\naccess = {{ all = [\"chat\"] }}\n"
    );
    // The routes of `dev_config` come first; ours is appended through `extra`: put it before
    // [headers.claims] by giving the whole file here.
    let text = dev_config(&dev, "").replacen("[headers.claims]", &format!("{routes}\n[headers.claims]"), 1);
    let gw = Gateway::ready("proxy", &text).await;

    let connect = |token: Option<String>| {
        let url = format!("ws://{}/ws/echo", gw.addr);
        async move {
            let mut req = url.into_client_request().unwrap();
            if let Some(t) = token {
                req.headers_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
            }
            common::guarded(tokio_tungstenite::connect_async(req)).await
        }
    };
    for (token, status) in
        [(None, 401), (Some("garbage".to_owned()), 401), (Some(token(&dev, "items:read")), 403)]
    {
        match connect(token).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), status),
            other => panic!("expected a refusal with {status}, got {other:?}"),
        }
    }
    assert!(subjects.lock().unwrap().is_empty(), "a refused upgrade reached the upstream");

    let (mut ws, res) = connect(Some(token(&dev, "chat"))).await.expect("authorised upgrade");
    assert_eq!(res.status(), 101);
    for i in 0..3 {
        ws.send(Message::text(format!("hello {i}"))).await.expect("send");
        let back = common::guarded(ws.next()).await.expect("an answer").expect("a message");
        assert_eq!(back.into_text().unwrap().as_str(), format!("hello {i}"));
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255])).await.unwrap();
    assert_eq!(common::guarded(ws.next()).await.unwrap().unwrap().into_data().as_ref(), [0u8, 1, 2, 255]);
    ws.close(None).await.ok();
    assert_eq!(*subjects.lock().unwrap(), vec![Some("alice".to_owned())]);

    // A socket lives no longer than its token: this one expired 25 s ago, within the validators'
    // 30 s leeway, so the upgrade passes and the proxy closes both sides about 5 s later. (Before,
    // it stayed open for as long as the client and the upstream kept it.)
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let short = dev.token().subject("alice").scope("chat").claim("exp", now - 25).sign();
    let (mut ws, res) = connect(Some(short)).await.expect("an upgrade within the leeway");
    assert_eq!(res.status(), 101);
    ws.send(Message::text("still valid")).await.expect("send");
    let back = common::guarded(ws.next()).await.expect("an answer").expect("a message");
    assert_eq!(back.into_text().unwrap().as_str(), "still valid");
    // Then the connection ends, from the proxy's side (the echo server never closes first).
    match common::guarded(ws.next()).await {
        None | Some(Err(_)) => {}
        Some(Ok(msg)) => assert!(msg.is_close(), "unexpected message {msg:?}"),
    }
}

/// A token whose `exp` is too far out to add the leeway to (validation saturates it) is
/// proxied, and its WebSocket gets no deadline: computing one panicked the request's task.
#[tokio::test]
async fn a_token_that_never_expires_is_proxied() {
    let dev = issuer().await;
    let up = Upstream::start().await;
    let gw =
        Gateway::ready("proxy", &dev_config(&dev, &format!("\n[upstream]\nurl = \"{}\"\n", up.url()))).await;
    let forever = dev.token().subject("alice").scope("items:read").claim("exp", 1e300).sign();
    let r = raw_get(gw.addr, "/me", Some(&forever), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let upgrade = [("Connection", "Upgrade"), ("Upgrade", "websocket")];
    let r = raw_get(gw.addr, "/me", Some(&forever), &upgrade).await;
    assert_eq!(r.status, 200, "the upstream takes no upgrade and answers plainly: {}", r.body);
}

/// An HTTP/2 client that goes silent (a NAT that forgot it, a crashed process) is pinged and,
/// unanswered, disconnected: `[listener] http2_keep_alive_secs`. (Before, its connection stayed
/// open for as long as the socket did.)
#[tokio::test]
async fn a_silent_http2_client_is_pinged_then_let_go() {
    let dev = issuer().await;
    let up = Upstream::start().await;
    let extra = format!("\n[upstream]\nurl = \"{}\"\n\n[listener]\nhttp2_keep_alive_secs = 1\n", up.url());
    let gw = Gateway::ready("proxy", &dev_config(&dev, &extra)).await;
    let frames = common::guarded(async {
        let mut stream = tokio::net::TcpStream::connect(gw.addr).await.expect("connect");
        // The prior-knowledge preface and an empty SETTINGS frame; then nothing, ever.
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        stream.write_all(&hello).await.expect("write");
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out).await;
        // Frame types, from each 9-byte frame header (length, type, flags, stream).
        let mut types = Vec::new();
        let mut at = 0;
        while at + 9 <= out.len() {
            let len = usize::from(out[at]) << 16 | usize::from(out[at + 1]) << 8 | usize::from(out[at + 2]);
            types.push(out[at + 3]);
            at += 9 + len;
        }
        types
    })
    .await;
    const PING: u8 = 6;
    assert!(frames.contains(&PING), "closed without a ping first: frame types {frames:?}");
}

/// An HTTP/2 (h2c) upstream on a raw socket that answers one request, then never acknowledges a
/// PING: the frame types it receives after its answer, until the proxy closes the connection.
async fn deaf_to_pings_upstream() -> (SocketAddr, tokio::sync::oneshot::Receiver<Vec<u8>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let (report, seen) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        // `/readyz` connects and leaves without a word: the first connection with a preface.
        let mut stream = loop {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut preface = [0u8; 24];
            if stream.read_exact(&mut preface).await.is_ok() {
                assert_eq!(&preface, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
                break stream;
            }
        };
        // Our SETTINGS (none), and an acknowledgement of the client's.
        stream.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0]).await.expect("settings");
        let (mut answered, mut after) = (false, Vec::new());
        loop {
            let mut head = [0u8; 9];
            if stream.read_exact(&mut head).await.is_err() {
                break; // closed by the proxy
            }
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            let mut payload = vec![0u8; len];
            if stream.read_exact(&mut payload).await.is_err() {
                break;
            }
            const HEADERS: u8 = 1;
            if head[3] == HEADERS && !answered {
                // `:status: 200` (HPACK static index 8), END_STREAM | END_HEADERS, same stream.
                let mut answer = vec![0, 0, 1, HEADERS, 0x5];
                answer.extend_from_slice(&head[5..9]);
                answer.push(0x88);
                stream.write_all(&answer).await.expect("answer");
                answered = true;
            } else if answered {
                after.push(head[3]);
            }
        }
        let _ = report.send(after);
    });
    (addr, seen)
}

/// A pooled HTTP/2 connection to an upstream is pinged (`[upstream] http2_keep_alive_secs`), and
/// closed when a ping goes unanswered: an upstream gone without a word (restarted behind a NAT or
/// a load balancer) is found out by its ping, not by the next request waiting `timeout_secs` on
/// the dead connection. (Before, such a connection stayed in the pool until the socket failed.)
#[tokio::test]
async fn a_silent_http2_upstream_is_pinged_then_let_go() {
    let dev = issuer().await;
    let (up, seen) = deaf_to_pings_upstream().await;
    let extra = format!("\n[upstream]\nurl = \"http://{up}\"\nhttp2 = true\nhttp2_keep_alive_secs = 1\n");
    let gw = Gateway::ready("proxy", &dev_config(&dev, &extra)).await;
    let r = raw_get(gw.addr, "/public/a", None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let after = common::guarded(seen).await.expect("the upstream's report");
    const PING: u8 = 6;
    assert!(after.contains(&PING), "closed without a ping first: frame types {after:?}");
}

// ---------------------------------------------------------------------------------------------
// Bodies that stop coming
// ---------------------------------------------------------------------------------------------

/// `POST /public/up` whose body is `pieces`, each sent after its pause (milliseconds); the answer.
async fn slow_upload(addr: SocketAddr, pieces: &[(u64, &[u8])]) -> String {
    common::guarded(async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let length: usize = pieces.iter().map(|(_, piece)| piece.len()).sum();
        let head = format!(
            "POST /public/up HTTP/1.1\r\nHost: a\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        for (pause, piece) in pieces {
            tokio::time::sleep(std::time::Duration::from_millis(*pause)).await;
            stream.write_all(piece).await.expect("write");
        }
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
}

/// What `stream` sends until `done` holds of it, or it ends.
async fn read_until(stream: &mut (impl tokio::io::AsyncRead + Unpin), done: impl Fn(&str) -> bool) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !done(&String::from_utf8_lossy(&out)) {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What [`stalling_upstream`] tells: a request head came; the proxy closed a connection after
/// sending one.
struct Stalling {
    heads: tokio::sync::mpsc::UnboundedReceiver<()>,
    closed: tokio::sync::mpsc::UnboundedReceiver<()>,
}

/// An upstream on a raw socket: reads a request head, then writes `answer` (if any) and keeps
/// the connection open without another byte.
async fn stalling_upstream(answer: Option<&'static str>) -> (SocketAddr, Stalling) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let (closed, closed_seen) = tokio::sync::mpsc::unbounded_channel();
    let (heads, heads_seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (closed, heads) = (closed.clone(), heads.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let _ = heads.send(());
                if let Some(answer) = answer {
                    stream.write_all(answer.as_bytes()).await.expect("write");
                }
                // Whatever else comes (the body), until the proxy lets go.
                let mut sink = [0u8; 1024];
                while stream.read(&mut sink).await.unwrap_or(0) > 0 {}
                let _ = closed.send(());
            });
        }
    });
    (addr, Stalling { heads: heads_seen, closed: closed_seen })
}

/// A connection to `addr` that sent `POST /public/up` announcing 100 bytes, and 5 of them.
async fn partial_upload(addr: SocketAddr) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = "POST /public/up HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nhello";
    stream.write_all(request.as_bytes()).await.expect("write");
    stream
}

/// An upstream that sends its headers and 5 of 100 body bytes, then nothing: once the headers
/// went out `timeout_secs` no longer applies, and `idle_timeout_secs` cuts the body (the client
/// sees the connection end short of `Content-Length`) and frees the upstream connection.
/// Before, both stayed open for as long as the upstream held its socket.
#[tokio::test]
async fn a_response_body_that_stops_is_cut_after_the_idle_timeout() {
    let dev = issuer().await;
    let (stall, mut seen) =
        stalling_upstream(Some("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello")).await;
    let gw = Gateway::start(
        "proxy",
        &dev_config(&dev, &format!("\n[upstream]\nurl = \"http://{stall}\"\nidle_timeout_secs = 1\n")),
    );
    wait_for_ok(&gw.url("/readyz")).await;
    let answer = exchange(gw.addr, b"GET /public/a HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("content-length: 100\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nhello"), "the body was not cut at what came: {answer}");
    common::guarded(seen.closed.recv()).await.expect("the upstream connection was let go");
}

/// A client that sends 5 of the 100 bytes it announced, then nothing, while the upstream waits
/// for the rest: `408` after `idle_timeout_secs` (not the upstream's `timeout_secs` `504`), and
/// the upstream connection is let go.
#[tokio::test]
async fn an_upload_that_stops_gets_408_after_the_idle_timeout() {
    let dev = issuer().await;
    let (stall, mut seen) = stalling_upstream(None).await;
    let gw = Gateway::start(
        "proxy",
        &dev_config(&dev, &format!("\n[upstream]\nurl = \"http://{stall}\"\nidle_timeout_secs = 1\n")),
    );
    wait_for_ok(&gw.url("/readyz")).await;
    let answer = common::guarded(async {
        let mut stream = partial_upload(gw.addr).await;
        // The client never closes its side: read until the answer is whole.
        read_until(&mut stream, |text| text.ends_with("the request body stopped coming\n")).await
    })
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    common::guarded(seen.closed.recv()).await.expect("the upstream connection was let go");
}

/// A client that announces 100 bytes, sends 5 and goes away while the upstream waits for the
/// rest: logged as the client's doing (reason `upload_broken`, `400`), and the upstream
/// connection is let go. Before, this was a `502` `upstream_unreachable` and a warning, an
/// operator's alarm for a client that merely left.
#[tokio::test]
async fn an_upload_the_client_abandons_is_not_blamed_on_the_upstream() {
    let dev = issuer().await;
    let (stall, mut seen) = stalling_upstream(None).await;
    let gw = Gateway::ready("proxy", &dev_config(&dev, &format!("\n[upstream]\nurl = \"http://{stall}\"\n")))
        .await;
    common::guarded(async {
        let _stream = partial_upload(gw.addr).await;
        // Mid-upload: gone once the upstream has the head (and is waiting for the rest).
        seen.heads.recv().await.expect("the request head reached the upstream");
    })
    .await;
    let logs = wait_for_log(&gw.process, "reason=\"upload_broken\"").await;
    assert!(logs.contains("status=400"), "{logs}");
    assert!(!logs.contains("upstream_unreachable"), "{logs}");
    assert!(!logs.contains("status=502"), "{logs}");
    common::guarded(seen.closed.recv()).await.expect("the upstream connection was let go");
}

/// `timeout_secs` is the upstream's time, not the client's: an upload that takes longer than it
/// but never goes silent for `idle_timeout_secs` is answered (it got `504` while it was still
/// coming), and an upstream that stops taking the body gets `504` after `timeout_secs`.
#[tokio::test]
async fn timeout_secs_bounds_the_upstream_not_a_slow_upload() {
    let dev = issuer().await;
    let up = Upstream::start().await;
    let config = |url: &str| {
        dev_config(
            &dev,
            &format!("\n[upstream]\nurl = \"{url}\"\ntimeout_secs = 1\nidle_timeout_secs = 10\n"),
        )
    };
    let gw = Gateway::ready("proxy", &config(&up.url())).await;
    // Six bytes over about 2.4 s: more than timeout_secs, never silent for idle_timeout_secs.
    let pieces: Vec<(u64, &[u8])> = b"abcdef".chunks(1).map(|byte| (400, byte)).collect();
    let answer = slow_upload(gw.addr, &pieces).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"body_len\":6"), "{answer}");

    // With no idle bound (`idle_timeout_secs = 0`, for streams that stay silent), a pause of
    // the client's longer than timeout_secs is still the client's: answered, not 504.
    let unbounded = dev_config(
        &dev,
        &format!("\n[upstream]\nurl = \"{}\"\ntimeout_secs = 1\nidle_timeout_secs = 0\n", up.url()),
    );
    let quiet = Gateway::ready("proxy", &unbounded).await;
    let answer = slow_upload(quiet.addr, &[(0, b"a"), (2500, b"b")]).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"body_len\":2"), "{answer}");

    // An upstream that accepts and reads nothing: once the socket buffers are full, the body
    // waits on the upstream, not on the client.
    let deaf = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let deaf_url = format!("http://{}", deaf.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = deaf.accept().await {
            held.push(stream);
        }
    });
    let gw = Gateway::ready("proxy", &config(&deaf_url)).await;
    let answer = common::guarded(async {
        let stream = tokio::net::TcpStream::connect(gw.addr).await.expect("connect");
        let (mut read, mut write) = stream.into_split();
        let size = 64 << 20;
        tokio::spawn(async move {
            let head = format!("POST /public/up HTTP/1.1\r\nHost: a\r\nContent-Length: {size}\r\n\r\n");
            write.write_all(head.as_bytes()).await.ok();
            let chunk = vec![b'x'; 1 << 16];
            for _ in 0..size / chunk.len() {
                if write.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        });
        read_until(&mut read, |text| text.contains("\r\n\r\n")).await
    })
    .await;
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
}

// ---------------------------------------------------------------------------------------------
// Several upstreams, readiness, reload
// ---------------------------------------------------------------------------------------------

fn two_upstreams(dev: &DevIssuer, api: &Upstream, chat: &Upstream, third: &str) -> String {
    let routes = "[[routes]]\npath = \"/api/**\"\naccess = \"authenticated\"\nupstream = \"api\"\n\n\
                  [[routes]]\npath = \"/chat/**\"\naccess = \"public\"\nupstream = \"chat\"\n";
    let text = dev_config(
        dev,
        &format!(
            "[upstreams.api]\nurl = \"{}/v1\"\ntimeout_secs = 5\n\n[upstreams.chat]\nurl = \"{}\"\npool_max_idle = 2\n{third}",
            api.url(),
            chat.url()
        ),
    );
    text.replacen("[headers.claims]", &format!("{routes}\n[headers.claims]"), 1)
}

#[tokio::test]
async fn routes_name_their_upstream_and_readyz_checks_each() {
    let dev = issuer().await;
    let (api, chat) = (Upstream::start().await, Upstream::start().await);
    let down = common::closed_port_url("").await;
    let default = format!("\n[upstream]\nurl = \"{}\"\n", chat.url());
    let gw = Gateway::ready("proxy", &two_upstreams(&dev, &api, &chat, &default)).await;
    let t = token(&dev, "x");
    let r = raw_get(gw.addr, "/api/users", Some(&t), &[]).await;
    assert_eq!((r.status, r.json()["uri"].as_str()), (200, Some("/v1/api/users")));
    let r = raw_get(gw.addr, "/chat/rooms", None, &[]).await;
    assert_eq!((r.status, r.json()["uri"].as_str()), (200, Some("/chat/rooms")));
    assert_eq!((api.count(), chat.count()), (1, 1));
    // No [upstream] table: a route without a named upstream is a configuration error.
    let path = write_config(&two_upstreams(&dev, &api, &chat, ""));
    let (status, _, stderr) = run(&["proxy", "--config", path.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("proxy mode needs an [upstream] table"), "{stderr}");
    assert_config_error(
        &two_upstreams(&dev, &api, &chat, "").replace("upstream = \"chat\"", "upstream = \"nope\""),
        "no [upstreams.nope] table",
    );

    // One upstream down: not ready, and /readyz names it.
    let gw = Gateway::start(
        "proxy",
        &two_upstreams(&dev, &api, &chat, &format!("{default}\n[upstreams.gone]\nurl = \"{down}\"\n")),
    );
    wait_for_log(&gw.process, "key set loaded").await;
    let r = raw_get(gw.addr, "/readyz", None, &[]).await;
    assert_eq!((r.status, r.body.as_str()), (503, "upstream gone unreachable\n"), "{r:?}");
}

#[tokio::test]
async fn sighup_reloads_a_good_file_and_refuses_a_bad_one() {
    let dev = issuer().await;
    let upstream = Upstream::start().await;
    let first = dev_config(&dev, &upstream_table(&upstream));
    let mut gw = Gateway::ready("proxy", &first).await;
    assert_eq!(raw_get(gw.addr, "/items/1", None, &[]).await.status, 401);

    // A good file: /items/** becomes public.
    let second = first.replace("access = { all = [\"items:read\"] }", "access = \"public\"");
    assert_ne!(first, second);
    gw.reload(&second).await;
    assert_eq!(raw_get(gw.addr, "/items/1", None, &[]).await.status, 200);

    // A bad file: refused with check-config's error, and the running configuration stays.
    let bad = second.replace("audience =", "audiences =");
    std::fs::write(&gw.config, &bad).unwrap();
    let (status, _, check) = run(&["check-config", "--config", gw.config.to_str().unwrap()]);
    assert_eq!(status.code(), Some(2));
    let reason =
        check.trim().strip_prefix("tower-bearer: configuration error: ").expect("check-config's wording");
    gw.process.hangup();
    let log = wait_for_log(&gw.process, "configuration refused").await;
    let reason_in_log = reason.lines().next().unwrap();
    assert!(log.contains(reason_in_log), "the log lacks {reason_in_log:?}: {log}");
    assert_eq!(raw_get(gw.addr, "/items/1", None, &[]).await.status, 200, "the good configuration stays");
    assert!(gw.process.child.try_wait().unwrap().is_none(), "still running");
}

#[tokio::test]
async fn a_changed_file_is_reloaded_with_watch_config() {
    let dev = issuer().await;
    let upstream = Upstream::start().await;
    let first = dev_config(&dev, &upstream_table(&upstream));
    let gw = Gateway::start_with("proxy", &first, &["--watch-config"]);
    wait_for_ok(&gw.url("/readyz")).await;
    assert_eq!(raw_get(gw.addr, "/items/1", None, &[]).await.status, 401);
    // A bad file first: refused, nothing changes.
    std::fs::write(&gw.config, first.replace("[[routes]]", "[[routez]]")).unwrap();
    wait_for_log(&gw.process, "configuration refused").await;
    assert_eq!(raw_get(gw.addr, "/items/1", None, &[]).await.status, 401);
    // Then a good one. Its size differs from the bad one's, so the change is seen even within
    // the file system's timestamp resolution.
    std::fs::write(&gw.config, first.replace("access = { all = [\"items:read\"] }", "access = \"public\""))
        .unwrap();
    wait_for_log(&gw.process, "configuration reloaded (file changed)").await;
    wait_for_ok(&gw.url("/readyz")).await;
    assert_eq!(raw_get(gw.addr, "/items/1", None, &[]).await.status, 200);
}

// ---------------------------------------------------------------------------------------------
// Hostile HTTP/1.1
// ---------------------------------------------------------------------------------------------

/// Writes `bytes` and reads until the proxy closes the connection.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    common::guarded(async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.write_all(bytes).await.expect("write");
        let mut out = Vec::new();
        // A reset after the answer is as closed as a FIN.
        let _ = stream.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
}

fn status_lines(answer: &str) -> Vec<&str> {
    answer.lines().filter(|l| l.starts_with("HTTP/1.1 ")).collect()
}

#[tokio::test]
async fn smuggling_attempts_are_refused_and_never_reach_the_upstream() {
    let dev = issuer().await;
    let upstream = Upstream::start().await;
    let gw = Gateway::ready("proxy", &dev_config(&dev, &upstream_table(&upstream))).await;
    let smuggled = "GET /admin/x HTTP/1.1\r\nHost: a\r\n\r\n";
    let cases = [
        // Content-Length and Transfer-Encoding, both orders.
        format!(
            "POST /public/a HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        format!(
            "POST /public/a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        // Two different lengths.
        format!(
            "POST /public/a HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n{smuggled}"
        ),
        // A Transfer-Encoding that does not end in chunked.
        format!("POST /public/a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n{smuggled}"),
        // Obsolete line folding.
        format!(
            "POST /public/a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n{smuggled}"
        ),
    ];
    for case in &cases {
        let answer = exchange(gw.addr, case.as_bytes()).await;
        assert_eq!(status_lines(&answer), ["HTTP/1.1 400 Bad Request"], "{case:?} -> {answer}");
    }
    assert_eq!(upstream.count(), 0, "{:?}", upstream.seen.lock().unwrap());
    // An upgrade the upstream does not take leaves the guard behind (the bytes after a 101 are
    // not HTTP): the connection ends with that answer, so nothing smuggled after it is read.
    let refused_upgrade = format!("GET /public/a HTTP/1.1\r\nHost: a\r\nUpgrade: foo\r\n\r\n{}", cases[0]);
    let answer = exchange(gw.addr, refused_upgrade.as_bytes()).await;
    assert_eq!(status_lines(&answer).len(), 1, "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    assert_eq!(upstream.count(), 1, "only the upgrade request: {:?}", upstream.seen.lock().unwrap());
    // CONNECT: no tunnel is opened, and the connection ends with the refusal.
    let before = upstream.count();
    let answer = exchange(
        gw.addr,
        b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\nGET /admin/x HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    assert_eq!(status_lines(&answer), ["HTTP/1.1 405 Method Not Allowed"], "{answer}");
    assert_eq!(upstream.count(), before);
    // Only WebSocket upgrades are passed on: an `h2c` one (HTTP/2 streams to any path, which the
    // rules would never see) reaches the upstream as a plain request.
    let h2c = "GET /public/b HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n";
    let answer = exchange(gw.addr, h2c.as_bytes()).await;
    assert_eq!(status_lines(&answer), ["HTTP/1.1 200 OK"], "{answer}");
    let seen = upstream.seen.lock().unwrap().last().cloned().expect("forwarded");
    assert_eq!(seen.uri, "/public/b");
    for name in ["upgrade", "http2-settings", "connection"] {
        assert!(!seen.headers.contains_key(name), "{name} reached the upstream: {seen:?}");
    }
    // A clean request is still served.
    let ok = exchange(gw.addr, b"GET /public/a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status_lines(&ok), ["HTTP/1.1 200 OK"]);
}

#[tokio::test]
async fn slow_and_oversized_headers_are_cut_off() {
    let dev = issuer().await;
    let upstream = Upstream::start().await;
    let text = dev_config(
        &dev,
        &format!(
            "{}[listener]\nheader_read_timeout_secs = 1\nmax_header_bytes = 8192\n",
            upstream_table(&upstream)
        ),
    );
    let gw = Gateway::ready("proxy", &text).await;

    // Slowloris: a header block that never ends. The proxy closes the connection.
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    stream.write_all(b"GET /public/a HTTP/1.1\r\nHost: a\r\nX-Slow: 1\r\n").await.unwrap();
    let closed = common::guarded(async {
        let mut buf = Vec::new();
        loop {
            // Trickle a header line now and then; the deadline is for the whole block.
            let mut chunk = [0u8; 512];
            tokio::select! {
                n = stream.read(&mut chunk) => match n {
                    Ok(0) | Err(_) => return buf,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                },
                () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {
                    if stream.write_all(b"X-More: 1\r\n").await.is_err() {
                        return buf;
                    }
                }
            }
        }
    })
    .await;
    let closed = String::from_utf8_lossy(&closed);
    assert!(!closed.contains("200"), "{closed}");

    // Oversized header block: refused, never forwarded.
    let big = "x".repeat(10_000);
    let answer =
        exchange(gw.addr, format!("GET /public/a HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n").as_bytes())
            .await;
    assert_eq!(status_lines(&answer), ["HTTP/1.1 431 Request Header Fields Too Large"], "{answer}");
    assert_eq!(upstream.count(), 0);
    assert_config_error(&dev_config(&dev, "[listener]\nmax_header_bytes = 100"), "listener.max_header_bytes");
}

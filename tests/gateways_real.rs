//! End to end through real gateways: nginx (`auth_request`) and Caddy (`forward_auth`) run as
//! foreground processes on loopback with the shipped `examples/gateways/` configurations (only
//! the ports substituted), in front of an echo upstream, with `tower-bearer auth` deciding.
//!
//! Needs `nginx` and `caddy` (Debian packages of the same names; `.ci/install-gateways.sh`
//! installs them). Without them the test is skipped with a message, unless `CI` is set: then
//! they are installed, and a missing gateway is a failure, never a skip.
#![cfg(all(feature = "gateway", feature = "dev", feature = "axum"))]

mod common;
mod gateway_support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use gateway_support::*;
use tower_bearer::Algorithm;
use tower_bearer::dev::DevIssuer;

/// The gateway program, or `None` (after saying why) when the test must be skipped.
fn prerequisite(name: &str) -> Option<PathBuf> {
    if let Some(path) = find_program(name) {
        eprintln!("gateways_real: running against {}", path.display());
        return Some(path);
    }
    if std::env::var_os("CI").is_none() {
        eprintln!(
            "gateways_real: SKIPPED: `{name}` is not installed (run .ci/install-gateways.sh as root, \
             or apt-get install nginx caddy)"
        );
        return None;
    }
    let script = manifest_dir().join(".ci/install-gateways.sh");
    let status = Command::new("bash").arg(script).status();
    eprintln!("gateways_real: installing the gateways: {status:?}");
    match find_program(name) {
        Some(path) => Some(path),
        None => panic!("gateways_real: CI is set and `{name}` could not be installed"),
    }
}

/// The shipped template with our ports in place of its defaults.
fn from_template(file: &str, replacements: &[(&str, String)]) -> String {
    let mut text = std::fs::read_to_string(manifest_dir().join("examples/gateways").join(file))
        .unwrap_or_else(|e| panic!("read examples/gateways/{file}: {e}"));
    for (from, to) in replacements {
        assert!(text.contains(from), "{file} no longer contains {from}");
        text = text.replace(from, to);
    }
    text
}

fn token(dev: &DevIssuer, scope: &str) -> String {
    dev.token().subject("alice").scope(scope).claim("tenant", "acme").claim("client_id", "app-1").sign()
}

/// A gateway in front of `upstream`, asking `auth` (both on loopback).
struct Gw {
    _process: Process,
    addr: SocketAddr,
}

fn start_nginx(nginx: &PathBuf, auth: SocketAddr, upstream: SocketAddr) -> Gw {
    let port = free_port();
    let guard = temp_dir("nginx");
    let dir = guard.path();
    let conf = from_template(
        "nginx.conf",
        &[
            ("127.0.0.1:8080", format!("127.0.0.1:{port}")),
            ("127.0.0.1:9090", auth.to_string()),
            ("127.0.0.1:3000", upstream.to_string()),
        ],
    );
    let file = dir.join("nginx.conf");
    std::fs::write(&file, conf).expect("write nginx.conf");
    let mut command = Command::new(nginx);
    command.arg("-p").arg(dir).arg("-c").arg(&file).arg("-g").arg("daemon off;");
    Gw { _process: Process::spawn("nginx", command).keeping(guard), addr: ([127, 0, 0, 1], port).into() }
}

fn start_caddy(caddy: &PathBuf, auth: SocketAddr, upstream: SocketAddr) -> Gw {
    let port = free_port();
    let guard = temp_dir("caddy");
    let dir = guard.path();
    let conf = from_template(
        "Caddyfile",
        &[
            ("http://127.0.0.1:8081", format!("http://127.0.0.1:{port}")),
            ("127.0.0.1:9090", auth.to_string()),
            ("127.0.0.1:3000", upstream.to_string()),
        ],
    );
    let file = dir.join("Caddyfile");
    std::fs::write(&file, conf).expect("write the Caddyfile");
    let mut command = Command::new(caddy);
    command
        .arg("run")
        .arg("--config")
        .arg(&file)
        .arg("--adapter")
        .arg("caddyfile")
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_DATA_HOME", dir.join("data"))
        .stdout(std::process::Stdio::null());
    Gw { _process: Process::spawn("caddy", command).keeping(guard), addr: ([127, 0, 0, 1], port).into() }
}

/// Everything a client of the gateway can observe, for every case the layer distinguishes.
async fn check_gateway(name: &str, gw: SocketAddr, dev: &DevIssuer, upstream: &Upstream) {
    wait_for_port(gw).await;
    let read = token(dev, "items:read");

    // Allowed: the upstream gets our identity headers, never the client's.
    let ok = raw_get(
        gw,
        "/items/1?x=1",
        Some(&read),
        &[("X-Auth-Subject", "mallory"), ("X-Auth-Tenant", "evil"), ("X-Auth-Scopes", "admin")],
    )
    .await;
    assert_eq!(ok.status, 200, "{name}: {ok:?}");
    assert_eq!(ok.upstream_header("x-auth-subject").as_deref(), Some("alice"), "{name}");
    assert_eq!(ok.upstream_header("x-auth-client-id").as_deref(), Some("app-1"), "{name}");
    assert_eq!(ok.upstream_header("x-auth-scopes").as_deref(), Some("items:read"), "{name}");
    assert_eq!(ok.upstream_header("x-auth-tenant").as_deref(), Some("acme"), "{name}");

    // Spoofed identity on a public route (the auth answer has no identity headers at all).
    let public =
        raw_get(gw, "/public/hello", None, &[("X-Auth-Subject", "mallory"), ("X-Auth-Tenant", "evil")]).await;
    assert_eq!(public.status, 200, "{name}: {public:?}");
    // nginx drops an empty header; Caddy passes it on empty. Either way no identity.
    for header in ["x-auth-subject", "x-auth-tenant", "x-auth-client-id", "x-auth-scopes"] {
        let value = public.upstream_header(header);
        assert!(value.as_deref().is_none_or(str::is_empty), "{name}: {header} = {value:?} at the upstream");
    }

    // The RFC 6750 answers, as the layer gives them.
    let before = upstream.count();
    raw_get(gw, "/items/1", None, &[]).await.assert_challenge(401, None);
    let expired = dev.token().subject("alice").scope("items:read").expired(Duration::from_secs(600)).sign();
    let c = raw_get(gw, "/items/1", Some(&expired), &[]).await.assert_challenge(401, Some("invalid_token"));
    assert_eq!(c.get("error_description"), Some("the access token expired"), "{name}");
    let c = raw_get(gw, "/items/1", Some(&token(dev, "other")), &[])
        .await
        .assert_challenge(403, Some("insufficient_scope"));
    assert_eq!(c.get("scope"), Some("items:read"), "{name}");
    raw_get(gw, "/items/1", Some("a,b"), &[]).await.assert_challenge(400, Some("invalid_request"));

    // Path tricks: judged as /admin, which needs the admin scope.
    for sneaky in ["/public/../admin", "/%61dmin", "//admin", "/public/%2e%2e/admin"] {
        let r = raw_get(gw, sneaky, Some(&read), &[]).await;
        r.assert_challenge(403, Some("insufficient_scope"));
    }
    // The client cannot name another original request than the one it makes.
    let spoofed_target = [
        ("X-Original-URI", "/public/x"),
        ("X-Original-Method", "GET"),
        ("X-Forwarded-Uri", "/public/x"),
        ("X-Forwarded-Method", "GET"),
    ];
    raw_get(gw, "/admin", Some(&read), &spoofed_target)
        .await
        .assert_challenge(403, Some("insufficient_scope"));
    raw_get(gw, "/admin", None, &spoofed_target).await.assert_challenge(401, None);
    let refused = raw_get(gw, "/public%2F..%2Fadmin", Some(&read), &[]).await;
    assert_eq!(refused.status, 400, "{name}: {refused:?}");
    let unmatched = raw_get(gw, "/nowhere", Some(&read), &[]).await;
    assert_eq!(unmatched.status, 403, "{name}: {unmatched:?}");
    assert!(unmatched.all("www-authenticate").is_empty(), "{name}: {unmatched:?}");
    assert_eq!(upstream.count(), before, "{name}: a denied request reached the upstream");
}

async fn check_unavailable(name: &str, gw: SocketAddr, dev: &DevIssuer, upstream: &Upstream) {
    wait_for_port(gw).await;
    let r = raw_get(gw, "/items/1", Some(&token(dev, "items:read")), &[]).await;
    r.assert_unavailable();
    assert_eq!(upstream.count(), 0, "{name}");
}

/// The auth service for `dev`, and one whose keys cannot be had.
async fn auth_services(dev: &DevIssuer) -> (Gateway, Gateway) {
    let good = Gateway::start("auth", &dev_config(dev, ""));
    wait_for_ok(&good.url("/readyz")).await;
    let no_keys = common::closed_port_url("/jwks.json").await;
    let broken = Gateway::start("auth", &config(dev.issuer(), &no_keys, ""));
    (good, broken)
}

#[tokio::test]
async fn nginx_auth_request() {
    let Some(nginx) = prerequisite("nginx") else { return };
    let dev = common::dev_issuer([Algorithm::ES256]).await;
    let (good, broken) = auth_services(&dev).await;
    let upstream = Upstream::start().await;
    let gw = start_nginx(&nginx, good.addr, upstream.addr);
    check_gateway("nginx", gw.addr, &dev, &upstream).await;
    let lonely = Upstream::start().await;
    let gw = start_nginx(&nginx, broken.addr, lonely.addr);
    check_unavailable("nginx", gw.addr, &dev, &lonely).await;
}

#[tokio::test]
async fn caddy_forward_auth() {
    let Some(caddy) = prerequisite("caddy") else { return };
    let dev = common::dev_issuer([Algorithm::ES256]).await;
    let (good, broken) = auth_services(&dev).await;
    let upstream = Upstream::start().await;
    let gw = start_caddy(&caddy, good.addr, upstream.addr);
    check_gateway("caddy", gw.addr, &dev, &upstream).await;
    let lonely = Upstream::start().await;
    let gw = start_caddy(&caddy, broken.addr, lonely.addr);
    check_unavailable("caddy", gw.addr, &dev, &lonely).await;
}

// ---------------------------------------------------------------------------------------------
// Sender-constrained tokens through the gateways over HTTPS: DPoP (RFC 9449) and certificate-
// bound tokens (RFC 8705), with the shipped nginx-mtls.conf and Caddyfile-mtls.
// ---------------------------------------------------------------------------------------------

mod dpop_key;

mod bound {
    use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyPair as CertKey};

    /// A self-signed certificate: DER, and PEM with the key.
    pub struct Made {
        pub der: Vec<u8>,
        pub cert_pem: String,
        pub key_pem: String,
    }

    pub fn self_signed(name: &str, usage: ExtendedKeyUsagePurpose) -> Made {
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.extended_key_usages = vec![usage];
        let key = CertKey::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Made { der: cert.der().to_vec(), cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }

    pub fn thumbprint(der: &[u8]) -> String {
        tower_bearer::ClientCertificate::from_der(der.to_vec()).thumbprint_sha256()
    }
}

use bound::{Made, self_signed, thumbprint};
use dpop_key::DpopKey;
use rcgen::ExtendedKeyUsagePurpose;

/// Declared before the processes that read its files, so it is dropped (and its directory
/// removed) after them.
struct Tls {
    dir: PathBuf,
    _guard: tempfile::TempDir,
    server: Made,
    alice: Made,
    mallory: Made,
}

fn tls_files(tag: &str) -> Tls {
    let guard = temp_dir(tag);
    let dir = guard.path().to_owned();
    let server = self_signed("localhost", ExtendedKeyUsagePurpose::ServerAuth);
    std::fs::write(dir.join("server.pem"), &server.cert_pem).unwrap();
    std::fs::write(dir.join("server.key"), &server.key_pem).unwrap();
    let alice = self_signed("alice", ExtendedKeyUsagePurpose::ClientAuth);
    let mallory = self_signed("mallory", ExtendedKeyUsagePurpose::ClientAuth);
    Tls { dir, _guard: guard, server, alice, mallory }
}

/// `tower-bearer auth` with DPoP (nonces on, origin the gateway's, three live proofs a key) and
/// the certificate header.
fn bound_auth_service(dev: &DevIssuer, origin: &str, format: &str, dir: &std::path::Path) -> Gateway {
    let secret = dir.join("nonce-secret");
    std::fs::write(&secret, "a nonce secret of at least thirty-two bytes").unwrap();
    let extra = format!(
        "\n[dpop]\nmode = \"allowed\"\norigin = \"{origin}\"\nnonce_secret_file = \"{}\"\n\
         replay_entries = 100\nreplay_entries_per_key = 3\n\n\
         [client_certificate]\nheader = \"X-Client-Cert\"\nformat = \"{format}\"\n",
        secret.display()
    );
    Gateway::start("auth", &dev_config(dev, &extra))
}

fn https_client(tls: &Tls, gw: SocketAddr, identity: Option<&Made>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .resolve("localhost", gw)
        .tls_certs_only([reqwest::Certificate::from_pem(tls.server.cert_pem.as_bytes()).unwrap()]);
    if let Some(who) = identity {
        let pem = format!("{}{}", who.cert_pem, who.key_pem);
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

/// What a client of the HTTPS gateway sees for DPoP and certificate-bound tokens.
async fn check_bound(
    name: &str,
    gw: SocketAddr,
    tls: &Tls,
    dev: &DevIssuer,
    upstream: &Upstream,
    nonce_on_success: bool,
) {
    wait_for_port(gw).await;
    let origin = format!("https://localhost:{}", gw.port());
    let url = format!("{origin}/items/1?x=1");
    let htu = format!("{origin}/items/1");
    let anonymous = https_client(tls, gw, None);
    let status_of = |r: &reqwest::Response| r.status().as_u16();
    let challenge = |r: &reqwest::Response| {
        r.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
    };

    // DPoP: a token bound to the client's key.
    let key = DpopKey::new();
    let token =
        dev.token().subject("alice").scope("items:read").claim("cnf", json!({ "jkt": key.jkt() })).sign();
    let dpop_get = |proof: String| {
        anonymous.get(&url).header("authorization", format!("DPoP {token}")).header("dpop", proof)
    };
    // No nonce yet: 401 use_dpop_nonce, with the nonce relayed by the gateway.
    let first = dpop_get(key.proof("GET", &htu, Some(&token), None)).send().await.unwrap();
    assert_eq!(status_of(&first), 401, "{name}: {first:?}");
    assert!(challenge(&first).contains("use_dpop_nonce"), "{name}: {}", challenge(&first));
    let nonce =
        first.headers().get("dpop-nonce").unwrap_or_else(|| panic!("{name}: no DPoP-Nonce: {first:?}"));
    let nonce = nonce.to_str().unwrap().to_owned();
    // With it: 200 from the upstream.
    let proof = key.proof("GET", &htu, Some(&token), Some(&nonce));
    let ok = dpop_get(proof.clone()).send().await.unwrap();
    assert_eq!(status_of(&ok), 200, "{name}: {ok:?}");
    if nonce_on_success {
        assert!(ok.headers().get("dpop-nonce").is_some(), "{name}: a fresh nonce on success");
    }
    let body: serde_json::Value = serde_json::from_str(&ok.text().await.unwrap()).unwrap();
    assert_eq!(body["headers"]["x-auth-subject"][0], "alice", "{name}: {body}");
    let before = upstream.count();
    // The same proof again: a replay.
    let replay = dpop_get(proof).send().await.unwrap();
    assert_eq!(status_of(&replay), 401, "{name}: {replay:?}");
    assert!(challenge(&replay).contains("invalid_dpop_proof"), "{name}: {}", challenge(&replay));
    // The bound token as a bearer token.
    let bearer = anonymous.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(status_of(&bearer), 401, "{name}: {bearer:?}");
    assert!(challenge(&bearer).contains("invalid_token"), "{name}");
    // Stolen: the thief's own key signs a perfectly good proof.
    let thief = DpopKey::new();
    let stolen = dpop_get(thief.proof("GET", &htu, Some(&token), Some(&nonce))).send().await.unwrap();
    assert_eq!(status_of(&stolen), 401, "{name}: {stolen:?}");
    assert!(challenge(&stolen).contains("invalid_token"), "{name}");
    // A proof for another URI (the gateway's sub-request is not what was signed for).
    let elsewhere = dpop_get(key.proof("GET", &format!("{origin}/auth"), Some(&token), Some(&nonce)))
        .send()
        .await
        .unwrap();
    assert_eq!(status_of(&elsewhere), 401, "{name}: {elsewhere:?}");
    assert_eq!(upstream.count(), before, "{name}: a refused DPoP request reached the upstream");
    // The key's share of the replay store is three live proofs: two more pass, the next is a
    // 429 with Retry-After and no challenge, and never reaches the upstream.
    for _ in 0..2 {
        let more = dpop_get(key.proof("GET", &htu, Some(&token), Some(&nonce))).send().await.unwrap();
        assert_eq!(status_of(&more), 200, "{name}: {more:?}");
    }
    let before = upstream.count();
    let over = dpop_get(key.proof("GET", &htu, Some(&token), Some(&nonce))).send().await.unwrap();
    assert_eq!(status_of(&over), 429, "{name}: {over:?}");
    assert_eq!(over.headers().get("retry-after").map(|v| v.as_bytes()), Some(&b"5"[..]), "{name}: {over:?}");
    assert_eq!(challenge(&over), "", "{name}: a challenge on a 429");
    assert_eq!(upstream.count(), before, "{name}: a throttled DPoP request reached the upstream");

    // mTLS: a token bound to alice's certificate.
    let bound = dev
        .token()
        .subject("alice")
        .scope("items:read")
        .claim("cnf", json!({ "x5t#S256": thumbprint(&tls.alice.der) }))
        .sign();
    let alice = https_client(tls, gw, Some(&tls.alice));
    let mallory = https_client(tls, gw, Some(&tls.mallory));
    let ok = alice.get(&url).bearer_auth(&bound).send().await.unwrap();
    assert_eq!(status_of(&ok), 200, "{name}: {ok:?}");
    let body: serde_json::Value = serde_json::from_str(&ok.text().await.unwrap()).unwrap();
    assert!(
        body["headers"]["x-client-cert"].is_null(),
        "{name}: the certificate header reached the app: {body}"
    );
    let before = upstream.count();
    for (who, client) in [("mallory", &mallory), ("no certificate", &anonymous)] {
        let r = client.get(&url).bearer_auth(&bound).send().await.unwrap();
        assert_eq!(status_of(&r), 401, "{name}, {who}: {r:?}");
        assert!(challenge(&r).contains("invalid_token"), "{name}, {who}");
    }
    // A client writing the header itself: the gateway overwrites or removes it.
    let pem = format!(
        "-----BEGIN%20CERTIFICATE-----%0A{}%0A-----END%20CERTIFICATE-----%0A",
        base64::engine::general_purpose::STANDARD.encode(&tls.alice.der)
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(&tls.alice.der);
    for spoof in [pem.as_str(), b64.as_str()] {
        for client in [&anonymous, &mallory] {
            let r = client.get(&url).bearer_auth(&bound).header("x-client-cert", spoof).send().await.unwrap();
            assert_eq!(status_of(&r), 401, "{name}: a client-sent certificate header was believed: {r:?}");
        }
    }
    assert_eq!(upstream.count(), before, "{name}: a refused mTLS request reached the upstream");
    // Unbound tokens need neither.
    let plain = anonymous.get(&url).bearer_auth(token_for(dev)).send().await.unwrap();
    assert_eq!(status_of(&plain), 200, "{name}: {plain:?}");
}

fn token_for(dev: &DevIssuer) -> String {
    token(dev, "items:read")
}

use base64::Engine as _;
use serde_json::json;

#[tokio::test]
async fn nginx_https_dpop_and_client_certificates() {
    let Some(nginx) = prerequisite("nginx") else { return };
    let dev = common::dev_issuer([Algorithm::ES256]).await;
    let tls = tls_files("nginx-mtls");
    let port = free_port();
    let auth = bound_auth_service(&dev, &format!("https://localhost:{port}"), "escaped-pem", &tls.dir);
    wait_for_ok(&auth.url("/readyz")).await;
    let upstream = Upstream::start().await;
    let conf = from_template(
        "nginx-mtls.conf",
        &[
            ("127.0.0.1:8443", format!("127.0.0.1:{port}")),
            ("127.0.0.1:9090", auth.addr.to_string()),
            ("127.0.0.1:3000", upstream.addr.to_string()),
        ],
    );
    let file = tls.dir.join("nginx.conf");
    std::fs::write(&file, conf).unwrap();
    let mut command = Command::new(&nginx);
    command.arg("-p").arg(&tls.dir).arg("-c").arg(&file).arg("-g").arg("daemon off;");
    let _nginx = Process::spawn("nginx", command);
    check_bound("nginx", ([127, 0, 0, 1], port).into(), &tls, &dev, &upstream, true).await;
}

#[tokio::test]
async fn caddy_https_dpop_and_client_certificates() {
    let Some(caddy) = prerequisite("caddy") else { return };
    let dev = common::dev_issuer([Algorithm::ES256]).await;
    let tls = tls_files("caddy-mtls");
    let port = free_port();
    let auth = bound_auth_service(&dev, &format!("https://localhost:{port}"), "der-base64", &tls.dir);
    wait_for_ok(&auth.url("/readyz")).await;
    let upstream = Upstream::start().await;
    let conf = from_template(
        "Caddyfile-mtls",
        &[
            ("https://localhost:8444", format!("https://localhost:{port}")),
            ("tls server.pem server.key", format!("tls {0}/server.pem {0}/server.key", tls.dir.display())),
            ("127.0.0.1:9090", auth.addr.to_string()),
            ("127.0.0.1:3000", upstream.addr.to_string()),
        ],
    );
    let file = tls.dir.join("Caddyfile");
    std::fs::write(&file, conf).unwrap();
    let mut command = Command::new(&caddy);
    command
        .arg("run")
        .arg("--config")
        .arg(&file)
        .arg("--adapter")
        .arg("caddyfile")
        .env("HOME", &tls.dir)
        .env("XDG_CONFIG_HOME", tls.dir.join("config"))
        .env("XDG_DATA_HOME", tls.dir.join("data"))
        .stdout(std::process::Stdio::null());
    let _caddy = Process::spawn("caddy", command);
    check_bound("caddy", ([127, 0, 0, 1], port).into(), &tls, &dev, &upstream, false).await;
}

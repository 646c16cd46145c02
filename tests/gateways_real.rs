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
    let dir = temp_dir("nginx");
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
    command.arg("-p").arg(&dir).arg("-c").arg(&file).arg("-g").arg("daemon off;");
    Gw { _process: Process::spawn("nginx", command), addr: ([127, 0, 0, 1], port).into() }
}

fn start_caddy(caddy: &PathBuf, auth: SocketAddr, upstream: SocketAddr) -> Gw {
    let port = free_port();
    let dir = temp_dir("caddy");
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
        .env("HOME", &dir)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_DATA_HOME", dir.join("data"))
        .stdout(std::process::Stdio::null());
    Gw { _process: Process::spawn("caddy", command), addr: ([127, 0, 0, 1], port).into() }
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

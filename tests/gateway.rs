//! The `tower-bearer` binary over real HTTP on loopback: configuration errors, the forward-auth
//! service (nginx, Traefik/Caddy and Envoy styles) and the verifying proxy in front of a real
//! upstream. Tokens come from an in-process `DevIssuer`.
#![cfg(all(feature = "gateway", feature = "dev", feature = "axum"))]

mod common;
mod dpop_key;
mod gateway_support;

use std::time::Duration;

use gateway_support::*;
use serde_json::json;
use tower_bearer::Algorithm;
use tower_bearer::dev::DevIssuer;

async fn issuer() -> DevIssuer {
    common::dev_issuer([Algorithm::ES256]).await
}

fn token(dev: &DevIssuer, scope: &str) -> String {
    dev.token().subject("alice").scope(scope).claim("tenant", "acme").claim("client_id", "app-1").sign()
}

// ---------------------------------------------------------------------------------------------
// Configuration errors
// ---------------------------------------------------------------------------------------------

const GOOD: &str = r#"
[[issuers]]
issuer = "https://as.example"
audience = "https://api.example"
jwks_url = "https://as.example/jwks.json"

[[routes]]
path = "/items/**"
access = { all = ["items:read"] }
"#;

#[track_caller]
fn assert_config_error(text: &str, needles: &[&str]) {
    let path = write_config(text);
    let (status, _, stderr) = run(&["check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(status.code(), Some(2), "exit code for {text}\n{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "stderr lacks {needle:?}: {stderr}");
    }
}

#[test]
fn config_errors_name_the_problem() {
    let path = write_config(GOOD);
    let (status, stdout, stderr) = run(&["check-config", "-c", path.to_str().unwrap()]);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains(": ok") && stdout.contains("route * /items/**"), "{stdout}");

    // The shipped example is valid.
    let example = manifest_dir().join("examples/gateways/tower-bearer.toml");
    let (status, stdout, stderr) = run(&["check-config", "-c", example.to_str().unwrap()]);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("route * /admin/** -> any of admin, ops"), "{stdout}");

    // Unknown key: toml's message names it, with the line.
    assert_config_error(&GOOD.replace("audience =", "audiance = \"x\"\naudience ="), &["audiance", "line 4"]);
    // Bad URL.
    assert_config_error(
        &GOOD.replace("https://as.example/jwks.json", "as.example/jwks.json"),
        &["issuers[0].jwks_url", "invalid URL", ":5:"],
    );
    assert_config_error(&GOOD.replace("https://as.example\"", "ftp://as.example\""), &["issuers[0].issuer"]);
    // Missing audience.
    assert_config_error(
        &GOOD.replace("audience = \"https://api.example\"", ""),
        &["missing field `audience`"],
    );
    // Duplicate route.
    let dup = format!("{GOOD}\n[[routes]]\nmethod = \"*\"\npath = \"/items/**\"\naccess = \"public\"\n");
    assert_config_error(&dup, &["routes[1].path", "duplicate route", "routes[0]"]);
    // Unnormalised pattern, unknown access, no routes, no issuers.
    assert_config_error(&GOOD.replace("/items/**", "/a/../items"), &["routes[0].path", "normal form"]);
    assert_config_error(
        &GOOD.replace("{ all = [\"items:read\"] }", "\"everyone\""),
        &["unknown access `everyone`"],
    );
    assert_config_error(&GOOD[..GOOD.find("[[routes]]").unwrap()], &["routes"]);
    // A key that would do nothing: upstream pings are HTTP/2's.
    let pings = format!("{GOOD}\n[upstream]\nurl = \"http://127.0.0.1:1\"\nhttp2_keep_alive_secs = 300\n");
    assert_config_error(&pings, &["http2_keep_alive_secs", "only with http2 = true"]);
    // Secrets: from env or file only, and they must exist.
    let intro = format!(
        "{GOOD}\n[issuers.introspection]\nclient_id = \"api\"\nclient_secret_env = \"TOWER_BEARER_TEST_UNSET_SECRET\"\n"
    )
    .replace("[[routes]]\npath = \"/items/**\"\naccess = { all = [\"items:read\"] }\n", "");
    let intro = format!("{intro}\n[[routes]]\npath = \"/items/**\"\naccess = \"authenticated\"\n");
    assert_config_error(
        &intro,
        &["issuers[0].introspection.client_secret_env", "TOWER_BEARER_TEST_UNSET_SECRET"],
    );
    assert_config_error(
        &intro
            .replace("client_secret_env = \"TOWER_BEARER_TEST_UNSET_SECRET\"", "client_secret = \"s3cret\""),
        &["client_secret"],
    );

    // Missing file; proxy without [upstream]; bad usage.
    let (status, _, stderr) = run(&["check-config", "-c", "/nonexistent/tower-bearer.toml"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/tower-bearer.toml"), "{stderr}");
    let (status, _, stderr) = run(&["proxy", "-c", path.to_str().unwrap()]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("[upstream]"), "{stderr}");
    let (status, _, stderr) = run(&["serve"]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("serve") && stderr.contains("--help"), "{stderr}");
    let (status, stdout, _) = run(&["--help"]);
    assert!(status.success());
    for word in ["auth", "proxy", "check-config", "--config", "/readyz"] {
        assert!(stdout.contains(word), "--help lacks {word}");
    }
}

// ---------------------------------------------------------------------------------------------
// auth mode
// ---------------------------------------------------------------------------------------------

/// An nginx-style sub-request for `GET target`.
async fn nginx_style(gw: &Gateway, target: &str, token: Option<&str>) -> Raw {
    raw_get(gw.addr, "/auth", token, &[("X-Original-Method", "GET"), ("X-Original-URI", target)]).await
}

#[tokio::test]
async fn auth_mode_answers_like_the_layer() {
    let dev = issuer().await;
    let gw = Gateway::ready("auth", &dev_config(&dev, "[auth]\npath_prefix = \"/ext_authz\"")).await;
    let read = token(&dev, "items:read");

    // Allowed: 200 and identity headers.
    let ok = nginx_style(&gw, "/items/1?x=1", Some(&read)).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.header("x-auth-subject"), Some("alice"));
    assert_eq!(ok.header("x-auth-client-id"), Some("app-1"));
    assert_eq!(ok.header("x-auth-scopes"), Some("items:read"));
    assert_eq!(ok.header("x-auth-tenant"), Some("acme"));

    // Traefik / Caddy headers.
    let fwd = raw_get(
        gw.addr,
        "/",
        Some(&read),
        &[
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Uri", "/items/2"),
            ("X-Forwarded-Host", "api.example"),
        ],
    )
    .await;
    assert_eq!(fwd.status, 200, "{fwd:?}");
    assert_eq!(fwd.header("x-auth-subject"), Some("alice"));
    let post = raw_get(
        gw.addr,
        "/",
        Some(&read),
        &[("X-Forwarded-Method", "POST"), ("X-Forwarded-Uri", "/items/2")],
    )
    .await;
    assert_eq!(post.status, 403, "no rule for POST /items: {post:?}");

    // Envoy ext_authz: original method, original path after the prefix.
    let envoy = raw_get(gw.addr, "/ext_authz/items/3?q=1", Some(&read), &[]).await;
    assert_eq!(envoy.status, 200, "{envoy:?}");
    let envoy_deny = raw_request(gw.addr, "DELETE", "/ext_authz/items/3", &[]).await;
    assert_eq!(envoy_deny.status, 403, "{envoy_deny:?}");
    assert!(envoy_deny.all("www-authenticate").is_empty(), "unmatched route: plain 403");

    // The gateway's word only: conflicting or repeated original-request headers are refused,
    // and Envoy's sub-request path beats any header.
    let conflict = raw_get(
        gw.addr,
        "/auth",
        Some(&read),
        &[
            ("X-Original-Method", "GET"),
            ("X-Original-URI", "/admin"),
            ("X-Forwarded-Uri", "/public/x"),
            ("X-Forwarded-Method", "GET"),
        ],
    )
    .await;
    assert_eq!(conflict.status, 400, "{conflict:?}");
    wait_for_log(&gw.process, "conflicting_original_headers").await;
    let twice =
        raw_get(gw.addr, "/auth", None, &[("X-Forwarded-Uri", "/admin"), ("X-Forwarded-Uri", "/public/x")])
            .await;
    assert_eq!(twice.status, 400, "{twice:?}");
    let envoy_wins =
        raw_get(gw.addr, "/ext_authz/admin", Some(&read), &[("X-Original-URI", "/public/x")]).await;
    envoy_wins.assert_challenge(403, Some("insufficient_scope"));

    // No original request at all; or its URI without its method, which is not taken as `GET`
    // (a `DELETE` would pass on the rule for reads).
    assert_eq!(raw_get(gw.addr, "/auth", Some(&read), &[]).await.status, 400);
    for half in [[("X-Original-URI", "/items/1")], [("X-Forwarded-Uri", "/items/1")]] {
        let r = raw_get(gw.addr, "/auth", Some(&read), &half).await;
        assert_eq!(r.status, 400, "{half:?}: {r:?}");
    }
    wait_for_log(&gw.process, "no_original_method").await;

    // The RFC 6750 answers.
    nginx_style(&gw, "/items/1", None).await.assert_challenge(401, None);
    let expired = dev.token().subject("alice").scope("items:read").expired(Duration::from_secs(600)).sign();
    let c = nginx_style(&gw, "/items/1", Some(&expired)).await.assert_challenge(401, Some("invalid_token"));
    assert_eq!(c.get("error_description"), Some("the access token expired"));
    let c = nginx_style(&gw, "/items/1", Some(&token(&dev, "other")))
        .await
        .assert_challenge(403, Some("insufficient_scope"));
    assert_eq!(c.get("scope"), Some("items:read"));
    nginx_style(&gw, "/items/1", Some("a,b")).await.assert_challenge(400, Some("invalid_request"));

    // nginx mode: every denial is a 403 carrying the real status in X-Auth-Status.
    let nginx = raw_get(
        gw.addr,
        "/auth",
        Some("a,b"),
        &[("X-Original-Method", "GET"), ("X-Original-URI", "/items/1"), ("X-Auth-Request-Mode", "nginx")],
    )
    .await;
    assert_eq!(nginx.status, 403);
    assert_eq!(nginx.header("x-auth-status"), Some("400"));
    assert!(nginx.header("www-authenticate").unwrap().contains("invalid_request"));

    // Public and unmatched routes.
    let public = nginx_style(&gw, "/public/x", None).await;
    assert_eq!(public.status, 200);
    assert_eq!(public.header("x-auth-subject"), Some(""), "identity headers are sent empty");
    let unmatched = nginx_style(&gw, "/nowhere", Some(&read)).await;
    assert_eq!(unmatched.status, 403);
    assert!(unmatched.all("www-authenticate").is_empty());

    // Path tricks are judged on the normalised path: `/admin` needs the `admin` scope.
    for sneaky in [
        "/public/../admin",
        "/%61dmin",
        "//admin",
        "/public/%2e%2e/admin",
        "/public/./../admin/",
        "/admin/x/..",
    ] {
        let r = nginx_style(&gw, sneaky, Some(&read)).await;
        r.assert_challenge(403, Some("insufficient_scope"));
        nginx_style(&gw, sneaky, None).await.assert_challenge(401, None);
    }
    // `;parameters` too: servlet containers route `/admin;x/users` as `/admin/users`.
    for refused in
        ["/public%2F..%2Fadmin", "/public/..;/admin", "/public/%00", "/public\\..\\admin", "/admin;x/users"]
    {
        let r = nginx_style(&gw, refused, Some(&read)).await;
        assert_eq!(r.status, 400, "{refused}: {r:?}");
        assert!(r.all("www-authenticate").is_empty());
    }
    let admin = token(&dev, "admin");
    assert_eq!(nginx_style(&gw, "/public/../admin", Some(&admin)).await.status, 200);

    // Health.
    assert_eq!(raw_get(gw.addr, "/healthz", None, &[]).await.status, 200);
}

#[tokio::test]
async fn json_logs_carry_the_decision_never_the_token() {
    let dev = issuer().await;
    let gw = Gateway::start_with("auth", &dev_config(&dev, ""), &["--log-format", "json"]);
    wait_for_ok(&gw.url("/readyz")).await;
    let good = token(&dev, "items:read");
    let expired = dev.token().subject("alice").scope("items:read").expired(Duration::from_secs(600)).sign();
    assert_eq!(nginx_style(&gw, "/items/1", Some(&good)).await.status, 200);
    assert_eq!(nginx_style(&gw, "//items/./1", Some(&expired)).await.status, 401);
    assert_eq!(nginx_style(&gw, "/admin", Some(&good)).await.status, 403);
    assert_eq!(nginx_style(&gw, "/a%2Fb", Some(&good)).await.status, 400);
    let logs = wait_for_log(&gw.process, "path_encoded_slash").await;
    let mut reasons = Vec::new();
    for line in logs.lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        if event["message"] == "request answered" {
            reasons.push((event["status"].as_u64().unwrap(), event["reason"].as_str().unwrap().to_owned()));
            if event["reason"] == "expired" {
                // The request judged, not the sub-request: original method, normalised path, rule.
                assert_eq!(
                    (&event["method"], &event["path"], &event["rule"]),
                    (&json!("GET"), &json!("/items/1"), &json!(1))
                );
            }
        }
    }
    for expected in
        [(200, "valid"), (401, "expired"), (403, "insufficient_scope"), (400, "path_encoded_slash")]
    {
        assert!(reasons.contains(&(expected.0, expected.1.to_owned())), "{expected:?} not in {reasons:?}");
    }
    for secret in [&good, &expired] {
        let signature = secret.rsplit('.').next().unwrap();
        assert!(!logs.contains(signature), "a token reached the logs");
    }
}

#[tokio::test]
async fn readyz_waits_for_the_keys() {
    let dev = issuer().await;
    dev.set_jwks_failing(true);
    let gw = Gateway::start("auth", &dev_config(&dev, ""));
    let read = token(&dev, "items:read");
    assert_eq!(raw_get(gw.addr, "/readyz", None, &[]).await.status, 503);
    nginx_style(&gw, "/items/1", Some(&read)).await.assert_unavailable();
    dev.set_jwks_failing(false);
    wait_for_ok(&gw.url("/readyz")).await;
    assert_eq!(nginx_style(&gw, "/items/1", Some(&read)).await.status, 200);
}

#[tokio::test]
async fn opaque_tokens_are_introspected() {
    use tower_bearer::dev::{RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET};
    let dev = issuer().await;
    let secret = TempFile::write("secret", "client_secret", format!("{RESOURCE_CLIENT_SECRET}\n"));
    let introspection = format!(
        "algorithms = [\"ES256\"]\n[issuers.introspection]\nendpoint = \"{}\"\nclient_id = \"{RESOURCE_CLIENT_ID}\"\nclient_secret_file = \"{}\"\n",
        dev.introspection_url(),
        secret.display()
    );
    let text = dev_config(&dev, "").replacen("algorithms = [\"ES256\"]\n", &introspection, 1);
    let gw = Gateway::ready("auth", &text).await;

    let opaque = dev.opaque_token().subject("bob").scope("items:read").claim("tenant", "acme").issue();
    let ok = nginx_style(&gw, "/items/1", Some(&opaque)).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.header("x-auth-subject"), Some("bob"));
    assert_eq!(ok.header("x-auth-tenant"), Some("acme"));
    assert!(dev.introspection_calls() >= 1);
    // JWTs are still verified locally, unknown opaque tokens refused.
    assert_eq!(nginx_style(&gw, "/items/1", Some(&token(&dev, "items:read"))).await.status, 200);
    nginx_style(&gw, "/items/1", Some("not-a-token-we-issued"))
        .await
        .assert_challenge(401, Some("invalid_token"));
    // The introspection endpoint down: ours, 503.
    dev.set_introspection_failing(true);
    let fresh = dev.opaque_token().subject("carol").scope("items:read").issue();
    nginx_style(&gw, "/items/1", Some(&fresh)).await.assert_unavailable();
}

// ---------------------------------------------------------------------------------------------
// proxy mode
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn proxy_mode_forwards_with_identity_and_answers_like_the_layer() {
    let dev = issuer().await;
    let upstream = Upstream::start().await;
    let gw = Gateway::ready("proxy", &dev_config(&dev, &format!("[upstream]\nurl = \"{}\"", upstream.url())))
        .await;
    let read = token(&dev, "items:read");

    // Allowed, with spoofed identity headers and a header named in Connection.
    let ok = raw_get(
        gw.addr,
        "/items//a/./b/../c?x=1&y=%2F",
        Some(&read),
        &[
            ("X-Auth-Subject", "mallory"),
            ("x-auth-scopes", "admin"),
            ("X-Auth-Tenant", "evil"),
            ("X-Auth-Anything", "evil"),
            ("X-Drop-Me", "1"),
            // Naming identity headers in `Connection` does not take the identity away.
            ("Connection", "close, X-Drop-Me, X-Auth-Subject, x-auth-scopes"),
            ("Keep-Alive", "timeout=1"),
            ("Proxy-Authorization", "Basic eDp5"),
        ],
    )
    .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.header("x-upstream"), Some("yes"));
    assert_eq!(ok.header("keep-alive"), None, "hop-by-hop from the upstream");
    let json = ok.json();
    assert_eq!(json["uri"], "/items/a/c?x=1&y=%2F", "the upstream gets the path that was judged");
    assert_eq!(ok.upstream_header("x-auth-subject").as_deref(), Some("alice"));
    assert_eq!(ok.upstream_header("x-auth-scopes").as_deref(), Some("items:read"));
    assert_eq!(ok.upstream_header("x-auth-tenant").as_deref(), Some("acme"));
    assert_eq!(ok.upstream_header("x-auth-client-id").as_deref(), Some("app-1"));
    for gone in ["x-auth-anything", "x-drop-me", "keep-alive", "proxy-authorization"] {
        assert_eq!(ok.upstream_header(gone), None, "{gone} reached the upstream: {json}");
    }
    assert!(ok.upstream_header("authorization").is_some(), "the token is passed on");

    // Rejections never reach the upstream.
    let before = upstream.count();
    raw_get(gw.addr, "/items/1", None, &[("X-Auth-Subject", "mallory")]).await.assert_challenge(401, None);
    let expired = dev.token().subject("alice").scope("items:read").expired(Duration::from_secs(600)).sign();
    let c =
        raw_get(gw.addr, "/items/1", Some(&expired), &[]).await.assert_challenge(401, Some("invalid_token"));
    assert_eq!(c.get("error_description"), Some("the access token expired"));
    let c = raw_get(gw.addr, "/items/1", Some(&token(&dev, "x")), &[])
        .await
        .assert_challenge(403, Some("insufficient_scope"));
    assert_eq!(c.get("scope"), Some("items:read"));
    raw_get(gw.addr, "/items/1", Some("a,b"), &[]).await.assert_challenge(400, Some("invalid_request"));
    for sneaky in ["/public/../admin", "/%61dmin", "//admin", "/public/%2E%2E/admin/x", "/PUBLIC/../admin"] {
        raw_get(gw.addr, sneaky, Some(&read), &[]).await.assert_challenge(403, Some("insufficient_scope"));
    }
    for refused in
        ["/public%2F..%2Fadmin", "/public/..;/admin", "/public/%00", "/admin;x/users", "/public;v=1"]
    {
        assert_eq!(raw_get(gw.addr, refused, Some(&read), &[]).await.status, 400, "{refused}");
    }
    assert_eq!(raw_get(gw.addr, "/unlisted", Some(&read), &[]).await.status, 403);
    assert_eq!(upstream.count(), before, "a rejected request reached the upstream");

    // An identity header named like a forwarding one (oauth2-proxy's convention) survives the
    // removal of an untrusted client's forwarding claims; the client's own value does not.
    let text =
        format!("[upstream]\nurl = \"{}\"\n\n[headers]\nsubject = \"X-Forwarded-User\"\n", upstream.url());
    let named = Gateway::ready("proxy", &dev_config(&dev, &text)).await;
    let r = raw_get(named.addr, "/items/1", Some(&read), &[("X-Forwarded-User", "mallory")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.upstream_header("x-forwarded-user").as_deref(), Some("alice"));

    // Public: no token needed, spoofed identity still stripped.
    let public = raw_get(gw.addr, "/public/a%2db", None, &[("X-Auth-Subject", "mallory")]).await;
    assert_eq!(public.status, 200, "{public:?}");
    assert_eq!(public.json()["uri"], "/public/a-b");
    assert_eq!(public.upstream_header("x-auth-subject"), None);

    // A 20 MB body, streamed through intact.
    let body: Vec<u8> = (0..20 * 1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    let expected = hex(&<sha2::Sha256 as sha2::Digest>::digest(&body));
    let res =
        common::client().post(gw.url("/upload")).bearer_auth(&read).body(body).send().await.expect("upload");
    assert_eq!(res.status(), 200);
    let echoed: serde_json::Value = serde_json::from_str(&res.text().await.expect("body")).expect("json");
    assert_eq!(echoed["body_len"], json!(20 * 1024 * 1024));
    assert_eq!(echoed["body_sha256"], json!(expected));
}

#[tokio::test]
async fn proxy_mode_failures_are_ours() {
    let dev = issuer().await;
    // Upstream down: 502, not 401.
    let down = common::closed_port_url("").await;
    let gw = Gateway::start("proxy", &dev_config(&dev, &format!("[upstream]\nurl = \"{down}\"")));
    wait_for_log(&gw.process, "key set loaded").await;
    // Not ready while the upstream is down, and /readyz says why.
    let ready = raw_get(gw.addr, "/readyz", None, &[]).await;
    assert_eq!((ready.status, ready.body.as_str()), (503, "upstream default unreachable\n"), "{ready:?}");
    let r = raw_get(gw.addr, "/items/1", Some(&token(&dev, "items:read")), &[]).await;
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.all("www-authenticate").is_empty());
    assert_eq!(raw_get(gw.addr, "/public/x", None, &[]).await.status, 502);

    // Keys cannot be had: 503 without a challenge, and not ready.
    let upstream = Upstream::start().await;
    let no_keys = common::closed_port_url("/jwks.json").await;
    let text = config(dev.issuer(), &no_keys, &format!("[upstream]\nurl = \"{}\"", upstream.url()));
    let gw = Gateway::start("proxy", &text);
    raw_get(gw.addr, "/items/1", Some(&token(&dev, "items:read")), &[]).await.assert_unavailable();
    assert_eq!(raw_get(gw.addr, "/readyz", None, &[]).await.status, 503);
    assert_eq!(raw_get(gw.addr, "/healthz", None, &[]).await.status, 200);
    assert_eq!(upstream.count(), 0);

    // An upstream that does not answer in time: 504.
    let slow = Upstream::start().await;
    let text = dev_config(&dev, &format!("[upstream]\nurl = \"{}\"\ntimeout_secs = 1", slow.url()));
    let gw = Gateway::start("proxy", &text);
    let r = raw_get(gw.addr, "/slow", None, &[]).await;
    assert_eq!(r.status, 504, "{r:?}");
    slow.slow_release.notify_one();
}

/// Reads from `stream` into `got` until it holds `needle`.
async fn read_until(stream: &mut tokio::net::TcpStream, got: &mut Vec<u8>, needle: &str) {
    use tokio::io::AsyncReadExt;
    common::guarded(async {
        while !String::from_utf8_lossy(got).contains(needle) {
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "connection closed before {needle:?}: {}", String::from_utf8_lossy(got));
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
}

#[tokio::test]
async fn proxy_mode_streams_both_ways() {
    use tokio::io::AsyncWriteExt;
    let dev = issuer().await;
    let upstream = Upstream::start().await;
    let gw = Gateway::start("proxy", &dev_config(&dev, &format!("[upstream]\nurl = \"{}\"", upstream.url())));
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.expect("connect");
    let head = "POST /public/stream HTTP/1.1\r\nHost: api.example\r\nTransfer-Encoding: chunked\r\n\r\n";
    stream.write_all(format!("{head}3\r\nabc\r\n").as_bytes()).await.expect("write");
    // The upstream has the first chunk while the client has not finished its body...
    common::guarded(upstream.slow_entered.notified()).await;
    // ...and the client has the first chunk of the answer while the upstream holds the rest.
    let mut got = Vec::new();
    read_until(&mut stream, &mut got, "hello ").await;
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
    assert!(!String::from_utf8_lossy(&got).contains("world"));
    upstream.slow_release.notify_one();
    stream.write_all(b"0\r\n\r\n").await.expect("write");
    read_until(&mut stream, &mut got, "world").await;
}

#[tokio::test]
async fn sigterm_lets_requests_in_flight_finish() {
    let dev = issuer().await;
    let upstream = Upstream::start().await;
    let mut gw =
        Gateway::start("proxy", &dev_config(&dev, &format!("[upstream]\nurl = \"{}\"", upstream.url())));
    let addr = gw.addr;
    let in_flight = tokio::spawn(async move { raw_get(addr, "/slow", None, &[]).await });
    common::guarded(upstream.slow_entered.notified()).await;
    gw.process.terminate();
    // New connections are refused once the listener is closed...
    common::wait_until_refused(addr).await;
    // ...while the request in flight is still answered.
    upstream.slow_release.notify_one();
    let res = common::guarded(in_flight).await.expect("request task");
    assert_eq!(res.status, 200, "{res:?}");
    let status = tokio::task::spawn_blocking(move || gw.process.wait()).await.expect("wait");
    assert!(status.success(), "exit status {status:?}");
}

/// A token for alice bound to `key` (`cnf.jkt`), to be sent with `DPoP` proofs.
fn dpop_bound_token(dev: &DevIssuer, key: &dpop_key::DpopKey) -> String {
    dev.token().subject("alice").scope("items:read").claim("cnf", json!({ "jkt": key.jkt() })).sign()
}

/// A proxy gateway's configuration: the upstream, and `[dpop]` with its origin and `more`.
fn dpop_proxy_config(dev: &DevIssuer, upstream: &Upstream, more: &str) -> String {
    let dpop = format!("[dpop]\norigin = \"https://api.example\"\n{more}");
    dev_config(dev, &format!("[upstream]\nurl = \"{}\"\n\n{dpop}", upstream.url()))
}

/// A client of the DPoP proxy: a proof key, and alice's token bound to it.
struct DpopClient {
    http: reqwest::Client,
    key: dpop_key::DpopKey,
    token: String,
}

impl DpopClient {
    fn new(dev: &DevIssuer) -> Self {
        let key = dpop_key::DpopKey::new();
        let token = dpop_bound_token(dev, &key);
        DpopClient { http: common::client(), key, token }
    }

    /// A fresh proof for `GET /items/1` at the configured public origin.
    fn proof(&self) -> String {
        self.key.proof("GET", "https://api.example/items/1", Some(&self.token), None)
    }

    /// `GET /items/1` through `gw` under the `DPoP` scheme, with `proof`.
    async fn send(&self, gw: &Gateway, proof: String) -> common::Reply {
        let request = self.http.get(gw.url("/items/1"));
        common::send(request.header("authorization", format!("DPoP {}", self.token)).header("dpop", proof))
            .await
    }
}

/// A reload with other `[dpop]` replay bounds keeps the proofs recorded: one used before the
/// `SIGHUP` is still a replay after it (a new, empty store would let it through once more), and
/// the new bounds are in force once the file runs, not when a refused one was read.
#[tokio::test]
async fn a_proof_stays_a_replay_across_a_reload_with_new_bounds() {
    let dev = issuer().await;
    let upstream = Upstream::start().await;
    let config = |entries: u32| {
        // One proof key here: its share is the whole store.
        let bounds = format!("replay_entries = {entries}\nreplay_entries_per_key = {entries}\n");
        dpop_proxy_config(&dev, &upstream, &bounds)
    };
    let gw = Gateway::ready("proxy", &config(3)).await;
    let client = DpopClient::new(&dev);
    let send = |proof: String| client.send(&gw, proof);
    let used = client.proof();
    assert_eq!(send(used.clone()).await.status, http::StatusCode::OK);

    // A file with a bound of 1, refused for a table checked after `[dpop]` was read: the running
    // bound (3) stays, so a second proof is taken (under a bound of 1 it would get 503).
    let refused =
        format!("{}\n[client_certificate]\nheader = \"X-Client-Cert\"\nformat = \"nope\"\n", config(1));
    std::fs::write(&gw.config, refused).unwrap();
    gw.process.hangup();
    wait_for_log(&gw.process, "configuration refused").await;
    assert_eq!(send(client.proof()).await.status, http::StatusCode::OK);

    // A good file with a bound of 2: the proof from before the reloads is still a replay, and
    // the two entries live are the bound (under the old 3, a third proof would be taken).
    gw.reload(&config(2)).await;
    let r = send(used).await;
    assert_eq!(r.status, http::StatusCode::UNAUTHORIZED, "{r:?}");
    let challenge = r.headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("the DPoP proof was used before"), "a replay, not another fault: {r:?}");
    let r = send(client.proof()).await;
    assert_eq!(r.status, http::StatusCode::SERVICE_UNAVAILABLE, "{r:?}");
    wait_for_log(&gw.process, "dpop_replay_store_full").await;
}

/// A reload that widens `iat_window_secs` does not take again a proof the narrow window accepted,
/// though the store forgot it when that window ended (a later proof's recording drops it).
#[tokio::test]
async fn a_proof_stays_refused_across_a_reload_widening_its_window() {
    let dev = issuer().await;
    let upstream = Upstream::start().await;
    let config = |window: u32| dpop_proxy_config(&dev, &upstream, &format!("iat_window_secs = {window}\n"));
    let gw = Gateway::ready("proxy", &config(2)).await;
    let client = DpopClient::new(&dev);
    let send = |proof: String| client.send(&gw, proof);
    let used = client.proof();
    let issued = std::time::Instant::now();
    assert_eq!(send(used.clone()).await.status, http::StatusCode::OK);
    // Past the end of the narrow window (its `iat` second, + 2, + 1) with a second to spare,
    // another proof is recorded: the store drops the first one's entry, which has ended.
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(issued.elapsed())).await;
    assert_eq!(send(client.proof()).await.status, http::StatusCode::OK);

    gw.reload(&config(600)).await;
    // Ten minutes would take its `iat`, and the store has no entry for it.
    let r = send(used).await;
    assert_eq!(r.status, http::StatusCode::UNAUTHORIZED, "{r:?}");
    let challenge = r.headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("invalid_dpop_proof"), "{r:?}");
    wait_for_log(&gw.process, "dpop_stale").await;
    // A fresh proof has the whole new window.
    assert_eq!(send(client.proof()).await.status, http::StatusCode::OK);
}

#[tokio::test]
async fn proxy_mode_checks_dpop_proofs_and_forwarded_certificates() {
    use base64::Engine;
    let dev = issuer().await;
    let upstream = Upstream::start().await;
    // The certificate header is believed from trusted front proxies only (this test's client).
    let config = |trusted: &str| {
        format!(
            "[upstream]\nurl = \"{}\"\n\n[dpop]\norigin = \"https://api.example\"\n\n\
             [client_certificate]\nheader = \"X-Client-Cert\"\nformat = \"der-base64\"\n\n\
             [forwarded]\ntrusted_proxies = [{trusted}]\n",
            upstream.url()
        )
    };
    let gw = Gateway::ready("proxy", &dev_config(&dev, &config("\"127.0.0.1\""))).await;
    let http = common::client();
    let key = dpop_key::DpopKey::new();
    let token = dpop_bound_token(&dev, &key);
    // htu is the configured public origin + the path the client called.
    let htu = "https://api.example/items/1";
    let dpop = |proof: String| {
        http.get(gw.url("/items/1?q=1"))
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof)
    };
    let proof = key.proof("GET", htu, Some(&token), None);
    let ok = common::send(dpop(proof.clone())).await;
    assert_eq!(ok.status, http::StatusCode::OK, "{ok:?}");
    assert_eq!(ok.json()["headers"]["x-auth-subject"][0], "alice");
    let r = common::send(dpop(proof)).await;
    assert_eq!(r.status, http::StatusCode::UNAUTHORIZED, "{r:?}");
    assert!(r.headers["www-authenticate"].to_str().unwrap().contains("invalid_dpop_proof"), "{r:?}");
    let elsewhere = key.proof("GET", "https://other.example/items/1", Some(&token), None);
    let r = common::send(dpop(elsewhere)).await;
    assert_eq!(r.status, http::StatusCode::UNAUTHORIZED, "{r:?}");
    assert!(r.headers["www-authenticate"].to_str().unwrap().contains("invalid_dpop_proof"), "{r:?}");
    let r = common::send(http.get(gw.url("/items/1")).bearer_auth(&token)).await;
    assert_eq!(r.status, http::StatusCode::UNAUTHORIZED, "{r:?}");

    let der = b"\x30\x03\x02\x01\x07".to_vec();
    let x5t = tower_bearer::ClientCertificate::from_der(der.clone()).thumbprint_sha256();
    let bound =
        dev.token().subject("alice").scope("items:read").claim("cnf", json!({ "x5t#S256": x5t })).sign();
    let cert = base64::engine::general_purpose::STANDARD.encode(&der);
    let with = |c: Option<&str>| {
        let r = http.get(gw.url("/items/1")).bearer_auth(&bound);
        match c {
            Some(c) => r.header("x-client-cert", c.to_owned()),
            None => r,
        }
    };
    assert_eq!(common::send(with(Some(&cert))).await.status, http::StatusCode::OK);
    assert_eq!(common::send(with(None)).await.status, http::StatusCode::UNAUTHORIZED);
    assert_eq!(common::send(with(Some("MAMCAQg="))).await.status, http::StatusCode::UNAUTHORIZED);

    // From a peer that is not a trusted proxy, the header is nobody's word: as if absent.
    let untrusted = Gateway::ready("proxy", &dev_config(&dev, &config(""))).await;
    let r = http.get(untrusted.url("/items/1")).bearer_auth(&bound).header("x-client-cert", cert);
    assert_eq!(common::send(r).await.status, http::StatusCode::UNAUTHORIZED);
    assert_eq!(upstream.count(), 2, "only the two accepted requests reached the upstream");
}

//! Interop with an independent authorization server: panva's `oidc-provider` (Node, see
//! `tests/oidc/`) issues real RFC 9068 access tokens with the client_credentials grant, signed
//! with RS256, PS256, ES256 and EdDSA; tower-bearer must accept them through its JWKS, and refuse
//! tampered, truncated and foreign-audience ones. A second test walks the OAuth 2.0 flow A–H with
//! it (authorization code + PKCE as the public client `rs-flow`, a 2-second access token, expiry
//! → `invalid_token`, refresh → accepted again).
//!
//! A third test has it issue sender-constrained tokens, JWT and opaque: DPoP-bound (RFC 9449)
//! and bound to a client certificate (RFC 8705), and checks what tower-bearer makes of them.
//!
//! Needs `node` on the PATH (or `$NODE`) and `tests/oidc/node_modules` (`.ci/install-oidc.sh`,
//! or `npm ci --prefix tests/oidc`). Without them the test is skipped, unless `CI` is set: then
//! it fails.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, UNIX_EPOCH};

use axum::routing::get;
use axum::{Extension, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{StatusCode, header};
use serde_json::{Value, json};
use tower_bearer::{
    BearerLayer, Clock, Introspector, JwtOrOpaque, JwtValidator, Principal, RequireScope, TypPolicy,
    Validator,
};

#[cfg(feature = "aws-lc-rs")]
mod dpop_key;

const CLIENT_ID: &str = "rs-test";
/// The default secret of `rs-test` in `tests/oidc/server.mjs`.
const CLIENT_SECRET: &str = "rs-test-secret";
const SCOPE: &str = "items:read";
/// The access-token lifetime the provider is started with.
const TOKEN_TTL: i64 = 300;
/// `(JWS alg, resource path)`: `https://rs.test/<path>` gets tokens signed with `alg`.
const ALGORITHMS: [(&str, &str); 5] =
    [("RS256", "rs256"), ("PS256", "ps256"), ("ES256", "es256"), ("EdDSA", "eddsa"), ("Ed25519", "ed25519")];
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

fn resource(path: &str) -> String {
    format!("https://rs.test/{path}")
}

fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// The node binary to use, or `None` (after saying why) when the test must be skipped. Under
/// `CI` a missing prerequisite is a failure, never a skip.
fn prerequisites() -> Option<PathBuf> {
    let node = std::env::var_os("NODE").map_or_else(|| PathBuf::from("node"), PathBuf::from);
    let node_version = Command::new(&node)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
    let modules = oidc_dir().join("node_modules/oidc-provider/package.json");
    // The tests of this file run in parallel: one `npm ci` at a time (two at once trip over
    // each other's node_modules).
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _installing = INSTALL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if node_version.is_some() && !modules.is_file() {
        // First use on this machine: install the pinned package (npm registry), as the README says.
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/install-oidc.sh");
        let installed = Command::new("bash").arg(script).stdin(Stdio::null()).status();
        eprintln!("independent_issuer: installing oidc-provider: {installed:?}");
    }
    let missing = match (&node_version, modules.is_file()) {
        (Some(_), true) => None,
        (None, _) => Some(format!("`{}` is not runnable", node.display())),
        (Some(_), false) => Some(format!(
            "{} is missing (run .ci/install-oidc.sh or `npm ci --prefix tests/oidc`)",
            modules.display()
        )),
    };
    match missing {
        None => {
            eprintln!("independent_issuer: node {}", node_version.unwrap_or_default());
            Some(node)
        }
        Some(why) if std::env::var_os("CI").is_some() => {
            panic!("independent_issuer: CI is set and {why}")
        }
        Some(why) => {
            eprintln!("independent_issuer: SKIPPED: {why}");
            None
        }
    }
}

/// The oidc-provider child process: killed (and reaped) on drop. Its stderr is collected and
/// printed if the test panics.
struct OidcProvider {
    child: Child,
    /// Held open: the server exits when its stdin closes, so it never outlives this process.
    _stdin: Option<ChildStdin>,
    stderr: Arc<Mutex<String>>,
    issuer: String,
}

impl OidcProvider {
    fn start(node: &Path) -> OidcProvider {
        let mut child = Command::new(node)
            .arg("server.mjs")
            .arg("0")
            .arg("--exit-on-stdin-close")
            .current_dir(oidc_dir())
            .env("ACCESS_TOKEN_TTL", TOKEN_TTL.to_string())
            .env("CLIENT_SECRET", CLIENT_SECRET)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn node tests/oidc/server.mjs");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr_pipe = child.stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stderr_pipe.read(&mut buf) {
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        // Guard first, so that a failure below still kills the child.
        let mut provider = OidcProvider { _stdin: child.stdin.take(), child, stderr, issuer: String::new() };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = tx.send(reader.read_line(&mut line).map(|_| line));
            // Keep draining: a closed pipe would kill the server at its next write (EPIPE).
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Ok(line)) if !line.is_empty() => line,
            Ok(Ok(_)) => panic!("oidc-provider exited before printing its issuer"),
            Ok(Err(e)) => panic!("reading oidc-provider's stdout: {e}"),
            Err(_) => panic!("oidc-provider printed nothing within {STARTUP_TIMEOUT:?}"),
        };
        let started: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("startup line is not JSON ({e}): {line:?}"));
        provider.issuer =
            started["issuer"].as_str().unwrap_or_else(|| panic!("no issuer in {line:?}")).to_owned();
        provider
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- oidc-provider stderr ---\n{}",
                self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
            );
        }
    }
}

/// `application/x-www-form-urlencoded`, for the few ASCII values sent here.
fn form(pairs: &[(&str, &str)]) -> String {
    fn encode(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    let response = http.get(url).send().await.expect(url);
    assert_eq!(response.status(), StatusCode::OK, "GET {url}");
    serde_json::from_slice(&response.bytes().await.expect(url)).expect(url)
}

/// A client_credentials access token for `resource` (RFC 8707), client_secret_basic.
async fn client_credentials(
    http: &reqwest::Client,
    token_endpoint: &str,
    resource: &str,
    scope: Option<&str>,
) -> String {
    let mut params = vec![("grant_type", "client_credentials"), ("resource", resource)];
    params.extend(scope.map(|s| ("scope", s)));
    let response = http
        .post(token_endpoint)
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(&params))
        .send()
        .await
        .expect("token request");
    let status = response.status();
    let body: Value = serde_json::from_slice(&response.bytes().await.expect("token response"))
        .expect("token response is JSON");
    assert_eq!(status, StatusCode::OK, "token request for {resource}: {body}");
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert_eq!(body["expires_in"], TOKEN_TTL, "{body}");
    body["access_token"].as_str().unwrap_or_else(|| panic!("no access_token: {body}")).to_owned()
}

fn decode_segment(segment: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).expect("base64url")).expect("JSON")
}

/// The token with one byte of its payload changed (inside the `jti` value): still base64url,
/// still JSON, no longer what was signed.
fn tamper_payload(token: &str) -> String {
    let [header, payload, signature] = segments(token);
    let mut claims = URL_SAFE_NO_PAD.decode(payload).expect("base64url payload");
    let marker = b"\"jti\":\"";
    let at = claims.windows(marker.len()).position(|w| w == marker).expect("a jti claim") + marker.len();
    claims[at] = if claims[at] == b'A' { b'B' } else { b'A' };
    serde_json::from_slice::<Value>(&claims).expect("tampered payload is still JSON");
    let tampered = URL_SAFE_NO_PAD.encode(&claims);
    assert_ne!(tampered, payload);
    format!("{header}.{tampered}.{signature}")
}

/// The token with the second half of its signature cut off.
fn truncate_signature(token: &str) -> String {
    let signature = segments(token)[2];
    token[..token.len() - signature.len() / 2].to_owned()
}

fn segments(token: &str) -> [&str; 3] {
    let parts: Vec<&str> = token.split('.').collect();
    parts.try_into().unwrap_or_else(|_| panic!("not a JWS compact token: {token}"))
}

/// The protected API: `/me` answers the principal, `/items` needs `items:read`.
async fn serve(validator: impl Validator + Clone) -> String {
    let app = Router::new()
        .route("/items", get(|| async { Json(json!(["a", "b"])) }))
        .route_layer(RequireScope::all([SCOPE]))
        .route("/me", get(|Extension(principal): Extension<Principal>| async move { Json(principal) }))
        .layer(BearerLayer::new(validator).realm("interop"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

struct Answer {
    status: StatusCode,
    challenge: String,
    body: String,
}

async fn call(http: &reqwest::Client, url: &str, token: Option<&str>) -> Answer {
    let mut request = http.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect(url);
    let status = response.status();
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().expect("ASCII challenge").to_owned())
        .unwrap_or_default();
    let body = response.text().await.expect(url);
    Answer { status, challenge, body }
}

/// Asserts a `401` whose challenge says `error="invalid_token"`.
fn assert_invalid_token(answer: &Answer, what: &str) {
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{what}: {}", answer.body);
    assert!(
        answer.challenge.starts_with("Bearer ") && answer.challenge.contains(r#"error="invalid_token""#),
        "{what}: WWW-Authenticate is {:?}",
        answer.challenge
    );
}

#[tokio::test]
async fn accepts_tokens_from_oidc_provider() {
    let Some(node) = prerequisites() else {
        return;
    };
    let started = Instant::now();
    let provider = OidcProvider::start(&node);
    let issuer = provider.issuer.clone();
    eprintln!("independent_issuer: oidc-provider at {issuer} after {:?}", started.elapsed());
    let http =
        reqwest::Client::builder().timeout(Duration::from_secs(10)).no_proxy().build().expect("HTTP client");

    let discovery = get_json(&http, &format!("{issuer}/.well-known/openid-configuration")).await;
    assert_eq!(discovery["issuer"], issuer.as_str());
    let jwks_uri = discovery["jwks_uri"].as_str().expect("jwks_uri").to_owned();
    let token_endpoint = discovery["token_endpoint"].as_str().expect("token_endpoint").to_owned();
    let jwks = get_json(&http, &jwks_uri).await;
    eprintln!("independent_issuer: JWKS {jwks}");

    for (i, (alg, path)) in ALGORITHMS.iter().enumerate() {
        let audience = resource(path);
        let token = client_credentials(&http, &token_endpoint, &audience, Some(SCOPE)).await;

        // What the issuer actually minted.
        let [header_b64, payload_b64, _] = segments(&token);
        let header = decode_segment(header_b64);
        let claims = decode_segment(payload_b64);
        eprintln!("independent_issuer: {alg}: header {header}, claims {claims}");
        assert_eq!(header["alg"], *alg, "{header}");
        assert_eq!(header["typ"], "at+jwt", "{header}");
        assert!(header["kid"].is_string(), "{header}");

        // Given only the issuer URL: the keys are found through its discovery document.
        let validator = JwtValidator::from_issuer(issuer.as_str())
            .expect("issuer URL")
            .audience(audience.as_str())
            .typ(TypPolicy::Strict)
            .build()
            .expect("validator");
        let base = serve(validator).await;
        let me = format!("{base}/me");
        let items = format!("{base}/items");

        // The genuine token passes, and the principal is the client.
        let answer = call(&http, &me, Some(&token)).await;
        assert_eq!(answer.status, StatusCode::OK, "{alg} /me: {:?} {}", answer.challenge, answer.body);
        let principal: Value = serde_json::from_str(&answer.body).expect("principal JSON");
        assert_eq!(principal["kind"], "jwt", "{alg}: {principal}");
        assert_eq!(principal["client_id"], CLIENT_ID, "{alg}: {principal}");
        assert_eq!(principal["subject"], CLIENT_ID, "{alg}: {principal}");
        assert_eq!(principal["issuer"], issuer.as_str(), "{alg}: {principal}");
        assert_eq!(principal["audience"], json!([audience]), "{alg}: {principal}");
        assert_eq!(principal["scopes"], json!([SCOPE]), "{alg}: {principal}");
        assert_eq!(
            principal["expires_at"].as_i64().zip(principal["issued_at"].as_i64()).map(|(exp, iat)| exp - iat),
            Some(TOKEN_TTL),
            "{alg}: {principal}"
        );
        assert_eq!(principal["claims"], claims, "{alg}: raw claims");

        let answer = call(&http, &items, Some(&token)).await;
        assert_eq!(answer.status, StatusCode::OK, "{alg} /items: {}", answer.body);
        assert_eq!(answer.body, r#"["a","b"]"#);

        // Tampered payload, truncated signature, another resource's token: all refused.
        let tampered = tamper_payload(&token);
        assert_invalid_token(&call(&http, &me, Some(&tampered)).await, &format!("{alg} tampered payload"));
        assert_invalid_token(
            &call(&http, &items, Some(&tampered)).await,
            &format!("{alg} tampered payload /items"),
        );
        let truncated = truncate_signature(&token);
        assert_invalid_token(
            &call(&http, &me, Some(&truncated)).await,
            &format!("{alg} truncated signature"),
        );
        let (other_alg, other_path) = ALGORITHMS[(i + 1) % ALGORITHMS.len()];
        let foreign = client_credentials(&http, &token_endpoint, &resource(other_path), Some(SCOPE)).await;
        assert_invalid_token(
            &call(&http, &me, Some(&foreign)).await,
            &format!("{alg} validator, {other_alg} token for {}", resource(other_path)),
        );

        // A genuine token without the scope: authenticated, but not for /items.
        let scopeless = client_credentials(&http, &token_endpoint, &audience, None).await;
        assert!(decode_segment(segments(&scopeless)[1]).get("scope").is_none());
        let answer = call(&http, &me, Some(&scopeless)).await;
        assert_eq!(answer.status, StatusCode::OK, "{alg} scopeless /me: {}", answer.body);
        let answer = call(&http, &items, Some(&scopeless)).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{alg} scopeless /items: {}", answer.body);
        assert!(
            answer.challenge.contains(r#"error="insufficient_scope""#)
                && answer.challenge.contains(r#"scope="items:read""#),
            "{alg}: {:?}",
            answer.challenge
        );

        // No token at all: a bare challenge.
        let answer = call(&http, &me, None).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert!(!answer.challenge.contains("error="), "{:?}", answer.challenge);
    }

    // An opaque token from the same issuer is not a JWT: refused, not a server error.
    let opaque = client_credentials(&http, &token_endpoint, &resource("opaque"), Some(SCOPE)).await;
    assert!(!opaque.contains('.'), "expected an opaque token, got {opaque}");
    let validator = JwtValidator::builder()
        .issuer(issuer.as_str())
        .audience(resource("opaque"))
        .jwks_url(jwks_uri.as_str())
        .build()
        .expect("validator");
    let base = serve(validator).await;
    assert_invalid_token(&call(&http, &format!("{base}/me"), Some(&opaque)).await, "opaque token");

    // The same opaque token through oidc-provider's real introspection endpoint (RFC 7662):
    // accepted, one call for many concurrent requests, still cached after revocation, rejected
    // once the cache entry ends (the clock is ours, so no sleeping).
    let introspection_endpoint =
        discovery["introspection_endpoint"].as_str().expect("introspection").to_owned();
    let revocation_endpoint = discovery["revocation_endpoint"].as_str().expect("revocation").to_owned();
    let now = Arc::new(AtomicU64::new(
        std::time::SystemTime::now().duration_since(UNIX_EPOCH).expect("time").as_secs(),
    ));
    let clock_now = now.clone();
    let introspector = Introspector::builder(introspection_endpoint)
        .client_secret_basic("rs-introspect", "rs-introspect-secret")
        .audience(resource("opaque"))
        .max_ttl(Duration::from_secs(60))
        .clock(Clock::from_fn(move || UNIX_EPOCH + Duration::from_secs(clock_now.load(Ordering::SeqCst))))
        .build()
        .expect("introspector");
    let jwt = JwtValidator::builder()
        .issuer(issuer.as_str())
        .audience(resource("opaque"))
        .jwks_url(jwks_uri.as_str())
        .build()
        .expect("validator");
    let base = serve(JwtOrOpaque::new(jwt, introspector.clone())).await;
    let items = format!("{base}/items");
    let answers = futures_util::future::join_all((0..10).map(|_| call(&http, &items, Some(&opaque)))).await;
    for answer in &answers {
        assert_eq!(answer.status, StatusCode::OK, "introspected opaque token: {}", answer.body);
    }
    assert_eq!(introspector.stats().calls, 1, "10 concurrent requests, one introspection call");
    let revoked = http
        .post(&revocation_endpoint)
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(&[("token", opaque.as_str())]))
        .send()
        .await
        .expect("revocation");
    assert_eq!(revoked.status(), StatusCode::OK);
    assert_eq!(call(&http, &items, Some(&opaque)).await.status, StatusCode::OK, "cached until max_ttl");
    assert_eq!(introspector.stats().calls, 1);
    // Once the cache entry ends, the next request asks again: the revoked token is refused.
    now.fetch_add(61, Ordering::SeqCst);
    let answer = call(&http, &items, Some(&opaque)).await;
    assert_eq!(introspector.stats().calls, 2, "asked again once the entry ended");
    assert_invalid_token(&answer, "revoked opaque token, after the cache entry ended");

    drop(provider);
    eprintln!("independent_issuer: done in {:?}", started.elapsed());
}

/// Follows the authorization request through oidc-provider's interactions (answered by
/// `server.mjs` itself: login as `alice`, consent to everything) with a hand-held cookie jar,
/// until the redirect to the client; returns the redirect's query parameters.
#[cfg(feature = "dev")]
async fn authorization_code(
    http: &reqwest::Client,
    issuer: &str,
    first: String,
) -> std::collections::HashMap<String, String> {
    let mut jar = std::collections::BTreeMap::<String, String>::new();
    let mut url = first;
    for _ in 0..10 {
        let cookies = jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let mut request = http.get(&url);
        if !cookies.is_empty() {
            request = request.header(header::COOKIE, cookies);
        }
        let response = request.send().await.expect(&url);
        for set in response.headers().get_all(header::SET_COOKIE) {
            let set = set.to_str().expect("ASCII cookie");
            let (pair, attributes) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').expect("name=value");
            if value.is_empty() || attributes.contains("1970") {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        let status = response.status();
        let location =
            response.headers().get(header::LOCATION).map(|v| v.to_str().expect("ASCII").to_owned());
        let Some(location) = location.filter(|_| status.is_redirection()) else {
            panic!("{url}: {status} without a redirect: {}", response.text().await.unwrap_or_default());
        };
        if let Some(query) = location.strip_prefix(&format!("{FLOW_REDIRECT_URI}?")) {
            return form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        }
        url = if location.starts_with('/') { format!("{issuer}{location}") } else { location };
    }
    panic!("no redirect to the client after 10 hops");
}

#[cfg(feature = "dev")]
const FLOW_REDIRECT_URI: &str = "http://127.0.0.1/callback";

/// A token request of the public client `rs-flow`; returns the JSON answer (asserting `200`).
#[cfg(feature = "dev")]
async fn flow_token(http: &reqwest::Client, token_endpoint: &str, params: &[(&str, &str)]) -> Value {
    let mut params = params.to_vec();
    params.push(("client_id", "rs-flow"));
    let response = http
        .post(token_endpoint)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(&params))
        .send()
        .await
        .expect("token request");
    let status = response.status();
    let body: Value = serde_json::from_slice(&response.bytes().await.expect("token body")).expect("JSON");
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The OAuth 2.0 flow A–H with oidc-provider as the authorization server: authorization code
/// with PKCE, our resource server accepts the access token, refuses it once expired with
/// `invalid_token` (read back with `tower_bearer::challenge`), and accepts the refreshed one.
#[cfg(feature = "dev")]
#[tokio::test]
async fn authorization_code_flow_with_oidc_provider() {
    use tower_bearer::challenge::{BearerError, Challenge};
    use tower_bearer::dev::Pkce;

    let Some(node) = prerequisites() else {
        return;
    };
    let started = Instant::now();
    let provider = OidcProvider::start(&node);
    let issuer = provider.issuer.clone();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client");
    let discovery = get_json(&http, &format!("{issuer}/.well-known/openid-configuration")).await;
    let authorization_endpoint =
        discovery["authorization_endpoint"].as_str().expect("authorization_endpoint");
    let token_endpoint = discovery["token_endpoint"].as_str().expect("token_endpoint").to_owned();
    let jwks_uri = discovery["jwks_uri"].as_str().expect("jwks_uri");

    let audience = resource("short");
    // The resource server's clock: the system's, unless a test step pins it (seconds since the
    // epoch; 0 = not pinned). Expiry is reached by moving this clock, not by sleeping.
    let pinned = Arc::new(AtomicU64::new(0));
    let clock = {
        let pinned = pinned.clone();
        Clock::from_fn(move || match pinned.load(Ordering::SeqCst) {
            0 => std::time::SystemTime::now(),
            secs => UNIX_EPOCH + Duration::from_secs(secs),
        })
    };
    let validator = JwtValidator::builder()
        .issuer(issuer.as_str())
        .audience(audience.as_str())
        .jwks_url(jwks_uri)
        .typ(TypPolicy::Strict)
        .leeway(Duration::ZERO)
        .clock(clock)
        .build()
        .expect("validator");
    let items = format!("{}/items", serve(validator).await);

    // (A) authorization request → code.
    let pkce = Pkce::new();
    let query = form(&[
        ("response_type", "code"),
        ("client_id", "rs-flow"),
        ("redirect_uri", FLOW_REDIRECT_URI),
        ("scope", "openid offline_access items:read"),
        ("prompt", "consent"),
        ("resource", audience.as_str()),
        ("state", "flow-state"),
        ("code_challenge", pkce.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ]);
    let answer = authorization_code(&http, &issuer, format!("{authorization_endpoint}?{query}")).await;
    assert_eq!(answer.get("state").map(String::as_str), Some("flow-state"), "{answer:?}");
    let code = answer.get("code").unwrap_or_else(|| panic!("no code: {answer:?}"));

    // (B) code + verifier → access token and refresh token.
    let tokens = flow_token(
        &http,
        &token_endpoint,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", FLOW_REDIRECT_URI),
            ("code_verifier", pkce.verifier.as_str()),
            ("resource", audience.as_str()),
        ],
    )
    .await;
    let access = tokens["access_token"].as_str().expect("access_token");
    let refresh = tokens["refresh_token"].as_str().unwrap_or_else(|| panic!("no refresh_token: {tokens}"));
    assert_eq!(tokens["expires_in"], 2, "{tokens}");

    // (C, D) the resource.
    let answer = call(&http, &items, Some(access)).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?} {}", answer.challenge, answer.body);

    // (E, F) at `exp` (no leeway): 401 invalid_token. One second earlier it still passes.
    let exp = decode_segment(segments(access)[1])["exp"].as_u64().expect("exp");
    pinned.store(exp - 1, Ordering::SeqCst);
    let answer = call(&http, &items, Some(access)).await;
    assert_eq!(answer.status, StatusCode::OK, "a second before exp: {:?}", answer.challenge);
    pinned.store(exp, Ordering::SeqCst);
    let answer = call(&http, &items, Some(access)).await;
    assert_invalid_token(&answer, "expired access token");
    let challenge = Challenge::find_bearer(&answer.challenge).expect("parses").expect("Bearer");
    assert_eq!(challenge.bearer_error(), BearerError::InvalidToken);
    assert!(challenge.error_description().is_some_and(|d| d.contains("expired")), "{challenge:?}");
    pinned.store(0, Ordering::SeqCst);

    // (G, H) refresh → a new access token (and, for a public client, a rotated refresh token).
    let refreshed = flow_token(
        &http,
        &token_endpoint,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh), ("resource", audience.as_str())],
    )
    .await;
    let new_access = refreshed["access_token"].as_str().expect("access_token");
    assert_ne!(new_access, access);
    assert!(refreshed["refresh_token"].as_str().is_some_and(|r| r != refresh), "rotated: {refreshed}");
    let answer = call(&http, &items, Some(new_access)).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?} {}", answer.challenge, answer.body);

    drop(provider);
    eprintln!("independent_issuer: flow done in {:?}", started.elapsed());
}

/// A client_credentials token of a sender-constrained client: `(token_type, access_token)`.
#[cfg(feature = "aws-lc-rs")]
async fn bound_token(
    http: &reqwest::Client,
    token_endpoint: &str,
    (client_id, secret): (&str, &str),
    resource: &str,
    extra: (&str, &str),
) -> (String, String) {
    let response = http
        .post(token_endpoint)
        .basic_auth(client_id, Some(secret))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(extra.0, extra.1)
        .body(form(&[("grant_type", "client_credentials"), ("resource", resource), ("scope", SCOPE)]))
        .send()
        .await
        .expect("token request");
    let status = response.status();
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).expect("JSON");
    assert_eq!(status, StatusCode::OK, "{client_id} token for {resource}: {body}");
    (body["token_type"].as_str().unwrap().to_owned(), body["access_token"].as_str().unwrap().to_owned())
}

#[cfg(feature = "aws-lc-rs")]
#[tokio::test]
async fn sender_constrained_tokens_from_oidc_provider() {
    use dpop_key::DpopKey;
    use tower_bearer::dpop::{Dpop, DpopNonces};
    use tower_bearer::{CertificateHeader, ClientCertificate};

    let Some(node) = prerequisites() else {
        return;
    };
    let provider = OidcProvider::start(&node);
    let issuer = provider.issuer.clone();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).no_proxy().build().unwrap();
    let discovery = get_json(&http, &format!("{issuer}/.well-known/openid-configuration")).await;
    let token_endpoint = discovery["token_endpoint"].as_str().unwrap().to_owned();
    let introspection_endpoint = discovery["introspection_endpoint"].as_str().unwrap().to_owned();
    let jwks_uri = discovery["jwks_uri"].as_str().unwrap().to_owned();

    // The resource server: JWTs for https://rs.test/es256, opaque tokens for
    // https://rs.test/opaque through introspection; DPoP with nonces; client certificates from
    // a header (what a TLS-terminating proxy in front of it would forward).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let jwt = JwtValidator::builder()
        .issuer(issuer.as_str())
        .audience(resource("es256"))
        .jwks_url(jwks_uri.as_str())
        .build()
        .unwrap();
    let introspector = Introspector::builder(introspection_endpoint)
        .client_secret_basic("rs-introspect", "rs-introspect-secret")
        .audience(resource("opaque"))
        .build()
        .unwrap();
    let dpop = Dpop::allowed(&base)
        .unwrap()
        .nonces(DpopNonces::new(b"a secret for the interop test's nonces", Duration::from_secs(300)));
    let app = Router::new()
        .route("/me", get(|Extension(principal): Extension<Principal>| async move { Json(principal) }))
        .layer(
            BearerLayer::new(JwtOrOpaque::new(jwt, introspector))
                .realm("interop")
                .dpop(dpop)
                .trust_client_certificate_header(
                    http::HeaderName::from_static("x-client-cert"),
                    CertificateHeader::DerBase64,
                ),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let me = format!("{base}/me");
    let send = |token: &str, scheme: &str, proof: Option<String>, cert: Option<&str>| {
        let mut request = http.get(&me).header(header::AUTHORIZATION, format!("{scheme} {token}"));
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        if let Some(cert) = cert {
            request = request.header("x-client-cert", cert);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let headers = response.headers().clone();
            (status, headers, response.text().await.unwrap())
        }
    };
    let challenge = |h: &http::HeaderMap| {
        h.get(header::WWW_AUTHENTICATE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
    };

    for kind in ["es256", "opaque"] {
        // DPoP: the token request carries a proof of the client's key.
        let key = DpopKey::new();
        let proof = key.proof("POST", &token_endpoint, None, None);
        let (token_type, token) = bound_token(
            &http,
            &token_endpoint,
            ("rs-dpop", "rs-dpop-secret"),
            &resource(kind),
            ("dpop", &proof),
        )
        .await;
        assert_eq!(token_type, "DPoP", "{kind}");
        // The first proof has no nonce: 401 use_dpop_nonce, and the nonce to use.
        let (status, headers, _) =
            send(&token, "DPoP", Some(key.proof("GET", &me, Some(&token), None)), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{kind}");
        assert!(challenge(&headers).contains("use_dpop_nonce"), "{kind}: {}", challenge(&headers));
        let nonce = headers.get("dpop-nonce").expect("DPoP-Nonce").to_str().unwrap().to_owned();
        let proof = key.proof("GET", &me, Some(&token), Some(&nonce));
        let (status, headers, body) = send(&token, "DPoP", Some(proof.clone()), None).await;
        assert_eq!(status, StatusCode::OK, "{kind}: bound token and its proof: {body}");
        assert!(headers.get("dpop-nonce").is_some(), "{kind}: a fresh nonce");
        let principal: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(principal["client_id"], "rs-dpop", "{kind}: {principal}");
        // Replayed proof.
        let (status, headers, _) = send(&token, "DPoP", Some(proof), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{kind}: replay");
        assert!(challenge(&headers).contains("invalid_dpop_proof"), "{kind}: {}", challenge(&headers));
        // As a bearer token.
        let (status, headers, _) = send(&token, "Bearer", None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{kind}: as Bearer");
        assert!(challenge(&headers).contains("invalid_token"), "{kind}: {}", challenge(&headers));
        // Stolen: a perfectly good proof by the thief's own key.
        let thief = DpopKey::new();
        let (status, headers, _) =
            send(&token, "DPoP", Some(thief.proof("GET", &me, Some(&token), Some(&nonce))), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{kind}: stolen");
        assert!(challenge(&headers).contains("invalid_token"), "{kind}: {}", challenge(&headers));

        // mTLS: the token request comes with the client's certificate.
        let made = |name: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert =
                rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap().self_signed(&key).unwrap();
            cert.der().to_vec()
        };
        let (alice, mallory) = (made("alice"), made("mallory"));
        let b64 = |der: &[u8]| base64::engine::general_purpose::STANDARD.encode(der);
        let (token_type, token) = bound_token(
            &http,
            &token_endpoint,
            ("rs-mtls", "rs-mtls-secret"),
            &resource(kind),
            ("x-client-cert", &b64(&alice)),
        )
        .await;
        assert_eq!(token_type, "Bearer", "{kind}");
        if kind == "es256" {
            let [_, payload, _] = segments(&token);
            let thumbprint = ClientCertificate::from_der(alice.clone()).thumbprint_sha256();
            assert_eq!(
                decode_segment(payload)["cnf"]["x5t#S256"],
                thumbprint.as_str(),
                "the same thumbprint"
            );
        }
        let (status, _, body) = send(&token, "Bearer", None, Some(&b64(&alice))).await;
        assert_eq!(status, StatusCode::OK, "{kind}: the right certificate: {body}");
        for (who, cert) in [("another certificate", Some(b64(&mallory))), ("no certificate", None)] {
            let (status, headers, _) = send(&token, "Bearer", None, cert.as_deref()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{kind}: {who}");
            assert!(challenge(&headers).contains("invalid_token"), "{kind}: {who}: {}", challenge(&headers));
        }
    }
}

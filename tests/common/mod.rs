//! Shared helpers for the integration tests: a dev issuer, a protected axum app served on
//! loopback, a reqwest client, RFC 6750 challenge parsing, and a deliberately faulty JWKS server.
//!
//! Everything here talks real HTTP over 127.0.0.1; nothing is mocked.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::watch;
use tower_bearer::dev::{DEFAULT_AUDIENCE, DevIssuer, RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET};
use tower_bearer::{
    Algorithm, BearerLayer, Introspector, JwtValidator, JwtValidatorBuilder, KeySet, Principal, RequestView,
    RequireScope,
};

/// The realm every test app announces.
pub const REALM: &str = "test";

/// Upper bound on any wait for an event, so that a broken test hangs for at most this long.
/// It is a hang guard only: no assertion depends on how long anything took.
pub const HANG_GUARD: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Issuer, validator, app
// ---------------------------------------------------------------------------------------------

/// A dev issuer with one key per algorithm in `algs` (RSA key generation is the slow part of
/// the suite: ask only for what a test needs).
pub async fn dev_issuer(algs: impl IntoIterator<Item = Algorithm>) -> DevIssuer {
    DevIssuer::builder().algorithms(algs).start().await.expect("start the dev issuer")
}

/// Issuer and audience of `dev`; the key source is up to the caller.
pub fn validator_builder(dev: &DevIssuer) -> JwtValidatorBuilder {
    JwtValidator::builder().issuer(dev.issuer()).audience(DEFAULT_AUDIENCE)
}

/// A validator that fetches `dev`'s JWKS with the default key-set settings.
pub fn validator(dev: &DevIssuer) -> JwtValidator {
    validator_builder(dev).jwks_url(dev.jwks_url()).build().expect("build the validator")
}

/// An introspector for `dev`'s opaque tokens, as its resource server: issuer and audience checked.
pub fn introspector(dev: &DevIssuer) -> Introspector {
    Introspector::builder(dev.introspection_url())
        .client_secret_basic(RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET)
        .issuer(dev.issuer())
        .audience(DEFAULT_AUDIENCE)
        .build()
        .expect("build the introspector")
}

/// A validator for `dev`'s tokens that uses `keys`.
pub fn validator_with_keys(dev: &DevIssuer, keys: KeySet) -> JwtValidator {
    validator_builder(dev).key_set(keys).build().expect("build the validator")
}

async fn me(principal: Principal) -> Json<Principal> {
    Json(principal)
}

async fn list_items(principal: Principal) -> Json<Value> {
    Json(json!({ "items": ["apple", "pear"], "for": principal.subject() }))
}

async fn create_item(principal: Principal) -> (StatusCode, Json<Value>) {
    (StatusCode::CREATED, Json(json!({ "created_by": principal.subject() })))
}

/// The protected routes, without the bearer layer: `/me` (the principal as JSON), `GET /items`
/// (needs `items:read`) and `POST /items` (needs `items:write`).
pub fn routes() -> Router {
    Router::new()
        .route("/me", get(me))
        .route("/items", get(list_items).route_layer(RequireScope::all(["items:read"])))
        .route("/items", post(create_item).route_layer(RequireScope::all(["items:write"])))
}

/// [`routes`] behind `BearerLayer::new(validator).realm("test")`.
pub fn app(validator: JwtValidator) -> Router {
    routes().layer(BearerLayer::new(validator).realm(REALM))
}

/// Serves `router` on 127.0.0.1 (any free port) in a spawned task; returns the base URL.
pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve the app");
    });
    format!("http://{addr}")
}

/// A URL on 127.0.0.1 where nothing listens (the port was bound, then released).
pub async fn closed_port_url(path: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    drop(listener);
    format!("http://{addr}{path}")
}

/// A plain HTTP client for the tests (never goes through a proxy).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("build the test client")
}

/// A protected app served on loopback, with a client to talk to it.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub validator: JwtValidator,
}

impl TestApp {
    /// Serves [`app`]`(validator)`.
    pub async fn start(validator: JwtValidator) -> TestApp {
        Self::start_router(validator.clone(), app(validator)).await
    }

    /// Serves a router built by the caller (keeping `validator` to read its key-set counters).
    pub async fn start_router(validator: JwtValidator, router: Router) -> TestApp {
        TestApp { base: serve(router).await, client: client(), validator }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request to `path`, without credentials.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// `GET path` with `Authorization: Bearer <token>`.
    pub async fn get(&self, path: &str, token: &str) -> Reply {
        send(
            self.request(reqwest::Method::GET, path).header(header::AUTHORIZATION, format!("Bearer {token}")),
        )
        .await
    }

    /// `POST path` with `Authorization: Bearer <token>`.
    pub async fn post(&self, path: &str, token: &str) -> Reply {
        send(
            self.request(reqwest::Method::POST, path)
                .header(header::AUTHORIZATION, format!("Bearer {token}")),
        )
        .await
    }

    /// Validates `token` in-process with the app's own validator (same key cache) and returns
    /// the exact error, which the client only sees as an error code and a description.
    pub async fn rejection(&self, token: &str) -> tower_bearer::AuthError {
        use tower_bearer::Validator;
        match self.validator.validate(token, &RequestView::detached()).resolve().await {
            Ok(principal) => panic!("expected a rejection, got {principal:?}"),
            Err(err) => err,
        }
    }

    /// Asserts over HTTP that `token` gets `401 invalid_token`, and in-process that the reason
    /// is `expected`. Returns the `error_description` the client saw.
    pub async fn assert_rejected(&self, token: &str, expected: tower_bearer::InvalidToken) -> String {
        let description = self.get("/me", token).await.assert_invalid_token();
        assert_eq!(self.rejection(token).await, tower_bearer::AuthError::InvalidToken(expected));
        description
    }

    /// `(successful, failed)` fetches of the validator's key set.
    pub fn fetch_counts(&self) -> (u64, u64) {
        let stats = self.validator.key_set().expect("the validator uses a key set").stats();
        (stats.fetches_ok, stats.fetches_failed)
    }
}

/// A response, read in full.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// Sends a request and reads the whole response.
pub async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("send the request");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.expect("read the body");
    Reply { status, headers, body }
}

impl Reply {
    /// The body as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// The `WWW-Authenticate` header, parsed. Panics when there is none or several.
    #[track_caller]
    pub fn challenge(&self) -> Challenge {
        let mut all = self.headers.get_all(header::WWW_AUTHENTICATE).iter();
        let value = all.next().unwrap_or_else(|| panic!("no WWW-Authenticate header in {self:?}"));
        assert!(all.next().is_none(), "several WWW-Authenticate headers");
        Challenge::parse(value.to_str().expect("visible ASCII challenge"))
    }

    /// Asserts the status, then the RFC 6750 challenge: scheme `Bearer`, `realm="test"`, and
    /// `error` equal to `error` (no `error` and no `error_description` when `None`).
    #[track_caller]
    pub fn assert_challenge(&self, status: StatusCode, error: Option<&str>) -> Challenge {
        assert_eq!(self.status, status, "unexpected status: {self:?}");
        let challenge = self.challenge();
        assert_eq!(challenge.get("realm"), Some(REALM), "{challenge:?}");
        assert_eq!(challenge.get("error"), error, "{challenge:?}");
        if error.is_some() {
            assert!(
                challenge.get("error_description").is_some_and(|d| !d.is_empty()),
                "an error code comes with a description: {challenge:?}"
            );
        } else {
            assert_eq!(challenge.get("error_description"), None, "{challenge:?}");
        }
        assert_eq!(
            self.headers.get(header::CACHE_CONTROL).map(|v| v.as_bytes()),
            Some(b"no-store".as_slice()),
            "rejections must not be cached"
        );
        challenge
    }

    /// Asserts `401 invalid_token` and returns the `error_description`.
    #[track_caller]
    pub fn assert_invalid_token(&self) -> String {
        let challenge = self.assert_challenge(StatusCode::UNAUTHORIZED, Some("invalid_token"));
        challenge.get("error_description").expect("description").to_owned()
    }

    /// Asserts `400 invalid_request`.
    #[track_caller]
    pub fn assert_invalid_request(&self) -> Challenge {
        self.assert_challenge(StatusCode::BAD_REQUEST, Some("invalid_request"))
    }

    /// Asserts a `503`: the failure is the server's, so no challenge (in particular no
    /// `invalid_token`), a short plain-text body, and `Retry-After`.
    #[track_caller]
    pub fn assert_unavailable(&self) {
        assert_eq!(self.status, StatusCode::SERVICE_UNAVAILABLE, "unexpected: {self:?}");
        assert!(
            self.headers.get(header::WWW_AUTHENTICATE).is_none(),
            "a 503 must not blame the client's token: {self:?}"
        );
        assert!(
            !self.body.is_empty() && self.body.len() < 128,
            "503 body should be a short explanation: {:?}",
            self.body
        );
        assert!(
            !self.body.contains("127.0.0.1") && !self.body.contains("jwks"),
            "503 body leaks internals: {:?}",
            self.body
        );
        assert!(self.headers.contains_key(header::RETRY_AFTER), "{self:?}");
    }

    /// Asserts `200 OK` and returns the body as JSON.
    #[track_caller]
    pub fn assert_ok_json(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "unexpected: {self:?}");
        self.json()
    }
}

/// A parsed `WWW-Authenticate: Bearer k="v", …` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub raw: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// Parses a single Bearer challenge with the crate's public parser
    /// ([`tower_bearer::challenge`]), and asserts what our renderer promises on top: the scheme
    /// spelled `Bearer`, auth-params only, no duplicates.
    #[track_caller]
    pub fn parse(raw: &str) -> Challenge {
        let parsed = tower_bearer::challenge::Challenge::parse(raw)
            .unwrap_or_else(|e| panic!("not a single challenge ({e}): {raw:?}"));
        assert_eq!(parsed.scheme, "Bearer", "not a Bearer challenge: {raw:?}");
        assert_eq!(parsed.token68, None, "token68 in {raw:?}");
        for (i, (name, _)) in parsed.params.iter().enumerate() {
            assert!(
                !parsed.params[..i].iter().any(|(n, _)| n == name),
                "duplicate auth-param {name} in {raw:?}"
            );
        }
        Challenge { raw: raw.to_owned(), params: parsed.params }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Token surgery
// ---------------------------------------------------------------------------------------------

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The three segments of a compact JWS.
#[track_caller]
pub fn split_token(token: &str) -> [&str; 3] {
    let parts: Vec<&str> = token.split('.').collect();
    parts.try_into().expect("three segments")
}

/// Decodes a base64url segment as JSON.
#[track_caller]
pub fn segment_json(segment: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).expect("base64url")).expect("JSON segment")
}

/// The current Unix time in seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs() as i64
}

/// One JWK of a JWK Set document, by `kid`.
#[track_caller]
pub fn jwk_by_kid(jwks: &str, kid: &str) -> Value {
    let doc: Value = serde_json::from_str(jwks).expect("JWKS JSON");
    doc["keys"]
        .as_array()
        .expect("keys array")
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("no JWK with kid {kid} in {jwks}"))
        .clone()
}

/// A JWK Set document holding these keys.
pub fn jwks_of(keys: impl IntoIterator<Item = Value>) -> String {
    json!({ "keys": keys.into_iter().collect::<Vec<_>>() }).to_string()
}

// ---------------------------------------------------------------------------------------------
// A counter of requests that got past `BearerService::call`
// ---------------------------------------------------------------------------------------------

/// A tower layer, put outside the bearer layer, that counts requests once the inner service's
/// `call` has returned. For the bearer layer that means the token was parsed and the validation
/// (with the key-set generation it saw) has started: tests use it to know that N requests are
/// all in flight before letting a gated JWKS fetch finish.
#[derive(Clone)]
pub struct EnteredCounter {
    count: Arc<watch::Sender<usize>>,
}

impl Default for EnteredCounter {
    fn default() -> Self {
        EnteredCounter { count: Arc::new(watch::channel(0).0) }
    }
}

impl EnteredCounter {
    pub fn get(&self) -> usize {
        *self.count.borrow()
    }

    /// Waits until at least `n` requests have entered.
    pub async fn wait_for(&self, n: usize) {
        let mut rx = self.count.subscribe();
        tokio::time::timeout(HANG_GUARD, rx.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} requests entered", self.get()))
            .expect("counter alive");
    }
}

impl<S> tower::Layer<S> for EnteredCounter {
    type Service = EnteredService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        EnteredService { inner, count: self.count.clone() }
    }
}

#[derive(Clone)]
pub struct EnteredService<S> {
    inner: S,
    count: Arc<watch::Sender<usize>>,
}

impl<S, R> tower::Service<R> for EnteredService<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let future = self.inner.call(req);
        self.count.send_modify(|c| *c += 1);
        future
    }
}

// ---------------------------------------------------------------------------------------------
// A faulty JWKS server
// ---------------------------------------------------------------------------------------------

/// What the faulty JWKS server answers. Every fault carries a *valid* JWK Set wherever it can,
/// so that a client that skipped the check under test would succeed and the test would fail.
#[derive(Clone, Debug)]
pub enum Fault {
    /// `200` with this body.
    Jwks(String),
    /// This status, with a valid JWK Set as the body (only the status is wrong).
    Status(StatusCode, String),
    /// `200` with this body, which is not a JWK Set.
    Garbage(String),
    /// `200` with a valid JWK Set padded (an extra, ignorable member) to `size` bytes; with a
    /// `Content-Length`, or streamed in chunks without one.
    Oversized { jwks: String, size: usize, content_length: bool },
    /// `200` and the first half of the body at once, the rest after `pause`.
    Drip { jwks: String, pause: Duration },
    /// Nothing at all for `pause`, then a valid answer.
    SlowHeaders { jwks: String, pause: Duration },
}

struct FaultState {
    fault: Mutex<Fault>,
    cache_control: Mutex<Option<String>>,
    hits: watch::Sender<usize>,
    /// Requests wait here while the gate is closed (false).
    gate: watch::Sender<bool>,
    served: AtomicUsize,
}

/// A JWKS endpoint on 127.0.0.1 that counts its hits and misbehaves on request.
pub struct FaultServer {
    url: String,
    state: Arc<FaultState>,
}

impl FaultServer {
    pub async fn start(fault: Fault) -> FaultServer {
        let state = Arc::new(FaultState {
            fault: Mutex::new(fault),
            cache_control: Mutex::new(None),
            hits: watch::channel(0).0,
            gate: watch::channel(true).0,
            served: AtomicUsize::new(0),
        });
        let router = Router::new().route("/jwks.json", get(fault_jwks)).with_state(state.clone());
        let base = serve(router).await;
        FaultServer { url: format!("{base}/jwks.json"), state }
    }

    /// The JWKS URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Changes what the next requests get.
    pub fn set(&self, fault: Fault) {
        *self.state.fault.lock().expect("lock") = fault;
    }

    /// Sends this `Cache-Control` with every answer (none by default).
    pub fn set_cache_control(&self, value: Option<&str>) {
        *self.state.cache_control.lock().expect("lock") = value.map(str::to_owned);
    }

    /// How many requests arrived so far.
    pub fn hits(&self) -> usize {
        *self.state.hits.borrow()
    }

    /// How many requests got past the gate.
    pub fn served(&self) -> usize {
        self.state.served.load(Ordering::SeqCst)
    }

    /// Waits (event-driven) until at least `n` requests have arrived.
    pub async fn wait_for_hits(&self, n: usize) {
        let mut rx = self.state.hits.subscribe();
        tokio::time::timeout(HANG_GUARD, rx.wait_for(|h| *h >= n))
            .await
            .unwrap_or_else(|_| panic!("the JWKS server saw {} of {n} requests", self.hits()))
            .expect("server alive");
    }

    /// Holds every request until [`Self::open_gate`].
    pub fn close_gate(&self) {
        self.state.gate.send_replace(false);
    }

    pub fn open_gate(&self) {
        self.state.gate.send_replace(true);
    }
}

async fn fault_jwks(State(state): State<Arc<FaultState>>) -> Response {
    state.hits.send_modify(|h| *h += 1);
    let mut gate = state.gate.subscribe();
    let _ = gate.wait_for(|open| *open).await;
    state.served.fetch_add(1, Ordering::SeqCst);
    let fault = state.fault.lock().expect("lock").clone();
    let cache_control = state.cache_control.lock().expect("lock").clone();
    let mut response = match fault {
        Fault::Jwks(jwks) => json_response(StatusCode::OK, Body::from(jwks)),
        Fault::Status(status, jwks) => json_response(status, Body::from(jwks)),
        Fault::Garbage(body) => json_response(StatusCode::OK, Body::from(body)),
        Fault::Oversized { jwks, size, content_length } => {
            let body = Bytes::from(padded_jwks(&jwks, size));
            if content_length {
                json_response(StatusCode::OK, Body::from(body))
            } else {
                let chunks: Vec<Result<Bytes, Infallible>> =
                    body.chunks(16 * 1024).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
                json_response(StatusCode::OK, Body::from_stream(futures_util::stream::iter(chunks)))
            }
        }
        Fault::Drip { jwks, pause } => {
            let body = Bytes::from(jwks);
            let (first, rest) = (body.slice(..body.len() / 2), body.slice(body.len() / 2..));
            let stream = futures_util::stream::unfold(0u8, move |step| {
                let (first, rest) = (first.clone(), rest.clone());
                async move {
                    match step {
                        0 => Some((Ok::<_, Infallible>(first), 1)),
                        1 => {
                            tokio::time::sleep(pause).await;
                            Some((Ok(rest), 2))
                        }
                        _ => None,
                    }
                }
            });
            json_response(StatusCode::OK, Body::from_stream(stream))
        }
        Fault::SlowHeaders { jwks, pause } => {
            tokio::time::sleep(pause).await;
            json_response(StatusCode::OK, Body::from(jwks))
        }
    };
    if let Some(value) = cache_control {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_str(&value).expect("header value"));
    }
    response
}

fn json_response(status: StatusCode, body: Body) -> Response {
    (status, [(header::CONTENT_TYPE, "application/jwk-set+json")], body).into_response()
}

/// `jwks` with an extra `"pad"` member so that the document is exactly `size` bytes.
pub fn padded_jwks(jwks: &str, size: usize) -> String {
    let mut doc: Value = serde_json::from_str(jwks).expect("JWKS JSON");
    let base = {
        doc["pad"] = Value::String(String::new());
        doc.to_string().len()
    };
    assert!(size >= base, "cannot pad {base} bytes down to {size}");
    doc["pad"] = Value::String("x".repeat(size - base));
    let out = doc.to_string();
    assert_eq!(out.len(), size);
    out
}

/// Awaits `future`, failing the test if it takes longer than [`HANG_GUARD`].
pub async fn guarded<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(HANG_GUARD, future).await.expect("hang guard elapsed")
}

/// Waits until nothing accepts connections on `addr` any more (a stopped server has dropped its
/// listener). Polls a plain TCP connect; bounded by [`HANG_GUARD`].
pub async fn wait_until_refused(addr: std::net::SocketAddr) {
    guarded(async {
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------

/// The RSA public key of a JWK (`n`, `e`) as an attacker would feed it to HMAC: PKCS#1 DER,
/// SPKI DER and SPKI PEM.
pub struct RsaPublicEncodings {
    pub modulus: Vec<u8>,
    pub pkcs1: Vec<u8>,
    pub spki: Vec<u8>,
    pub pem: String,
}

pub fn rsa_public_encodings(jwk: &Value) -> RsaPublicEncodings {
    use base64::engine::general_purpose::STANDARD;
    let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
    let e = URL_SAFE_NO_PAD.decode(jwk["e"].as_str().unwrap()).unwrap();
    let pkcs1 = der(0x30, &[der_uint(&n), der_uint(&e)].concat());
    let oid = der(0x06, &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01]);
    let algorithm = der(0x30, &[oid, vec![0x05, 0x00]].concat());
    let spki = der(0x30, &[algorithm, der(0x03, &[&[0u8][..], &pkcs1].concat())].concat());
    let b64 = STANDARD.encode(&spki);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", lines.join("\n"));
    RsaPublicEncodings { modulus: n, pkcs1, spki, pem }
}

/// DER encoding, just enough for RSA public keys.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let mut content = bytes.to_vec();
    if content.first().is_some_and(|b| b & 0x80 != 0) {
        content.insert(0, 0);
    }
    der(0x02, &content)
}

#![cfg(all(feature = "dev", feature = "axum"))]
//! RFC 7662 introspection, end to end: an axum app behind `BearerLayer::new(introspector)` (or
//! `JwtOrOpaque`) served on 127.0.0.1, called with reqwest, talking to a real introspection
//! endpoint on 127.0.0.1 (the dev issuer's, or a small faulty one started here).
//!
//! Nothing is mocked and nothing sleeps: time moves through a controllable `Clock`, and
//! concurrency is arranged with gates and counters. The only sleep is inside the deliberately
//! slow fault endpoint. `HANG_GUARD` bounds waits for events so that a broken test fails instead
//! of hanging; no assertion depends on how long anything took.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tokio::sync::watch;
use tower_bearer::dev::{
    DEFAULT_AUDIENCE, DevIssuer, RESOURCE_BEARER, RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET,
};
use tower_bearer::{
    Algorithm, AuthError, BearerLayer, Clock, Introspector, IntrospectorBuilder, JwtOrOpaque, JwtValidator,
    Principal, RequestView, RequireScope, TokenRouting, Validator, Verdict,
};

const REALM: &str = "introspection-tests";

/// Upper bound on any wait for an event (a hang guard, never an assertion).
const HANG_GUARD: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// The protected app
// ---------------------------------------------------------------------------------------------

/// `/me` answers the principal as JSON; `/items` also needs `items:read`.
fn routes() -> Router {
    Router::new()
        .route("/me", get(|p: Principal| async move { Json(p) }))
        .route("/items", get(|| async { "items" }).route_layer(RequireScope::all(["items:read"])))
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    serve_on(listener, router)
}

fn serve_on(listener: tokio::net::TcpListener, router: Router) -> String {
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    format!("http://{addr}")
}

/// A protected app on loopback and a client for it.
struct App {
    base: String,
    client: reqwest::Client,
}

impl App {
    /// Serves [`routes`] behind `BearerLayer::new(validator)`.
    async fn start<V: Validator>(validator: V) -> App {
        Self::start_router(routes().layer(BearerLayer::new(validator).realm(REALM))).await
    }

    async fn start_router(router: Router) -> App {
        App {
            base: serve(router).await,
            client: reqwest::Client::builder().no_proxy().build().expect("test client"),
        }
    }

    /// `GET path` with `Authorization: Bearer <token>`.
    async fn get(&self, path: &str, token: &str) -> Reply {
        let request = self
            .client
            .get(format!("{}{path}", self.base))
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        Reply::read(request).await
    }

    /// `GET path` without credentials.
    async fn get_anonymous(&self, path: &str) -> Reply {
        Reply::read(self.client.get(format!("{}{path}", self.base))).await
    }
}

/// A response, read in full.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    async fn read(request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("send the request");
        Reply {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.expect("read the body"),
        }
    }

    /// Asserts `200` and returns the body as JSON.
    #[track_caller]
    fn ok_json(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "unexpected: {self:?}");
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }

    /// Asserts `200` and returns the body (for routes that answer plain text).
    #[track_caller]
    fn ok_text(&self) -> &str {
        assert_eq!(self.status, StatusCode::OK, "unexpected: {self:?}");
        &self.body
    }

    /// The auth-params of the single `WWW-Authenticate: Bearer …` challenge.
    #[track_caller]
    fn challenge(&self) -> HashMap<String, String> {
        let mut all = self.headers.get_all(header::WWW_AUTHENTICATE).iter();
        let value = all.next().unwrap_or_else(|| panic!("no WWW-Authenticate in {self:?}"));
        assert!(all.next().is_none(), "several challenges: {self:?}");
        parse_challenge(value.to_str().expect("visible ASCII"))
    }

    /// Asserts `status` with a Bearer challenge whose `error` is `error`; returns the params.
    #[track_caller]
    fn assert_error(&self, status: StatusCode, error: &str) -> HashMap<String, String> {
        assert_eq!(self.status, status, "unexpected: {self:?}");
        let params = self.challenge();
        assert_eq!(params.get("realm").map(String::as_str), Some(REALM));
        assert_eq!(params.get("error").map(String::as_str), Some(error), "{params:?}");
        assert_eq!(
            self.headers.get(header::CACHE_CONTROL),
            Some(&HeaderValue::from_static("no-store")),
            "rejections must not be cached: {self:?}"
        );
        params
    }

    /// Asserts `401 invalid_token` and returns the `error_description`.
    #[track_caller]
    fn invalid_token(&self) -> String {
        let mut params = self.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
        params.remove("error_description").expect("invalid_token comes with a description")
    }

    /// Asserts `503`: our failure, not the client's. No challenge at all (so in particular no
    /// `invalid_token`), a short text body, `Retry-After`.
    #[track_caller]
    fn unavailable(&self) {
        assert_eq!(self.status, StatusCode::SERVICE_UNAVAILABLE, "unexpected: {self:?}");
        assert!(
            self.headers.get(header::WWW_AUTHENTICATE).is_none(),
            "a 503 must not blame the client's token: {self:?}"
        );
        assert!(
            self.body.contains("unavailable") && self.body.len() < 128,
            "503 body should be a short explanation: {self:?}"
        );
        assert!(
            !self.body.contains("invalid_token") && !self.body.contains("127.0.0.1"),
            "503 body says too much: {self:?}"
        );
        assert!(self.headers.contains_key(header::RETRY_AFTER), "{self:?}");
    }
}

/// Parses `Bearer k="v", k2="v2"` (quoted-string values, `\` escapes).
fn parse_challenge(raw: &str) -> HashMap<String, String> {
    let rest = raw.strip_prefix("Bearer").unwrap_or_else(|| panic!("not a Bearer challenge: {raw:?}"));
    let mut chars = rest.chars().peekable();
    let mut params = HashMap::new();
    loop {
        while chars.next_if(|c| *c == ' ' || *c == ',').is_some() {}
        if chars.peek().is_none() {
            return params;
        }
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=') {
            name.push(c);
        }
        assert_eq!(chars.next(), Some('='), "{raw:?}");
        assert_eq!(chars.next(), Some('"'), "{raw:?}");
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => value.push(chars.next().expect("escaped char")),
                Some('"') => break,
                Some(c) => value.push(c),
                None => panic!("unterminated quoted-string: {raw:?}"),
            }
        }
        assert!(params.insert(name, value).is_none(), "duplicate param: {raw:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Issuer, introspector, clock
// ---------------------------------------------------------------------------------------------

/// A dev issuer with one (cheap) ES256 key.
async fn dev_issuer() -> DevIssuer {
    DevIssuer::builder().algorithms([Algorithm::ES256]).start().await.expect("start the dev issuer")
}

/// An introspector for `dev`'s endpoint: `client_secret_basic`, issuer and audience checked.
fn introspector_for(dev: &DevIssuer) -> IntrospectorBuilder {
    Introspector::builder(dev.introspection_url())
        .client_secret_basic(RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET)
        .issuer(dev.issuer())
        .audience(DEFAULT_AUDIENCE)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs()
}

/// A clock that only moves when told to, starting at the real time (so that the dev issuer,
/// which uses the real time, and the introspector agree until the test advances it).
#[derive(Clone)]
struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    fn starting_now() -> Self {
        ManualClock(Arc::new(AtomicU64::new(unix_now())))
    }

    fn clock(&self) -> Clock {
        let secs = self.0.clone();
        Clock::from_fn(move || UNIX_EPOCH + Duration::from_secs(secs.load(Ordering::SeqCst)))
    }

    fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_secs(), Ordering::SeqCst);
    }
}

async fn wait_until(counter: &watch::Sender<usize>, at_least: usize, what: &str) {
    let mut rx = counter.subscribe();
    tokio::time::timeout(HANG_GUARD, rx.wait_for(|n| *n >= at_least))
        .await
        .unwrap_or_else(|_| panic!("{what}: saw {} of {at_least}", *counter.borrow()))
        .expect("counter alive");
}

// ---------------------------------------------------------------------------------------------
// A faulty introspection endpoint
// ---------------------------------------------------------------------------------------------

/// What the fault server answers.
#[derive(Clone, Debug)]
enum Fault {
    /// `200 {"active": true, …}` for any token, claims valid for 5 minutes.
    Healthy,
    /// `200` with exactly this JSON, whatever the token.
    Json(Value),
    /// The healthy answer, 10 s late.
    Slow,
    /// The healthy answer's body with this status.
    Status(StatusCode),
    /// `200`, `application/json`, and this body.
    Raw(&'static str),
    /// `307` to this URL.
    Redirect(String),
    /// The healthy answer padded to `size` bytes; with a `Content-Length`, or chunked.
    Oversized { size: usize, content_length: bool },
}

/// One request as the fault server saw it.
#[derive(Clone, Debug)]
struct Seen {
    headers: HeaderMap,
    form: Vec<(String, String)>,
}

struct FaultState {
    fault: Mutex<Fault>,
    calls: watch::Sender<usize>,
    /// Requests wait here while it is false.
    gate: watch::Sender<bool>,
    seen: Mutex<Vec<Seen>>,
}

/// An introspection endpoint on 127.0.0.1 that counts and records its calls and misbehaves on
/// request. Any token is "active" when healthy.
struct FaultServer {
    url: String,
    state: Arc<FaultState>,
}

impl FaultServer {
    async fn start(fault: Fault) -> FaultServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        Self::start_on(listener, fault)
    }

    fn start_on(listener: tokio::net::TcpListener, fault: Fault) -> FaultServer {
        let state = Arc::new(FaultState {
            fault: Mutex::new(fault),
            calls: watch::channel(0).0,
            gate: watch::channel(true).0,
            seen: Mutex::new(Vec::new()),
        });
        let router = Router::new().route("/introspect", post(fault_introspect)).with_state(state.clone());
        let base = serve_on(listener, router);
        FaultServer { url: format!("{base}/introspect"), state }
    }

    fn set(&self, fault: Fault) {
        *self.state.fault.lock().expect("lock") = fault;
    }

    fn calls(&self) -> usize {
        *self.state.calls.borrow()
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("lock").clone()
    }

    fn close_gate(&self) {
        self.state.gate.send_replace(false);
    }

    fn open_gate(&self) {
        self.state.gate.send_replace(true);
    }

    /// An introspector for this server (`client_secret_basic`, no issuer/audience policy).
    fn introspector(&self) -> IntrospectorBuilder {
        Introspector::builder(&self.url).client_secret_basic("fault-rs", "fault-secret")
    }
}

fn healthy_claims() -> Value {
    json!({
        "active": true,
        "sub": "carol",
        "scope": "items:read",
        "client_id": "fault-client",
        "aud": DEFAULT_AUDIENCE,
        "exp": unix_now() + 300,
    })
}

fn json_response(status: StatusCode, body: Body) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

async fn fault_introspect(State(state): State<Arc<FaultState>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = form_urlencoded::parse(&body).into_owned().collect();
    state.seen.lock().expect("lock").push(Seen { headers, form });
    state.calls.send_modify(|n| *n += 1);
    let mut gate = state.gate.subscribe();
    let _ = gate.wait_for(|open| *open).await;
    let fault = state.fault.lock().expect("lock").clone();
    let healthy = healthy_claims().to_string();
    match fault {
        Fault::Healthy => json_response(StatusCode::OK, Body::from(healthy)),
        Fault::Json(value) => json_response(StatusCode::OK, Body::from(value.to_string())),
        Fault::Slow => {
            // The one deliberate sleep: longer than the introspector's timeout.
            tokio::time::sleep(Duration::from_secs(10)).await;
            json_response(StatusCode::OK, Body::from(healthy))
        }
        Fault::Status(status) => json_response(status, Body::from(healthy)),
        Fault::Raw(body) => json_response(StatusCode::OK, Body::from(body)),
        Fault::Redirect(to) => (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]).into_response(),
        Fault::Oversized { size, content_length } => {
            // Still a valid, active answer: only its size is wrong.
            let mut claims = healthy_claims();
            let padding = size.saturating_sub(claims.to_string().len() + 16);
            claims["padding"] = "x".repeat(padding).into();
            let body = Bytes::from(claims.to_string());
            if content_length {
                json_response(StatusCode::OK, Body::from(body))
            } else {
                let chunks: Vec<Result<Bytes, Infallible>> =
                    body.chunks(512).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
                let response =
                    json_response(StatusCode::OK, Body::from_stream(futures_util::stream::iter(chunks)));
                assert!(!response.headers().contains_key(header::CONTENT_LENGTH));
                response
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Active, inactive, unknown
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn active_token_gives_an_opaque_principal() {
    let dev = dev_issuer().await;
    let introspector = introspector_for(&dev).build().expect("build");
    let app = App::start(introspector.clone()).await;
    let token =
        dev.opaque_token().subject("bob").scope("items:read items:write").claim("tenant", "acme").issue();

    let me = app.get("/me", &token).await.ok_json();
    assert_eq!(me["kind"], "opaque", "{me}");
    assert_eq!(me["subject"], "bob");
    assert_eq!(me["scopes"], json!(["items:read", "items:write"]));
    assert_eq!(me["issuer"], dev.issuer());
    assert_eq!(me["audience"], json!([DEFAULT_AUDIENCE]));
    assert_eq!(me["client_id"], "dev-client");
    assert!(me["expires_at"].as_u64().is_some_and(|e| e > unix_now()));
    // The introspection response, verbatim: custom claims survive.
    assert_eq!(me["claims"]["active"], true);
    assert_eq!(me["claims"]["tenant"], "acme");
    assert_eq!(dev.introspection_calls(), 1);
    assert_eq!(introspector.stats().calls, 1);
    assert!(!me.to_string().contains(&token), "the token is not echoed");
}

#[tokio::test]
async fn inactive_and_unknown_tokens_are_invalid_token() {
    let dev = dev_issuer().await;
    let introspector = introspector_for(&dev).build().expect("build");
    let app = App::start(introspector.clone()).await;

    // Never issued.
    let description = app.get("/me", "never-issued-token").await.invalid_token();
    assert!(description.contains("not active"), "{description}");

    // Issued, then revoked before first use.
    let revoked = dev.opaque_token().issue();
    dev.revoke(&revoked);
    app.get("/me", &revoked).await.invalid_token();

    // Issued with an `exp` in the past: the dev endpoint itself says inactive.
    let expired = dev.opaque_token().claim("exp", unix_now() as i64 - 3600).issue();
    app.get("/me", &expired).await.invalid_token();
    assert_eq!(dev.introspection_calls(), 3);

    // No token at all: a bare challenge, and no call.
    let anonymous = app.get_anonymous("/me").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.challenge().get("error"), None);
    assert_eq!(dev.introspection_calls(), 3);
    assert_eq!(introspector.stats().calls, 3);
}

#[tokio::test]
async fn active_with_exp_in_the_past_is_rejected() {
    let server = FaultServer::start(Fault::Json(json!({
        "active": true,
        "sub": "mallory",
        "scope": "items:read",
        "exp": unix_now() - 3600,
    })))
    .await;
    let introspector = server.introspector().build().expect("build");
    let app = App::start(introspector.clone()).await;

    app.get("/me", "stale-token").await.invalid_token();
    app.get("/items", "stale-token").await.invalid_token();
    // The rejection is cached like an inactive answer (no call per request).
    assert_eq!(server.calls(), 1);

    // Control: the same answer with a future `exp` is accepted.
    server.set(Fault::Json(json!({
        "active": true,
        "sub": "mallory",
        "exp": unix_now() + 3600,
    })));
    let me = app.get("/me", "fresh-token").await.ok_json();
    assert_eq!(me["subject"], "mallory");
}

/// The description of a policy failure should name the reason, as it does for JWTs.
///
/// Fails today: `Inner::entry_from` (src/introspect.rs) turns every claim-policy failure into an
/// `inactive` cache entry, and `Inner::finish` then reports `InvalidToken::Inactive` ("the access
/// token is not active") instead of `Expired` / `WrongAudience` / `WrongIssuer`.
#[tokio::test]
async fn policy_failures_keep_their_reason() {
    let server = FaultServer::start(Fault::Json(json!({
        "active": true,
        "exp": unix_now() - 3600,
    })))
    .await;
    let app = App::start(server.introspector().build().expect("build")).await;
    let description = app.get("/me", "expired-token").await.invalid_token();
    assert!(description.contains("expired"), "{description}");

    let dev = dev_issuer().await;
    let token = dev.opaque_token().issue();
    let app = App::start(
        Introspector::builder(dev.introspection_url())
            .client_secret_basic(RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET)
            .audience("other")
            .build()
            .expect("build"),
    )
    .await;
    let description = app.get("/me", &token).await.invalid_token();
    assert!(description.contains("not meant for this resource"), "{description}");
    let app = App::start(
        Introspector::builder(dev.introspection_url())
            .client_secret_basic(RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET)
            .issuer("https://elsewhere.example")
            .build()
            .expect("build"),
    )
    .await;
    let description = app.get("/me", &token).await.invalid_token();
    assert!(description.contains("untrusted issuer"), "{description}");
}

// ---------------------------------------------------------------------------------------------
// Caching and revocation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn revocation_takes_effect_after_max_ttl() {
    let dev = dev_issuer().await;
    let token = dev.opaque_token().scope("items:read").issue();
    let time = ManualClock::starting_now();
    let introspector =
        introspector_for(&dev).max_ttl(Duration::from_secs(60)).clock(time.clock()).build().expect("build");
    let app = App::start(introspector.clone()).await;

    app.get("/me", &token).await.ok_json();
    assert_eq!(dev.introspection_calls(), 1);

    // Revoked at the issuer: the cached answer still stands (that is the price of the cache).
    dev.revoke(&token);
    app.get("/me", &token).await.ok_json();
    time.advance(Duration::from_secs(59));
    app.get("/items", &token).await.ok_text();
    assert_eq!(dev.introspection_calls(), 1, "served from the cache");

    // Past max_ttl the answer is stale: a new call, which says inactive.
    time.advance(Duration::from_secs(2));
    app.get("/me", &token).await.invalid_token();
    assert_eq!(dev.introspection_calls(), 2);
    assert_eq!(introspector.stats().calls, 2);

    // And that inactive answer is cached in turn.
    app.get("/me", &token).await.invalid_token();
    assert_eq!(dev.introspection_calls(), 2);
}

/// A cached answer needs no waiting: `validate` gives it at once (`Ready`: no boxed future, no
/// copy of the token), active or inactive; an unknown or stale token is `Pending`, the endpoint
/// is asked, and a stale answer is never given at once.
#[tokio::test]
async fn cached_answers_are_ready_at_once() {
    let dev = dev_issuer().await;
    let token = dev.opaque_token().scope("items:read").issue();
    let time = ManualClock::starting_now();
    let introspector =
        introspector_for(&dev).max_ttl(Duration::from_secs(60)).clock(time.clock()).build().expect("build");
    let view = RequestView::detached();

    let Verdict::Pending(first) = introspector.validate(&token, &view) else {
        panic!("nothing is cached yet: the endpoint must be asked")
    };
    first.await.expect("an active token");
    assert_eq!(dev.introspection_calls(), 1);
    for _ in 0..3 {
        match introspector.validate(&token, &view) {
            Verdict::Ready(Ok(principal)) => assert!(principal.scopes().contains("items:read")),
            other => panic!("a cached active answer is ready at once: {other:?}"),
        }
    }

    // An inactive answer is cached, and ready at once too.
    let Verdict::Pending(unknown) = introspector.validate("never-issued", &view) else {
        panic!("an unknown token goes to the endpoint")
    };
    assert!(matches!(unknown.await, Err(AuthError::InvalidToken(_))));
    assert!(matches!(
        introspector.validate("never-issued", &view),
        Verdict::Ready(Err(AuthError::InvalidToken(_)))
    ));
    assert_eq!(dev.introspection_calls(), 2, "nothing but the two first answers was asked for");

    // A precheck's refusal needs no waiting either, and no call.
    let prechecked = introspector_for(&dev).precheck(|token| token.len() > 20).build().expect("build");
    assert!(matches!(prechecked.validate("short", &view), Verdict::Ready(Err(AuthError::InvalidToken(_)))));
    assert_eq!(dev.introspection_calls(), 2);

    // Past max_ttl the cached answer is stale: not given, the endpoint is asked again (and says
    // inactive, as the token is revoked meanwhile).
    dev.revoke(&token);
    time.advance(Duration::from_secs(61));
    let Verdict::Pending(again) = introspector.validate(&token, &view) else {
        panic!("a stale answer is not given at once")
    };
    assert!(matches!(again.await, Err(AuthError::InvalidToken(_))));
    assert_eq!(dev.introspection_calls(), 3);
}

#[tokio::test]
async fn exp_bounds_the_cache_lifetime() {
    let dev = dev_issuer().await;
    let token = dev.opaque_token().expires_in(Duration::from_secs(20)).issue();
    // Started after the token was issued, so that its `iat` is not in our future (no leeway).
    let time = ManualClock::starting_now();
    let introspector = introspector_for(&dev)
        .max_ttl(Duration::from_secs(600))
        .leeway(Duration::ZERO)
        .clock(time.clock())
        .build()
        .expect("build");
    let app = App::start(introspector.clone()).await;

    app.get("/me", &token).await.ok_json();
    time.advance(Duration::from_secs(10));
    app.get("/me", &token).await.ok_json();
    assert_eq!(dev.introspection_calls(), 1, "cached while exp is ahead");

    // Our clock is past `exp` (the issuer's real clock is not): the cached answer is not used,
    // and the fresh one fails our time check.
    time.advance(Duration::from_secs(15));
    app.get("/me", &token).await.invalid_token();
    assert_eq!(dev.introspection_calls(), 2);
}

#[tokio::test]
async fn inactive_answers_are_cached_for_inactive_ttl() {
    let dev = dev_issuer().await;
    let time = ManualClock::starting_now();
    let introspector = introspector_for(&dev)
        .inactive_ttl(Duration::from_secs(5))
        .clock(time.clock())
        .build()
        .expect("build");
    let app = App::start(introspector.clone()).await;

    app.get("/me", "garbage-token").await.invalid_token();
    app.get("/me", "garbage-token").await.invalid_token();
    assert_eq!(dev.introspection_calls(), 1, "the inactive answer is cached");
    assert_eq!(introspector.stats().calls, 1);

    // A different garbage token is a different cache key.
    app.get("/me", "other-garbage").await.invalid_token();
    assert_eq!(dev.introspection_calls(), 2);

    time.advance(Duration::from_secs(6));
    app.get("/me", "garbage-token").await.invalid_token();
    assert_eq!(dev.introspection_calls(), 3, "stale after inactive_ttl");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_call() {
    let dev = dev_issuer().await;
    let introspector = introspector_for(&dev).build().expect("build");
    let app = Arc::new(App::start(introspector.clone()).await);
    let token = dev.opaque_token().subject("dave").issue();

    for round in 1..=2 {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (app, token) = (app.clone(), token.clone());
            tasks.spawn(async move { app.get("/me", &token).await });
        }
        while let Some(reply) = tasks.join_next().await {
            assert_eq!(reply.expect("task").ok_json()["subject"], "dave");
        }
        assert_eq!(dev.introspection_calls(), 1, "round {round}");
        assert_eq!(introspector.stats().calls, 1, "round {round}");
    }
}

/// The same, with proof that the requests really overlapped: the endpoint holds the first call
/// until all 20 requests have entered the app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_while_the_call_is_in_progress() {
    let server = FaultServer::start(Fault::Healthy).await;
    server.close_gate();
    let introspector = server.introspector().build().expect("build");
    let arrived = common::EnteredCounter::default();
    let router = routes().layer(BearerLayer::new(introspector.clone()).realm(REALM)).layer(arrived.clone());
    let app = Arc::new(App::start_router(router).await);

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let app = app.clone();
        tasks.spawn(async move { app.get("/me", "shared-token").await });
    }
    arrived.wait_for(20).await;
    wait_until(&server.state.calls, 1, "introspection calls").await;
    assert_eq!(server.calls(), 1, "the others wait for the call in flight");
    server.open_gate();
    while let Some(reply) = tasks.join_next().await {
        assert_eq!(reply.expect("task").ok_json()["subject"], "carol");
    }
    assert_eq!(server.calls(), 1);
    assert_eq!(introspector.stats().calls, 1);
}

#[tokio::test]
async fn cache_is_bounded_by_max_entries() {
    let dev = dev_issuer().await;
    let introspector = introspector_for(&dev).max_entries(10).build().expect("build");
    let app = App::start(introspector.clone()).await;
    let tokens: Vec<String> = (0..200).map(|_| dev.opaque_token().issue()).collect();
    for token in &tokens {
        app.get("/me", token).await.ok_json();
    }
    assert_eq!(dev.introspection_calls(), 200);
    tokio::task::yield_now().await;

    // moka applies inserts and evictions in batches (every 64 writes, or on a timer), inside
    // cache calls: `entry_count` only counts applied inserts, and each batch evicts down to the
    // capacity. After 200 inserts several batches have run, so the count is exact-or-lower;
    // there is no `run_pending_tasks` passthrough to force the last batch.
    let cached = introspector.stats().cached_entries;
    assert!((1..=10).contains(&cached), "{cached} entries cached");

    // The bound is real, not just a count: re-asking for the first 100 tokens finds at most the
    // 10 that were kept, and introspects the rest again.
    for token in &tokens[..100] {
        app.get("/me", token).await.ok_json();
    }
    let again = dev.introspection_calls() - 200;
    assert!(again >= 90, "only {again} of 100 re-introspected");
}

// ---------------------------------------------------------------------------------------------
// Claim policy and scopes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn wrong_audience_or_issuer_is_rejected() {
    let dev = dev_issuer().await;
    let token = dev.opaque_token().issue();

    // `.audience` accumulates: this one accepts "tower-bearer-dev" or "other".
    let either_audience = introspector_for(&dev).audience("other").build().expect("build");
    let app = App::start(either_audience).await;
    app.get("/me", &token).await.ok_json();

    let only_other = Introspector::builder(dev.introspection_url())
        .client_secret_basic(RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET)
        .issuer(dev.issuer())
        .audience("other")
        .build()
        .expect("build");
    let app = App::start(only_other).await;
    app.get("/me", &token).await.invalid_token();

    let wrong_issuer = Introspector::builder(dev.introspection_url())
        .client_secret_basic(RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET)
        .issuer("https://elsewhere.example")
        .audience(DEFAULT_AUDIENCE)
        .build()
        .expect("build");
    let app = App::start(wrong_issuer).await;
    app.get("/me", &token).await.invalid_token();

    // A token for another audience, among several.
    let multi = dev.opaque_token().claim("aud", json!(["billing", DEFAULT_AUDIENCE])).issue();
    let foreign = dev.opaque_token().audience("billing").issue();
    let app = App::start(introspector_for(&dev).build().expect("build")).await;
    app.get("/me", &multi).await.ok_json();
    app.get("/me", &foreign).await.invalid_token();
}

#[tokio::test]
async fn introspected_scopes_are_enforced_per_route() {
    let dev = dev_issuer().await;
    let app = App::start(introspector_for(&dev).build().expect("build")).await;
    let reader = dev.opaque_token().scope("profile items:read").issue();
    let other = dev.opaque_token().scope("profile").issue();
    let none = dev.opaque_token().issue();

    assert_eq!(app.get("/items", &reader).await.ok_text(), "items");
    for token in [&other, &none] {
        let params = app.get("/items", token).await.assert_error(StatusCode::FORBIDDEN, "insufficient_scope");
        assert_eq!(params.get("scope").map(String::as_str), Some("items:read"));
        // The token itself is fine elsewhere.
        app.get("/me", token).await.ok_json();
    }
    // Array-valued `scp` counts too.
    let scp = dev.opaque_token().claim("scp", json!(["items:read"])).issue();
    app.get("/items", &scp).await.ok_text();
}

// ---------------------------------------------------------------------------------------------
// Client authentication at the endpoint
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn client_authentication_methods() {
    let dev = dev_issuer().await;
    let token = dev.opaque_token().issue();
    let url = dev.introspection_url();
    let methods = [
        (
            Introspector::builder(&url).client_secret_basic(RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET),
            "client_secret_basic",
        ),
        (
            Introspector::builder(&url).client_secret_post(RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET),
            "client_secret_post",
        ),
        (Introspector::builder(&url).bearer_auth(RESOURCE_BEARER), "bearer"),
    ];
    for (n, (builder, method)) in methods.into_iter().enumerate() {
        let app = App::start(builder.build().expect("build")).await;
        app.get("/me", &token).await.ok_json();
        assert_eq!(dev.introspection_calls(), n + 1);
        assert_eq!(dev.last_introspection_auth(), Some(method));
    }
}

#[tokio::test]
async fn rejected_client_credentials_are_our_problem() {
    let dev = dev_issuer().await;
    let token = dev.opaque_token().issue();
    let url = dev.introspection_url();
    let wrong = [
        Introspector::builder(&url).client_secret_basic(RESOURCE_CLIENT_ID, "wrong"),
        Introspector::builder(&url).client_secret_post(RESOURCE_CLIENT_ID, "wrong"),
        Introspector::builder(&url).bearer_auth("wrong-bearer"),
    ];
    for (n, builder) in wrong.into_iter().enumerate() {
        let introspector = builder.build().expect("build");
        let app = App::start(introspector.clone()).await;
        // The endpoint answers 401 invalid_client: the client's token is not at fault.
        app.get("/me", &token).await.unavailable();
        // Not cached: the next request asks again.
        app.get("/me", &token).await.unavailable();
        assert_eq!(introspector.stats().calls, 2);
        assert_eq!(dev.introspection_calls(), 2 * (n + 1));
    }
    assert_eq!(dev.last_introspection_auth(), None, "never authenticated");
}

#[tokio::test]
async fn request_is_an_rfc7662_form_post() {
    let server = FaultServer::start(Fault::Healthy).await;
    // A b64token with the characters that form encoding must protect.
    let token = "abc+/def-._~==";

    let basic = Introspector::builder(&server.url)
        .client_secret_basic("my api:1", "p@ss word/+")
        .token_type_hint("access_token")
        .build()
        .expect("build");
    App::start(basic).await.get("/me", token).await.ok_json();

    let post = Introspector::builder(&server.url)
        .client_secret_post("my api:1", "p@ss word/+")
        .build()
        .expect("build");
    App::start(post).await.get("/me", token).await.ok_json();

    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    for call in &seen {
        assert_eq!(
            call.headers.get(header::CONTENT_TYPE),
            Some(&HeaderValue::from_static("application/x-www-form-urlencoded")),
        );
        assert_eq!(call.headers.get(header::ACCEPT), Some(&HeaderValue::from_static("application/json")));
        assert_eq!(call.form[0], ("token".to_owned(), token.to_owned()));
    }

    // client_secret_basic: RFC 6749 §2.3.1 form-encodes id and secret before Base64.
    let basic = &seen[0];
    let expected = format!("Basic {}", STANDARD.encode("my+api%3A1:p%40ss+word%2F%2B"));
    assert_eq!(
        basic.headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap()),
        Some(expected.as_str())
    );
    let fields = |call: &Seen| -> Vec<String> { call.form.iter().map(|(k, _)| k.clone()).collect() };
    assert_eq!(fields(basic), ["token", "token_type_hint"]);
    assert_eq!(basic.form[1].1, "access_token");

    // client_secret_post: credentials in the body, no Authorization header.
    let post = &seen[1];
    assert!(post.headers.get(header::AUTHORIZATION).is_none());
    assert_eq!(fields(post), ["token", "client_id", "client_secret"]);
    assert_eq!(post.form[1].1, "my api:1");
    assert_eq!(post.form[2].1, "p@ss word/+");
}

// ---------------------------------------------------------------------------------------------
// Endpoint faults: 503, never invalid_token, never cached
// ---------------------------------------------------------------------------------------------

/// Two requests under `fault` get 503 and make a call each (failures are not cached); once the
/// fault is gone, the same token is accepted.
async fn assert_fault_is_unavailable(
    fault: Fault,
    builder: impl FnOnce(&FaultServer) -> IntrospectorBuilder,
) {
    let server = FaultServer::start(fault.clone()).await;
    let introspector = builder(&server).build().expect("build");
    let app = App::start(introspector.clone()).await;
    let token = "token-during-a-fault";

    app.get("/me", token).await.unavailable();
    app.get("/me", token).await.unavailable();
    assert_eq!(server.calls(), 2, "{fault:?}: failures are not cached");
    assert_eq!(introspector.stats().calls, 2);

    server.set(Fault::Healthy);
    let me = app.get("/me", token).await.ok_json();
    assert_eq!(me["subject"], "carol", "{fault:?}");
    assert_eq!(server.calls(), 3);
}

#[tokio::test]
async fn endpoint_down() {
    // A port that was free a moment ago: connection refused.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    let introspector = Introspector::builder(format!("http://{addr}/introspect"))
        .client_secret_basic("fault-rs", "fault-secret")
        .build()
        .expect("build");
    let app = App::start(introspector.clone()).await;

    app.get("/me", "token-while-down").await.unavailable();
    app.get("/me", "token-while-down").await.unavailable();
    assert_eq!(introspector.stats().calls, 2);

    // The endpoint comes up on that port: the same token now works.
    let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind the released port");
    let server = FaultServer::start_on(listener, Fault::Healthy);
    app.get("/me", "token-while-down").await.ok_json();
    assert_eq!(server.calls(), 1);
}

#[tokio::test]
async fn endpoint_slower_than_the_timeout() {
    assert_fault_is_unavailable(Fault::Slow, |s| s.introspector().timeout(Duration::from_millis(300))).await;
}

#[tokio::test]
async fn endpoint_error_statuses() {
    for status in [
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::BAD_GATEWAY,
        StatusCode::UNAUTHORIZED,
        StatusCode::NOT_FOUND,
    ] {
        assert_fault_is_unavailable(Fault::Status(status), FaultServer::introspector).await;
    }
}

#[tokio::test]
async fn dev_endpoint_failing_then_recovering() {
    let dev = dev_issuer().await;
    let introspector = introspector_for(&dev).build().expect("build");
    let app = App::start(introspector.clone()).await;
    let token = dev.opaque_token().subject("erin").issue();

    dev.set_introspection_failing(true);
    app.get("/me", &token).await.unavailable();
    app.get("/me", &token).await.unavailable();
    assert_eq!(dev.introspection_calls(), 2);

    dev.set_introspection_failing(false);
    assert_eq!(app.get("/me", &token).await.ok_json()["subject"], "erin");
    app.get("/me", &token).await.ok_json();
    assert_eq!(dev.introspection_calls(), 3, "the good answer is cached");
}

#[tokio::test]
async fn garbage_json() {
    assert_fault_is_unavailable(Fault::Raw("this is not json{"), FaultServer::introspector).await;
}

#[tokio::test]
async fn json_without_active() {
    assert_fault_is_unavailable(Fault::Json(json!({"foo": 1})), FaultServer::introspector).await;
    assert_fault_is_unavailable(
        Fault::Json(json!({"active": "true", "sub": "x"})),
        FaultServer::introspector,
    )
    .await;
}

#[tokio::test]
async fn oversized_body_with_content_length() {
    let fault = Fault::Oversized { size: 4096, content_length: true };
    assert_fault_is_unavailable(fault.clone(), |s| s.introspector().max_body_bytes(1024)).await;
    // Control: the same answer fits the default bound.
    let server = FaultServer::start(fault).await;
    let app = App::start(server.introspector().build().expect("build")).await;
    app.get("/me", "padded").await.ok_json();
}

#[tokio::test]
async fn oversized_body_streamed_without_length() {
    let fault = Fault::Oversized { size: 4096, content_length: false };
    assert_fault_is_unavailable(fault.clone(), |s| s.introspector().max_body_bytes(1024)).await;
    let server = FaultServer::start(fault).await;
    let app = App::start(server.introspector().build().expect("build")).await;
    app.get("/me", "padded").await.ok_json();
}

/// A JSON array is not an RFC 7662 response either. Fails today: `Inner::entry_from`
/// (src/introspect.rs) reads `active` with a derived `Deserialize`, which also accepts the
/// sequence form `[true]`; the claims then fail to parse and the token is cached as inactive,
/// so the client gets `401 invalid_token` for what is the endpoint's fault.
#[tokio::test]
async fn non_object_answer_is_unavailable() {
    assert_fault_is_unavailable(Fault::Json(json!([true])), FaultServer::introspector).await;
    assert_fault_is_unavailable(Fault::Json(json!([false])), FaultServer::introspector).await;
}

/// The introspection call carries the token (and, with `client_secret_post`, our secret) and
/// its answer is trusted: it must go to the configured endpoint only. Fails today: the default
/// client follows up to 3 redirects (src/jwt/jwks.rs `http_client`, used by
/// `IntrospectorBuilder::build`), re-POSTs the form to any origin on a 307/308, and accepts that
/// origin's `active: true`.
#[tokio::test]
async fn redirects_are_not_followed() {
    let elsewhere = FaultServer::start(Fault::Healthy).await;
    let server = FaultServer::start(Fault::Redirect(elsewhere.url.clone())).await;
    for builder in [
        Introspector::builder(&server.url).client_secret_post("rs", "the-secret"),
        Introspector::builder(&server.url).client_secret_basic("rs", "the-secret"),
    ] {
        let app = App::start(builder.build().expect("build")).await;
        app.get("/me", "the-token").await.unavailable();
    }
    assert_eq!(server.calls(), 2);
    assert_eq!(elsewhere.calls(), 0, "token and secret sent to {:?}", elsewhere.seen());
}

// ---------------------------------------------------------------------------------------------
// JWTs and opaque tokens behind one layer
// ---------------------------------------------------------------------------------------------

fn jwt_validator(dev: &DevIssuer) -> JwtValidator {
    JwtValidator::builder()
        .issuer(dev.issuer())
        .audience(DEFAULT_AUDIENCE)
        .jwks_url(dev.jwks_url())
        .build()
        .expect("build the JWT validator")
}

#[tokio::test]
async fn jwt_or_opaque_routes_by_shape() {
    let dev = dev_issuer().await;
    let introspector = introspector_for(&dev).build().expect("build");
    let app = App::start(JwtOrOpaque::new(jwt_validator(&dev), introspector.clone())).await;

    let jwt = dev.token().subject("jwt-user").scope("items:read").sign();
    let me = app.get("/me", &jwt).await.ok_json();
    assert_eq!(me["kind"], "jwt");
    assert_eq!(me["subject"], "jwt-user");
    app.get("/items", &jwt).await.ok_text();
    assert_eq!(dev.introspection_calls(), 0, "JWTs are validated locally");
    assert_eq!(dev.jwks_fetches(), 1);

    let opaque = dev.opaque_token().subject("opaque-user").issue();
    let me = app.get("/me", &opaque).await.ok_json();
    assert_eq!(me["kind"], "opaque");
    assert_eq!(me["subject"], "opaque-user");
    assert_eq!(dev.introspection_calls(), 1);

    // A JWT-shaped forgery is refused locally; it never reaches the endpoint.
    let forged = format!("{}.{}", &jwt[..jwt.rfind('.').unwrap()], "AAAA");
    app.get("/me", &forged).await.invalid_token();
    assert_eq!(dev.introspection_calls(), 1);
    assert_eq!(introspector.stats().calls, 1);
}

/// `JwtOrOpaque` answers from the JWT validator's cache exactly when `validate` would ask that
/// validator: routing by shape (every token the JWT validator accepts is JWT-shaped).
#[tokio::test]
async fn jwt_or_opaque_remembers_what_it_would_send_to_the_jwt_validator() {
    let dev = dev_issuer().await;
    let jwt = jwt_validator(&dev);
    let introspector = introspector_for(&dev).build().expect("build");
    let by_shape = JwtOrOpaque::new(jwt.clone(), introspector.clone());
    let introspect_all = by_shape.clone().routing(TokenRouting::IntrospectAll);
    let view = RequestView::detached();
    let validated = async |token: &str| match jwt.validate(token, &view) {
        Verdict::Ready(result) => result,
        Verdict::Pending(pending) => pending.await,
    };

    let token = dev.token().subject("jwt-user").sign();
    assert!(by_shape.remembered(token.as_bytes()).is_none(), "nothing verified yet");
    // The cache admits a token seen twice.
    for _ in 0..2 {
        validated(&token).await.expect("a valid JWT");
    }
    let remembered = by_shape.remembered(token.as_bytes()).expect("remembered, routing by shape");
    assert_eq!(remembered.subject(), Some("jwt-user"));
    assert!(introspect_all.remembered(token.as_bytes()).is_none(), "every token is introspected");

    // What the delegation relies on: a JWT whose header is not JWT-shaped at a glance (a space
    // before `{`, signed all the same) is refused by the JWT validator, so it is never in its
    // cache for `JwtOrOpaque` to answer where `validate` would have introspected it.
    let claims = format!(
        r#"{{"iss":"{}","aud":"{DEFAULT_AUDIENCE}","sub":"spaced","exp":{}}}"#,
        dev.issuer(),
        unix_now() + 300
    );
    let spaced =
        dev.sign_raw("es256-1", Algorithm::ES256, br#" {"alg":"ES256","kid":"es256-1"}"#, claims.as_bytes());
    assert!(!spaced.starts_with('e'), "a JSON object's base64url starts with `e`");
    assert!(matches!(validated(&spaced).await, Err(AuthError::InvalidToken(_))));
    assert!(by_shape.remembered(spaced.as_bytes()).is_none());
    // `JwtOrOpaque` itself sends it to introspection, which does not know it.
    assert_eq!(dev.introspection_calls(), 0);
    let Verdict::Pending(introspected) = by_shape.validate(&spaced, &view) else {
        panic!("not JWT-shaped: introspected")
    };
    assert!(matches!(introspected.await, Err(AuthError::InvalidToken(_))));
    assert_eq!(dev.introspection_calls(), 1);
}

#[tokio::test]
async fn jwt_or_opaque_introspect_all() {
    let dev = dev_issuer().await;
    let introspector = introspector_for(&dev).build().expect("build");
    let validator =
        JwtOrOpaque::new(jwt_validator(&dev), introspector.clone()).routing(TokenRouting::IntrospectAll);
    let app = App::start(validator).await;

    // The dev endpoint does not know its JWTs as opaque grants: inactive.
    let jwt = dev.token().sign();
    app.get("/me", &jwt).await.invalid_token();
    assert_eq!(dev.introspection_calls(), 1);
    assert_eq!(dev.jwks_fetches(), 0, "not validated locally");

    let opaque = dev.opaque_token().issue();
    assert_eq!(app.get("/me", &opaque).await.ok_json()["kind"], "opaque");
    assert_eq!(dev.introspection_calls(), 2);
    assert_eq!(introspector.stats().calls, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_leader_does_not_fail_the_followers() {
    let server = FaultServer::start(Fault::Healthy).await;
    server.close_gate();
    let introspector = server.introspector().build().expect("build");
    let arrived = common::EnteredCounter::default();
    let router = routes().layer(BearerLayer::new(introspector.clone()).realm(REALM)).layer(arrived.clone());
    let app = Arc::new(App::start_router(router).await);

    // The leader's call is held at the endpoint; a follower joins it.
    let leader = {
        let app = app.clone();
        tokio::spawn(async move { app.get("/me", "shared-token").await })
    };
    wait_until(&server.state.calls, 1, "the leader's call").await;
    let follower = {
        let app = app.clone();
        tokio::spawn(async move { app.get("/me", "shared-token").await })
    };
    arrived.wait_for(2).await;
    assert_eq!(server.calls(), 1, "the follower waits for the leader's call");

    // The leader's client goes away: its connection closes and the server drops its request,
    // and with it the introspection call it was running.
    leader.abort();
    wait_until(&server.state.calls, 2, "the follower's own call").await;
    server.open_gate();
    let reply = follower.await.expect("follower task");
    assert_eq!(reply.ok_json()["subject"], "carol");
}

// ---------------------------------------------------------------------------------------------
// Introspection is no amplifier
// ---------------------------------------------------------------------------------------------

/// `GET /me` with `token`, in process (20 000 of them at once would need as many sockets).
async fn me_in_process(router: Router, token: String) -> (StatusCode, HeaderMap) {
    use tower::ServiceExt;
    let request = axum::http::Request::get("/me")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request");
    let response = router.oneshot(request).await.expect("infallible");
    (response.status(), response.headers().clone())
}

/// A flood of distinct made-up tokens: calls under way never exceed `max_in_flight` (8), at most
/// `max_queued` (16) more requests wait, and every other one is answered `503` + `Retry-After`
/// at once, without a call and without being remembered. A token cached before the flood keeps
/// working through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_made_up_tokens_makes_a_bounded_number_of_calls() {
    const FLOOD: usize = 20_000;
    let server = FaultServer::start(Fault::Healthy).await;
    // Held calls must not time out while the flood is answered (a loaded machine is slow).
    let introspector =
        server.introspector().max_in_flight(8).max_queued(16).timeout(HANG_GUARD).build().expect("build");
    let router = routes().layer(BearerLayer::new(introspector.clone()).realm(REALM));
    assert_eq!(me_in_process(router.clone(), "known-token".into()).await.0, StatusCode::OK);
    assert_eq!(server.calls(), 1);

    // Every made-up token is inactive, and the endpoint holds its answers back.
    server.set(Fault::Json(json!({ "active": false })));
    server.close_gate();
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..FLOOD {
        flood.spawn(me_in_process(router.clone(), format!("made-up-{i}")));
    }
    let mut refused = 0;
    while refused < FLOOD - 24 {
        let (status, headers) = tokio::time::timeout(HANG_GUARD, flood.join_next())
            .await
            .expect("the flood was answered")
            .expect("a request")
            .expect("request task");
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "only 24 requests may wait");
        assert!(headers.contains_key(header::RETRY_AFTER));
        assert!(!headers.contains_key(header::WWW_AUTHENTICATE), "our problem, not the token's");
        refused += 1;
    }
    wait_until(&server.state.calls, 1 + 8, "calls up to the in-flight bound").await;
    assert_eq!(server.calls(), 1 + 8, "calls under way beyond max_in_flight");
    // The token cached before the flood needs no slot.
    assert_eq!(me_in_process(router.clone(), "known-token".into()).await.0, StatusCode::OK);

    server.open_gate();
    let rest: Vec<_> = tokio::time::timeout(HANG_GUARD, flood.join_all()).await.expect("the rest");
    assert_eq!(rest.len(), 24);
    assert!(rest.iter().all(|(status, _)| *status == StatusCode::UNAUTHORIZED), "{rest:?}");
    assert_eq!(server.calls(), 1 + 24, "one call for each admitted token, none for the refused");
    assert_eq!(introspector.stats().calls, 1 + 24);
    // Refusals are not remembered: memory stays where the admitted answers put it.
    assert!(introspector.stats().cached_entries <= 1 + 24, "{}", introspector.stats().cached_entries);
}

/// Where the issuer's format is known, made-up tokens never reach it at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_precheck_keeps_made_up_tokens_from_the_endpoint() {
    let server = FaultServer::start(Fault::Healthy).await;
    let introspector = server
        .introspector()
        .precheck(|token| token.len() == 24 && token.starts_with("at_"))
        .build()
        .expect("build");
    let router = routes().layer(BearerLayer::new(introspector.clone()).realm(REALM));
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..20_000 {
        flood.spawn(me_in_process(router.clone(), format!("made-up-{i}")));
    }
    for (status, headers) in tokio::time::timeout(HANG_GUARD, flood.join_all()).await.expect("answers") {
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let challenge = parse_challenge(headers[header::WWW_AUTHENTICATE].to_str().unwrap());
        assert_eq!(challenge["error"], "invalid_token");
    }
    assert_eq!(server.calls(), 0);
    // A token of the issuer's shape is introspected as usual.
    let (status, _) = me_in_process(router, "at_0123456789abcdefghijk".into()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.calls(), 1);
}

/// A client of the application's own (here without any timeout) still gets the introspector's
/// per-call timeout: a slow endpoint is a `503`, not a hang.
#[tokio::test]
async fn a_caller_supplied_client_still_gets_the_call_timeout() {
    assert_fault_is_unavailable(Fault::Slow, |s| {
        s.introspector()
            .http_client(tower_bearer::HttpClient::builder().no_proxy().build().unwrap())
            .timeout(Duration::from_millis(300))
    })
    .await;
}

//! The whole OAuth 2.0 flow (RFC 6749 Figure 2, steps A–H) against the development
//! authorization server, with a `BearerLayer` resource server, over real loopback HTTP; then the
//! authorization server's error cases, each with its exact RFC 6749 error code.
//!
//! The authorization server and the resource server share one test clock, so token expiry is
//! reached by moving the clock, never by sleeping.
#![cfg(all(feature = "dev", feature = "axum"))]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, StatusCode, header};
use serde_json::Value;
use tower_bearer::challenge::{BearerError, Challenge};
use tower_bearer::dev::{
    DEV_CLIENT_ID, DEV_CLIENT_SECRET, DEV_PUBLIC_CLIENT_ID, DEV_REDIRECT_URI, DevClient, DevIssuer,
    DevIssuerBuilder, Pkce, RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET,
};
use tower_bearer::{Algorithm, BearerLayer, Clock};

/// A clock the test moves by hand, shared by the authorization and the resource server.
#[derive(Clone)]
struct TestClock(Arc<AtomicI64>);

impl TestClock {
    fn new() -> Self {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("time").as_secs();
        TestClock(Arc::new(AtomicI64::new(now as i64)))
    }
    fn clock(&self) -> Clock {
        let now = self.0.clone();
        Clock::from_fn(move || UNIX_EPOCH + Duration::from_secs(now.load(Ordering::SeqCst) as u64))
    }
    fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

const ACCESS_TTL: u64 = 2;

/// The authorization server (ES256: key generation is instant), a resource server serving
/// `tests/common`'s routes behind a bearer layer, and an HTTP client that does not follow
/// redirects (the client reads the code from `Location`).
struct Setup {
    dev: DevIssuer,
    rs: String,
    http: reqwest::Client,
    clock: TestClock,
}

impl Setup {
    async fn start() -> Setup {
        Self::with(|b| b).await
    }

    async fn with(configure: impl FnOnce(DevIssuerBuilder) -> DevIssuerBuilder) -> Setup {
        let clock = TestClock::new();
        let builder = DevIssuer::builder()
            .algorithms([Algorithm::ES256])
            .access_token_ttl(Duration::from_secs(ACCESS_TTL))
            .clock(clock.clock());
        let dev = configure(builder).start().await.expect("start the dev authorization server");
        let validator = common::validator_builder(&dev)
            .jwks_url(dev.jwks_url())
            .leeway(Duration::ZERO)
            .clock(clock.clock())
            .build()
            .expect("validator");
        let rs =
            common::serve(common::routes().layer(BearerLayer::new(validator).realm(common::REALM))).await;
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(common::HANG_GUARD)
            .build()
            .expect("client");
        Setup { dev, rs, http, clock }
    }

    /// `GET /authorize?…` as sent.
    async fn authorize_raw(&self, pairs: &[(&str, &str)]) -> reqwest::Response {
        let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
        let url = format!("{}?{query}", self.dev.authorization_url());
        self.http.get(url).send().await.expect("authorization request")
    }

    /// A valid authorization request of `client_id` with `pkce`, plus `extra` parameters;
    /// returns the redirect's query parameters (asserting a `302` to the registered URI).
    async fn authorize(
        &self,
        client_id: &str,
        pkce: &Pkce,
        extra: &[(&str, &str)],
    ) -> HashMap<String, String> {
        let mut pairs = vec![
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", DEV_REDIRECT_URI),
            ("code_challenge", pkce.challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("state", "xyz-state"),
        ];
        for (name, value) in extra {
            pairs.retain(|(n, _)| n != name);
            pairs.push((name, value));
        }
        redirected(&self.authorize_raw(&pairs).await)
    }

    /// Steps A: an authorization code for the public client.
    async fn code(&self, pkce: &Pkce, scope: &str) -> String {
        let answer = self.authorize(DEV_PUBLIC_CLIENT_ID, pkce, &[("scope", scope)]).await;
        assert_eq!(answer.get("state").map(String::as_str), Some("xyz-state"), "{answer:?}");
        assert_eq!(answer.get("iss").map(String::as_str), Some(self.dev.issuer()), "RFC 9207: {answer:?}");
        answer.get("code").unwrap_or_else(|| panic!("no code: {answer:?}")).clone()
    }

    async fn token(&self, auth: Auth<'_>, form: &[(&str, &str)]) -> TokenAnswer {
        let mut form: Vec<(&str, &str)> = form.to_vec();
        let mut request = self.http.post(self.dev.token_url());
        match auth {
            Auth::Basic(id, secret) => request = request.basic_auth(id, Some(secret)),
            Auth::Post(id, secret) => form.extend([("client_id", id), ("client_secret", secret)]),
            Auth::Public(id) => form.push(("client_id", id)),
        }
        let response = request.form(&form).send().await.expect("token request");
        let status = response.status();
        let headers = response.headers().clone();
        let body: Value = serde_json::from_slice(&response.bytes().await.expect("token body")).expect("JSON");
        assert_eq!(headers.get(header::CACHE_CONTROL).map(|v| v.as_bytes()), Some(b"no-store".as_slice()));
        assert_eq!(headers.get(header::PRAGMA).map(|v| v.as_bytes()), Some(b"no-cache".as_slice()));
        TokenAnswer { status, headers, body }
    }

    /// Step B: the code exchanged by the public client.
    async fn exchange(&self, code: &str, pkce: &Pkce) -> TokenAnswer {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", DEV_REDIRECT_URI),
            ("code_verifier", pkce.verifier.as_str()),
        ];
        self.token(Auth::Public(DEV_PUBLIC_CLIENT_ID), &form).await
    }

    /// Step G: a refresh by the public client.
    async fn refresh(&self, refresh_token: &str, scope: Option<&str>) -> TokenAnswer {
        let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", refresh_token)];
        form.extend(scope.map(|s| ("scope", s)));
        self.token(Auth::Public(DEV_PUBLIC_CLIENT_ID), &form).await
    }

    /// A fresh grant: code, exchange, tokens.
    async fn grant(&self, scope: &str) -> TokenAnswer {
        let pkce = Pkce::new();
        let code = self.code(&pkce, scope).await;
        self.exchange(&code, &pkce).await.ok()
    }

    /// Steps C–F: `GET /items` at the resource server.
    async fn call(&self, access_token: &str) -> (StatusCode, HeaderMap) {
        let response = self
            .http
            .get(format!("{}/items", self.rs))
            .bearer_auth(access_token)
            .send()
            .await
            .expect("resource");
        (response.status(), response.headers().clone())
    }

    /// RFC 7662 introspection, as the resource server.
    async fn active(&self, token: &str) -> bool {
        let response = self
            .http
            .post(self.dev.introspection_url())
            .basic_auth(RESOURCE_CLIENT_ID, Some(RESOURCE_CLIENT_SECRET))
            .form(&[("token", token)])
            .send()
            .await
            .expect("introspection");
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON");
        body["active"].as_bool().expect("active is a boolean")
    }
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    Basic(&'a str, &'a str),
    Post(&'a str, &'a str),
    Public(&'a str),
}

#[derive(Debug)]
struct TokenAnswer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl TokenAnswer {
    #[track_caller]
    fn ok(self) -> TokenAnswer {
        assert_eq!(self.status, StatusCode::OK, "{:?}", self.body);
        assert_eq!(self.body["token_type"], "Bearer", "{:?}", self.body);
        self
    }
    fn access(&self) -> &str {
        self.body["access_token"].as_str().expect("access_token")
    }
    fn refresh(&self) -> &str {
        self.body["refresh_token"].as_str().expect("refresh_token")
    }
    /// Asserts an RFC 6749 §5.2 error: `400` (or `status`) and `error`.
    #[track_caller]
    fn error(&self, status: StatusCode, error: &str) {
        assert_eq!(self.status, status, "{:?}", self.body);
        assert_eq!(self.body["error"], error, "{:?}", self.body);
        assert!(self.body.get("access_token").is_none());
    }
}

/// The query parameters of a `302` to the registered redirect URI.
#[track_caller]
fn redirected(response: &reqwest::Response) -> HashMap<String, String> {
    assert_eq!(response.status(), StatusCode::FOUND, "expected a redirect to the client");
    let location = response.headers()[header::LOCATION].to_str().expect("ASCII location");
    let (base, query) = location.split_once('?').expect("a query");
    assert_eq!(base, DEV_REDIRECT_URI);
    form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

#[tokio::test]
async fn the_whole_flow_a_to_h() {
    let s = Setup::start().await;

    // (A) authorization request → code.
    let pkce = Pkce::new();
    let code = s.code(&pkce, "items:read").await;

    // (B) code + verifier → access token and refresh token.
    let tokens = s.exchange(&code, &pkce).await.ok();
    assert_eq!(tokens.body["expires_in"], ACCESS_TTL, "{:?}", tokens.body);
    assert_eq!(tokens.body["scope"], "items:read");
    // An RFC 9068 JWT access token.
    let segments: Vec<&str> = tokens.access().split('.').collect();
    assert_eq!(segments.len(), 3, "a JWS compact serialization");
    let decode = |segment: &str| -> Value {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(segment).expect("base64url");
        serde_json::from_slice(&bytes).expect("JSON")
    };
    assert_eq!(decode(segments[0])["typ"], "at+jwt");
    let claims = decode(segments[1]);
    assert_eq!(claims["iss"], s.dev.issuer());
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["client_id"], DEV_PUBLIC_CLIENT_ID);
    assert_eq!(claims["scope"], "items:read");
    assert!(claims["jti"].is_string() && claims["aud"].is_string(), "{claims}");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), ACCESS_TTL as i64);

    // (C, D) the protected resource.
    assert_eq!(s.call(tokens.access()).await.0, StatusCode::OK);

    // (E, F) once the access token expired: 401 invalid_token, which the client reads as
    // "refresh".
    s.clock.advance(ACCESS_TTL as i64);
    let (status, headers) = s.call(tokens.access()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenge = Challenge::find_bearer_in(&headers).expect("parses").expect("a Bearer challenge");
    assert_eq!(challenge.bearer_error(), BearerError::InvalidToken);
    assert!(challenge.error_description().is_some_and(|d| d.contains("expired")), "{challenge:?}");

    // (G, H) refresh → a new access token and a new refresh token.
    let refreshed = s.refresh(tokens.refresh(), None).await.ok();
    assert_ne!(refreshed.access(), tokens.access());
    assert_ne!(refreshed.refresh(), tokens.refresh(), "refresh tokens rotate");
    assert_eq!(s.call(refreshed.access()).await.0, StatusCode::OK);

    // The rotated refresh token presented again: invalid_grant, and the whole family revoked.
    s.refresh(tokens.refresh(), None).await.error(StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(!s.active(refreshed.access()).await, "family revoked");
    s.refresh(refreshed.refresh(), None).await.error(StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn metadata_describes_the_authorization_server() {
    let s = Setup::start().await;
    for path in ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"] {
        let response = s.http.get(format!("{}{path}", s.dev.issuer())).send().await.unwrap();
        let meta: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(meta["issuer"], s.dev.issuer());
        assert_eq!(meta["authorization_endpoint"], s.dev.authorization_url());
        assert_eq!(meta["token_endpoint"], s.dev.token_url());
        assert_eq!(meta["code_challenge_methods_supported"], serde_json::json!(["S256"]));
        assert_eq!(meta["response_types_supported"], serde_json::json!(["code"]));
    }
    assert_eq!(s.dev.metadata_url(), format!("{}/.well-known/oauth-authorization-server", s.dev.issuer()));
}

#[tokio::test]
async fn wrong_pkce_verifier_is_invalid_grant() {
    let s = Setup::start().await;
    let pkce = Pkce::new();
    let code = s.code(&pkce, "items:read").await;
    s.exchange(&code, &Pkce::new()).await.error(StatusCode::BAD_REQUEST, "invalid_grant");
    // Missing verifier: a malformed request.
    let code = s.code(&pkce, "items:read").await;
    let form =
        [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", DEV_REDIRECT_URI)];
    s.token(Auth::Public(DEV_PUBLIC_CLIENT_ID), &form)
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn pkce_is_required_and_plain_is_refused() {
    let s = Setup::start().await;
    let pkce = Pkce::new();
    let base = [
        ("response_type", "code"),
        ("client_id", DEV_PUBLIC_CLIENT_ID),
        ("redirect_uri", DEV_REDIRECT_URI),
        ("state", "s1"),
    ];
    // No code_challenge at all.
    let answer = redirected(&s.authorize_raw(&base).await);
    assert_eq!(answer["error"], "invalid_request", "{answer:?}");
    assert_eq!(answer["state"], "s1", "errors echo state too");
    assert!(!answer.contains_key("code"));
    // `plain`, explicitly or by omission of the method.
    for method in [Some("plain"), None] {
        let mut pairs = base.to_vec();
        pairs.push(("code_challenge", pkce.verifier.as_str()));
        pairs.extend(method.map(|m| ("code_challenge_method", m)));
        let answer = redirected(&s.authorize_raw(&pairs).await);
        assert_eq!(answer["error"], "invalid_request", "{method:?}: {answer:?}");
    }
}

#[tokio::test]
async fn code_replay_is_invalid_grant_and_revokes_its_tokens() {
    let s = Setup::start().await;
    let pkce = Pkce::new();
    let code = s.code(&pkce, "items:read").await;
    let first = s.exchange(&code, &pkce).await.ok();
    assert!(s.active(first.access()).await);
    s.exchange(&code, &pkce).await.error(StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(!s.active(first.access()).await, "RFC 6749 §4.1.2: tokens of a replayed code are revoked");
    s.refresh(first.refresh(), None).await.error(StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn redirect_uri_mismatch() {
    let s = Setup::start().await;
    let pkce = Pkce::new();
    // At /authorize: a 400 page, never a redirect to the unregistered URI.
    for (client, uri) in [
        (DEV_PUBLIC_CLIENT_ID, "http://127.0.0.1/callback/other"),
        (DEV_PUBLIC_CLIENT_ID, "https://attacker.example/cb"),
        ("no-such-client", DEV_REDIRECT_URI),
    ] {
        let response = s
            .authorize_raw(&[
                ("response_type", "code"),
                ("client_id", client),
                ("redirect_uri", uri),
                ("code_challenge", pkce.challenge.as_str()),
                ("code_challenge_method", "S256"),
            ])
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{client} {uri}");
        assert!(response.headers().get(header::LOCATION).is_none());
    }
    // At /token: the code was issued for another redirect URI.
    let s = Setup::with(|b| {
        b.client(
            DevClient::public("two-uris")
                .redirect_uri(DEV_REDIRECT_URI)
                .redirect_uri("http://127.0.0.1/other"),
        )
    })
    .await;
    let answer = s.authorize("two-uris", &pkce, &[]).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", answer["code"].as_str()),
        ("redirect_uri", "http://127.0.0.1/other"),
        ("code_verifier", pkce.verifier.as_str()),
    ];
    s.token(Auth::Public("two-uris"), &form).await.error(StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn confidential_client_authentication() {
    let s = Setup::start().await;
    let cc = [("grant_type", "client_credentials"), ("scope", "items:read")];
    // Wrong secret with Basic: 401 + a Basic challenge.
    let wrong = s.token(Auth::Basic(DEV_CLIENT_ID, "wrong"), &cc).await;
    wrong.error(StatusCode::UNAUTHORIZED, "invalid_client");
    let challenge = wrong.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(Challenge::parse(challenge).unwrap().is_scheme("basic"), "{challenge}");
    // Wrong secret in the body: invalid_client too.
    s.token(Auth::Post(DEV_CLIENT_ID, "wrong"), &cc).await.error(StatusCode::BAD_REQUEST, "invalid_client");
    // A confidential client that does not authenticate, an unknown client.
    s.token(Auth::Public(DEV_CLIENT_ID), &cc).await.error(StatusCode::BAD_REQUEST, "invalid_client");
    s.token(Auth::Basic("nobody", "x"), &cc).await.error(StatusCode::UNAUTHORIZED, "invalid_client");
    // Both methods at once: invalid_request.
    let mut both = cc.to_vec();
    both.extend([("client_secret", DEV_CLIENT_SECRET)]);
    s.token(Auth::Basic(DEV_CLIENT_ID, DEV_CLIENT_SECRET), &both)
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn client_credentials_grant() {
    let s = Setup::start().await;
    let cc = [("grant_type", "client_credentials"), ("scope", "items:read")];
    for auth in [Auth::Basic(DEV_CLIENT_ID, DEV_CLIENT_SECRET), Auth::Post(DEV_CLIENT_ID, DEV_CLIENT_SECRET)]
    {
        let answer = s.token(auth, &cc).await.ok();
        assert!(answer.body.get("refresh_token").is_none(), "RFC 6749 §4.4.3: no refresh token");
        assert_eq!(answer.body["scope"], "items:read");
        assert_eq!(s.call(answer.access()).await.0, StatusCode::OK);
    }
    let wider = [("grant_type", "client_credentials"), ("scope", "items:read admin")];
    s.token(Auth::Basic(DEV_CLIENT_ID, DEV_CLIENT_SECRET), &wider)
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_scope");
    // A public client may not use it.
    s.token(Auth::Public(DEV_PUBLIC_CLIENT_ID), &cc)
        .await
        .error(StatusCode::BAD_REQUEST, "unauthorized_client");
}

#[tokio::test]
async fn expired_code_is_invalid_grant() {
    let s = Setup::with(|b| b.code_ttl(Duration::ZERO)).await;
    let pkce = Pkce::new();
    let code = s.code(&pkce, "items:read").await;
    s.exchange(&code, &pkce).await.error(StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn refresh_tokens_rotate() {
    let s = Setup::start().await;
    let first = s.grant("items:read").await;
    let second = s.refresh(first.refresh(), None).await.ok();
    let third = s.refresh(second.refresh(), None).await.ok();
    assert!(s.active(third.access()).await);
    // The old one is refused (and, being a reuse, revokes the family: see the next test).
    s.refresh(first.refresh(), None).await.error(StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn refresh_token_reuse_revokes_the_family() {
    let s = Setup::start().await;
    let first = s.grant("items:read items:write").await;
    let second = s.refresh(first.refresh(), None).await.ok();
    let third = s.refresh(second.refresh(), None).await.ok();
    // Another grant of the same user and client is not affected.
    let other = s.grant("items:read").await;
    for token in [first.access(), second.access(), third.access()] {
        assert!(s.active(token).await);
    }
    s.refresh(second.refresh(), None).await.error(StatusCode::BAD_REQUEST, "invalid_grant");
    for token in [first.access(), second.access(), third.access()] {
        assert!(!s.active(token).await, "the family's access tokens are revoked");
    }
    s.refresh(third.refresh(), None).await.error(StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(s.active(other.access()).await);
    s.refresh(other.refresh(), None).await.ok();
}

#[tokio::test]
async fn refresh_scope_may_only_narrow() {
    let s = Setup::start().await;
    let first = s.grant("items:read items:write").await;
    let wider = s.refresh(first.refresh(), Some("items:read items:write admin")).await;
    wider.error(StatusCode::BAD_REQUEST, "invalid_scope");
    let narrower = s.refresh(first.refresh(), Some("items:read")).await.ok();
    assert_eq!(narrower.body["scope"], "items:read");
    // Back to the original grant is allowed; beyond it is not.
    let again = s.refresh(narrower.refresh(), Some("items:read items:write")).await.ok();
    assert_eq!(again.body["scope"], "items:read items:write");
}

#[tokio::test]
async fn unsupported_grant_and_response_types() {
    let s = Setup::start().await;
    let answer = s.token(Auth::Basic(DEV_CLIENT_ID, DEV_CLIENT_SECRET), &[("grant_type", "password")]).await;
    answer.error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    let answer = s.token(Auth::Basic(DEV_CLIENT_ID, DEV_CLIENT_SECRET), &[("scope", "items:read")]).await;
    answer.error(StatusCode::BAD_REQUEST, "invalid_request");
    let answer = s.authorize(DEV_PUBLIC_CLIENT_ID, &Pkce::new(), &[("response_type", "token")]).await;
    assert_eq!(answer["error"], "unsupported_response_type", "{answer:?}");
    assert_eq!(answer["state"], "xyz-state");
}

#[tokio::test]
async fn authorization_errors_are_redirected() {
    let s = Setup::start().await;
    let pkce = Pkce::new();
    let answer = s.authorize(DEV_PUBLIC_CLIENT_ID, &pkce, &[("scope", "items:read admin")]).await;
    assert_eq!(answer["error"], "invalid_scope", "{answer:?}");
    s.dev.set_consent_denied(true);
    let answer = s.authorize(DEV_PUBLIC_CLIENT_ID, &pkce, &[]).await;
    assert_eq!(answer["error"], "access_denied", "{answer:?}");
    s.dev.set_consent_denied(false);
    let limited = Setup::with(|b| {
        b.client(
            DevClient::confidential("cc-only", "s")
                .redirect_uri(DEV_REDIRECT_URI)
                .grant_types(["client_credentials"]),
        )
    })
    .await;
    let answer = limited.authorize("cc-only", &pkce, &[]).await;
    assert_eq!(answer["error"], "unauthorized_client", "{answer:?}");
}

#[tokio::test]
async fn resource_indicator_sets_the_audience() {
    let s = Setup::start().await;
    let pkce = Pkce::new();
    let answer = s.authorize(DEV_PUBLIC_CLIENT_ID, &pkce, &[("resource", "https://api.example/")]).await;
    let tokens = s.exchange(&answer["code"], &pkce).await.ok();
    // Not our resource server's audience: refused there.
    assert_eq!(s.call(tokens.access()).await.0, StatusCode::UNAUTHORIZED);
    let claims = introspect_claims(&s, tokens.access()).await;
    assert_eq!(claims["aud"], "https://api.example/");
    let answer = s.authorize(DEV_PUBLIC_CLIENT_ID, &pkce, &[("resource", "https://api.example/#frag")]).await;
    assert_eq!(answer["error"], "invalid_target");
}

async fn introspect_claims(s: &Setup, token: &str) -> Value {
    let response = s
        .http
        .post(s.dev.introspection_url())
        .basic_auth(RESOURCE_CLIENT_ID, Some(RESOURCE_CLIENT_SECRET))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

#[tokio::test]
async fn opaque_access_tokens_and_revocation() {
    let s = Setup::with(|b| b.opaque_access_tokens(true)).await;
    let tokens = s.grant("items:read").await;
    assert!(!tokens.access().contains('.'), "opaque");
    let claims = introspect_claims(&s, tokens.access()).await;
    assert_eq!(claims["active"], true);
    assert_eq!(claims["client_id"], DEV_PUBLIC_CLIENT_ID);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["scope"], "items:read");
    // Expired by the shared clock.
    s.clock.advance(ACCESS_TTL as i64);
    assert!(!s.active(tokens.access()).await);
    // RFC 7009 by the client itself: revoking the refresh token revokes the family.
    let refreshed = s.refresh(tokens.refresh(), None).await.ok();
    assert!(s.active(refreshed.access()).await);
    let response = s
        .http
        .post(s.dev.revocation_url())
        .form(&[("token", refreshed.refresh()), ("client_id", DEV_PUBLIC_CLIENT_ID)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!s.active(refreshed.access()).await);
    s.refresh(refreshed.refresh(), None).await.error(StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn codes_are_bound_to_their_client() {
    let s = Setup::start().await;
    let pkce = Pkce::new();
    let code = s.code(&pkce, "items:read").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", DEV_REDIRECT_URI),
        ("code_verifier", pkce.verifier.as_str()),
    ];
    // Issued to the public client, presented by the confidential one.
    s.token(Auth::Basic(DEV_CLIENT_ID, DEV_CLIENT_SECRET), &form)
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_grant");
    // The rightful client can still use it.
    s.exchange(&code, &pkce).await.ok();
    // A made-up code.
    s.exchange("not-a-code", &pkce).await.error(StatusCode::BAD_REQUEST, "invalid_grant");
}

/// Review fix: the store was never purged, so unauthenticated `GET /authorize` grew it without
/// bound. Now expired codes and tokens are forgotten, and at capacity requests are refused.
#[tokio::test]
async fn the_store_stays_bounded_and_forgets_what_expired() {
    let s = Setup::with(|b| b.store_capacity(3)).await;
    let pkce = Pkce::new();
    // Round after round of unauthenticated requests, time passing: never more than 3 codes.
    let mut last = String::new();
    for _ in 0..20 {
        for _ in 0..3 {
            last = s.code(&pkce, "items:read").await;
        }
        let refused = s.authorize(DEV_PUBLIC_CLIENT_ID, &pkce, &[]).await;
        assert_eq!(refused.get("error").map(String::as_str), Some("temporarily_unavailable"), "{refused:?}");
        assert_eq!(refused.get("state").map(String::as_str), Some("xyz-state"));
        assert!(!refused.contains_key("code"));
        s.clock.advance(61);
    }
    // A full code map does not stop a live code from being exchanged.
    for _ in 0..3 {
        last = s.code(&pkce, "items:read").await;
    }
    let grant = s.exchange(&last, &pkce).await.ok();
    assert!(s.active(grant.access()).await);

    // Tokens too: three live access tokens fill the store; the token endpoint then answers
    // 503 without consuming anything, until they expire.
    let cc = [("grant_type", "client_credentials"), ("scope", "items:read")];
    let basic = Auth::Basic(DEV_CLIENT_ID, DEV_CLIENT_SECRET);
    s.token(basic, &cc).await.ok();
    s.token(basic, &cc).await.ok();
    s.token(basic, &cc).await.error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable");
    s.clock.advance(ACCESS_TTL as i64);
    // The refresh token of `grant` is still live (a day): the access tokens alone expired.
    for _ in 0..2 {
        s.token(basic, &cc).await.ok();
    }
    s.refresh(grant.refresh(), None).await.ok();
}

/// Review fix: `algorithms([])` used to start, then panic in `sign()` (poisoning the store lock
/// when it happened at the token endpoint). It is now refused up front.
#[tokio::test]
async fn no_algorithm_is_refused_at_start() {
    let err = DevIssuer::builder().algorithms([]).start().await.expect_err("no key to sign with");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

/// Review fix: Basic credentials were decoded as a form, which stops at `&`: the secret with
/// `&junk` appended authenticated. Now the whole value is decoded (RFC 6749 §2.3.1).
#[tokio::test]
async fn basic_credentials_are_decoded_whole() {
    let s = Setup::with(|b| b.client(DevClient::confidential("amp", "s&cret x"))).await;
    let cc = [("grant_type", "client_credentials"), ("scope", "items:read")];
    let junk = format!("{DEV_CLIENT_SECRET}&junk");
    s.token(Auth::Basic(DEV_CLIENT_ID, &junk), &cc).await.error(StatusCode::UNAUTHORIZED, "invalid_client");
    s.token(Auth::Basic(DEV_CLIENT_ID, DEV_CLIENT_SECRET), &cc).await.ok();
    // A secret with `&` and a space, form-urlencoded as §2.3.1 says: works.
    s.token(Auth::Basic("amp", "s%26cret+x"), &cc).await.ok();
    s.token(Auth::Basic("amp", "s%26cret%20x"), &cc).await.ok();
    s.token(Auth::Basic("amp", "s%26cret"), &cc).await.error(StatusCode::UNAUTHORIZED, "invalid_client");
    // The introspection endpoint's resource-server credentials likewise.
    let introspect = |secret: String| {
        s.http
            .post(s.dev.introspection_url())
            .basic_auth(RESOURCE_CLIENT_ID, Some(secret))
            .form(&[("token", "x")])
            .send()
    };
    let junk = introspect(format!("{RESOURCE_CLIENT_SECRET}&junk")).await.expect("introspection");
    assert_eq!(junk.status(), StatusCode::UNAUTHORIZED);
    let good = introspect(RESOURCE_CLIENT_SECRET.to_owned()).await.expect("introspection");
    assert_eq!(good.status(), StatusCode::OK);
}

/// The claims of a JWT, unverified.
fn claims_of(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// Review fix: `token()`, `expires_in`, `expired` and opaque-token introspection used the system
/// clock, not the configured one.
#[tokio::test]
async fn minted_tokens_and_introspection_follow_the_clock() {
    const THEN: u64 = 1_000_000_000; // 2001
    let dev = DevIssuer::builder()
        .algorithms([Algorithm::ES256])
        .clock(Clock::from_fn(|| UNIX_EPOCH + Duration::from_secs(THEN)))
        .start()
        .await
        .expect("start");
    let then = THEN as i64;
    let claims = claims_of(&dev.token().sign());
    assert_eq!((claims["iat"].as_i64(), claims["exp"].as_i64()), (Some(then), Some(then + 300)));
    let claims = claims_of(&dev.token().expires_in(Duration::from_secs(60)).sign());
    assert_eq!(claims["exp"].as_i64(), Some(then + 60));
    let claims = claims_of(&dev.token().expired(Duration::from_secs(60)).sign());
    assert_eq!((claims["iat"].as_i64(), claims["exp"].as_i64()), (Some(then - 360), Some(then - 60)));
    // An opaque token valid until 2001 + 60 s is active by the frozen clock (by the system clock
    // it expired long ago); one expired by the frozen clock is not.
    let live = dev.opaque_token().expires_in(Duration::from_secs(60)).issue();
    let dead = dev.opaque_token().claim("exp", then - 1).issue();
    let http = reqwest::Client::builder().no_proxy().timeout(common::HANG_GUARD).build().expect("client");
    for (token, active) in [(live, true), (dead, false)] {
        let response = http
            .post(dev.introspection_url())
            .basic_auth(RESOURCE_CLIENT_ID, Some(RESOURCE_CLIENT_SECRET))
            .form(&[("token", token.as_str())])
            .send()
            .await
            .expect("introspection");
        let body: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON");
        assert_eq!(body["active"], active, "{body}");
    }
}

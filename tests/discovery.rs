//! Issuer discovery (OpenID Connect and RFC 8414), several trusted issuers, RFC 9728 protected
//! resource metadata, and the background refresh task, over real HTTP on 127.0.0.1.
#![cfg(all(feature = "dev", feature = "axum"))]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use common::{REALM, TestApp, send};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tower_bearer::dev::{DEFAULT_AUDIENCE, DevIssuer};
use tower_bearer::{
    Algorithm, BearerLayer, Discovery, DiscoveryError, Introspector, JwtOrOpaque, JwtValidator, KeySet,
    MultiIssuer, ProtectedResource,
};

async fn dev_issuer() -> DevIssuer {
    DevIssuer::builder().algorithms([Algorithm::ES256]).start().await.unwrap()
}

/// A metadata server for the issuer `{base}/tenant` that answers at one path only (and 404
/// elsewhere), pointing at `dev`'s JWKS and introspection endpoint. `issuer_override` puts
/// another `issuer` in the document. Returns the issuer and a count of metadata requests.
async fn metadata_server(
    dev: &DevIssuer,
    rfc8414: bool,
    issuer_override: Option<&str>,
) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let issuer = format!("{base}/tenant");
    let document = json!({
        "issuer": issuer_override.unwrap_or(&issuer),
        "jwks_uri": dev.jwks_url(),
        "introspection_endpoint": dev.introspection_url(),
        "token_endpoint": format!("{issuer}/token"),
    });
    let hits = Arc::new(AtomicUsize::new(0));
    let path = if rfc8414 {
        "/.well-known/oauth-authorization-server/tenant"
    } else {
        "/tenant/.well-known/openid-configuration"
    };
    let app = Router::new()
        .route(
            path,
            get(|State((doc, hits)): State<(Value, Arc<AtomicUsize>)>| async move {
                hits.fetch_add(1, Ordering::SeqCst);
                axum::Json(doc)
            }),
        )
        .with_state((document, hits.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (issuer, hits)
}

fn token_for(dev: &DevIssuer, issuer: &str) -> String {
    dev.token().alg(Algorithm::ES256).claim("iss", issuer).subject("ada").sign()
}

#[tokio::test]
async fn discovers_keys_through_openid_configuration() {
    let dev = dev_issuer().await;
    let (issuer, hits) = metadata_server(&dev, false, None).await;
    let validator = JwtValidator::from_issuer(&issuer).unwrap().audience(DEFAULT_AUDIENCE).build().unwrap();
    let app = TestApp::start(validator).await;
    assert_eq!(app.get("/me", &token_for(&dev, &issuer)).await.assert_ok_json()["subject"], "ada");
    assert_eq!(hits.load(Ordering::SeqCst), 1, "metadata fetched once");
    // A token of the JWKS owner's own issuer name is not this issuer's.
    app.get("/me", &dev.token().alg(Algorithm::ES256).sign()).await.assert_invalid_token();
}

#[tokio::test]
async fn discovers_keys_through_rfc8414_path_insertion() {
    let dev = dev_issuer().await;
    let (issuer, hits) = metadata_server(&dev, true, None).await;
    let discovery = Discovery::builder(&issuer).build().unwrap();
    let metadata = discovery.metadata().await.unwrap();
    assert_eq!(metadata.issuer, issuer);
    assert_eq!(metadata.jwks_uri.as_deref(), Some(dev.jwks_url().as_str()));
    let validator = JwtValidator::discover(discovery).audience(DEFAULT_AUDIENCE).build().unwrap();
    assert_eq!(validator.issuer(), Some(issuer.as_str()));
    let app = TestApp::start(validator).await;
    app.get("/me", &token_for(&dev, &issuer)).await.assert_ok_json();
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

/// The OpenID location answers 200 with an HTML catch-all page: not a document, so the RFC 8414
/// location is tried next.
#[tokio::test]
async fn a_catch_all_page_at_the_oidc_location_falls_back_to_rfc8414() {
    let dev = dev_issuer().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let issuer = format!("{base}/tenant");
    let document = json!({ "issuer": issuer, "jwks_uri": dev.jwks_url() });
    let app = Router::new()
        .route(
            "/.well-known/oauth-authorization-server/tenant",
            get(move || {
                let doc = document.clone();
                async move { axum::Json(doc) }
            }),
        )
        .fallback(|| async { axum::response::Html("<html>single-page app</html>") });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let discovery = Discovery::builder(&issuer).build().unwrap();
    assert_eq!(discovery.metadata().await.unwrap().jwks_uri.as_deref(), Some(dev.jwks_url().as_str()));
}

#[tokio::test]
async fn metadata_naming_another_issuer_is_refused() {
    let dev = dev_issuer().await;
    let (issuer, _) = metadata_server(&dev, false, Some("http://127.0.0.1:1/evil")).await;
    let discovery =
        Discovery::builder(&issuer).retry_backoff(Duration::ZERO, Duration::ZERO).build().unwrap();
    match discovery.metadata().await {
        Err(DiscoveryError::IssuerMismatch { expected, found }) => {
            assert_eq!((expected.as_str(), found.as_str()), (issuer.as_str(), "http://127.0.0.1:1/evil"));
        }
        other => panic!("expected an issuer mismatch, got {other:?}"),
    }
    // Through the layer: never accepted, and reported as our failure (503), not the token's.
    let validator = JwtValidator::discover(discovery).audience(DEFAULT_AUDIENCE).build().unwrap();
    let app = TestApp::start(validator).await;
    app.get("/me", &token_for(&dev, &issuer)).await.assert_unavailable();
    assert_eq!(dev.jwks_fetches(), 0, "the JWKS of a mismatched document is never fetched");
}

#[tokio::test]
async fn an_issuer_must_be_a_plain_http_url() {
    for bad in ["ftp://as.example", "https://as.example/?tenant=a", "https://as.example/#x", "as.example"] {
        assert!(JwtValidator::from_issuer(bad).is_err(), "{bad}");
    }
    let discovery = Discovery::builder("https://as.example").build().unwrap();
    let mismatched = JwtValidator::discover(discovery).issuer("https://other.example");
    assert!(mismatched.audience("a").build().is_err());
}

#[tokio::test]
async fn requests_before_the_issuer_is_reachable_get_503_then_succeed() {
    // A port with nothing behind it yet.
    let port = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let issuer = format!("http://127.0.0.1:{port}");
    let discovery = Discovery::builder(&issuer)
        .retry_backoff(Duration::from_millis(20), Duration::from_millis(100))
        .build()
        .unwrap();
    let keys = KeySet::discover(discovery)
        .retry_unavailable(Duration::from_millis(50))
        .background_refresh(true)
        .build();
    let validator = JwtValidator::builder().issuer(&issuer).audience(DEFAULT_AUDIENCE).key_set(keys.unwrap());
    let app = TestApp::start(validator.build().unwrap()).await;
    // A syntactically fine token; nothing can check it yet.
    let early = DevIssuer::builder().algorithms([Algorithm::ES256]).start().await.unwrap();
    app.get("/me", &early.token().alg(Algorithm::ES256).sign()).await.assert_unavailable();

    // The issuer comes up on that port: the layer recovers by itself.
    let dev = DevIssuer::builder().algorithms([Algorithm::ES256]).port(port).start().await.unwrap();
    assert_eq!(dev.issuer(), issuer);
    let token = dev.token().alg(Algorithm::ES256).sign();
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..200 {
        status = app.get("/me", &token).await.status;
        if status != StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, StatusCode::OK, "the layer never recovered once the issuer came up");
}

#[tokio::test]
async fn the_background_refresh_task_refreshes_ahead_and_stops_when_the_key_set_is_dropped() {
    let dev = DevIssuer::builder().algorithms([Algorithm::ES256]).jwks_max_age(1).start().await.unwrap();
    let keys = KeySet::builder(dev.jwks_url())
        .ttl_bounds(Duration::from_millis(200), Duration::from_millis(200))
        .background_refresh(true)
        .build()
        .unwrap();
    // The task loads the set without any request, then keeps refreshing it.
    let mut fetched = 0;
    for _ in 0..200 {
        fetched = dev.jwks_fetches();
        if fetched >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(fetched >= 3, "background refreshes: {fetched}");
    assert!(keys.is_loaded());

    // A control key set with the same period, on an issuer of its own, keeps running: its
    // fetches measure the time that passes (no sleeping, no clock reading).
    let control_issuer = DevIssuer::builder().algorithms([Algorithm::ES256]).start().await.unwrap();
    let control = KeySet::builder(control_issuer.jwks_url())
        .ttl_bounds(Duration::from_millis(200), Duration::from_millis(200))
        .background_refresh(true)
        .build()
        .unwrap();
    drop(keys);
    let at_drop = dev.jwks_fetches();
    let control_ran = async {
        while control_issuer.jwks_fetches() < 5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), control_ran).await.expect("the control refreshes");
    // Four refresh periods passed for the control; the dropped set's task may only have finished
    // the one fetch it had under way when it was dropped.
    assert!(
        dev.jwks_fetches() <= at_drop + 1,
        "the task kept fetching after the key set was dropped: {} fetches after the drop",
        dev.jwks_fetches() - at_drop
    );
    drop(control);
}

#[tokio::test]
async fn introspection_endpoint_comes_from_discovery() {
    let dev = dev_issuer().await;
    let (issuer, _) = metadata_server(&dev, false, None).await;
    let discovery = Discovery::builder(&issuer).build().unwrap();
    let jwt = JwtValidator::discover(discovery.clone()).audience(DEFAULT_AUDIENCE).build().unwrap();
    let opaque = Introspector::discover(discovery)
        .client_secret_basic(tower_bearer::dev::RESOURCE_CLIENT_ID, tower_bearer::dev::RESOURCE_CLIENT_SECRET)
        .build()
        .unwrap();
    let app = TestApp::start_router(
        jwt.clone(),
        common::routes().layer(BearerLayer::new(JwtOrOpaque::new(jwt, opaque))),
    )
    .await;
    let token = dev.opaque_token().subject("carol").issue();
    assert_eq!(app.get("/me", &token).await.assert_ok_json()["subject"], "carol");
    assert_eq!(dev.introspection_calls(), 1);
}

/// Two issuers served at once: each one's tokens pass, neither accepts the other's, and a token
/// claiming one issuer but signed with the other's key is refused.
#[tokio::test]
async fn two_issuers_never_accept_each_others_tokens() {
    let a = dev_issuer().await;
    let b = dev_issuer().await;
    let validator = |dev: &DevIssuer| {
        JwtValidator::builder()
            .issuer(dev.issuer())
            .audience(DEFAULT_AUDIENCE)
            .key_set(KeySet::builder(dev.jwks_url()).refetch_cooldown(Duration::ZERO).build().unwrap())
            .build()
            .unwrap()
    };
    let tenants = MultiIssuer::new([validator(&a), validator(&b)]).unwrap();
    let app = common::serve(common::routes().layer(BearerLayer::new(tenants.clone()).realm(REALM))).await;
    let get = |token: String| {
        let client = common::client();
        let url = format!("{app}/me");
        async move { send(client.get(url).bearer_auth(token)).await }
    };
    let reply = get(a.token().alg(Algorithm::ES256).subject("from-a").sign()).await;
    assert_eq!(reply.assert_ok_json()["issuer"], a.issuer());
    let reply = get(b.token().alg(Algorithm::ES256).subject("from-b").sign()).await;
    assert_eq!(reply.assert_ok_json()["issuer"], b.issuer());

    // Signed by B, claiming A: A's validator looks for B's kid in A's keys only.
    let forged = b.token().alg(Algorithm::ES256).claim("iss", a.issuer()).sign();
    get(forged.clone()).await.assert_invalid_token();
    let reason = tenants.validator(a.issuer()).unwrap().clone();
    let err = tower_bearer::Validator::validate(&reason, &forged, &tower_bearer::RequestView::detached())
        .resolve()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            tower_bearer::AuthError::InvalidToken(
                tower_bearer::InvalidToken::UnknownKey | tower_bearer::InvalidToken::BadSignature
            )
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_unknown_issuer_is_refused_without_any_network_call() {
    let a = dev_issuer().await;
    let validator = JwtValidator::builder()
        .issuer(a.issuer())
        .audience(DEFAULT_AUDIENCE)
        .jwks_url(a.jwks_url())
        .build()
        .unwrap();
    let tenants = MultiIssuer::new([validator.clone()]).unwrap();
    let app =
        TestApp::start_router(validator, common::routes().layer(BearerLayer::new(tenants).realm(REALM)))
            .await;
    for i in 0..50 {
        let token =
            a.token().alg(Algorithm::ES256).claim("iss", format!("https://made-up-{i}.example")).sign();
        let description = app.get("/me", &token).await.assert_invalid_token();
        assert!(!description.contains("made-up"), "nothing from the token reaches the client");
    }
    assert_eq!(a.jwks_fetches(), 0, "made-up issuers cost no fetch");
    // Without `iss` at all: refused too.
    let token =
        a.sign_raw("es256-1", Algorithm::ES256, br#"{"alg":"ES256","kid":"es256-1"}"#, br#"{"sub":"x"}"#);
    app.get("/me", &token).await.assert_invalid_token();
    assert!(MultiIssuer::new([]).is_err());
    // Two issuers behind one key set could verify each other's tokens: refused.
    let shared = KeySet::builder(a.jwks_url()).build().unwrap();
    let with = |issuer: &str| {
        JwtValidator::builder()
            .issuer(issuer)
            .audience(DEFAULT_AUDIENCE)
            .key_set(shared.clone())
            .build()
            .unwrap()
    };
    assert!(MultiIssuer::new([with("https://one.example"), with("https://two.example")]).is_err());
    let any = JwtValidator::builder().any_issuer().any_audience().jwks_url(a.jwks_url()).build().unwrap();
    assert!(MultiIssuer::new([any]).is_err(), "a validator without an exact issuer cannot be routed to");
}

#[tokio::test]
async fn protected_resource_metadata_is_served_and_named_in_every_challenge() {
    let dev = dev_issuer().await;
    let metadata = ProtectedResource::builder("https://api.example/v1")
        .authorization_server(dev.issuer())
        .scopes_supported(["items:read", "items:write"])
        .bearer_methods(&tower_bearer::TokenSources::header_only().query())
        .resource_name("Example API")
        .resource_documentation("https://api.example/docs")
        .build()
        .unwrap();
    assert_eq!(metadata.well_known_path(), "/.well-known/oauth-protected-resource/v1");
    assert_eq!(metadata.metadata_url(), "https://api.example/.well-known/oauth-protected-resource/v1");
    let validator = common::validator(&dev);
    let router = Router::new().route_service(metadata.well_known_path(), metadata.service()).merge(
        common::routes()
            .layer(BearerLayer::new(validator.clone()).realm(REALM).protected_resource(&metadata)),
    );
    let app = TestApp::start_router(validator, router).await;

    let reply = send(app.request(reqwest::Method::GET, "/.well-known/oauth-protected-resource/v1")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["content-type"], "application/json");
    let doc = reply.json();
    assert_eq!(doc["resource"], "https://api.example/v1");
    assert_eq!(doc["authorization_servers"], json!([dev.issuer()]));
    assert_eq!(doc["scopes_supported"], json!(["items:read", "items:write"]));
    assert_eq!(doc["bearer_methods_supported"], json!(["header", "query"]));
    assert_eq!(doc["resource_name"], "Example API");
    assert_eq!(doc["resource_documentation"], "https://api.example/docs");
    assert!(doc.get("resource_signing_alg_values_supported").is_none(), "we sign no responses: {doc}");
    let reply = send(app.request(reqwest::Method::POST, "/.well-known/oauth-protected-resource/v1")).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);

    // Every kind of challenge carries resource_metadata.
    let missing = send(app.request(reqwest::Method::GET, "/me")).await;
    let invalid = app.get("/me", "not.a.token").await;
    let scope = app.post("/items", &dev.token().alg(Algorithm::ES256).scope("items:read").sign()).await;
    for reply in [missing, invalid, scope] {
        let challenge = reply.challenge();
        assert_eq!(challenge.get("resource_metadata"), Some(metadata.metadata_url()), "{reply:?}");
    }

    // A resource without a path: the bare well-known path.
    let root = ProtectedResource::builder("https://api.example").build().unwrap();
    assert_eq!(root.well_known_path(), "/.well-known/oauth-protected-resource");
    let root_slash = ProtectedResource::builder("https://api.example/").build().unwrap();
    assert_eq!(root_slash.metadata_url(), "https://api.example/.well-known/oauth-protected-resource");
    for bad in ["api.example", "https://api.example/?x=1", "https://api.example/#f", "ftp://api.example"] {
        assert!(ProtectedResource::builder(bad).build().is_err(), "{bad}");
    }
}

//! Per-route scopes (`RequireScope`), and the axum extractors (`Principal`, `Option<Principal>`,
//! `Claims<T>`, `Principal::require_scopes`) over real HTTP.
#![cfg(all(feature = "dev", feature = "axum"))]

mod common;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use common::{REALM, TestApp, dev_issuer, send, validator};
use serde::Deserialize;
use serde_json::json;
use tower_bearer::dev::DevIssuer;
use tower_bearer::{Algorithm, AuthError, BearerLayer, Claims, ErrorBody, Principal, RequireScope};

#[derive(Deserialize)]
struct Tenant {
    tenant: String,
    #[serde(default)]
    plan: Option<String>,
}

async fn tenant(Claims(t): Claims<Tenant>) -> String {
    format!("{}:{}", t.tenant, t.plan.as_deref().unwrap_or("-"))
}

/// A handler that sets its own headers on the rejection it answers.
async fn tagged_report(
    principal: Principal,
) -> Result<String, ([(&'static str, &'static str); 2], AuthError)> {
    let headers = [("x-request-id", "req-42"), ("access-control-allow-origin", "https://app.example")];
    principal.require_scopes(["admin"]).map_err(|e| (headers, e))?;
    Ok("tagged".into())
}

async fn admin_report(principal: Principal) -> Result<String, AuthError> {
    principal.require_scopes(["reports:read", "admin"])?;
    Ok(format!("report for {}", principal.subject().unwrap_or("?")))
}

async fn who(principal: Option<Principal>) -> String {
    principal.and_then(|p| p.subject().map(str::to_owned)).unwrap_or_else(|| "anonymous".to_owned())
}

/// The standard routes plus a few for the extractors, all behind the bearer layer; and two
/// routes outside it.
async fn setup() -> (DevIssuer, TestApp) {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let validator = validator(&dev);
    let protected = common::routes()
        .route("/any", get(|| async { "any" }).route_layer(RequireScope::any(["admin", "items:owner"])))
        .route("/both", get(|| async { "both" }).route_layer(RequireScope::all(["a", "b"])))
        .route("/tenant", get(tenant))
        .route("/report", get(admin_report))
        .route("/tagged", get(tagged_report))
        .route("/who", get(who))
        .layer(BearerLayer::new(validator.clone()).realm(REALM));
    let router = Router::new()
        .route("/public/who", get(who))
        .route("/public/me", get(|p: Principal| async move { format!("{p:?}") }))
        .route("/public/scoped", get(|| async { "scoped" }).route_layer(RequireScope::all(["items:read"])))
        .merge(protected);
    let app = TestApp::start_router(validator, router).await;
    (dev, app)
}

fn token(dev: &DevIssuer, scope: Option<&str>) -> String {
    let builder = dev.token().alg(Algorithm::ES256).subject("sam");
    match scope {
        Some(scope) => builder.scope(scope).sign(),
        None => builder.sign(),
    }
}

#[tokio::test]
async fn get_items_needs_items_read() {
    let (dev, app) = setup().await;
    let reply = app.get("/items", &token(&dev, Some("profile items:read"))).await;
    assert_eq!(reply.assert_ok_json()["for"], "sam");

    for scope in [Some("items:write"), Some("items:reader"), Some("ITEMS:READ"), Some(""), None] {
        let reply = app.get("/items", &token(&dev, scope)).await;
        let challenge = reply.assert_challenge(StatusCode::FORBIDDEN, Some("insufficient_scope"));
        assert_eq!(challenge.get("scope"), Some("items:read"), "{scope:?}");
    }
}

#[tokio::test]
async fn scopes_from_the_scp_claim_count_too() {
    let (dev, app) = setup().await;
    let token = dev.token().alg(Algorithm::ES256).claim("scp", json!(["items:read"])).sign();
    app.get("/items", &token).await.assert_ok_json();
}

#[tokio::test]
async fn post_items_needs_items_write_and_get_does_not() {
    let (dev, app) = setup().await;
    let writer = token(&dev, Some("items:write"));
    let reply = app.post("/items", &writer).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    assert_eq!(reply.json()["created_by"], "sam");
    // items:write alone does not grant GET.
    let challenge =
        app.get("/items", &writer).await.assert_challenge(StatusCode::FORBIDDEN, Some("insufficient_scope"));
    assert_eq!(challenge.get("scope"), Some("items:read"));

    let reader = token(&dev, Some("items:read"));
    let challenge =
        app.post("/items", &reader).await.assert_challenge(StatusCode::FORBIDDEN, Some("insufficient_scope"));
    assert_eq!(challenge.get("scope"), Some("items:write"));
}

#[tokio::test]
async fn bearer_errors_come_before_scope_errors() {
    let (dev, app) = setup().await;
    // No token at all on a scoped route: 401, not 403.
    let reply = send(app.request(reqwest::Method::GET, "/items")).await;
    reply.assert_challenge(StatusCode::UNAUTHORIZED, None);
    // An expired token that would have the scope: 401 invalid_token.
    let token = dev
        .token()
        .alg(Algorithm::ES256)
        .scope("items:read")
        .expired(std::time::Duration::from_secs(600))
        .sign();
    app.get("/items", &token).await.assert_invalid_token();
}

#[tokio::test]
async fn require_scope_any_needs_one_of_them() {
    let (dev, app) = setup().await;
    for scope in ["admin", "items:owner", "x admin y", "items:owner admin"] {
        let reply = app.get("/any", &token(&dev, Some(scope))).await;
        assert_eq!(reply.status, StatusCode::OK, "{scope}: {reply:?}");
        assert_eq!(reply.body, "any");
    }
    for scope in [Some("items:read"), Some("administrator"), None] {
        let challenge = app
            .get("/any", &token(&dev, scope))
            .await
            .assert_challenge(StatusCode::FORBIDDEN, Some("insufficient_scope"));
        assert_eq!(challenge.get("scope"), Some("admin items:owner"));
    }
}

#[tokio::test]
async fn require_scope_all_needs_every_one() {
    let (dev, app) = setup().await;
    let reply = app.get("/both", &token(&dev, Some("b a"))).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    for scope in ["a", "b", "a c"] {
        let challenge = app
            .get("/both", &token(&dev, Some(scope)))
            .await
            .assert_challenge(StatusCode::FORBIDDEN, Some("insufficient_scope"));
        assert_eq!(challenge.get("scope"), Some("a b"));
    }
}

#[tokio::test]
async fn principal_extractor_sees_the_verified_token() {
    let (dev, app) = setup().await;
    let token = dev
        .token()
        .alg(Algorithm::ES256)
        .subject("dana")
        .scope("profile")
        .claim("client_id", "mobile-app")
        .sign();
    let principal = app.get("/me", &token).await.assert_ok_json();
    assert_eq!(principal["subject"], "dana");
    assert_eq!(principal["client_id"], "mobile-app");
    assert_eq!(principal["scopes"], json!(["profile"]));
    assert_eq!(principal["issuer"], dev.issuer());
    assert!(principal["expires_at"].as_i64().unwrap() > common::unix_now());

    let reply = app.get("/who", &token).await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "dana"));
}

#[tokio::test]
async fn claims_extractor_reads_custom_claims() {
    let (dev, app) = setup().await;
    let token = dev.token().alg(Algorithm::ES256).claim("tenant", "acme").claim("plan", "gold").sign();
    let reply = app.get("/tenant", &token).await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "acme:gold"));

    // Claims that do not fit the handler's type: the token is not what this route accepts.
    for bad in [
        dev.token().alg(Algorithm::ES256).sign(),
        dev.token().alg(Algorithm::ES256).claim("tenant", 42).sign(),
    ] {
        app.get("/tenant", &bad).await.assert_invalid_token();
    }
}

#[tokio::test]
async fn require_scopes_in_a_handler() {
    let (dev, app) = setup().await;
    let reply = app.get("/report", &token(&dev, Some("admin reports:read"))).await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "report for sam"));
    for scope in ["admin", "reports:read", "items:read"] {
        let reply = app.get("/report", &token(&dev, Some(scope))).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{scope}: {reply:?}");
        let challenge = reply.challenge();
        assert_eq!(challenge.get("error"), Some("insufficient_scope"));
        assert_eq!(challenge.get("scope"), Some("reports:read admin"));
    }
}

/// An `AuthError` returned by a handler is rendered again by the bearer layer around it: the
/// layer's realm and body style, exactly like `RequireScope` would answer.
#[tokio::test]
async fn handler_rejections_take_the_layers_realm_and_body() {
    let (dev, app) = setup().await;
    let reply = app.get("/report", &token(&dev, Some("admin"))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
    let challenge = reply.challenge();
    assert_eq!(challenge.get("error"), Some("insufficient_scope"));
    assert!(challenge.get("scope").is_some());
    assert_eq!(challenge.get("realm"), Some(REALM));

    // Headers the handler set survive the re-rendering (CORS, request ids).
    let reply = app.get("/tagged", &token(&dev, Some("items:read"))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
    assert_eq!(reply.challenge().get("realm"), Some(REALM));
    assert_eq!(reply.headers["x-request-id"], "req-42");
    assert_eq!(reply.headers["access-control-allow-origin"], "https://app.example");

    // With problem+json bodies on the layer, the handler's error gets one too.
    let validator = validator(&dev);
    let router = Router::new()
        .route("/report", get(admin_report))
        .layer(BearerLayer::new(validator.clone()).realm("other").error_body(ErrorBody::ProblemJson));
    let app = TestApp::start_router(validator, router).await;
    let reply = app.get("/report", &token(&dev, Some("admin"))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
    assert_eq!(reply.challenge().get("realm"), Some("other"));
    assert_eq!(reply.headers.get("content-type").unwrap(), "application/problem+json");
    assert_eq!(reply.json()["status"], 403, "{reply:?}");
}

#[tokio::test]
async fn routes_outside_the_layer_see_no_principal() {
    let (dev, app) = setup().await;
    let token = token(&dev, Some("items:read"));
    // `Option<Principal>`: anonymous, even with a token, since no layer verified it.
    let reply = app.get("/public/who", &token).await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "anonymous"));
    let reply = send(app.request(reqwest::Method::GET, "/public/who")).await;
    assert_eq!(reply.body, "anonymous");
    // `Principal` and `RequireScope` without a layer in front: 401 asking for a token (there is
    // no realm: no layer configured one).
    for path in ["/public/me", "/public/scoped"] {
        let reply = app.get(path, &token).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}: {reply:?}");
        let challenge = reply.challenge();
        assert_eq!(challenge.get("error"), None, "{path}");
    }
}

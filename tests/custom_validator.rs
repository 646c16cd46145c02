//! A `Validator` written outside the crate: API keys from a map, each bound to a tenant that the
//! request must name in a header. It builds its `Principal` with the public builder and works
//! with `BearerLayer`, `RequireScope` and the axum extractors, over real HTTP on 127.0.0.1.
#![cfg(feature = "axum")]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use tower::{Layer, ServiceExt};
use tower_bearer::{
    AuthError, AuthRejection, BearerLayer, Claims, InvalidToken, Principal, RequestView, RequireScope,
    TokenKind, Validator, Verdict,
};

struct ApiKey {
    owner: &'static str,
    tenant: &'static str,
    scopes: &'static [&'static str],
}

/// API keys; a key only counts for requests that name its tenant in `x-tenant`.
#[derive(Clone)]
struct ApiKeys {
    keys: Arc<HashMap<&'static str, ApiKey>>,
    /// Requests this validator saw, to show it is really the one deciding.
    seen: Arc<AtomicUsize>,
}

impl Validator for ApiKeys {
    fn validate(&self, token: &str, request: &RequestView<'_>) -> Verdict {
        self.seen.fetch_add(1, Ordering::SeqCst);
        let Some(key) = self.keys.get(token) else {
            return Verdict::Ready(Err(AuthError::InvalidToken(InvalidToken::Inactive)));
        };
        let tenant = request.headers().get("x-tenant").and_then(|v| v.to_str().ok());
        if tenant != Some(key.tenant) {
            return Verdict::Ready(Err(AuthError::InvalidToken(InvalidToken::WrongAudience)));
        }
        let principal = Principal::builder(TokenKind::Opaque)
            .subject(key.owner)
            .client_id("api-key")
            .audience([key.tenant])
            .scopes(key.scopes.iter().copied())
            .claims(serde_json::json!({ "tenant": key.tenant, "path": request.uri().path() }))
            .build();
        Verdict::Ready(Ok(principal))
    }
}

fn api_keys() -> ApiKeys {
    let keys = HashMap::from([
        ("key-reader", ApiKey { owner: "rita", tenant: "acme", scopes: &["items:read"] }),
        ("key-writer", ApiKey { owner: "walt", tenant: "acme", scopes: &["items:read", "items:write"] }),
    ]);
    ApiKeys { keys: Arc::new(keys), seen: Arc::default() }
}

#[derive(Deserialize)]
struct TenantClaims {
    tenant: String,
    path: String,
}

fn app(keys: ApiKeys) -> Router {
    Router::new()
        .route("/me", get(|p: Principal| async move { format!("{} of {:?}", p.subject().unwrap(), p.audience()) }))
        .route("/claims", get(|Claims(c): Claims<TenantClaims>| async move { format!("{} {}", c.tenant, c.path) }))
        .route(
            "/admin",
            // A handler may choose the status of its own rejection (hiding the route, say).
            get(|p: Principal| async move { p.require_scopes(["admin"]).map_err(|e| (StatusCode::NOT_FOUND, e)) }),
        )
        // The extractor's rejection is a type: a handler can take it and decide.
        .route(
            "/whoami",
            get(|p: Result<Principal, AuthRejection>| async move {
                match p {
                    Ok(p) => p.subject().unwrap_or_default().to_owned(),
                    Err(rejection) => format!("nobody ({})", rejection.error().reason()),
                }
            }),
        )
        .route("/items", post(|| async { "created" }).route_layer(RequireScope::all(["items:write"])))
        .layer(BearerLayer::new(keys).realm("keys"))
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

fn www(res: &reqwest::Response) -> String {
    res.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

#[tokio::test]
async fn an_outside_validator_plugs_into_the_layer_scopes_and_extractors() {
    let keys = api_keys();
    let base = serve(app(keys.clone())).await;
    let http = reqwest::Client::new();
    let get = |path: &str, key: &str, tenant: &str| {
        http.get(format!("{base}{path}")).bearer_auth(key).header("x-tenant", tenant).send()
    };

    let res = get("/me", "key-reader", "acme").await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), r#"rita of ["acme"]"#);
    // The validator saw the request: the key does not count for another tenant.
    let res = get("/me", "key-reader", "globex").await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(www(&res).contains(r#"error="invalid_token""#), "{}", www(&res));
    // Unknown key, and no key at all.
    let res = get("/me", "key-nobody", "acme").await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = http.get(format!("{base}/me")).send().await.unwrap();
    assert_eq!(www(&res), r#"Bearer realm="keys""#);

    // A handler taking `Result<Principal, AuthRejection>` gets the principal (the rejection side
    // is exercised below, without a bearer layer).
    let res = get("/whoami", "key-reader", "acme").await.unwrap();
    assert_eq!(res.text().await.unwrap(), "rita");

    // Claims<T> reads what the validator put in the principal (including the request path).
    let res = get("/claims", "key-reader", "acme").await.unwrap();
    assert_eq!(res.text().await.unwrap(), "acme /claims");

    // RequireScope on the principal the validator built.
    let res = http.post(format!("{base}/items")).bearer_auth("key-reader").header("x-tenant", "acme").send();
    let res = res.await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(www(&res).contains(r#"scope="items:write""#), "{}", www(&res));
    let res = http.post(format!("{base}/items")).bearer_auth("key-writer").header("x-tenant", "acme").send();
    assert_eq!(res.await.unwrap().text().await.unwrap(), "created");

    // The handler's own status for its rejection, with the layer's challenge.
    let res = get("/admin", "key-writer", "acme").await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(www(&res).starts_with(r#"Bearer realm="keys", error="insufficient_scope""#), "{}", www(&res));

    assert_eq!(keys.seen.load(Ordering::SeqCst), 8, "every credentialed request went through the validator");
}

/// `BearerService` gives its inner service back, like tower-http's services do.
#[tokio::test]
async fn the_service_hands_out_its_inner_service() {
    let inner = tower::service_fn(|_req: http::Request<String>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(String::from("inner")))
    });
    let mut service = BearerLayer::new(api_keys()).layer(inner);
    let _: &_ = service.get_ref();
    let _: &mut _ = service.get_mut();
    assert_eq!(service.validator().keys.len(), 2);
    let request = http::Request::get("/").body(String::new()).unwrap();
    let response = service.into_inner().oneshot(request).await.unwrap();
    assert_eq!(response.into_body(), "inner");
}

/// Without a bearer layer in front, the extractor rejects with its own type, which renders the
/// bare `401` challenge, and a handler may take it instead.
#[tokio::test]
async fn the_extractor_rejection_is_a_type() {
    let app = Router::new()
        .route("/me", get(|p: Principal| async move { p.subject().unwrap_or_default().to_owned() }))
        .route(
            "/whoami",
            get(|p: Result<Principal, AuthRejection>| async move {
                p.map_or_else(
                    |r| format!("nobody ({})", r.error().reason()),
                    |p| format!("{:?}", p.subject()),
                )
            }),
        );
    let call = |path: &str| axum::http::Request::get(path).body(axum::body::Body::empty()).unwrap();
    let res = app.clone().oneshot(call("/me")).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    let res = app.oneshot(call("/whoami")).await.unwrap();
    let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
    assert_eq!(&body[..], b"nobody (missing_token)");
}

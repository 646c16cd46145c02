//! Optional authentication, token sources beyond the header, and error bodies, over real HTTP.
#![cfg(all(feature = "dev", feature = "axum"))]

use axum::Router;
use axum::routing::{get, post};
use reqwest::StatusCode;
use tower_bearer::dev::{DEFAULT_AUDIENCE, DevIssuer};
use tower_bearer::form::FormTokenLayer;
use tower_bearer::{Algorithm, BearerLayer, ErrorBody, JwtValidator, Principal, RequireScope, TokenSources};

async fn issuer() -> DevIssuer {
    DevIssuer::builder().algorithms([Algorithm::ES256]).start().await.unwrap()
}

fn validator(dev: &DevIssuer) -> JwtValidator {
    JwtValidator::builder()
        .issuer(dev.issuer())
        .audience(DEFAULT_AUDIENCE)
        .jwks_url(dev.jwks_url())
        .build()
        .unwrap()
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

fn routes() -> Router {
    Router::new()
        .route(
            "/hello",
            get(|p: Option<Principal>| async move {
                match p {
                    Some(p) => format!("hello {}", p.subject().unwrap_or("?")),
                    None => "hello stranger".to_owned(),
                }
            }),
        )
        .merge(
            Router::new()
                .route("/items", get(|| async { "items" }))
                .route_layer(RequireScope::all(["items:read"])),
        )
        .route(
            "/echo",
            post(|p: Principal, body: String| async move { format!("{}:{body}", p.subject().unwrap()) }),
        )
}

fn www(res: &reqwest::Response) -> String {
    res.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

#[tokio::test]
async fn optional_authentication() {
    let dev = issuer().await;
    let base = serve(routes().layer(BearerLayer::new(validator(&dev)).optional())).await;
    let http = reqwest::Client::new();

    let anon = http.get(format!("{base}/hello")).send().await.unwrap();
    assert_eq!(anon.status(), StatusCode::OK);
    assert_eq!(anon.text().await.unwrap(), "hello stranger");

    let token = dev.token().subject("zoe").sign();
    let known = http.get(format!("{base}/hello")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(known.text().await.unwrap(), "hello zoe");

    // A bad token is never downgraded to anonymous.
    let expired = dev.token().expired(std::time::Duration::from_secs(120)).sign();
    let res = http.get(format!("{base}/hello")).bearer_auth(&expired).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(www(&res).contains("invalid_token"));
    let res = http.get(format!("{base}/hello")).header("authorization", "Bearer a b").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // A scoped route still demands a token.
    let res = http.get(format!("{base}/items")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(www(&res), "Bearer");
}

#[tokio::test]
async fn cookie_and_query_sources() {
    let dev = issuer().await;
    let layer =
        BearerLayer::new(validator(&dev)).token_sources(TokenSources::header_only().cookie("at").query());
    let base = serve(routes().layer(layer)).await;
    let http = reqwest::Client::new();
    let token = dev.token().subject("cat").scope("items:read").sign();

    let res = http
        .get(format!("{base}/hello"))
        .header("cookie", format!("theme=dark; at={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), "hello cat");

    let res = http.get(format!("{base}/items?access_token={token}")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "private", "RFC 6750 §2.3");

    // Two places at once → 400.
    let res =
        http.get(format!("{base}/items?access_token={token}")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(www(&res).contains("invalid_request"));
    let res = http
        .get(format!("{base}/hello"))
        .header("cookie", format!("at={token}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // Sources are opt-in: the same query token on a header-only layer is no token at all.
    let header_only = serve(routes().layer(BearerLayer::new(validator(&dev)))).await;
    let res = http.get(format!("{header_only}/items?access_token={token}")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(www(&res), "Bearer");
}

#[tokio::test]
async fn form_body_source_passes_the_body_on() {
    let dev = issuer().await;
    let app = routes().layer(BearerLayer::new(validator(&dev))).layer(FormTokenLayer::new().max_bytes(4096));
    let base = serve(app).await;
    let http = reqwest::Client::new();
    let token = dev.token().subject("dan").sign();

    let body = format!("a=1&access_token={token}&b=2");
    let res = http
        .post(format!("{base}/echo"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), format!("dan:{body}"), "inner service sees the body intact");

    // Form plus header → 400; a JSON body is not read for tokens.
    let res = http
        .post(format!("{base}/echo"))
        .header("content-type", "application/x-www-form-urlencoded")
        .bearer_auth(&token)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = http
        .post(format!("{base}/echo"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Over the bound → 400, not a hang or a 500.
    let big = format!("access_token={token}&pad={}", "x".repeat(8000));
    let res = http
        .post(format!("{base}/echo"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn error_bodies() {
    let dev = issuer().await;
    let http = reqwest::Client::new();
    let expired = dev.token().expired(std::time::Duration::from_secs(120)).sign();

    // Default: empty for 4xx.
    let base = serve(routes().layer(BearerLayer::new(validator(&dev)))).await;
    let res = http.get(format!("{base}/hello")).bearer_auth(&expired).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.text().await.unwrap(), "");

    // problem+json, same status and challenge; RequireScope follows the layer's choice.
    let base =
        serve(routes().layer(BearerLayer::new(validator(&dev)).error_body(ErrorBody::ProblemJson))).await;
    let res = http.get(format!("{base}/hello")).bearer_auth(&expired).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(www(&res).contains(r#"error="invalid_token""#));
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    assert_eq!(problem["type"], "urn:tower-bearer:error:expired");
    assert_eq!(problem["status"], 401);
    let res = http.get(format!("{base}/items")).bearer_auth(dev.token().sign()).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let problem: serde_json::Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    assert_eq!(problem["type"], "urn:tower-bearer:error:insufficient_scope");

    // Custom, and 503 gets the same treatment.
    let custom = ErrorBody::custom(|err| {
        Some((
            http::HeaderValue::from_static("application/json"),
            format!(r#"{{"code":"{}"}}"#, err.reason()).into(),
        ))
    });
    let unreachable = JwtValidator::builder()
        .issuer(dev.issuer())
        .audience(DEFAULT_AUDIENCE)
        .jwks_url("http://127.0.0.1:9/jwks.json")
        .build()
        .unwrap();
    let base = serve(routes().layer(BearerLayer::new(unreachable).error_body(custom))).await;
    let res = http.get(format!("{base}/hello")).bearer_auth(dev.token().sign()).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.text().await.unwrap(), r#"{"code":"key_set_unavailable"}"#);
}

/// RFC 9111 keeps shared caches away from responses to requests with `Authorization`, not from
/// those authenticated by a cookie or a form field: those responses are just as personal, so the
/// layer marks them `private` like the query-string ones (RFC 6750 §2.3). A header token needs no
/// mark, and a response that already forbids sharing keeps its own directive.
#[tokio::test]
async fn cookie_and_form_tokens_make_responses_private() {
    let dev = issuer().await;
    let layer = BearerLayer::new(validator(&dev)).token_sources(TokenSources::header_only().cookie("at"));
    let base = serve(routes().layer(layer).layer(FormTokenLayer::new())).await;
    let http = reqwest::Client::new();
    let token = dev.token().subject("eve").sign();

    let res = http.get(format!("{base}/hello")).header("cookie", format!("at={token}")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers().get("cache-control").map(|v| v.to_str().unwrap()), Some("private"), "cookie");

    let res = http
        .post(format!("{base}/echo"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("access_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers().get("cache-control").map(|v| v.to_str().unwrap()), Some("private"), "form");

    let res = http.get(format!("{base}/hello")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers().get("cache-control"), None, "the Authorization header needs no mark");
}

//! The README's Rust snippets, compiled and run.
//!
//! Each snippet lives verbatim in a function below (with the few lines of context it needs
//! around it), and `every_readme_snippet_is_compiled_here` fails when a ```rust block of the
//! README is not found here line for line: the README cannot drift from code that compiles.
#![cfg(all(feature = "dev", feature = "axum"))]
// The snippets bind what they build, as a reader's code would.
#![allow(clippy::let_and_return)]

use std::error::Error;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use http::{HeaderValue, Request, StatusCode, header};
use tower::ServiceExt;
use tower_bearer::dev::{DEFAULT_AUDIENCE, DevIssuer};
use tower_bearer::form::FormTokenLayer;
use tower_bearer::{
    Algorithm, BearerLayer, ErrorBody, Introspector, JwtOrOpaque, JwtValidator, MultiIssuer, Principal,
    ProtectedResource, TokenSources,
};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

#[allow(dead_code)]
#[path = "../examples/grpc.rs"]
mod grpc_example;

mod quick_start {
    use axum::{Router, routing::get};
    use tower_bearer::{BearerLayer, JwtValidator, Principal, RequireScope};

    pub fn app() -> super::Result<Router> {
        let validator = JwtValidator::builder()
            .issuer("https://issuer.example")
            .audience("https://api.example")
            .jwks_url("https://issuer.example/.well-known/jwks.json")
            .build()?;
        let app = Router::new()
            .route("/items", get(|| async { "items" }))
            .route_layer(RequireScope::all(["items:read"])) // 403 insufficient_scope without it
            .route("/me", get(|p: Principal| async move { format!("hi {:?}", p.subject()) }))
            .layer(BearerLayer::new(validator).realm("api")); // 401 / 400 / 503 as below
        Ok(app)
    }
}

fn dpop(validator: JwtValidator) -> Result<Router> {
    use tower_bearer::dpop::Dpop;
    let dpop = Dpop::allowed("https://api.example")? // this API's public origin: htu = origin + path
        .iat_window(Duration::from_secs(60));
    let layer = BearerLayer::new(validator).dpop(dpop);
    Ok(Router::new()
        .route("/me", get(|p: Principal| async move { format!("{:?}", p.confirmation()) }))
        .layer(layer))
}

fn client_certificate_header(validator: JwtValidator) -> Router {
    use http::HeaderName;
    use tower_bearer::CertificateHeader;
    let layer = BearerLayer::new(validator).trust_client_certificate_header(
        HeaderName::from_static("x-client-cert"), // nginx: proxy_set_header X-Client-Cert $ssl_client_escaped_cert;
        CertificateHeader::EscapedPem,            // Caddy: DerBase64; Envoy: EnvoyXfcc
    );
    Router::new()
        .route("/me", get(|p: Principal| async move { format!("{:?}", p.confirmation()) }))
        .layer(layer)
}

fn opaque_tokens(validator: JwtValidator, secret: String) -> Result<Router> {
    let opaque = Introspector::builder("https://as.example/introspect")
        .client_secret_basic("my-api", secret) // or client_secret_post, bearer_auth
        .audience("https://api.example") // optional iss/aud checks on the response
        .build()?;
    // JWT-shaped tokens are verified locally, the rest introspected.
    let layer = BearerLayer::new(JwtOrOpaque::new(validator, opaque));
    Ok(Router::new()
        .route("/me", get(|p: Principal| async move { format!("{:?}", p.subject()) }))
        .layer(layer))
}

mod own_validator {
    use std::collections::HashMap;

    use axum::Router;
    use axum::routing::get;
    use tower_bearer::{
        AuthError, BearerLayer, InvalidToken, Principal, RequestView, TokenKind, Validator, Verdict,
    };

    async fn me(principal: Principal) -> String {
        format!("{} {}", principal.subject().unwrap_or("?"), principal.scopes())
    }

    pub fn app(keys: HashMap<String, (String, Vec<String>)>) -> Router {
        struct ApiKeys(HashMap<String, (String, Vec<String>)>); // key -> (owner, scopes)

        impl Validator for ApiKeys {
            fn validate(&self, token: &str, _request: &RequestView<'_>) -> Verdict {
                Verdict::Ready(match self.0.get(token) {
                    Some((owner, scopes)) => Ok(Principal::builder(TokenKind::Opaque)
                        .subject(owner.as_str())
                        .scopes(scopes.iter().map(String::as_str))
                        .build()),
                    None => Err(AuthError::InvalidToken(InvalidToken::Inactive)),
                })
            }
        }
        let app = Router::new().route("/me", get(me)).layer(BearerLayer::new(ApiKeys(keys)));
        app
    }
}

#[tokio::test]
async fn own_validator_snippet_accepts_its_keys_only() {
    let keys = [("k1".to_owned(), ("ann".to_owned(), vec!["items:read".to_owned()]))].into_iter().collect();
    let app = own_validator::app(keys);
    let call = |key: &str| {
        Request::get("/me")
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(axum::body::Body::empty())
    };
    let res = app.clone().oneshot(call("k1").unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
    assert_eq!(&body[..], b"ann items:read");
    let res = app.oneshot(call("k2").unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

fn optional_authentication(validator: JwtValidator) -> Router {
    async fn hello(principal: Option<Principal>) -> String {
        match principal.as_ref().and_then(Principal::subject) {
            Some(subject) => format!("hello {subject}"),
            None => "hello stranger".to_owned(), // no credentials: anonymous
        }
    }
    let app = Router::new().route("/hello", get(hello)).layer(BearerLayer::new(validator).optional());
    app
}

fn token_sources(validator: JwtValidator) -> Router {
    let create = || async { "created" };

    // A cookie: pair it with SameSite cookies or a CSRF check (browsers send cookies cross-site).
    // The RFC 6750 §2.3 query parameter `access_token`: discouraged; responses get `Cache-Control: private`.
    let layer = BearerLayer::new(validator).token_sources(TokenSources::header_only().cookie("at").query());
    // RFC 6750 §2.2 form body `access_token` (form-encoded POST/PUT/PATCH only, 64 KiB bound, body
    // handed on intact): a layer of its own, outside the bearer layer.
    let app = Router::new().route("/items", post(create)).layer(layer).layer(FormTokenLayer::new());
    app
}

fn error_bodies(validator: JwtValidator) -> (Router, Router) {
    // RFC 9457 problem details, `type` = urn:tower-bearer:error:<reason>
    let problem = BearerLayer::new(validator.clone()).error_body(ErrorBody::ProblemJson);
    // or your own
    let custom = BearerLayer::new(validator).error_body(ErrorBody::custom(|err| {
        let json = format!(r#"{{"error":"{}"}}"#, err.reason());
        Some((HeaderValue::from_static("application/json"), json.into()))
    }));
    let route = || Router::new().route("/", get(|| async { "ok" }));
    (route().layer(problem), route().layer(custom))
}

fn token_cache() -> Result<JwtValidator> {
    let validator = JwtValidator::builder()
        .issuer("https://issuer.example")
        .audience("https://api.example")
        .jwks_url("https://issuer.example/.well-known/jwks.json")
        .token_cache(50_000, Duration::from_secs(120)) // or .no_token_cache()
        .build()?;
    Ok(validator)
}

fn discovery() -> Result<(JwtValidator, BearerLayer<MultiIssuer>)> {
    // Given only the issuer URL: its keys are found through its metadata (OIDC discovery or RFC 8414).
    let validator =
        JwtValidator::from_issuer("https://as.example/tenant")?.audience("https://api.example").build()?;
    // Several issuers: the token's `iss` picks one, and only that issuer's keys may verify it.
    let tenants = MultiIssuer::new([
        JwtValidator::from_issuer("https://as.example/a")?.audience("https://api.example").build()?,
        JwtValidator::from_issuer("https://as.example/b")?.audience("https://api.example").build()?,
    ])?;
    let layer = BearerLayer::new(tenants);
    Ok((validator, layer))
}

fn resource_metadata(validator: JwtValidator) -> Result<Router> {
    let metadata = ProtectedResource::builder("https://api.example")
        .authorization_server("https://as.example")
        .scopes_supported(["items:read", "items:write"])
        .build()?;
    let app = Router::new()
        .route("/me", get(|p: Principal| async move { format!("{:?}", p.subject()) }))
        .layer(BearerLayer::new(validator).protected_resource(&metadata)) // challenges name it
        .route_service(metadata.well_known_path(), metadata.service()); // public, outside the layer
    Ok(app)
}

mod grpc {
    use tokio::net::TcpListener;
    use tonic::service::Routes;
    use tonic::transport::Server;
    use tonic::transport::server::TcpIncoming;
    use tower_bearer::{BearerLayer, JwtValidator, RequireScope};

    pub async fn serve(listener: TcpListener, validator: JwtValidator) -> super::Result<()> {
        let items = super::grpc_example::items();
        // `items`: a tonic service, e.g. `ItemsServer::new(MyItems)` generated by tonic-prost-build
        let methods = axum::Router::new()
            .route_service("/demo.Items/Delete", items.clone())
            .route_layer(RequireScope::all(["items:write"])) // PERMISSION_DENIED without it
            .route_service("/demo.Items/Get", items);
        let server = Server::builder()
            .layer(BearerLayer::new(validator).realm("items")) // UNAUTHENTICATED, UNAVAILABLE
            .add_routes(Routes::from(methods));
        server.serve_with_incoming(TcpIncoming::from(listener)).await?;
        Ok(())
    }
}

mod plain_hyper {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::Full;
    use hyper::body::Incoming;
    use hyper::server::conn::http1;
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    use tokio::net::TcpListener;
    use tower::ServiceBuilder;
    use tower_bearer::form::{FormBody, FormTokenLayer};
    use tower_bearer::{BearerLayer, JwtValidator, Principal};

    pub async fn serve(listener: TcpListener, validator: JwtValidator) -> std::io::Result<()> {
        let service = ServiceBuilder::new()
            .layer(FormTokenLayer::new()) // optional: `access_token` in form bodies, hands on FormBody<Incoming>
            .layer(BearerLayer::new(validator).realm("api"))
            .service_fn(|request: Request<FormBody<Incoming>>| async move {
                let principal = request.extensions().get::<Principal>(); // always there behind BearerLayer
                let hello = format!("hello {:?}\n", principal.and_then(Principal::subject));
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(hello))))
            });
        loop {
            let (stream, _) = listener.accept().await?;
            let connection = TowerToHyperService::new(service.clone());
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), connection));
        }
    }
}

async fn dev() -> (DevIssuer, JwtValidator) {
    let dev = DevIssuer::builder().algorithms([Algorithm::ES256]).start().await.unwrap();
    let validator = JwtValidator::builder()
        .issuer(dev.issuer())
        .audience(DEFAULT_AUDIENCE)
        .jwks_url(dev.jwks_url())
        .build()
        .unwrap();
    (dev, validator)
}

/// One request through an in-memory router.
async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, String) {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response =
        app.clone().oneshot(request.body(axum::body::Body::from(body.to_owned())).unwrap()).await.unwrap();
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned());
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, format!("{}|{}", content_type.unwrap_or_default(), String::from_utf8_lossy(&body)))
}

#[tokio::test]
async fn quick_start_router_rejects_without_a_token() {
    let app = quick_start::app().unwrap();
    let response = app.oneshot(Request::get("/me").body(axum::body::Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()[header::WWW_AUTHENTICATE], r#"Bearer realm="api""#);
}

#[tokio::test]
async fn dpop_snippet_refuses_bound_tokens_as_bearer() {
    let dev = DevIssuer::start().await.unwrap();
    let validator = JwtValidator::builder()
        .issuer(dev.issuer())
        .audience(DEFAULT_AUDIENCE)
        .jwks_url(dev.jwks_url())
        .build()
        .unwrap();
    let app = dpop(validator).unwrap();
    let bound = dev.token().claim("cnf", serde_json::json!({ "jkt": "abc" })).sign();
    let get = |token: &str| {
        Request::get("/me")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(axum::body::Body::empty())
    };
    let res = app.clone().oneshot(get(&bound).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app.oneshot(get(&dev.token().sign()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn opaque_tokens_snippet_routes_jwts_locally() {
    let (dev, validator) = dev().await;
    let app = opaque_tokens(validator, "s3cret".into()).unwrap();
    // A JWT is verified locally: the introspection endpoint (unreachable here) is never asked.
    let auth = format!("Bearer {}", dev.token().alg(Algorithm::ES256).subject("ada").sign());
    let (status, body) = call(&app, "GET", "/me", &[("authorization", &auth)], "").await;
    assert_eq!((status, body.ends_with(r#"Some("ada")"#)), (StatusCode::OK, true), "{body}");
    // An opaque token goes to as.example, which cannot be reached: 503, not 401.
    let (status, _) = call(&app, "GET", "/me", &[("authorization", "Bearer opaque-token")], "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn optional_authentication_snippet_greets_both() {
    let (dev, validator) = dev().await;
    let app = optional_authentication(validator);
    assert_eq!(
        call(&app, "GET", "/hello", &[], "").await,
        (StatusCode::OK, "text/plain; charset=utf-8|hello stranger".into())
    );
    let token = dev.token().alg(Algorithm::ES256).subject("ada").sign();
    let auth = format!("Bearer {token}");
    let (status, body) = call(&app, "GET", "/hello", &[("authorization", &auth)], "").await;
    assert_eq!((status, body.ends_with("hello ada")), (StatusCode::OK, true));
    let (status, _) = call(&app, "GET", "/hello", &[("authorization", "Bearer not.a.token")], "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn token_sources_snippet_reads_cookie_query_and_form() {
    let (dev, validator) = dev().await;
    let app = token_sources(validator);
    let token = dev.token().alg(Algorithm::ES256).sign();
    let cookie = format!("at={token}");
    let query = format!("/items?access_token={token}");
    let form = format!("access_token={token}");
    let form_type = ("content-type", "application/x-www-form-urlencoded");
    assert_eq!(call(&app, "POST", "/items", &[("cookie", &cookie)], "").await.0, StatusCode::OK);
    assert_eq!(call(&app, "POST", &query, &[], "").await.0, StatusCode::OK);
    assert_eq!(call(&app, "POST", "/items", &[form_type], &form).await.0, StatusCode::OK);
    assert_eq!(call(&app, "POST", &query, &[("cookie", &cookie)], "").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(call(&app, "POST", "/items", &[], "").await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn error_bodies_snippet_renders_both() {
    let (_dev, validator) = dev().await;
    let (problem, custom) = error_bodies(validator);
    let bad = [("authorization", "Bearer not.a.token")];
    let (status, body) = call(&problem, "GET", "/", &bad, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.starts_with("application/problem+json|"), "{body}");
    assert!(body.contains("urn:tower-bearer:error:"), "{body}");
    let (status, body) = call(&custom, "GET", "/", &bad, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.starts_with(r#"application/json|{"error":""#), "{body}");
}

#[tokio::test]
async fn token_cache_snippet_builds_a_cached_validator() {
    let validator = token_cache().unwrap();
    assert_eq!(validator.token_cache_stats().entries, 0);
}

#[tokio::test]
async fn discovery_snippet_builds_without_touching_the_network() {
    let (validator, layer) = discovery().unwrap();
    assert_eq!(validator.issuer(), Some("https://as.example/tenant"));
    let mut issuers: Vec<&str> = layer.validator().issuers().collect();
    issuers.sort();
    assert_eq!(issuers, ["https://as.example/a", "https://as.example/b"]);
}

#[tokio::test]
async fn resource_metadata_snippet_serves_the_document_and_names_it() {
    let (_dev, validator) = dev().await;
    let app = resource_metadata(validator).unwrap();
    let (status, body) = call(&app, "GET", "/.well-known/oauth-protected-resource", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(r#""resource":"https://api.example""#), "{body}");
    let response = app.oneshot(Request::get("/me").body(axum::body::Body::empty()).unwrap()).await.unwrap();
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer resource_metadata="https://api.example/.well-known/oauth-protected-resource""#
    );
}

#[tokio::test]
async fn grpc_snippet_answers_in_grpc_statuses() {
    use grpc_example::{DELETE, GET, ItemsClient};
    let (dev, validator) = dev().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { grpc::serve(listener, validator).await.map_err(|e| e.to_string()) });
    let mut client = ItemsClient::new(grpc_example::connect(addr).await.unwrap());
    let reader =
        format!("Bearer {}", dev.token().alg(Algorithm::ES256).subject("ada").scope("items:read").sign());

    let status = client.call(GET, "1", None).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (tonic::Code::Unauthenticated, "no bearer token"));
    assert_eq!(status.metadata().get("www-authenticate").unwrap(), r#"Bearer realm="items""#);
    let status = client.call(DELETE, "1", Some(&reader)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    let item = client.call(GET, "1", Some(&reader)).await.unwrap().into_inner();
    assert_eq!(item.owner, "ada");
}

#[tokio::test]
async fn hyper_snippet_serves_the_principal() {
    let (dev, validator) = dev().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(plain_hyper::serve(listener, validator));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let token = dev.token().alg(Algorithm::ES256).subject("ada").sign();

    let response = client.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "hello Some(\"ada\")\n");
    let form = client.post(&url).form(&[("access_token", token.as_str())]).send().await.unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()[header::WWW_AUTHENTICATE], r#"Bearer realm="api""#);
}

#[tokio::test]
async fn client_certificate_header_snippet_reads_the_forwarded_certificate() {
    let (dev, validator) = dev().await;
    let app = client_certificate_header(validator);
    let bound = dev.token().claim("cnf", serde_json::json!({ "x5t#S256": "abc" })).sign();
    let get = |cert: &str| {
        Request::get("/me")
            .header(header::AUTHORIZATION, format!("Bearer {bound}"))
            .header("x-client-cert", cert)
            .body(axum::body::Body::empty())
            .unwrap()
    };
    // Not a PEM certificate: the header was read, and refused.
    let res = app.clone().oneshot(get("garbage")).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // A readable certificate, not the one the token names.
    let pem = "-----BEGIN%20CERTIFICATE-----%0AMAMCAfv/Pg==%0A-----END%20CERTIFICATE-----%0A";
    let res = app.oneshot(get(pem)).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

/// Every ```rust block of the README appears in this file, paragraph by paragraph (a run of
/// lines without a blank one), line for line, indentation aside.
#[test]
fn every_readme_snippet_is_compiled_here() {
    let readme = include_str!("../README.md");
    let here: Vec<&str> = include_str!("readme.rs").lines().map(str::trim).collect();
    let mut blocks = 0;
    let mut lines = readme.lines();
    while lines.any(|l| l.trim() == "```rust") {
        let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").map(str::trim).collect();
        for paragraph in block.split(|l| l.is_empty()).filter(|p| !p.is_empty()) {
            let found = here.windows(paragraph.len()).any(|w| w == paragraph);
            assert!(found, "README snippet not compiled by tests/readme.rs:\n{}", paragraph.join("\n"));
        }
        blocks += 1;
    }
    assert!(blocks >= 10, "expected the README's ten snippets, found {blocks}");
}

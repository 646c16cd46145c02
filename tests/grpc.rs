//! gRPC clients get gRPC answers: `examples/grpc.rs` (a tonic server behind `BearerLayer`, with
//! `RequireScope` on one method) driven by a real tonic client over HTTP/2 on 127.0.0.1, with
//! keys from the development issuer's JWKS. Then the axum extractors and a handler's
//! `AuthError`, which answer gRPC requests the same way.
#![cfg(all(feature = "dev", feature = "axum"))]

#[allow(dead_code)]
#[path = "../examples/grpc.rs"]
mod example;

mod common;

use axum::Router;
use axum::routing::post;
use common::{Challenge, dev_issuer, guarded, validator};
use example::{DELETE, GET, ItemsClient, REALM};
use http::{Request, StatusCode};
use tonic::Code;
use tower::ServiceExt;
use tower_bearer::dev::DevIssuer;
use tower_bearer::{Algorithm, AuthError, BearerLayer, Principal};

/// Serves the example on 127.0.0.1 with `dev`'s keys; a client connected to it.
async fn start(dev: &DevIssuer) -> ItemsClient {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(example::serve(listener, validator(dev)));
    ItemsClient::new(guarded(example::connect(addr)).await.unwrap())
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The status of a failed call, its `grpc-message`, and the challenge in its metadata.
#[track_caller]
fn rejected(
    result: Result<tonic::Response<example::Item>, tonic::Status>,
) -> (Code, String, Option<Challenge>) {
    let status = result.expect_err("the call must fail");
    let challenge = status.metadata().get("www-authenticate").map(|v| Challenge::parse(v.to_str().unwrap()));
    (status.code(), status.message().to_owned(), challenge)
}

#[tokio::test]
async fn no_bad_or_malformed_credentials_are_unauthenticated() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let mut client = start(&dev).await;

    let (code, message, challenge) = rejected(guarded(client.call(GET, "1", None)).await);
    assert_eq!((code, message.as_str()), (Code::Unauthenticated, "no bearer token"));
    let challenge = challenge.expect("the challenge is kept as metadata");
    assert_eq!((challenge.get("realm"), challenge.get("error")), (Some(REALM), None));

    // Signed by a key our issuer never published.
    let other = dev_issuer([Algorithm::ES256]).await;
    let forged = other.token().claim("iss", dev.issuer()).sign();
    let cases = [
        (bearer(&forged), "invalid_token"),
        (bearer(&dev.token().expired(std::time::Duration::from_secs(600)).sign()), "invalid_token"),
        (bearer("not.a.token"), "invalid_token"),
        // Malformed credentials are HTTP 400, which gRPC's HTTP fallback would make INTERNAL.
        ("Bearer a,b".to_owned(), "invalid_request"),
        ("Bearer ".to_owned(), "invalid_request"),
    ];
    for (authorization, error) in cases {
        let (code, message, challenge) = rejected(guarded(client.call(GET, "1", Some(&authorization))).await);
        assert_eq!(code, Code::Unauthenticated, "{authorization}: {message}");
        let challenge = challenge.unwrap_or_else(|| panic!("{authorization}: no challenge"));
        assert_eq!(challenge.get("error"), Some(error), "{authorization}");
        // The fixed description, percent-decoded by the client.
        assert_eq!(Some(message.as_str()), challenge.get("error_description"), "{authorization}");
    }
}

#[tokio::test]
async fn the_method_reads_the_principal_and_a_missing_scope_is_permission_denied() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let mut client = start(&dev).await;
    let reader = bearer(&dev.token().subject("ada").scope("items:read").sign());
    let writer = bearer(&dev.token().subject("grace").scope("items:read items:write").sign());

    let item =
        guarded(client.call(GET, "7", Some(&reader))).await.expect("a valid token passes").into_inner();
    assert_eq!((item.id.as_str(), item.owner.as_str()), ("7", "ada"));

    let (code, message, challenge) = rejected(guarded(client.call(DELETE, "7", Some(&reader))).await);
    assert_eq!((code, message.as_str()), (Code::PermissionDenied, "the token lacks a required scope"));
    let challenge = challenge.expect("challenge");
    assert_eq!(challenge.get("error"), Some("insufficient_scope"));
    assert_eq!(challenge.get("scope"), Some("items:write"));
    assert_eq!(challenge.get("realm"), Some(REALM));

    let item =
        guarded(client.call(DELETE, "7", Some(&writer))).await.expect("the scope is granted").into_inner();
    assert_eq!(item.owner, "grace");

    // Routing and the service's dispatch see the same path: no other spelling of `Delete` reaches
    // the method without the scope check.
    for path in ["/demo.Items/Delete/", "/demo.Items/delete", "//demo.Items/Delete", "/demo.Items/%44elete"] {
        let (code, ..) = rejected(guarded(client.call(path, "7", Some(&reader))).await);
        assert_eq!(code, Code::Unimplemented, "{path}");
    }
}

#[tokio::test]
async fn keys_that_cannot_be_fetched_are_unavailable() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    dev.set_jwks_failing(true);
    let mut client = start(&dev).await;
    let token = bearer(&dev.token().sign());
    let (code, message, challenge) = rejected(guarded(client.call(GET, "1", Some(&token))).await);
    assert_eq!((code, message.as_str()), (Code::Unavailable, "authorization is temporarily unavailable"));
    assert!(challenge.is_none(), "the failure is ours: no challenge");
}

/// A request as a gRPC client sends it, in memory.
fn grpc_request(authorization: Option<&str>) -> Request<axum::body::Body> {
    let mut request = Request::post("/demo.Items/Get").header("content-type", "application/grpc+proto");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.body(axum::body::Body::empty()).unwrap()
}

/// Status, `grpc-status`, `grpc-message`, challenge and body length of a response.
async fn parts(
    res: axum::response::Response,
) -> (StatusCode, Option<String>, Option<String>, Option<String>, usize) {
    let header = |name: &str| res.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    let seen = (res.status(), header("grpc-status"), header("grpc-message"), header("www-authenticate"));
    assert_eq!(res.headers()["content-type"], "application/grpc");
    let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
    (seen.0, seen.1, seen.2, seen.3, body.len())
}

#[tokio::test]
async fn extractors_and_handler_errors_answer_grpc_requests_in_grpc() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    async fn admin(principal: Principal) -> Result<&'static str, AuthError> {
        principal.require_scopes(["admin"])?;
        Ok("ok")
    }
    // The extractor, with no bearer layer in front: 401 in HTTP, UNAUTHENTICATED in gRPC.
    let bare = Router::new().route("/demo.Items/Get", post(admin));
    let (status, grpc_status, message, challenge, body) =
        parts(bare.oneshot(grpc_request(None)).await.unwrap()).await;
    assert_eq!((status, body), (StatusCode::OK, 0));
    assert_eq!((grpc_status.as_deref(), message.as_deref()), (Some("16"), Some("no bearer token")));
    assert_eq!(challenge.as_deref(), Some("Bearer"));

    // A handler's `AuthError`, rendered again by the layer with its realm, as gRPC.
    let app = Router::new()
        .route("/demo.Items/Get", post(admin))
        .layer(BearerLayer::new(validator(&dev)).realm("r"));
    let token = bearer(&dev.token().scope("items:read").sign());
    let (status, grpc_status, message, challenge, body) =
        parts(app.oneshot(grpc_request(Some(&token))).await.unwrap()).await;
    assert_eq!((status, body), (StatusCode::OK, 0));
    assert_eq!(
        (grpc_status.as_deref(), message.as_deref()),
        (Some("7"), Some("the token lacks a required scope"))
    );
    let challenge = Challenge::parse(&challenge.expect("challenge"));
    assert_eq!((challenge.get("realm"), challenge.get("scope")), (Some("r"), Some("admin")));
}

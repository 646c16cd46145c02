//! RFC 6750 §2.1 (the `Authorization: Bearer` header) and §3.1 (the challenges) over real HTTP,
//! plus a few raw-byte cases driven in-process with `tower::ServiceExt::oneshot`.
#![cfg(all(feature = "dev", feature = "axum"))]

mod common;

use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use common::{Challenge, REALM, Reply, TestApp, dev_issuer, send, validator};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_bearer::dev::DevIssuer;
use tower_bearer::{Algorithm, BearerLayer};

/// ES256 only: key generation is instant.
async fn setup() -> (DevIssuer, TestApp) {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let app = TestApp::start(validator(&dev)).await;
    (dev, app)
}

/// `GET /me` with these raw `Authorization` values (none, one, or several headers).
async fn get_me(app: &TestApp, authorization: &[HeaderValue]) -> Reply {
    let mut request = app.request(reqwest::Method::GET, "/me");
    for value in authorization {
        request = request.header(header::AUTHORIZATION, value.clone());
    }
    send(request).await
}

#[track_caller]
fn assert_bare_challenge(reply: &Reply) {
    reply.assert_challenge(StatusCode::UNAUTHORIZED, None);
    assert_eq!(
        reply.headers[header::WWW_AUTHENTICATE],
        format!(r#"Bearer realm="{REALM}""#),
        "RFC 6750 §3.1: no error code when the request carried no credentials"
    );
    assert!(reply.body.is_empty(), "{reply:?}");
}

#[tokio::test]
async fn no_authorization_header_is_a_bare_401_challenge() {
    let (_dev, app) = setup().await;
    assert_bare_challenge(&get_me(&app, &[]).await);
}

#[tokio::test]
async fn other_schemes_count_as_no_credentials() {
    let (_dev, app) = setup().await;
    for value in [
        "Basic dXNlcjpwYXNz",
        "Basic xxx",
        "Digest username=\"a\"",
        "DPoP abc.def.ghi",
        // No space after the scheme name: a different scheme, not a bearer token.
        "Bearerabc",
    ] {
        let reply = get_me(&app, &[HeaderValue::from_static(value)]).await;
        assert_bare_challenge(&reply);
    }
}

#[tokio::test]
async fn valid_token_passes_with_any_scheme_case_and_spacing() {
    let (dev, app) = setup().await;
    let token = dev.token().alg(Algorithm::ES256).subject("carol").sign();
    for value in [
        format!("Bearer {token}"),
        format!("bearer {token}"),
        format!("BEARER {token}"),
        format!("Bearer    {token}"),
    ] {
        let reply = get_me(&app, &[HeaderValue::from_str(&value).unwrap()]).await;
        let principal = reply.assert_ok_json();
        assert_eq!(principal["subject"], "carol", "{value}");
    }
}

#[tokio::test]
async fn empty_bearer_token_is_invalid_request() {
    let (_dev, app) = setup().await;
    for value in ["Bearer", "Bearer ", "Bearer     ", "bearer"] {
        let reply = get_me(&app, &[HeaderValue::from_static(value)]).await;
        reply.assert_invalid_request();
    }
}

#[tokio::test]
async fn characters_outside_b64token_are_invalid_request() {
    let (dev, app) = setup().await;
    let token = dev.token().alg(Algorithm::ES256).sign();
    for value in [
        "Bearer a,b".to_owned(),
        "Bearer a b".to_owned(),
        "Bearer abc!".to_owned(),
        "Bearer a\"b".to_owned(),
        "Bearer {\"alg\":\"none\"}".to_owned(),
        "Bearer a=b".to_owned(),
        "Bearer ===".to_owned(),
        "Bearer a\tb".to_owned(),
        // A valid token made invalid by one character, so the 400 cannot come from validation.
        format!("Bearer {token};"),
        format!("Bearer {token} extra"),
    ] {
        let reply = get_me(&app, &[HeaderValue::from_str(&value).unwrap()]).await;
        let challenge = reply.assert_invalid_request();
        assert!(!challenge.raw.contains(&token), "the challenge must not echo the token");
    }
}

#[tokio::test]
async fn two_authorization_headers_are_invalid_request_even_if_both_are_valid() {
    let (dev, app) = setup().await;
    let token = dev.token().alg(Algorithm::ES256).sign();
    let value = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    // Sanity: one copy is accepted.
    get_me(&app, std::slice::from_ref(&value)).await.assert_ok_json();
    let reply = get_me(&app, &[value.clone(), value]).await;
    reply.assert_invalid_request();

    let other = HeaderValue::from_static("Basic dXNlcjpwYXNz");
    let reply = get_me(&app, &[HeaderValue::from_str(&format!("Bearer {token}")).unwrap(), other]).await;
    reply.assert_invalid_request();
}

#[tokio::test]
async fn authorization_header_over_8_kib_is_invalid_request() {
    let (_dev, app) = setup().await;
    let header_of = |len: usize| {
        let value = format!("Bearer {}", "a".repeat(len - "Bearer ".len()));
        assert_eq!(value.len(), len);
        HeaderValue::from_str(&value).unwrap()
    };
    // Exactly at the bound the header is parsed, and the (junk) token reaches validation.
    get_me(&app, &[header_of(8 * 1024)]).await.assert_invalid_token();
    // One byte over: refused before any parsing.
    let reply = get_me(&app, &[header_of(8 * 1024 + 1)]).await;
    reply.assert_invalid_request();
    let reply = get_me(&app, &[header_of(64 * 1024)]).await;
    reply.assert_invalid_request();
}

#[tokio::test]
async fn non_ascii_bytes_are_invalid_request_over_http() {
    let (_dev, app) = setup().await;
    for raw in
        ["Bearer caf\u{e9}".as_bytes(), b"Bearer abc\xff".as_slice(), b"Bearer \x80\x81\x82".as_slice()]
    {
        let value = HeaderValue::from_bytes(raw).expect("obs-text is a legal header byte");
        let reply = get_me(&app, &[value]).await;
        reply.assert_invalid_request();
    }
}

/// The same service, driven in-process: raw header bytes reach the layer exactly as given.
#[tokio::test]
async fn raw_header_bytes_in_process() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let token = dev.token().alg(Algorithm::ES256).sign();
    let router = common::app(validator(&dev));

    let call = |values: Vec<HeaderValue>| {
        let router = router.clone();
        async move {
            let mut request = Request::get("/me");
            for v in values {
                request = request.header(header::AUTHORIZATION, v);
            }
            let response = router.oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            Reply { status, headers, body: String::from_utf8(body.to_vec()).unwrap() }
        }
    };

    let bad: &[&[u8]] = &[b"Bearer \xe9t\xe9", b"Bearer tok\xffen", b"Bearer a\tb", b"Bearer \t"];
    for raw in bad {
        let value = HeaderValue::from_bytes(raw).expect("legal header bytes");
        call(vec![value]).await.assert_invalid_request();
    }
    let good = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    call(vec![good.clone()]).await.assert_ok_json();
    call(vec![good.clone(), good]).await.assert_invalid_request();
    let reply = call(vec![]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        Challenge::parse(reply.headers[header::WWW_AUTHENTICATE].to_str().unwrap()).params,
        [("realm".to_owned(), REALM.to_owned())]
    );
}

#[tokio::test]
async fn max_header_bytes_is_configurable() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let token = dev.token().alg(Algorithm::ES256).sign();
    let limit = format!("Bearer {token}").len();
    let router = |max: usize| {
        common::routes().layer(BearerLayer::new(validator(&dev)).realm(REALM).max_header_bytes(max))
    };
    let request = || {
        Request::get("/me")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let ok = router(limit).oneshot(request()).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let too_big = router(limit - 1).oneshot(request()).await.unwrap();
    assert_eq!(too_big.status(), StatusCode::BAD_REQUEST);
    let challenge = Challenge::parse(too_big.headers()[header::WWW_AUTHENTICATE].to_str().unwrap());
    assert_eq!(challenge.get("error"), Some("invalid_request"));
}

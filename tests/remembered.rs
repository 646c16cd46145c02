//! `Validator::remembered`: the layer asks a validator for a token it remembers first, with the
//! header's bytes as they came, and validates only what it does not remember; but never where
//! the rest of the request could change the answer (several headers or token sources, DPoP).
//! A validator of our own records every call, so each test sees which path a request took.
#![cfg(feature = "axum")]

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use tower::ServiceExt;
use tower_bearer::dpop::Dpop;
use tower_bearer::{
    AuthError, BearerLayer, InvalidToken, Principal, RequestView, TokenKind, TokenSources, Validator, Verdict,
};

/// Accepts tokens starting with `good-` and remembers each one it accepted, by its bytes.
#[derive(Default)]
struct Memo {
    accepted: Mutex<HashSet<Vec<u8>>>,
    validated: AtomicUsize,
    asked: AtomicUsize,
}

impl Validator for Memo {
    fn validate(&self, token: &str, _request: &RequestView<'_>) -> Verdict {
        self.validated.fetch_add(1, Ordering::SeqCst);
        if !token.starts_with("good-") {
            return Verdict::Ready(Err(AuthError::InvalidToken(InvalidToken::Inactive)));
        }
        self.accepted.lock().unwrap().insert(token.as_bytes().to_vec());
        Verdict::Ready(Ok(Principal::builder(TokenKind::Opaque).subject(token).build()))
    }

    fn remembered(&self, token: &[u8]) -> Option<Principal> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let known = self.accepted.lock().unwrap().contains(token);
        let subject = format!("{} (remembered)", String::from_utf8_lossy(token));
        known.then(|| Principal::builder(TokenKind::Opaque).subject(subject).build())
    }
}

impl Memo {
    fn counts(&self) -> (usize, usize) {
        (self.validated.load(Ordering::SeqCst), self.asked.load(Ordering::SeqCst))
    }
}

fn app(layer: BearerLayer<Arc<Memo>>) -> Router {
    Router::new()
        .route("/me", get(|p: Principal| async move { p.subject().unwrap_or_default().to_owned() }))
        .layer(layer)
}

/// Sends `GET /me` with these `Authorization` headers (and `uri` for a query); status and body.
async fn get_me(app: &Router, uri: &str, authorizations: &[&str]) -> (StatusCode, String) {
    let mut request = Request::get(uri);
    for value in authorizations {
        request = request.header(header::AUTHORIZATION, *value);
    }
    let response = app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn a_remembered_token_skips_validation_and_others_are_validated() {
    let memo = Arc::new(Memo::default());
    let app = app(BearerLayer::new(memo.clone()));
    assert_eq!(get_me(&app, "/me", &["Bearer good-1"]).await, (StatusCode::OK, "good-1".into()));
    assert_eq!(memo.counts(), (1, 1), "asked first, then validated");
    assert_eq!(get_me(&app, "/me", &["bearer good-1"]).await, (StatusCode::OK, "good-1 (remembered)".into()));
    assert_eq!(memo.counts(), (1, 2), "remembered: not validated again");
    // Not remembered: checked and validated as ever.
    assert_eq!(get_me(&app, "/me", &["Bearer bad-1"]).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(memo.counts(), (2, 3));
    // Not a b64token: asked (nothing is remembered for it), then refused by the syntax check.
    assert_eq!(get_me(&app, "/me", &["Bearer good-1!"]).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(memo.counts(), (2, 4));
    // Another scheme carries no bearer token: neither asked nor validated.
    assert_eq!(get_me(&app, "/me", &["Basic good-1"]).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(memo.counts(), (2, 4));
}

#[tokio::test]
async fn never_on_its_own_where_the_rest_of_the_request_matters() {
    let memo = Arc::new(Memo::default());
    let plain = app(BearerLayer::new(memo.clone()));
    assert_eq!(get_me(&plain, "/me", &["Bearer good-2"]).await.0, StatusCode::OK);
    assert_eq!(memo.counts(), (1, 1));

    // Two `Authorization` headers: which one was meant? Refused, however known the token.
    let twice = get_me(&plain, "/me", &["Bearer good-2", "Bearer good-2"]).await;
    assert_eq!(twice.0, StatusCode::BAD_REQUEST);
    assert_eq!(memo.counts(), (1, 1), "neither asked nor validated");

    // With the query also a token source, the header alone cannot decide: a second token in the
    // query is refused, and a lone header token goes the whole way.
    let query = app(BearerLayer::new(memo.clone()).token_sources(TokenSources::header_only().query()));
    assert_eq!(
        get_me(&query, "/me?access_token=good-2", &["Bearer good-2"]).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(get_me(&query, "/me", &["Bearer good-2"]).await, (StatusCode::OK, "good-2".into()));
    assert_eq!(memo.counts(), (2, 1), "validated, never asked");

    // With DPoP allowed, a bearer token without a proof is remembered as ever; with a `DPoP`
    // header beside it, the whole path refuses the mix.
    let allowed = app(BearerLayer::new(memo.clone()).dpop(Dpop::allowed("http://localhost").unwrap()));
    assert_eq!(
        get_me(&allowed, "/me", &["Bearer good-2"]).await,
        (StatusCode::OK, "good-2 (remembered)".into())
    );
    assert_eq!(memo.counts(), (2, 2));
    let request = Request::get("/me").header(header::AUTHORIZATION, "Bearer good-2").header("dpop", "x.y.z");
    let response = allowed.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(memo.counts(), (2, 2), "neither asked nor validated");
    // DPoP required: a bearer token counts as no credentials at all.
    let required = app(BearerLayer::new(memo.clone()).dpop(Dpop::required("http://localhost").unwrap()));
    assert_eq!(get_me(&required, "/me", &["Bearer good-2"]).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(memo.counts(), (2, 2), "neither asked nor validated");
}

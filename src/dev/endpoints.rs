//! The development issuer's HTTP endpoints besides the token and authorization endpoints:
//! JWKS, metadata, introspection (RFC 7662) and revocation (RFC 7009).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Form, http::HeaderMap};
use base64::Engine;
use serde_json::{Value, json};

use super::*;

pub(super) async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    shared.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    if shared.jwks_failing.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "jwks unavailable").into_response();
    }
    let retired = read(&shared.retired).clone();
    let keys: Vec<Value> =
        read(&shared.keys).iter().filter(|k| !retired.contains(&k.kid)).map(|k| k.jwk.clone()).collect();
    (
        [
            (header::CONTENT_TYPE, "application/jwk-set+json".to_owned()),
            (header::CACHE_CONTROL, format!("public, max-age={}", shared.jwks_max_age)),
        ],
        json!({ "keys": keys }).to_string(),
    )
        .into_response()
}

pub(super) async fn metadata(State(shared): State<Arc<Shared>>) -> Response {
    let iss = &shared.issuer;
    axum::Json(json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "jwks_uri": format!("{iss}/jwks.json"),
        "introspection_endpoint": format!("{iss}/introspect"),
        "revocation_endpoint": format!("{iss}/revoke"),
        "scopes_supported": shared.auth.scopes,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "authorization_response_iss_parameter_supported": true,
        // RFC 9449 §5.1: the token endpoint binds tokens to DPoP proofs of these algorithms.
        "dpop_signing_alg_values_supported":
            shared.dpop.algorithms.iter().map(|a| alg_name(*a)).collect::<Vec<_>>(),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
    .into_response()
}

/// Authenticates the resource server (RFC 7662 §2.1): Basic, form credentials, or bearer.
pub(super) fn client_auth(headers: &HeaderMap, form: &HashMap<String, String>) -> Option<&'static str> {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if let Some(basic) = authorization.and_then(|v| v.strip_prefix("Basic ")) {
        let decoded = base64::engine::general_purpose::STANDARD.decode(basic).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        // The same decoding as the token endpoint's (no truncation at `&`), and both halves
        // compared in constant time: `&` (not `&&`) so a wrong id does not skip the secret.
        let (id, secret) = (clients::form_decode(id)?, clients::form_decode(secret)?);
        return (same(&id, RESOURCE_CLIENT_ID) & same(&secret, RESOURCE_CLIENT_SECRET))
            .then_some("client_secret_basic");
    }
    if authorization.and_then(|v| v.strip_prefix("Bearer ")).is_some_and(|token| same(token, RESOURCE_BEARER))
    {
        return Some("bearer");
    }
    let post = |name: &str, expected: &str| form.get(name).is_some_and(|v| same(v, expected));
    (post("client_id", RESOURCE_CLIENT_ID) & post("client_secret", RESOURCE_CLIENT_SECRET))
        .then_some("client_secret_post")
}

/// Credentials compared in constant time (no early exit at the first differing byte).
pub(super) fn same(presented: &str, expected: &str) -> bool {
    verify_slices_are_equal(presented.as_bytes(), expected.as_bytes()).is_ok()
}

pub(super) fn invalid_client() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"dev issuer\"")],
        axum::Json(json!({"error": "invalid_client"})),
    )
        .into_response()
}

pub(super) async fn introspect(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    shared.introspection_calls.fetch_add(1, Ordering::SeqCst);
    if shared.introspection_failing.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "introspection unavailable").into_response();
    }
    let Some(method) = client_auth(&headers, &form) else {
        return invalid_client();
    };
    *write(&shared.last_introspection_auth) = Some(method);
    let token = form.get("token").map(String::as_str).unwrap_or_default();
    let opaque = read(&shared.opaque);
    let now = shared.auth.clock.unix_now();
    let body = match opaque.get(token) {
        Some(grant)
            if !grant.revoked
                && grant.claims.get("exp").and_then(Value::as_i64).is_none_or(|exp| exp > now) =>
        {
            let mut claims = grant.claims.clone();
            claims.insert("active".into(), true.into());
            claims.insert("token_type".into(), "Bearer".into());
            Value::Object(claims)
        }
        Some(_) => json!({"active": false}),
        None => match lock(&shared.auth.store).active_access(token, now) {
            Some(claims) => {
                let mut claims = claims.clone();
                // A token bound to a DPoP key (`cnf.jkt`, RFC 9449 §6.2) is a DPoP token.
                let token_type = if claims.contains_key("cnf") { "DPoP" } else { "Bearer" };
                claims.insert("active".into(), true.into());
                claims.insert("token_type".into(), token_type.into());
                Value::Object(claims)
            }
            None => json!({"active": false}),
        },
    };
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

pub(super) async fn revoke(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    // The resource server may revoke anything; a registered client only its own tokens.
    let client_id = if client_auth(&headers, &form).is_some() {
        None
    } else {
        let pairs: Vec<(String, String)> = form.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        match clients::authenticate(&shared.auth.clients, &headers, &pairs) {
            Ok((client, _)) => Some(client.id.clone()),
            Err(_) => return invalid_client(),
        }
    };
    if let Some(token) = form.get("token") {
        let revoked = lock(&shared.auth.store).revoke(token, client_id.as_deref());
        if !revoked
            && client_id.is_none()
            && let Some(grant) = write(&shared.opaque).get_mut(token)
        {
            grant.revoked = true;
        }
    }
    // RFC 7009 §2.2: 200 whether or not the token was known.
    StatusCode::OK.into_response()
}

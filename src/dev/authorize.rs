//! `GET /authorize` (RFC 6749 §4.1.1): the authorization code grant with PKCE `S256` required
//! (RFC 7636; `plain` refused), exact `redirect_uri` matching, `state` echoed, `scope` and
//! `resource` (RFC 8707) honoured, and the issuer in the response (RFC 9207).
//!
//! In [interactive](super::DevIssuerBuilder::interactive) mode a valid request gets the sign-in
//! and consent page (see `consent`); otherwise consent is automatic: the configured development
//! user approves every valid request (unless
//! [`DevIssuer::set_consent_denied`](super::DevIssuer::set_consent_denied)), so tests and demos
//! need no browser. Errors are redirected to the client per §4.1.2.1, except those about the
//! client or its redirect URI, which get a `400` page (§4.1.2.1: never redirect to an
//! unverified URI).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::redirect::{approve, redirect};
use super::store::Authorization;
use super::token::{params, parse_scope, valid_resource};
use super::{Shared, consent, html, pkce};

/// A `400` page for errors that must not be redirected.
fn error_page(description: &str) -> Response {
    html::error_page(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &format!("invalid authorization request: {description}"),
    )
}

pub(crate) async fn authorize(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let all: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let count = |name: &str| all.iter().filter(|(n, _)| n == name).count();
    let get = |name: &str| all.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let config = &shared.auth;

    // Client and redirect URI first: until both are verified, nothing may be redirected.
    if count("client_id") > 1 || count("redirect_uri") > 1 {
        return error_page("client_id or redirect_uri sent more than once");
    }
    let Some(client_id) = get("client_id") else {
        return error_page("client_id is required");
    };
    let Some(client) = config.clients.iter().find(|c| c.id == client_id) else {
        return error_page("unknown client_id");
    };
    let Some(redirect_uri) = get("redirect_uri") else {
        return error_page("redirect_uri is required");
    };
    if !client.redirect_uris.iter().any(|uri| uri == redirect_uri) {
        return error_page("redirect_uri is not registered for this client");
    }

    let state = get("state");
    let fail = |error: &str, description: &str| {
        let mut pairs = vec![("error", error), ("error_description", description)];
        pairs.extend(state.map(|s| ("state", s)));
        pairs.push(("iss", shared.issuer.as_str()));
        redirect(redirect_uri, &pairs)
    };
    if params(query.as_bytes()).is_err() {
        return fail("invalid_request", "a parameter was sent more than once");
    }
    match get("response_type") {
        None => return fail("invalid_request", "response_type is required"),
        Some("code") => {}
        Some(_) => return fail("unsupported_response_type", "only response_type=code is supported"),
    }
    if !client.allows_grant("authorization_code") {
        return fail("unauthorized_client", "the client may not use the authorization code grant");
    }
    let Some(challenge) = get("code_challenge") else {
        return fail("invalid_request", "code_challenge is required (PKCE)");
    };
    match get("code_challenge_method") {
        Some("S256") => {}
        // RFC 7636 §4.3: absent means `plain`, which this server refuses.
        None | Some("plain") => return fail("invalid_request", "code_challenge_method must be S256"),
        Some(_) => return fail("invalid_request", "unsupported code_challenge_method"),
    }
    if !pkce::well_formed(challenge) {
        return fail("invalid_request", "malformed code_challenge");
    }
    let scope = match get("scope") {
        None => client.default_scopes(&config.scopes),
        Some(requested) => match parse_scope(requested) {
            Some(scope) if client.allows_scopes(&config.scopes, &scope) => scope,
            _ => return fail("invalid_scope", "a requested scope is unknown, malformed or not allowed"),
        },
    };
    let resource = get("resource");
    if resource.is_some_and(|r| !valid_resource(r)) {
        return fail("invalid_target", "resource must be an absolute URI without a fragment");
    }
    if resource.is_some_and(|r| !config.resource_allowed(r)) {
        return fail("invalid_target", "resource is not an audience of this server");
    }
    let request = Authorization {
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        challenge: challenge.to_owned(),
        scope,
        resource: resource.map(str::to_owned),
        state: state.map(str::to_owned),
    };
    if config.interactive {
        return consent::show(&shared, request);
    }
    if config.consent_denied.load(Ordering::SeqCst) {
        return request.fail(&shared.issuer, "access_denied", "the resource owner denied the request");
    }
    let scope = request.scope.clone();
    approve(&shared, request, &config.user, scope)
}

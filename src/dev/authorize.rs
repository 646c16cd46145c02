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
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::store::{Code, hash, secret_value};
use super::token::{params, parse_scope, valid_resource};
use super::{Shared, consent, html, lock, pkce};

/// A `400` page for errors that must not be redirected.
fn error_page(description: &str) -> Response {
    html::error_page(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &format!("invalid authorization request: {description}"),
    )
}

/// A valid authorization request, before the resource owner's decision.
pub(crate) struct Authorization {
    pub client_id: String,
    pub redirect_uri: String,
    /// The RFC 7636 S256 `code_challenge`.
    pub challenge: String,
    /// The requested scope (or the client's default), all known and allowed.
    pub scope: Vec<String>,
    pub resource: Option<String>,
    pub state: Option<String>,
}

impl Authorization {
    /// Redirects an RFC 6749 §4.1.2.1 error to the client, with `state` and `iss`.
    pub(crate) fn fail(&self, issuer: &str, error: &str, description: &str) -> Response {
        let mut pairs = vec![("error", error), ("error_description", description)];
        pairs.extend(self.state.as_deref().map(|s| ("state", s)));
        pairs.push(("iss", issuer));
        redirect(&self.redirect_uri, &pairs)
    }
}

/// Issues a code for `request` approved by `subject` with `scope` (a subset of the request's),
/// and redirects to the client (§4.1.2).
pub(crate) fn approve(
    shared: &Shared,
    request: Authorization,
    subject: &str,
    scope: Vec<String>,
) -> Response {
    let config = &shared.auth;
    let now = config.clock.unix_now();
    let mut store = lock(&config.store);
    // Unauthenticated requests must not grow the store without bound: at capacity (with
    // nothing expired to forget), refuse as RFC 6749 §4.1.2.1 provides for.
    if !store.room_for_code(now) {
        drop(store);
        return request.fail(
            &shared.issuer,
            "temporarily_unavailable",
            "too many outstanding authorization codes; retry later",
        );
    }
    let code = secret_value();
    let grant = Code {
        client_id: request.client_id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        challenge: request.challenge.clone(),
        scope,
        resource: request.resource.clone(),
        subject: subject.to_owned(),
        expires: now.saturating_add(i64::try_from(config.code_ttl.as_secs()).unwrap_or(i64::MAX)),
        consumed: false,
        family: None,
    };
    store.codes.insert(hash(&code), grant);
    drop(store);
    let mut pairs = vec![("code", code.as_str())];
    pairs.extend(request.state.as_deref().map(|s| ("state", s)));
    pairs.push(("iss", shared.issuer.as_str()));
    redirect(&request.redirect_uri, &pairs)
}

/// A `302 Found` to `redirect_uri` with `pairs` added to its query.
pub(crate) fn redirect(redirect_uri: &str, pairs: &[(&str, &str)]) -> Response {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        query.append_pair(name, value);
    }
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    let location = format!("{redirect_uri}{separator}{}", query.finish());
    (StatusCode::FOUND, [(header::LOCATION, location), (header::CACHE_CONTROL, "no-store".to_owned())])
        .into_response()
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

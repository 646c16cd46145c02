//! `POST /token` (RFC 6749 §3.2): the `authorization_code` grant with PKCE (§4.1.3, RFC 7636),
//! `refresh_token` with rotation and reuse detection (§6, RFC 9700 §4.14.2), and
//! `client_credentials` (§4.4). Errors exactly as §5.2 says; every answer is `no-store`.

use std::collections::HashSet;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::clients::{self, DevClient};
use super::store::{Access, Code, Family, Refresh, Store, hash, secret_value};
use super::token_error::{TokenError, no_store};
use super::users::RESERVED;
use super::{Shared, lock, pkce, random_id};
use crate::dpop::ReplayError;
use crate::dpop::{Target, proof_header};

pub(crate) async fn token(
    State(shared): State<std::sync::Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = Target { method: &method, uri: &uri, headers: &headers };
    match handle(&shared, &target, &body) {
        Ok(answer) => (StatusCode::OK, no_store(), axum::Json(answer)).into_response(),
        Err(error) => error.into_response(),
    }
}

/// Form parameters of a request: parsed, with repeated parameters refused (RFC 6749 §3.1,
/// §3.2). That includes `resource`: RFC 8707 allows several, this server honours one.
pub(crate) fn params(raw: &[u8]) -> Result<Vec<(String, String)>, &'static str> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw).into_owned().collect();
    let mut seen = HashSet::new();
    for (name, _) in &pairs {
        if !seen.insert(name.as_str()) {
            return Err("a parameter was sent more than once");
        }
    }
    Ok(pairs)
}

/// A space-delimited scope parameter (RFC 6749 §3.3); `None` if it is malformed.
pub(crate) fn parse_scope(scope: &str) -> Option<Vec<String>> {
    let valid = |s: &str| {
        !s.is_empty()
            && s.bytes().all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
    };
    let scopes: Vec<String> = scope.split(' ').map(str::to_owned).collect();
    scopes.iter().all(|s| valid(s)).then_some(scopes)
}

/// RFC 8707 §2: an absolute URI without a fragment.
pub(crate) fn valid_resource(resource: &str) -> bool {
    let Some((scheme, rest)) = resource.split_once(':') else {
        return false;
    };
    let scheme_ok = scheme.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    scheme_ok && !rest.is_empty() && !resource.contains('#') && !resource.contains(' ')
}

/// The thumbprint of the key of the request's DPoP proof, if it has one (RFC 9449 §5): checked
/// like a resource server checks one, without `ath`, and used once.
fn dpop_key(shared: &Shared, target: &Target<'_>) -> Result<Option<String>, TokenError> {
    if target.headers.get(crate::dpop::DPOP).is_none() {
        return Ok(None);
    }
    let invalid = || TokenError::new("invalid_dpop_proof", "the DPoP proof is invalid");
    let dpop = &shared.dpop;
    let proof = proof_header(target.headers, dpop.max_proof_bytes).map_err(|_| invalid())?;
    let now = shared.auth.clock.unix_now();
    let proof = dpop.verify(proof, None, target, now).map_err(|_| invalid())?;
    match dpop.replay.record(proof.replay_key, proof.expires_at, now) {
        Ok(()) => Ok(Some(proof.jkt)),
        Err(ReplayError::Full | ReplayError::KeyOverBudget) => {
            Err(TokenError::temporarily_unavailable("too many DPoP proofs; retry later"))
        }
        Err(_) => Err(TokenError::new("invalid_dpop_proof", "the DPoP proof was already used")),
    }
}

fn handle(shared: &Shared, target: &Target<'_>, body: &[u8]) -> Result<Value, TokenError> {
    let headers = target.headers;
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !form_type {
        return Err(TokenError::invalid_request("the body must be application/x-www-form-urlencoded"));
    }
    let form = params(body).map_err(TokenError::invalid_request)?;
    let get = |name: &str| form.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let config = &shared.auth;
    let (client, _method) = clients::authenticate(&config.clients, headers, &form)?;
    let grant = get("grant_type").ok_or(TokenError::invalid_request("grant_type is required"))?;
    if !matches!(grant, "authorization_code" | "refresh_token" | "client_credentials") {
        return Err(TokenError::new("unsupported_grant_type", "this grant type is not supported"));
    }
    if !client.allows_grant(grant) {
        return Err(TokenError::new("unauthorized_client", "the client may not use this grant type"));
    }
    let resource = get("resource");
    if resource.is_some_and(|r| !valid_resource(r)) {
        return Err(TokenError::new("invalid_target", "resource must be an absolute URI without a fragment"));
    }
    if resource.is_some_and(|r| !shared.auth.resource_allowed(r)) {
        return Err(TokenError::new("invalid_target", "resource is not an audience of this server"));
    }
    let jkt = dpop_key(shared, target)?;
    let jkt = jkt.as_deref();
    let mut store = lock(&config.store);
    // Every grant below inserts at most one access token and one refresh token: refuse before
    // anything is consumed when the store is full (see `Store::room_for_tokens`).
    if !store.room_for_tokens(config.clock.unix_now()) {
        return Err(TokenError::temporarily_unavailable("too many outstanding tokens; retry later"));
    }
    match grant {
        "authorization_code" => authorization_code(shared, &mut store, client, &get, jkt),
        "refresh_token" => refresh_token(shared, &mut store, client, &get, jkt),
        _ => client_credentials(shared, &mut store, client, &get, jkt),
    }
}

type Get<'a> = dyn Fn(&str) -> Option<&'a str> + 'a;

fn authorization_code(
    shared: &Shared,
    store: &mut Store,
    client: &DevClient,
    get: &Get<'_>,
    jkt: Option<&str>,
) -> Result<Value, TokenError> {
    let code = get("code").ok_or(TokenError::invalid_request("code is required"))?;
    let redirect_uri = get("redirect_uri").ok_or(TokenError::invalid_request("redirect_uri is required"))?;
    let verifier =
        get("code_verifier").ok_or(TokenError::invalid_request("code_verifier is required (PKCE)"))?;
    let Some(grant) = store.codes.get_mut(&hash(code)) else {
        return Err(TokenError::invalid_grant("unknown authorization code"));
    };
    if grant.client_id != client.id {
        return Err(TokenError::invalid_grant("the code was issued to another client"));
    }
    if grant.consumed {
        // RFC 6749 §4.1.2: a code used twice revokes what it was exchanged for.
        if let Some(family) = grant.family {
            store.revoke_family(family);
        }
        return Err(TokenError::invalid_grant("the authorization code was already used"));
    }
    // Any presentation uses the code up, successful or not.
    grant.consumed = true;
    if shared.auth.clock.unix_now() >= grant.expires {
        return Err(TokenError::invalid_grant("the authorization code expired"));
    }
    if grant.redirect_uri != redirect_uri {
        return Err(TokenError::invalid_grant("redirect_uri differs from the authorization request"));
    }
    if !pkce::verify(verifier, &grant.challenge) {
        return Err(TokenError::invalid_grant("code_verifier does not match the code_challenge"));
    }
    if get("resource").is_some_and(|r| Some(r) != grant.resource.as_deref()) {
        return Err(TokenError::new("invalid_target", "resource differs from the authorization request"));
    }
    let Code { subject, scope, resource, .. } = grant;
    let (subject, scope, resource) = (subject.clone(), scope.clone(), resource.clone());
    let family = store.new_family(Family {
        client_id: client.id.clone(),
        subject: subject.clone(),
        scope: scope.clone(),
        resource: resource.clone(),
        revoked: false,
        // RFC 9449 §5: a public client's refresh tokens are bound to its DPoP key.
        jkt: jkt.filter(|_| client.is_public()).map(str::to_owned),
    });
    if let Some(grant) = store.codes.get_mut(&hash(code)) {
        grant.family = Some(family);
    }
    let refresh = client.allows_grant("refresh_token");
    let grant =
        Grant { client_id: &client.id, subject: &subject, scope: &scope, resource: resource.as_deref(), jkt };
    Ok(issue(shared, store, grant, Some(family), refresh))
}

fn refresh_token(
    shared: &Shared,
    store: &mut Store,
    client: &DevClient,
    get: &Get<'_>,
    jkt: Option<&str>,
) -> Result<Value, TokenError> {
    let token = get("refresh_token").ok_or(TokenError::invalid_request("refresh_token is required"))?;
    let key = hash(token);
    let Some(&Refresh { family: family_id, rotated, expires }) = store.refresh.get(&key) else {
        return Err(TokenError::invalid_grant("unknown refresh token"));
    };
    let Some(family) = store.families.get(&family_id) else {
        return Err(TokenError::invalid_grant("unknown refresh token"));
    };
    if family.client_id != client.id {
        return Err(TokenError::invalid_grant("the refresh token was issued to another client"));
    }
    if family.revoked {
        return Err(TokenError::invalid_grant("the refresh token was revoked"));
    }
    if rotated {
        // RFC 9700 §4.14.2: a rotated refresh token used again means it leaked: revoke the family.
        store.revoke_family(family_id);
        return Err(TokenError::invalid_grant("the refresh token was already used; its grant is revoked"));
    }
    if shared.auth.clock.unix_now() >= expires {
        return Err(TokenError::invalid_grant("the refresh token expired"));
    }
    let scope = match get("scope") {
        None => family.scope.clone(),
        Some(requested) => {
            let requested = parse_scope(requested).ok_or(TokenError::invalid_scope("malformed scope"))?;
            if !requested.iter().all(|s| family.scope.contains(s)) {
                return Err(TokenError::invalid_scope(
                    "a refresh may only narrow the originally granted scope",
                ));
            }
            requested
        }
    };
    if family.jkt.as_deref().is_some_and(|bound| jkt != Some(bound)) {
        return Err(TokenError::new("invalid_dpop_proof", "the refresh token is bound to another DPoP key"));
    }
    if get("resource").is_some_and(|r| Some(r) != family.resource.as_deref()) {
        return Err(TokenError::new("invalid_target", "resource differs from the original grant"));
    }
    let (subject, resource) = (family.subject.clone(), family.resource.clone());
    if let Some(old) = store.refresh.get_mut(&key) {
        old.rotated = true;
    }
    let grant =
        Grant { client_id: &client.id, subject: &subject, scope: &scope, resource: resource.as_deref(), jkt };
    Ok(issue(shared, store, grant, Some(family_id), true))
}

fn client_credentials(
    shared: &Shared,
    store: &mut Store,
    client: &DevClient,
    get: &Get<'_>,
    jkt: Option<&str>,
) -> Result<Value, TokenError> {
    if client.is_public() {
        return Err(TokenError::new("unauthorized_client", "public clients cannot use client_credentials"));
    }
    let server_scopes = &shared.auth.scopes;
    let scope = match get("scope") {
        None => client.default_scopes(server_scopes),
        Some(requested) => {
            let requested = parse_scope(requested).ok_or(TokenError::invalid_scope("malformed scope"))?;
            if !client.allows_scopes(server_scopes, &requested) {
                return Err(TokenError::invalid_scope("a requested scope is unknown or not allowed"));
            }
            requested
        }
    };
    // RFC 6749 §4.4.3: no refresh token.
    let grant =
        Grant { client_id: &client.id, subject: &client.id, scope: &scope, resource: get("resource"), jkt };
    Ok(issue(shared, store, grant, None, false))
}

/// What an access token is issued for.
struct Grant<'a> {
    client_id: &'a str,
    subject: &'a str,
    scope: &'a [String],
    resource: Option<&'a str>,
    /// The DPoP key it is bound to (`cnf.jkt`, RFC 9449 §6).
    jkt: Option<&'a str>,
}

/// Issues an access token (JWT or opaque) and optionally a refresh token in `family`; returns
/// the RFC 6749 §5.1 response.
fn issue(shared: &Shared, store: &mut Store, grant: Grant<'_>, family: Option<u64>, refresh: bool) -> Value {
    let Grant { client_id, subject, scope, resource, jkt } = grant;
    let config = &shared.auth;
    let now = config.clock.unix_now();
    let client = config.clients.iter().find(|c| c.id == client_id);
    let access_ttl = client.and_then(|c| c.access_ttl).unwrap_or(config.access_ttl);
    let opaque = client.and_then(|c| c.opaque).unwrap_or(config.opaque_access_tokens);
    let ttl = access_ttl.as_secs();
    let mut claims = Map::new();
    claims.insert("iss".into(), shared.issuer.clone().into());
    claims.insert("sub".into(), subject.into());
    claims.insert("aud".into(), resource.unwrap_or(config.default_audience()).into());
    claims.insert("client_id".into(), client_id.into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), now.saturating_add(secs(access_ttl)).into());
    claims.insert("jti".into(), random_id().into());
    let scope = scope.join(" ");
    if !scope.is_empty() {
        claims.insert("scope".into(), scope.clone().into());
    }
    if let Some(jkt) = jkt {
        claims.insert("cnf".into(), json!({ "jkt": jkt }));
    }
    for (name, value) in config.user_claims(subject).into_iter().flatten() {
        if !RESERVED.contains(&name.as_str()) {
            claims.insert(name.clone(), value.clone());
        }
    }
    let access_token = if opaque {
        secret_value()
    } else {
        let mut builder = shared.token();
        for (name, value) in &claims {
            builder = builder.claim(name, value.clone());
        }
        builder.sign()
    };
    store.access.insert(hash(&access_token), Access { claims, family, revoked: false });
    let mut answer = json!({
        "access_token": access_token,
        "token_type": if jkt.is_some() { "DPoP" } else { "Bearer" },
        "expires_in": ttl,
    });
    if !scope.is_empty() {
        answer["scope"] = scope.into();
    }
    if let (true, Some(family)) = (refresh, family) {
        let refresh_token = secret_value();
        let expires = now.saturating_add(secs(config.refresh_ttl));
        store.refresh.insert(hash(&refresh_token), Refresh { family, rotated: false, expires });
        answer["refresh_token"] = refresh_token.into();
    }
    answer
}

pub(crate) fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

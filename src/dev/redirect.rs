//! The end of an authorization request (RFC 6749 §4.1.2): a code issued and the browser sent
//! back to the client, or an error redirected there (§4.1.2.1). Shared by automatic approval
//! and the sign-in page.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::store::{Authorization, Code, hash, secret_value};
use super::{Shared, lock};

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

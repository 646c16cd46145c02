//! The sign-in and consent page of interactive mode: step (B) of RFC 6749 §4.1, where the
//! resource owner says who they are and approves (all or some of the requested scopes) or
//! denies the client's request.
//!
//! `GET /authorize` stores the validated request server-side under a random id with a random
//! anti-forgery value, and shows a form; `POST /authorize/decision` takes the id, the value (in
//! the form and in a `SameSite=Strict` cookie, so another site cannot submit it) and the
//! decision. The pending request is used up by the first decision sent for it. The client, its
//! redirect URI and the scopes come from the stored request: form fields that disagree with it
//! were tampered with, and nothing is issued.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::endpoints::same;
use super::html::{self, escape};
use super::redirect::approve;
use super::store::{Authorization, Pending, hash, secret_value};
use super::users::valid_subject;
use super::{Shared, lock};

/// How long a sign-in page may be left open before its decision is refused.
const PAGE_TTL_SECS: i64 = 600;

/// The origin a redirect to `uri` goes to, as a CSP source (`form-action` must allow it: browsers
/// apply it to the redirect that follows the form's submission). `None` when `uri` has
/// characters a source expression cannot hold.
fn redirect_source(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once(':')?;
    let source = match rest.strip_prefix("//") {
        Some(rest) => {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            format!("{scheme}://{authority}")
        }
        // A private-use scheme (RFC 8252 §7.1): the whole scheme.
        None => format!("{scheme}:"),
    };
    let ok = source.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.:/[]_".contains(&b));
    ok.then_some(source)
}

/// The page for a pending request, with the form's CSP widened to the client's redirect origin.
fn consent_page(shared: &Shared, id: &str, pending: &Pending) -> Response {
    let request = &pending.request;
    let config = &shared.auth;
    let mut users = String::new();
    for (i, user) in config.users.iter().enumerate() {
        let subject = escape(&user.subject);
        let detail = ["name", "email"]
            .iter()
            .filter_map(|c| user.claims.get(*c).and_then(|v| v.as_str()))
            .map(escape)
            .collect::<Vec<_>>()
            .join(", ");
        let detail =
            if detail.is_empty() { String::new() } else { format!(" <span class=\"muted\">{detail}</span>") };
        let checked = if i == 0 { " checked" } else { "" };
        users.push_str(&format!(
            "<label><input type=\"radio\" name=\"user\" value=\"{subject}\"{checked}> <b>{subject}</b>{detail}</label>\n"
        ));
    }
    let typed_value = if config.users.is_empty() { escape(&config.user) } else { String::new() };
    let mut scopes = String::new();
    for scope in &request.scope {
        let scope = escape(scope);
        scopes.push_str(&format!(
            "<label><input type=\"checkbox\" name=\"scope\" value=\"{scope}\" checked> <code>{scope}</code></label>\n"
        ));
    }
    if scopes.is_empty() {
        scopes.push_str("<p class=\"muted\">No scope requested.</p>");
    }
    let resource = request
        .resource
        .as_deref()
        .map(|r| format!("<p class=\"muted\">For the API <code>{}</code></p>", escape(r)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Sign in to {issuer}</h1>\n\
         <p>The application <b><code>{client}</code></b> asks for access on your behalf.\n\
         <br><span class=\"muted\">It will be sent back to <code>{redirect}</code></span></p>\n{resource}\
         <form method=\"post\" action=\"/authorize/decision\">\n\
         <input type=\"hidden\" name=\"request\" value=\"{id}\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
         <input type=\"hidden\" name=\"client_id\" value=\"{client}\">\n\
         <input type=\"hidden\" name=\"redirect_uri\" value=\"{redirect}\">\n\
         <fieldset><legend>Who are you?</legend>\n{users}\
         <label>Or another subject: <input type=\"text\" name=\"subject\" value=\"{typed}\" \
         maxlength=\"255\" autocomplete=\"off\"></label></fieldset>\n\
         <fieldset><legend>Allow these scopes</legend>\n{scopes}</fieldset>\n\
         <div class=\"buttons\"><button class=\"primary\" type=\"submit\" name=\"decision\" value=\"approve\" \
         id=\"approve\">Approve</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\" id=\"deny\">Deny</button></div>\n\
         </form>",
        issuer = escape(&shared.issuer),
        client = escape(&request.client_id),
        redirect = escape(&request.redirect_uri),
        id = escape(id),
        csrf = escape(&pending.csrf),
        typed = typed_value,
    );
    let mut response = html::page(StatusCode::OK, "Sign in", &body);
    if let Some(source) = redirect_source(&request.redirect_uri) {
        let csp =
            format!("{}; form-action 'self' {source}", html::CSP.trim_end_matches("; form-action 'self'"));
        if let Ok(value) = HeaderValue::from_str(&csp) {
            response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, value);
        }
    }
    let cookie = format!("{}={}; Path=/authorize; HttpOnly; SameSite=Strict", cookie_name(id), pending.csrf);
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// One cookie per pending request, so two sign-in tabs do not overwrite each other's.
fn cookie_name(id: &str) -> String {
    format!("tb_csrf_{id}")
}

/// Stores `request` and shows the sign-in page.
pub(crate) fn show(shared: &Shared, request: Authorization) -> Response {
    let now = shared.auth.clock.unix_now();
    let mut store = lock(&shared.auth.store);
    if !store.room_for_pending(now) {
        drop(store);
        return request.fail(
            &shared.issuer,
            "temporarily_unavailable",
            "too many pending sign-ins; retry later",
        );
    }
    let id = secret_value();
    let pending = Pending { request, csrf: secret_value(), expires: now.saturating_add(PAGE_TTL_SECS) };
    let response = consent_page(shared, &id, &pending);
    store.pending.insert(hash(&id), pending);
    response
}

/// The value of cookie `name` in the request, if sent once.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let mut found = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v);
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

fn refused(description: &str) -> Response {
    html::error_page(StatusCode::BAD_REQUEST, "invalid_request", description)
}

/// `POST /authorize/decision`.
pub(crate) async fn decide(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    // Every field but `scope` (one per checkbox) appears at most once.
    let single = |name: &str| {
        let mut values = form.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() { Err(()) } else { Ok(first) }
    };
    let fields = ["request", "csrf", "client_id", "redirect_uri", "user", "subject", "decision"];
    let Ok(values) = fields.iter().map(|f| single(f)).collect::<Result<Vec<_>, _>>() else {
        return refused("a form field was sent more than once");
    };
    let [id, csrf, client_id, redirect_uri, user, subject, decision] = values[..] else {
        return refused("malformed form");
    };
    let Some(id) = id else {
        return refused("the sign-in form is incomplete");
    };
    // Used up by this decision, whatever it is.
    let Some(pending) = lock(&shared.auth.store).pending.remove(&hash(id)) else {
        return refused("unknown or already answered sign-in request; start again from the application");
    };
    if shared.auth.clock.unix_now() >= pending.expires {
        return refused("the sign-in page expired; start again from the application");
    }
    let form_ok = csrf.is_some_and(|c| same(c, &pending.csrf));
    let cookie_ok = cookie(&headers, &cookie_name(id)).is_some_and(|c| same(c, &pending.csrf));
    if !(form_ok && cookie_ok) {
        return html::error_page(
            StatusCode::FORBIDDEN,
            "invalid_request",
            "the form's anti-forgery check failed (was it sent from this server's page?)",
        );
    }
    let request = pending.request;
    // Never redirect on a tampered client or redirect URI (RFC 6749 §4.1.2.1).
    if client_id != Some(request.client_id.as_str()) || redirect_uri != Some(request.redirect_uri.as_str()) {
        return refused("client_id or redirect_uri differs from the authorization request");
    }
    match decision {
        Some("deny") => {
            request.fail(&shared.issuer, "access_denied", "the resource owner denied the request")
        }
        Some("approve") => {
            let granted: Vec<String> =
                form.iter().filter(|(n, _)| n == "scope").map(|(_, v)| v.clone()).collect();
            if granted.iter().any(|s| !request.scope.contains(s)) {
                return request.fail(&shared.issuer, "invalid_scope", "a granted scope was not requested");
            }
            // Request order, without duplicates.
            let scope: Vec<String> = request.scope.iter().filter(|s| granted.contains(s)).cloned().collect();
            let subject = match subject.map(str::trim).filter(|s| !s.is_empty()) {
                Some(typed) => typed,
                None => match user {
                    Some(user) if shared.auth.users.iter().any(|u| u.subject == user) => user,
                    _ => return request.fail(&shared.issuer, "access_denied", "no user signed in"),
                },
            };
            if !valid_subject(subject) {
                return request.fail(&shared.issuer, "access_denied", "the subject is not acceptable");
            }
            let subject = subject.to_owned();
            approve(&shared, request, &subject, scope)
        }
        _ => request.fail(&shared.issuer, "invalid_request", "the decision must be approve or deny"),
    }
}

#[cfg(test)]
mod tests {
    use super::redirect_source;

    #[test]
    fn redirect_sources() {
        assert_eq!(redirect_source("http://127.0.0.1:9000/cb?x=1").as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(redirect_source("com.example.app:/oauth").as_deref(), Some("com.example.app:"));
        assert_eq!(redirect_source("http://a b/").as_deref(), None);
        assert_eq!(redirect_source("https://x;script-src *").as_deref(), None);
    }
}

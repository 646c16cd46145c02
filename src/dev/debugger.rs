//! `GET /debug` and `POST /debug`: the token debugger. Paste a token; see its header and claims,
//! whether its signature verifies with one of this server's keys, and when it expires. Opaque
//! tokens are looked up the way introspection does. The token is posted, not put in a URL, so
//! it stays out of the browser's history and the server's request log.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use super::html::{self, escape};
use super::{Shared, lock, read};

fn form(token: &str) -> String {
    format!(
        "<h1>Token debugger</h1>\n<form method=\"post\" action=\"/debug\">\
         <textarea name=\"token\" rows=\"5\" id=\"token\" placeholder=\"eyJ...\">{}</textarea>\
         <div class=\"buttons\"><button class=\"primary\" type=\"submit\" id=\"inspect\">Inspect</button></div></form>\n",
        escape(token)
    )
}

pub(crate) async fn show() -> Response {
    html::page(StatusCode::OK, "Token debugger", &form(""))
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// A JSON object from one base64url part of a JWT.
fn part(text: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Whether one of this server's keys (the header's `kid`, else any of its `alg`) signed `token`.
fn signature(shared: &Shared, token: &str, header: &Map<String, Value>) -> Result<String, String> {
    let alg: Algorithm = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or("no alg in the header")?
        .parse()
        .map_err(|_| "unknown alg".to_owned())?;
    let kid = header.get("kid").and_then(Value::as_str);
    let (input, sig) = token.rsplit_once('.').ok_or("not a JWT")?;
    let retired = read(&shared.retired).clone();
    let keys = read(&shared.keys).clone();
    for key in keys.iter().filter(|k| k.alg == alg && kid.is_none_or(|kid| kid == k.kid)) {
        let Ok(jwk) = serde_json::from_value::<jsonwebtoken::jwk::Jwk>(key.jwk.clone()) else { continue };
        let Ok(decoding) = DecodingKey::from_jwk(&jwk) else { continue };
        if jsonwebtoken::crypto::verify(sig, input.as_bytes(), &decoding, alg).unwrap_or(false) {
            let published = if retired.contains(&key.kid) { " (withdrawn from the JWKS)" } else { "" };
            return Ok(format!("valid: signed by this server's key {}{published}", key.kid));
        }
    }
    Err(match kid {
        Some(kid) => format!("not signed by this server's key {kid} (or no such key)"),
        None => "no key of this server verifies it".to_owned(),
    })
}

fn expiry(claims: &Map<String, Value>, now: i64) -> String {
    match claims.get("exp").and_then(Value::as_i64) {
        None => "<span class=\"bad\">no exp claim</span>".into(),
        Some(exp) if exp > now => {
            format!("<span class=\"ok\">valid for {} more seconds</span> (exp {exp})", exp - now)
        }
        Some(exp) => format!("<span class=\"bad\">expired {} seconds ago</span> (exp {exp})", now - exp),
    }
}

pub(crate) async fn inspect(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let token = form_urlencoded::parse(&body).find(|(n, _)| n == "token").map(|(_, v)| v.trim().to_owned());
    let token = token.unwrap_or_default();
    let now = shared.auth.clock.unix_now();
    let mut out = form(&token);
    let parts: Vec<&str> = token.split('.').collect();
    if token.is_empty() {
        out.push_str("<p class=\"muted\">Paste a token.</p>");
    } else if let [h, c, _] = parts[..] {
        match (part(h), part(c)) {
            (Some(header), Some(claims)) => {
                let check = match signature(&shared, &token, &header) {
                    Ok(ok) => format!("<span class=\"ok\">{}</span>", escape(&ok)),
                    Err(bad) => format!("<span class=\"bad\">{}</span>", escape(&bad)),
                };
                out.push_str(&format!(
                    "<h2>Signature</h2><p id=\"signature\">{check}</p>\
                     <h2>Expiry</h2><p id=\"expiry\">{}</p>\
                     <h2>Header</h2><pre id=\"header\">{}</pre><h2>Claims</h2><pre id=\"claims\">{}</pre>",
                    expiry(&claims, now),
                    escape(&pretty(&Value::Object(header))),
                    escape(&pretty(&Value::Object(claims))),
                ));
            }
            _ => out.push_str("<p class=\"bad\">Three parts, but the header or the claims are not base64url JSON objects.</p>"),
        }
    } else {
        let claims = lock(&shared.auth.store).active_access(&token, now).cloned();
        match claims {
            Some(claims) => out.push_str(&format!(
                "<p><span class=\"ok\">An active opaque token of this server</span> ({})</p>\
                 <h2>Claims</h2><pre id=\"claims\">{}</pre>",
                expiry(&claims, now),
                escape(&pretty(&Value::Object(claims.clone())))
            )),
            None => {
                out.push_str("<p class=\"bad\">Not a JWT, and not an active opaque token of this server.</p>")
            }
        }
    }
    html::page(StatusCode::OK, "Token debugger", &out)
}

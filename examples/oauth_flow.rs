//! The whole OAuth 2.0 flow, runnable (RFC 6749 §1.2 and §1.5, steps A–H):
//!
//! ```text
//! cargo run --example oauth_flow --features axum,dev
//! ```
//!
//! Starts the development authorization server and a resource server (tower-bearer in front of
//! an axum route) in-process on 127.0.0.1, then plays the client and prints every HTTP exchange:
//!
//! - (A) authorization request with PKCE → `302` with a code (consent is automatic for the dev
//!   user), (B) code + verifier → access token and refresh token;
//! - (C) the access token at the resource server → (D) `200`;
//! - the access token expires (2 s; the resource server has no leeway), (E) → (F) `401` with
//!   `WWW-Authenticate: Bearer error="invalid_token"`, which the client reads with
//!   `tower_bearer::challenge` and answers by refreshing;
//! - (G) refresh token → (H) a new access token and a new refresh token; the retry is `200`;
//! - finally the old, rotated refresh token is replayed, as a thief would: `invalid_grant`, and
//!   the authorization server revokes the whole token family, so the new access token stops
//!   passing introspection and the newest refresh token is refused too.
//!
//! Tokens are never printed whole: first 8 characters and "…".
//!
//! With `--dpop` the client holds a P-256 key and proves it on every request (RFC 9449): the
//! token requests carry a `DPoP` proof, so the tokens come bound to the key (`token_type: DPoP`,
//! `cnf.jkt`), and the resource server sees `Authorization: DPoP <token>` plus a fresh proof
//! (`ath` over the token); a thief holding the token alone gets nothing.
//!
//! ```text
//! cargo run --example oauth_flow --features axum,dev -- --dpop
//! ```
//!
//! The client's token requests are hand-written form posts rather than the `oauth2` crate:
//! oauth2 5's HTTP client is reqwest 0.12 (this crate uses 0.13), and its typed responses hide
//! the raw status, headers and RFC 6749 error bodies this walk-through exists to show; the three
//! requests are a few lines each.

use std::collections::HashMap;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use axum::routing::get;
use axum::{Json, Router};
use reqwest::header::{self, HeaderMap};
use serde_json::Value;
use tower_bearer::challenge::{BearerError, Challenge};
use tower_bearer::dev::{
    DEV_PUBLIC_CLIENT_ID, DEV_REDIRECT_URI, DevIssuer, Pkce, RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET,
};
use tower_bearer::dpop::Dpop;
use tower_bearer::{Algorithm, BearerLayer, JwtValidator, Principal, RequireScope};

type Error = Box<dyn std::error::Error>;

/// Access-token lifetime: short, so the demo sees one expire.
const ACCESS_TTL: Duration = Duration::from_secs(2);

/// First 8 characters and "…": enough to tell tokens apart, useless to a reader of the log.
fn short(token: &str) -> String {
    format!("{}…", token.chars().take(8).collect::<String>())
}

/// The URL with the values of secret query parameters shortened.
fn shorten_query(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let pairs: Vec<String> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| match k.as_ref() {
            "code" => format!("{k}={}", short(&v)),
            _ => format!("{k}={v}"),
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

fn print_headers(headers: &HeaderMap, names: &[header::HeaderName]) {
    for name in names {
        for value in headers.get_all(name) {
            let value = value.to_str().unwrap_or("<non-ASCII>");
            let value = if *name == header::LOCATION { shorten_query(value) } else { value.to_owned() };
            println!("      {name}: {value}");
        }
    }
}

/// Prints a token-endpoint JSON answer with the tokens shortened.
fn print_token_answer(body: &Value) {
    let mut shown = body.clone();
    for field in ["access_token", "refresh_token"] {
        if let Some(token) = body[field].as_str() {
            shown[field] = short(token).into();
        }
    }
    println!("      {shown}");
}

struct Client {
    http: reqwest::Client,
    token_endpoint: String,
    /// `--dpop`: the key every request proves.
    dpop: Option<DpopKey>,
}

/// The client's DPoP key (P-256) and the proofs it signs (RFC 9449 §4.2).
struct DpopKey(EcdsaKeyPair);

impl DpopKey {
    fn new() -> Result<Self, Error> {
        Ok(DpopKey(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|_| "P-256 key")?))
    }

    /// A proof for one request: `htm`, `htu` (no query), a unique `jti`, `iat`, and `ath` when it
    /// goes with an access token.
    fn proof(&self, method: &str, url: &str, access_token: Option<&str>) -> Result<String, Error> {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let point = self.0.public_key().as_ref();
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])
        });
        let header = serde_json::json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": jwk });
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).map_err(|_| "random")?;
        let iat = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
        let htu = url.split(['?', '#']).next().unwrap_or(url);
        let mut claims = serde_json::json!({ "jti": b64(&jti), "htm": method, "htu": htu, "iat": iat });
        if let Some(token) = access_token {
            claims["ath"] = b64(&Sha256::digest(token.as_bytes())).into();
        }
        let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let signature = self.0.sign(&SystemRandom::new(), input.as_bytes()).map_err(|_| "sign")?;
        Ok(format!("{input}.{}", b64(signature.as_ref())))
    }
}

impl Client {
    /// `POST /token` as the public client (RFC 6749 §4.1.3, §6): returns status and JSON.
    async fn token(&self, step: &str, form: &[(&str, &str)]) -> Result<(u16, Value), Error> {
        let mut form = form.to_vec();
        form.push(("client_id", DEV_PUBLIC_CLIENT_ID));
        let shown: Vec<String> = form
            .iter()
            .map(|(k, v)| match *k {
                "code" | "code_verifier" | "refresh_token" => format!("{k}={}", short(v)),
                _ => format!("{k}={v}"),
            })
            .collect();
        println!("({step}) POST {}\n      {}", self.token_endpoint, shown.join("&"));
        let mut request = self.http.post(&self.token_endpoint).form(&form);
        if let Some(key) = &self.dpop {
            println!("      dpop: (a proof for POST {})", self.token_endpoint);
            request = request.header("dpop", key.proof("POST", &self.token_endpoint, None)?);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        println!("    ← {status}");
        print_headers(response.headers(), &[header::CACHE_CONTROL, header::PRAGMA]);
        let body: Value = serde_json::from_slice(&response.bytes().await?)?;
        print_token_answer(&body);
        Ok((status, body))
    }

    /// `GET url` with the access token (RFC 6750 §2.1): returns status and headers.
    async fn call(&self, step: &str, url: &str, access_token: &str) -> Result<(u16, HeaderMap), Error> {
        let request = match &self.dpop {
            Some(key) => {
                println!("({step}) GET {url}\n      authorization: DPoP {}", short(access_token));
                println!("      dpop: (a fresh proof for GET {url}, ath over the token)");
                self.http
                    .get(url)
                    .header(header::AUTHORIZATION, format!("DPoP {access_token}"))
                    .header("dpop", key.proof("GET", url, Some(access_token))?)
            }
            None => {
                println!("({step}) GET {url}\n      authorization: Bearer {}", short(access_token));
                self.http.get(url).bearer_auth(access_token)
            }
        };
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        println!("    ← {status}");
        print_headers(&headers, &[header::WWW_AUTHENTICATE]);
        let body = response.text().await?;
        if !body.is_empty() {
            println!("      {body}");
        }
        Ok((status, headers))
    }
}

fn field<'a>(body: &'a Value, name: &str) -> Result<&'a str, Error> {
    body[name].as_str().ok_or_else(|| format!("no {name} in {body}").into())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let dpop = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--dpop") => true,
        Some(other) => return Err(format!("unknown argument {other:?} (usage: oauth_flow [--dpop])").into()),
    };
    // The authorization server: ES256 JWT access tokens that live 2 s.
    let dev =
        DevIssuer::builder().algorithms([Algorithm::ES256]).access_token_ttl(ACCESS_TTL).start().await?;

    // The resource server. Its URL is the audience the client asks for (RFC 8707 `resource`).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let rs = format!("http://{}/", listener.local_addr()?);
    let validator = JwtValidator::builder()
        .issuer(dev.issuer())
        .audience(rs.as_str())
        .jwks_url(dev.jwks_url())
        // The default 30 s leeway would keep the expired token valid well past its `exp`.
        .leeway(Duration::ZERO)
        .build()?;
    let app = Router::new()
        .route(
            "/items",
            get(|p: Principal| async move {
                Json(serde_json::json!({"items": ["apple", "pear"], "for": p.subject()}))
            }),
        )
        .route_layer(RequireScope::all(["items:read"]))
        // Bearer tokens, and DPoP-bound tokens with their proofs (`htu` from this origin).
        .layer(
            BearerLayer::new(validator)
                .realm("oauth_flow example")
                .dpop(Dpop::allowed(rs.trim_end_matches('/'))?),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let items = format!("{rs}items");

    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()?;
    let metadata: Value = serde_json::from_slice(&http.get(dev.metadata_url()).send().await?.bytes().await?)?;
    println!("authorization server {} (metadata: {})", dev.issuer(), dev.metadata_url());
    println!("resource server      {rs}\n");
    let client = Client {
        http: http.clone(),
        token_endpoint: field(&metadata, "token_endpoint")?.to_owned(),
        dpop: if dpop { Some(DpopKey::new()?) } else { None },
    };

    // (A) Authorization request: code flow, PKCE S256, state, scope, resource.
    let pkce = Pkce::new();
    let state = Pkce::new().verifier;
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", DEV_PUBLIC_CLIENT_ID)
        .append_pair("redirect_uri", DEV_REDIRECT_URI)
        .append_pair("scope", "items:read")
        .append_pair("resource", &rs)
        .append_pair("state", &state)
        .append_pair("code_challenge", &pkce.challenge)
        .append_pair("code_challenge_method", "S256")
        .finish();
    let url = format!("{}?{query}", field(&metadata, "authorization_endpoint")?);
    println!("(A) GET {url}");
    let response = http.get(&url).send().await?;
    println!("    ← {}", response.status().as_u16());
    print_headers(response.headers(), &[header::LOCATION]);
    let location = response.headers().get(header::LOCATION).ok_or("no redirect")?.to_str()?;
    let answer: HashMap<String, String> = location
        .split_once('?')
        .map(|(_, q)| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    if answer.get("state") != Some(&state) || answer.get("iss").map(String::as_str) != Some(dev.issuer()) {
        return Err("state or iss does not match: not our authorization response".into());
    }
    let code = answer.get("code").ok_or("no code")?;
    println!("    (the client checks state and iss, and keeps the code)\n");

    // (B) Code + verifier → tokens.
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", DEV_REDIRECT_URI),
        ("code_verifier", pkce.verifier.as_str()),
    ];
    let (_, tokens) = client.token("B", &form).await?;
    let first_refresh = field(&tokens, "refresh_token")?.to_owned();
    let mut access = field(&tokens, "access_token")?.to_owned();
    let mut refresh = first_refresh.clone();
    println!();

    // (C, D) The resource.
    client.call("C", &items, &access).await?;
    println!("(D) the resource server answered with the resource\n");
    if client.dpop.is_some() {
        println!("The same token as a bearer token, as a thief without the key would send it:");
        let thief = Client { http: http.clone(), token_endpoint: client.token_endpoint.clone(), dpop: None };
        let (status, _) = thief.call("theft", &items, &access).await?;
        if status != 401 {
            return Err("a DPoP-bound token passed as a bearer token".into());
        }
        println!("    refused: the token is bound to the client's key\n");
    }

    // Wait for the access token to expire (`exp` is in whole seconds: one more for rounding).
    let wait = Duration::from_secs(tokens["expires_in"].as_u64().unwrap_or(2) + 1);
    println!("… waiting {wait:?} for the access token to expire …\n");
    tokio::time::sleep(wait).await;

    // (E, F) An expired token, and (G, H) the refresh the client decides on from the challenge.
    let mut step = "E";
    loop {
        let (status, headers) = client.call(step, &items, &access).await?;
        if status == 200 {
            println!("    the retry with the refreshed access token succeeded\n");
            break;
        }
        // The error comes under the scheme the request used (RFC 9449 §7.1).
        let value = headers.get(header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let challenge = if client.dpop.is_some() {
            Challenge::find_dpop(value)?.ok_or("a 401 without a DPoP challenge")?
        } else {
            Challenge::find_bearer_in(&headers)?.ok_or("a 401 without a Bearer challenge")?
        };
        match challenge.bearer_error() {
            BearerError::InvalidToken if step == "E" => {
                println!(
                    "(F) invalid_token ({}): the client refreshes\n",
                    challenge.error_description().unwrap_or("no description")
                );
            }
            BearerError::InsufficientScope { scope } => {
                return Err(format!("would need a new authorization for scope {scope:?}").into());
            }
            other => return Err(format!("unexpected answer {status}: {other:?}").into()),
        }
        let (status, fresh) = client
            .token("G", &[("grant_type", "refresh_token"), ("refresh_token", refresh.as_str())])
            .await?;
        if status != 200 {
            return Err("the refresh failed".into());
        }
        access = field(&fresh, "access_token")?.to_owned();
        refresh = field(&fresh, "refresh_token")?.to_owned();
        println!("(H) a new access token and a new refresh token (the old refresh token is now rotated)\n");
        step = "retry";
    }

    // Reuse detection: the rotated refresh token replayed.
    println!("Replaying the rotated refresh token, as an attacker who stole it would:");
    let (status, body) = client
        .token("replay", &[("grant_type", "refresh_token"), ("refresh_token", first_refresh.as_str())])
        .await?;
    println!("    → {status} {}: the authorization server revokes the whole token family\n", body["error"]);

    println!(
        "The refreshed access token at the introspection endpoint (RFC 7662), as a resource server would ask:"
    );
    println!("(check) POST {}\n      token={}", dev.introspection_url(), short(&access));
    let response = http
        .post(dev.introspection_url())
        .basic_auth(RESOURCE_CLIENT_ID, Some(RESOURCE_CLIENT_SECRET))
        .form(&[("token", access.as_str())])
        .send()
        .await?;
    println!("    ← {}\n      {}\n", response.status().as_u16(), response.text().await?);

    println!("And the newest refresh token:");
    let (status, body) = client
        .token("check", &[("grant_type", "refresh_token"), ("refresh_token", refresh.as_str())])
        .await?;
    println!("    → {status} {}: the family is revoked", body["error"]);
    Ok(())
}

//! The peers of `benches/load.sh`: the same routes as `examples/resource_server.rs` — `/health`
//! (public) and `/me` (200 with the token's subject) — protected by another crate, configured as
//! its README says, against the same issuer (OIDC discovery at `{issuer}/.well-known/openid-configuration`),
//! with `iss` and `aud` checked as ours does.
//!
//! And `floor`: no crate, no checks but the signature. Its `/me` verifies the token's RS256
//! signature with a key parsed once at start (aws-lc-rs) and answers a constant: the least a
//! server on this framework can do for a token it has never seen, the yardstick of the
//! never-seen runs.
//!
//! ```text
//! cargo build --release --manifest-path benches/peers/Cargo.toml
//! benches/peers/target/release/peers jwt-authorizer|tower-oauth2-resource-server|aliri_tower|floor \
//!     --issuer http://127.0.0.1:PORT --audience AUD [--listen 127.0.0.1:0]
//! ```
//!
//! Prints `listening on http://ADDR` once it serves. Default tokio runtime, no log subscriber.

use std::error::Error;

const USAGE: &str = "usage: peers jwt-authorizer|tower-oauth2-resource-server|aliri_tower|floor \
     --issuer URL --audience AUD [--listen ADDR]";

struct Args {
    peer: String,
    issuer: String,
    audience: String,
    listen: String,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let peer = it.next().ok_or(USAGE)?;
    let (mut issuer, mut audience, mut listen) = (None, None, "127.0.0.1:0".to_owned());
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--issuer" => issuer = Some(value),
            "--audience" => audience = Some(value),
            "--listen" => listen = value,
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(Args { peer, issuer: issuer.ok_or(USAGE)?, audience: audience.ok_or(USAGE)?, listen })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = match parse_args() {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let base = format!("http://{}", listener.local_addr()?);
    match args.peer.as_str() {
        "jwt-authorizer" => jwt_authorizer::serve(listener, &base, &args).await,
        "tower-oauth2-resource-server" => tower_oauth2::serve(listener, &base, &args).await,
        "aliri_tower" => aliri::serve(listener, &base, &args).await,
        "floor" => floor::serve(listener, &base, &args).await,
        other => {
            eprintln!("unknown peer {other}\n{USAGE}");
            std::process::exit(2);
        }
    }
}

/// jwt-authorizer 0.15 is built on axum 0.7 (its layer answers with axum 0.7 responses).
mod jwt_authorizer {
    use axum07::Router;
    use axum07::routing::get;
    use jwt_authorizer::{Authorizer, IntoLayer, JwtAuthorizer, JwtClaims, RegisteredClaims, Validation};

    async fn me(JwtClaims(claims): JwtClaims<RegisteredClaims>) -> String {
        format!("{}\n", claims.sub.unwrap_or_default())
    }

    pub async fn serve(
        listener: tokio::net::TcpListener,
        base: &str,
        args: &super::Args,
    ) -> Result<(), Box<dyn std::error::Error>> {
        // README: "Validation" — iss and aud checked (jsonwebtoken checks exp, nbf off by default).
        let validation = Validation::new().iss(&[&args.issuer]).aud(&[&args.audience]);
        let auth: Authorizer<RegisteredClaims> =
            JwtAuthorizer::from_oidc(&args.issuer).validation(validation).build().await?;
        let protected = Router::new().route("/me", get(me)).layer(auth.into_layer());
        let app = Router::new().route("/health", get(|| async { "ok\n" })).merge(protected);
        println!("listening on {base} (jwt-authorizer)");
        axum07::serve(listener, app.into_make_service()).await?;
        Ok(())
    }
}

/// tower-oauth2-resource-server 0.12, on axum 0.8 like our example.
mod tower_oauth2 {
    use axum::routing::get;
    use axum::{Extension, Router};
    use tower_oauth2_resource_server::claims::DefaultClaims;
    use tower_oauth2_resource_server::server::OAuth2ResourceServer;
    use tower_oauth2_resource_server::tenant::TenantConfiguration;

    async fn me(Extension(claims): Extension<DefaultClaims>) -> String {
        format!("{}\n", claims.sub.unwrap_or_default())
    }

    pub async fn serve(
        listener: tokio::net::TcpListener,
        base: &str,
        args: &super::Args,
    ) -> Result<(), Box<dyn std::error::Error>> {
        // README / docs.rs example: OIDC discovery; `iss` (from discovery), `exp` and `aud` checked.
        let tenant = TenantConfiguration::builder(&args.issuer).audiences(&[&args.audience]).build().await?;
        let server = <OAuth2ResourceServer>::builder().add_tenant(tenant).build().await?;
        let protected = Router::new().route("/me", get(me)).layer(server.into_layer());
        let app = Router::new().route("/health", get(|| async { "ok\n" })).merge(protected);
        println!("listening on {base} (tower-oauth2-resource-server)");
        axum::serve(listener, app).await?;
        Ok(())
    }
}

/// aliri_tower 0.6 (aliri's JOSE code on ring), on axum 0.7 like its examples. It has no discovery:
/// the JWKS URL is the development issuer's, as its README builds an `Authority` from a JWKS URL.
mod aliri {
    use aliri::{jwa, jwt};
    use aliri_clock::UnixTime;
    use aliri_oauth2::{Authority, HasScope, Scope};
    use aliri_tower::Oauth2Authorizer;
    use axum07::routing::get;
    use axum07::{Extension, Router};

    /// The claims read, with `exp` required (RFC 9068) and `iss`/`aud` checked by the validator.
    #[derive(Clone, Debug, serde::Deserialize)]
    pub struct Claims {
        iss: jwt::Issuer,
        aud: jwt::Audiences,
        sub: jwt::Subject,
        exp: UnixTime,
        nbf: Option<UnixTime>,
        #[serde(default)]
        scope: Scope,
    }

    impl jwt::CoreClaims for Claims {
        fn nbf(&self) -> Option<UnixTime> {
            self.nbf
        }
        fn exp(&self) -> Option<UnixTime> {
            Some(self.exp)
        }
        fn aud(&self) -> &jwt::Audiences {
            &self.aud
        }
        fn iss(&self) -> Option<&jwt::IssuerRef> {
            Some(&self.iss)
        }
        fn sub(&self) -> Option<&jwt::SubjectRef> {
            Some(&self.sub)
        }
    }

    impl HasScope for Claims {
        fn scope(&self) -> &Scope {
            &self.scope
        }
    }

    async fn me(Extension(claims): Extension<Claims>) -> String {
        format!("{}\n", claims.sub.as_str())
    }

    pub async fn serve(
        listener: tokio::net::TcpListener,
        base: &str,
        args: &super::Args,
    ) -> Result<(), Box<dyn std::error::Error>> {
        // README / examples: a CoreValidator with the algorithm, audience and issuer, and an
        // Authority from the JWKS URL.
        let validator = jwt::CoreValidator::default()
            .add_approved_algorithm(jwa::Algorithm::RS256)
            .add_allowed_audience(jwt::Audience::new(args.audience.clone()))
            .require_issuer(jwt::Issuer::new(args.issuer.clone()));
        let authority = Authority::new_from_url(format!("{}/jwks.json", args.issuer), validator).await?;
        let authorizer =
            Oauth2Authorizer::new().with_claims::<Claims>().with_terse_error_handler::<axum07::body::Body>();
        let protected = Router::new().route("/me", get(me)).layer(authorizer.jwt_layer(authority));
        let app = Router::new().route("/health", get(|| async { "ok\n" })).merge(protected);
        println!("listening on {base} (aliri_tower)");
        axum07::serve(listener, app.into_make_service()).await?;
        Ok(())
    }
}

/// The floor: what answering a token costs at the least on axum 0.8 (our example's framework).
/// `/me` takes the `Authorization: Bearer` token, decodes its signature and verifies it over the
/// signing input with the issuer's RS256 key, parsed once at start. Nothing else: no header, no
/// claims, no key selection, no cache. `/remembered` is the least a cache can do: a token it
/// verified once is looked up by its text in a set (hashed by its tail, as ours is) and answered
/// without any other check (no expiry, no bound on the set). The handlers take the request
/// itself, not axum's `HeaderMap` extractor, which would clone the headers. Not a resource server
/// anyone should run.
mod floor {
    use std::collections::HashSet;
    use std::hash::{BuildHasherDefault, Hasher};
    use std::sync::{Arc, RwLock};

    use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
    use axum::Router;
    use axum::extract::{Request, State};
    use axum::http::{StatusCode, header};
    use axum::routing::get;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn bearer(request: &Request) -> Option<&str> {
        request.headers().get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
    }

    fn verified(key: &ParsedPublicKey, token: &str) -> bool {
        let Some((input, signature)) = token.rsplit_once('.') else { return false };
        let mut buf = [0u8; 512];
        match URL_SAFE_NO_PAD.decode_slice(signature, &mut buf) {
            Ok(len) => key.verify_sig(input.as_bytes(), &buf[..len]).is_ok(),
            Err(_) => false,
        }
    }

    /// Hashes a text by its length and its last 16 bytes (a token's signature: random), so a
    /// lookup does not read the whole kilobyte twice. Not for untrusted keys: a benchmark floor.
    #[derive(Default)]
    struct TailHasher(u64);

    impl Hasher for TailHasher {
        fn write(&mut self, bytes: &[u8]) {
            let tail = &bytes[bytes.len().saturating_sub(16)..];
            let mut word = [0u8; 16];
            word[..tail.len()].copy_from_slice(tail);
            let (a, b) = word.split_at(8);
            let a = u64::from_le_bytes(a.try_into().unwrap());
            let b = u64::from_le_bytes(b.try_into().unwrap());
            self.0 = (self.0.rotate_left(5) ^ a ^ b.rotate_left(32) ^ bytes.len() as u64)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        fn finish(&self) -> u64 {
            self.0
        }
    }

    struct Floor {
        key: ParsedPublicKey,
        seen: RwLock<HashSet<Box<str>, BuildHasherDefault<TailHasher>>>,
    }

    const OK: (StatusCode, &str) = (StatusCode::OK, "floor\n");
    const UNAUTHORIZED: (StatusCode, &str) = (StatusCode::UNAUTHORIZED, "");

    async fn me(State(floor): State<Arc<Floor>>, request: Request) -> (StatusCode, &'static str) {
        match bearer(&request) {
            Some(token) if verified(&floor.key, token) => OK,
            _ => UNAUTHORIZED,
        }
    }

    async fn remembered(State(floor): State<Arc<Floor>>, request: Request) -> (StatusCode, &'static str) {
        let Some(token) = bearer(&request) else { return UNAUTHORIZED };
        if floor.seen.read().unwrap().contains(token) {
            return OK;
        }
        if !verified(&floor.key, token) {
            return UNAUTHORIZED;
        }
        floor.seen.write().unwrap().insert(token.into());
        OK
    }

    pub async fn serve(
        listener: tokio::net::TcpListener,
        base: &str,
        args: &super::Args,
    ) -> Result<(), Box<dyn std::error::Error>> {
        // The development issuer's JWKS (as aliri_tower's Authority above): its first RS256 key.
        let jwks: serde_json::Value =
            reqwest::get(format!("{}/jwks.json", args.issuer)).await?.error_for_status()?.json().await?;
        let jwk = jwks["keys"]
            .as_array()
            .and_then(|keys| keys.iter().find(|k| k["alg"] == "RS256"))
            .ok_or("no RS256 key in the issuer's JWKS")?;
        let field = |name: &str| -> Result<Vec<u8>, Box<dyn std::error::Error>> {
            let text = jwk[name].as_str().ok_or_else(|| format!("no {name} in the RS256 JWK"))?;
            Ok(URL_SAFE_NO_PAD.decode(text)?)
        };
        let (n, e) = (field("n")?, field("e")?);
        let key = RsaPublicKeyComponents { n: &n[..], e: &e[..] }
            .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
            .map_err(|e| format!("the RS256 JWK: {e}"))?;
        let floor = Arc::new(Floor { key, seen: RwLock::default() });
        let protected =
            Router::new().route("/me", get(me)).route("/remembered", get(remembered)).with_state(floor);
        let app = Router::new().route("/health", get(|| async { "ok\n" })).merge(protected);
        println!("listening on {base} (floor)");
        axum::serve(listener, app).await?;
        Ok(())
    }
}

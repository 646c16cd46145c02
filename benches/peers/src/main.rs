//! The peers of `benches/load.sh`: the same routes as `examples/resource_server.rs` — `/health`
//! (public) and `/me` (200 with the token's subject) — protected by another crate, configured as
//! its README says, against the same issuer (OIDC discovery at `{issuer}/.well-known/openid-configuration`),
//! with `iss` and `aud` checked as ours does.
//!
//! ```text
//! cargo build --release --manifest-path benches/peers/Cargo.toml
//! benches/peers/target/release/peers jwt-authorizer|tower-oauth2-resource-server \
//!     --issuer http://127.0.0.1:PORT --audience AUD [--listen 127.0.0.1:0]
//! ```
//!
//! Prints `listening on http://ADDR` once it serves. Default tokio runtime, no log subscriber.

use std::error::Error;

const USAGE: &str =
    "usage: peers jwt-authorizer|tower-oauth2-resource-server --issuer URL --audience AUD [--listen ADDR]";

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

//! An axum API protected by tower-bearer.
//!
//! ```text
//! cargo run --example resource_server --features axum,dev
//! ```
//!
//! With no arguments it starts the development issuer in-process, listens on 127.0.0.1:3000 and
//! prints curl commands with freshly minted tokens. Against a real authorization server:
//!
//! ```text
//! cargo run --example resource_server --features axum,dev -- \
//!     --issuer https://as.example --audience https://api.example \
//!     --jwks-url https://as.example/jwks.json [--listen 127.0.0.1:3000] \
//!     [--introspection-url URL --client-id ID --client-secret SECRET]
//! ```
//!
//! With the introspection flags, opaque tokens are checked at that RFC 7662 endpoint while JWTs
//! are still verified locally. (`--client-secret` may also come from `CLIENT_SECRET`.)

use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use tower_bearer::dev::{DEFAULT_AUDIENCE, DevIssuer};
use tower_bearer::dev::{RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET};
use tower_bearer::{
    BearerLayer, Introspector, JwtOrOpaque, JwtValidator, Principal, RequireScope, Validator,
};

const USAGE: &str = "usage: resource_server [--listen ADDR] [--issuer URL --audience AUD --jwks-url URL]";

struct Args {
    listen: String,
    issuer: Option<String>,
    audience: Option<String>,
    jwks_url: Option<String>,
    introspection_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:3000".into(),
        issuer: None,
        audience: None,
        jwks_url: None,
        introspection_url: None,
        client_id: None,
        client_secret: std::env::var("CLIENT_SECRET").ok(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--listen" => args.listen = value()?,
            "--issuer" => args.issuer = Some(value()?),
            "--audience" => args.audience = Some(value()?),
            "--jwks-url" => args.jwks_url = Some(value()?),
            "--introspection-url" => args.introspection_url = Some(value()?),
            "--client-id" => args.client_id = Some(value()?),
            "--client-secret" => args.client_secret = Some(value()?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(args)
}

/// The API: one public route, one for any valid token, two that need scopes.
fn app(validator: impl Validator + Clone) -> Router {
    let items_read = Router::new()
        .route("/items", get(|| async { Json(["apple", "pear"]) }))
        .route_layer(RequireScope::all(["items:read"]));
    let items_write = Router::new()
        .route(
            "/items",
            axum::routing::post(|p: Principal| async move {
                format!("created by {}\n", p.subject().unwrap_or("?"))
            }),
        )
        .route_layer(RequireScope::all(["items:write"]));
    let protected = Router::new()
        .route("/me", get(|p: Principal| async move { Json(p) }))
        .merge(items_read)
        .merge(items_write)
        .layer(BearerLayer::new(validator.clone()).realm("resource_server example"));
    // Anyone may call /hello; a valid token gets a personal greeting, a bad one still a 401.
    let greeting = Router::new()
        .route(
            "/hello",
            get(|p: Option<Principal>| async move {
                match p {
                    Some(p) => format!("hello {}\n", p.subject().unwrap_or("you")),
                    None => "hello stranger\n".to_owned(),
                }
            }),
        )
        .layer(BearerLayer::new(validator).optional());
    Router::new().route("/health", get(|| async { "ok\n" })).merge(greeting).merge(protected)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_bearer=debug".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match parse_args() {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let base = format!("http://{}", listener.local_addr()?);

    // Kept alive for as long as the server runs: dropping it stops the JWKS endpoint.
    let mut dev_issuer = None;
    let (validator, introspection) = match (args.issuer, args.audience, args.jwks_url) {
        (Some(issuer), Some(audience), Some(jwks_url)) => {
            let validator =
                JwtValidator::builder().issuer(&issuer).audience(&audience).jwks_url(jwks_url).build()?;
            println!("protecting {base} with tokens of {issuer}");
            let introspection = match (args.introspection_url, args.client_id, args.client_secret) {
                (Some(url), Some(id), Some(secret)) => {
                    Some(Introspector::builder(url).client_secret_basic(id, secret).build()?)
                }
                (None, _, _) => None,
                _ => {
                    eprintln!("--introspection-url needs --client-id and --client-secret\n{USAGE}");
                    std::process::exit(2);
                }
            };
            (validator, introspection)
        }
        (None, None, None) => {
            let dev = DevIssuer::start().await?;
            let validator = JwtValidator::builder()
                .issuer(dev.issuer())
                .audience(DEFAULT_AUDIENCE)
                .jwks_url(dev.jwks_url())
                .build()?;
            let introspection = Introspector::builder(dev.introspection_url())
                .client_secret_basic(RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET)
                .build()?;
            print_walkthrough(&dev, &base);
            dev_issuer = Some(dev);
            (validator, Some(introspection))
        }
        _ => {
            eprintln!("--issuer, --audience and --jwks-url go together\n{USAGE}");
            std::process::exit(2);
        }
    };
    let _keep = dev_issuer;
    let app = match introspection {
        Some(opaque) => app(JwtOrOpaque::new(validator, opaque)),
        None => app(validator),
    };
    axum::serve(listener, app).with_graceful_shutdown(shutdown()).await?;
    Ok(())
}

fn print_walkthrough(dev: &DevIssuer, base: &str) {
    let hour = Duration::from_secs(3600);
    let valid = dev.token().subject("alice").scope("items:read items:write").expires_in(hour).sign();
    let reader = dev.token().subject("bob").scope("items:read").expires_in(hour).sign();
    let expired = dev.token().subject("alice").scope("items:read").expired(Duration::from_secs(60)).sign();
    println!("development issuer: {} (JWKS {})", dev.issuer(), dev.jwks_url());
    println!("resource server:    {base}\n");
    println!("# 200, public:\ncurl -i {base}/health\n");
    println!("# 200, optional authentication (try it with and without a token):\ncurl -i {base}/hello\n");
    println!(
        "# 200, the verified principal as JSON:\ncurl -i -H 'Authorization: Bearer {valid}' {base}/me\n"
    );
    println!("# 200, needs items:read:\ncurl -i -H 'Authorization: Bearer {reader}' {base}/items\n");
    println!(
        "# 403 insufficient_scope (this token lacks items:write):\ncurl -i -X POST -H 'Authorization: Bearer {reader}' {base}/items\n"
    );
    println!(
        "# 401 invalid_token, \"the access token expired\":\ncurl -i -H 'Authorization: Bearer {expired}' {base}/me\n"
    );
    println!("# 401 with no error code (no token sent):\ncurl -i {base}/me\n");
    let opaque = dev.opaque_token().subject("carol").scope("items:read").expires_in(hour).issue();
    println!(
        "# 200, an opaque token checked by introspection (RFC 7662), then cached:\ncurl -i -H 'Authorization: Bearer {opaque}' {base}/items\n"
    );
    println!(
        "# 400 invalid_request (malformed credentials):\ncurl -i -H 'Authorization: Bearer a b' {base}/me\n"
    );
}

async fn shutdown() {
    let _ = tokio::signal::ctrl_c().await;
}

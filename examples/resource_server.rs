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
//!
//! Given only `--issuer URL --audience AUD`, the keys (and, with `--client-id`/`--client-secret`,
//! the introspection endpoint) are found through the issuer's metadata (OpenID Connect discovery
//! or RFC 8414). That includes the development authorization server run as a program:
//! `tower-bearer dev` (see the README), then `--issuer http://127.0.0.1:8000 --audience
//! tower-bearer-dev`; sign in at its `/authorize` page and call this API with the token. Several issuers at once: `--trust ISSUER=AUDIENCE`, repeated; each token is
//! verified with its own issuer's keys only.
//!
//! Every mode serves its RFC 9728 protected-resource metadata at
//! `/.well-known/oauth-protected-resource`, and names it in every challenge; `--resource URL`
//! sets the public URL of this API (default: the listening address).
//!
//! For load tests (`benches/load.sh`):
//!
//! * `--token-cache on|off` (default on) and `--token-cache-entries N`: the verified-token cache;
//! * `--dev-port PORT`: the development issuer's port, so other servers can trust the same
//!   issuer (`--issuer http://127.0.0.1:PORT --jwks-url http://127.0.0.1:PORT/jwks.json`);
//! * `--write-tokens PATH [--tokens N]` (development issuer only): writes N (default 10 000)
//!   distinct valid RS256 tokens, one per line (`sub` `user-0`, `user-1`, …, scope `items:read`,
//!   audience `DEFAULT_AUDIENCE`, valid for four hours), then serves;
//! * `--quiet`: no curl walkthrough and a `warn` log filter (no per-request logs); prints
//!   `listening on http://ADDR` once it serves.
//!
//! Sender-constrained tokens:
//!
//! * `--dpop off|allowed|required` (default `allowed`): the `DPoP` scheme (RFC 9449); `htu` is
//!   checked against the `--resource` origin plus the request path;
//! * `--dpop-nonce`: require server nonces (`DPoP-Nonce`), keyed by a random secret;
//! * `--client-cert-header NAME [--client-cert-format escaped-pem|der-base64|envoy-xfcc]`:
//!   trust the client certificate a TLS-terminating gateway forwards in that header (default
//!   format `escaped-pem`, nginx's `$ssl_client_escaped_cert`), for certificate-bound tokens
//!   (RFC 8705). Only when the gateway alone can reach this server;
//! * `--tls-cert FILE --tls-key FILE` (PEM): serve HTTPS, asking for an optional client
//!   certificate (any certificate: the token's `cnf["x5t#S256"]` says which one it must be),
//!   handed to the layer.

use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use tower_bearer::dev::{DEFAULT_AUDIENCE, DevIssuer};
use tower_bearer::dev::{RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET};
use tower_bearer::dpop::{Dpop, DpopNonces};
use tower_bearer::{
    Algorithm, BearerLayer, CertificateHeader, Discovery, Introspector, JwtOrOpaque, JwtValidator,
    JwtValidatorBuilder, MultiIssuer, Principal, ProtectedResource, RequireScope, Validator, jwt_defaults,
};

const USAGE: &str = "usage: resource_server [--listen ADDR] [--resource URL] \
[--issuer URL --audience AUD [--jwks-url URL] [--introspection-url URL] [--client-id ID --client-secret S]] \
[--trust ISSUER=AUDIENCE ...] \
[--token-cache on|off] [--token-cache-entries N] [--dev-port PORT] [--write-tokens PATH [--tokens N]] [--quiet] \
[--dpop off|allowed|required] [--dpop-nonce] [--client-cert-header NAME [--client-cert-format F]] \
[--tls-cert FILE --tls-key FILE]";

struct Args {
    listen: String,
    resource: Option<String>,
    trust: Vec<(String, String)>,
    issuer: Option<String>,
    audience: Option<String>,
    jwks_url: Option<String>,
    introspection_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    token_cache: bool,
    token_cache_entries: Option<u64>,
    dev_port: Option<u16>,
    write_tokens: Option<String>,
    tokens: Option<usize>,
    quiet: bool,
    dpop: String,
    dpop_nonce: bool,
    client_cert_header: Option<String>,
    client_cert_format: CertificateHeader,
    tls_cert: Option<String>,
    tls_key: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:3000".into(),
        resource: None,
        trust: Vec::new(),
        issuer: None,
        audience: None,
        jwks_url: None,
        introspection_url: None,
        client_id: None,
        client_secret: std::env::var("CLIENT_SECRET").ok(),
        token_cache: true,
        token_cache_entries: None,
        dev_port: None,
        write_tokens: None,
        tokens: None,
        quiet: false,
        dpop: "allowed".into(),
        dpop_nonce: false,
        client_cert_header: None,
        client_cert_format: CertificateHeader::EscapedPem,
        tls_cert: None,
        tls_key: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--listen" => args.listen = value()?,
            "--resource" => args.resource = Some(value()?),
            "--trust" => {
                let pair = value()?;
                let (issuer, audience) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("--trust ISSUER=AUDIENCE, not {pair}\n{USAGE}"))?;
                args.trust.push((issuer.to_owned(), audience.to_owned()));
            }
            "--issuer" => args.issuer = Some(value()?),
            "--audience" => args.audience = Some(value()?),
            "--jwks-url" => args.jwks_url = Some(value()?),
            "--introspection-url" => args.introspection_url = Some(value()?),
            "--client-id" => args.client_id = Some(value()?),
            "--client-secret" => args.client_secret = Some(value()?),
            "--token-cache" => {
                args.token_cache = match value()?.as_str() {
                    "on" => true,
                    "off" => false,
                    other => return Err(format!("--token-cache on|off, not {other}\n{USAGE}")),
                }
            }
            "--token-cache-entries" => args.token_cache_entries = Some(number(&flag, &value()?)?),
            "--dev-port" => args.dev_port = Some(number(&flag, &value()?)?),
            "--write-tokens" => args.write_tokens = Some(value()?),
            "--tokens" => args.tokens = Some(number(&flag, &value()?)?),
            "--quiet" => args.quiet = true,
            "--dpop" => args.dpop = value()?,
            "--dpop-nonce" => args.dpop_nonce = true,
            "--client-cert-header" => args.client_cert_header = Some(value()?),
            "--client-cert-format" => {
                args.client_cert_format = match value()?.as_str() {
                    "escaped-pem" => CertificateHeader::EscapedPem,
                    "der-base64" => CertificateHeader::DerBase64,
                    "envoy-xfcc" => CertificateHeader::EnvoyXfcc,
                    other => {
                        return Err(format!(
                            "--client-cert-format escaped-pem|der-base64|envoy-xfcc, not {other}\n{USAGE}"
                        ));
                    }
                }
            }
            "--tls-cert" => args.tls_cert = Some(value()?),
            "--tls-key" => args.tls_key = Some(value()?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if !args.token_cache && args.token_cache_entries.is_some() {
        return Err(format!("--token-cache-entries needs --token-cache on\n{USAGE}"));
    }
    if !matches!(args.dpop.as_str(), "off" | "allowed" | "required") {
        return Err(format!("--dpop off|allowed|required, not {}\n{USAGE}", args.dpop));
    }
    if args.dpop_nonce && args.dpop == "off" {
        return Err(format!("--dpop-nonce needs --dpop allowed or required\n{USAGE}"));
    }
    if args.tls_cert.is_some() != args.tls_key.is_some() {
        return Err(format!("--tls-cert and --tls-key go together\n{USAGE}"));
    }
    if args.tokens.is_some() && args.write_tokens.is_none() {
        return Err(format!("--tokens goes with --write-tokens\n{USAGE}"));
    }
    Ok(args)
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value.parse().map_err(|_| format!("{flag} needs a number, not {value}\n{USAGE}"))
}

/// The verified-token cache as the flags say.
fn with_token_cache(builder: JwtValidatorBuilder, args: &Args) -> JwtValidatorBuilder {
    match (args.token_cache, args.token_cache_entries) {
        (false, _) => builder.no_token_cache(),
        (true, Some(entries)) => builder.token_cache(entries, jwt_defaults::TOKEN_CACHE_TTL),
        (true, None) => builder,
    }
}

/// How tokens may be bound to their sender: DPoP, and a gateway's client-certificate header.
#[derive(Clone)]
struct Binding {
    dpop: Dpop,
    client_cert_header: Option<(axum::http::HeaderName, CertificateHeader)>,
}

impl Binding {
    fn from_args(args: &Args, resource: &str) -> Result<Binding, Box<dyn std::error::Error>> {
        let mut dpop = match args.dpop.as_str() {
            "allowed" => Dpop::allowed(resource)?,
            "required" => Dpop::required(resource)?,
            _ => Dpop::off(),
        };
        if args.dpop_nonce {
            dpop = dpop.nonces(DpopNonces::new(&random_secret()?, Duration::from_secs(300)));
        }
        let client_cert_header = match &args.client_cert_header {
            Some(name) => Some((axum::http::HeaderName::try_from(name.as_str())?, args.client_cert_format)),
            None => None,
        };
        Ok(Binding { dpop, client_cert_header })
    }

    fn apply<V: Validator>(&self, layer: BearerLayer<V>) -> BearerLayer<V> {
        let layer = layer.dpop(self.dpop.clone());
        match &self.client_cert_header {
            Some((name, format)) => layer.trust_client_certificate_header(name.clone(), *format),
            None => layer,
        }
    }
}

/// 32 bytes from the operating system, for the nonce key (each run has its own: nonces are
/// not shared with other processes here).
fn random_secret() -> std::io::Result<[u8; 32]> {
    use std::io::Read;
    let mut secret = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut secret)?;
    Ok(secret)
}

/// The API: one public route, one for any valid token, two that need scopes; and the RFC 9728
/// metadata document, public, named in every challenge.
fn app(validator: impl Validator + Clone, metadata: &ProtectedResource, binding: &Binding) -> Router {
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
        // A principal answers as its JSON (the same text as `Json(p)`, kept with the principal).
        .route("/me", get(|p: Principal| async move { p }))
        .merge(items_read)
        .merge(items_write)
        .layer(binding.apply(
            BearerLayer::new(validator.clone()).realm("resource_server example").protected_resource(metadata),
        ));
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
        .layer(binding.apply(BearerLayer::new(validator).optional()));
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route_service(metadata.well_known_path(), metadata.service())
        .merge(greeting)
        .merge(protected)
}

/// The RFC 9728 document of this API: its public URL, who issues its tokens, its scopes.
fn metadata(resource: &str, issuers: &[&str]) -> Result<ProtectedResource, tower_bearer::ConfigError> {
    issuers
        .iter()
        .fold(ProtectedResource::builder(resource), |b, issuer| b.authorization_server(*issuer))
        .scopes_supported(["items:read", "items:write"])
        .resource_name("tower-bearer resource_server example")
        .build()
}

#[path = "support/tls.rs"]
mod tls;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = match parse_args() {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    // Under load, per-request debug logs (every rejection is one) would measure the logger.
    let default_filter = if args.quiet { "warn" } else { "info,tower_bearer=debug" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let scheme = if args.tls_cert.is_some() { "https" } else { "http" };
    let base = format!("{scheme}://{}", listener.local_addr()?);

    let resource = args.resource.clone().unwrap_or_else(|| base.clone());
    let binding = Binding::from_args(&args, &resource)?;
    let dev_only = args.dev_port.is_some() || args.write_tokens.is_some();
    // Kept alive for as long as the server runs: dropping it stops the JWKS endpoint.
    let mut dev_issuer = None;
    let app = if !args.trust.is_empty() {
        // Several issuers: each token is routed by its `iss` to that issuer's own validator.
        if args.issuer.is_some() || args.jwks_url.is_some() || dev_only {
            return usage("--trust goes without --issuer, --jwks-url and the development issuer flags");
        }
        let mut validators = Vec::new();
        for (issuer, audience) in &args.trust {
            let builder = JwtValidator::from_issuer(issuer)?.audience(audience);
            validators.push(with_token_cache(builder, &args).build()?);
        }
        let issuers: Vec<&str> = args.trust.iter().map(|(i, _)| i.as_str()).collect();
        println!("protecting {base} with tokens of {}", issuers.join(", "));
        app(MultiIssuer::new(validators)?, &metadata(&resource, &issuers)?, &binding)
    } else if let (Some(issuer), Some(audience)) = (args.issuer.clone(), args.audience.clone()) {
        if dev_only {
            return usage("--dev-port and --write-tokens need the development issuer");
        }
        let discovery = Discovery::builder(&issuer).build()?;
        let builder = match &args.jwks_url {
            Some(jwks_url) => JwtValidator::builder().issuer(&issuer).jwks_url(jwks_url),
            // No JWKS URL: found through the issuer's metadata.
            None => JwtValidator::discover(discovery.clone()),
        };
        let validator = with_token_cache(builder.audience(&audience), &args).build()?;
        println!("protecting {base} with tokens of {issuer}");
        let introspection = match (
            args.introspection_url.clone(),
            args.client_id.clone(),
            args.client_secret.clone(),
        ) {
            (Some(url), Some(id), Some(secret)) => {
                Some(Introspector::builder(url).client_secret_basic(id, secret))
            }
            (None, Some(id), Some(secret)) if args.jwks_url.is_none() => {
                Some(Introspector::discover(discovery).client_secret_basic(id, secret))
            }
            (None, None, _) => None,
            _ => {
                return usage(
                    "introspection needs --client-id and --client-secret (and --introspection-url with --jwks-url)",
                );
            }
        };
        let metadata = metadata(&resource, &[&issuer])?;
        match introspection {
            Some(opaque) => app(JwtOrOpaque::new(validator, opaque.build()?), &metadata, &binding),
            None => app(validator, &metadata, &binding),
        }
    } else if args.issuer.is_none() && args.audience.is_none() && args.jwks_url.is_none() {
        let dev = DevIssuer::builder().port(args.dev_port.unwrap_or(0)).start().await?;
        let builder =
            JwtValidator::builder().issuer(dev.issuer()).audience(DEFAULT_AUDIENCE).jwks_url(dev.jwks_url());
        let validator = with_token_cache(builder, &args).build()?;
        let introspection = Introspector::builder(dev.introspection_url())
            .client_secret_basic(RESOURCE_CLIENT_ID, RESOURCE_CLIENT_SECRET)
            .build()?;
        if let Some(path) = &args.write_tokens {
            let count = args.tokens.unwrap_or(10_000);
            write_tokens(&dev, path, count)?;
            eprintln!("wrote {count} tokens to {path}");
        }
        if args.quiet {
            println!("development issuer: {} (JWKS {})", dev.issuer(), dev.jwks_url());
        } else {
            print_walkthrough(&dev, &base);
        }
        let metadata = metadata(&resource, &[dev.issuer()])?;
        dev_issuer = Some(dev);
        app(JwtOrOpaque::new(validator, introspection), &metadata, &binding)
    } else {
        return usage("--issuer and --audience go together (--jwks-url is optional)");
    };
    let _keep = dev_issuer;
    if args.quiet {
        println!("listening on {base}");
    }
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            use rustls::pki_types::pem::PemObject;
            use rustls::pki_types::{CertificateDer, PrivateKeyDer};
            let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
            let config = tls::server_config(chain, PrivateKeyDer::from_pem_file(key)?)?;
            tokio::select! {
                () = tls::serve(listener, config, app) => {}
                () = shutdown() => {}
            }
        }
        _ => axum::serve(listener, app).with_graceful_shutdown(shutdown()).await?,
    }
    Ok(())
}

/// Writes `count` distinct valid RS256 tokens to `path`, one per line (`sub` = `user-{i}`).
/// RSA signing is the slow part (about a millisecond a token): every core signs a share.
fn write_tokens(dev: &DevIssuer, path: &str, count: usize) -> std::io::Result<()> {
    use std::io::Write;
    // benches/load.sh signs its tokens first and sends the last of them (the memory floods)
    // most of an hour later, longer with longer runs: an hour was too close.
    let lifetime = Duration::from_secs(4 * 3600);
    let sign = |i: usize| {
        let subject = format!("user-{i}");
        dev.token().alg(Algorithm::RS256).subject(&subject).scope("items:read").expires_in(lifetime).sign()
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(count.max(1));
    let shares: Vec<Vec<String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let range = (t * count / threads)..((t + 1) * count / threads);
                scope.spawn(move || range.map(sign).collect::<Vec<_>>())
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("signing thread")).collect()
    });
    // Written beside the target, then renamed: a reader never sees half a file.
    let partial = format!("{path}.partial");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&partial)?);
    for token in shares.iter().flatten() {
        writeln!(out, "{token}")?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&partial, path)
}

fn print_walkthrough(dev: &DevIssuer, base: &str) {
    let hour = Duration::from_secs(3600);
    let valid = dev.token().subject("alice").scope("items:read items:write").expires_in(hour).sign();
    let reader = dev.token().subject("bob").scope("items:read").expires_in(hour).sign();
    let expired = dev.token().subject("alice").scope("items:read").expired(Duration::from_secs(60)).sign();
    println!("development issuer: {} (JWKS {})", dev.issuer(), dev.jwks_url());
    println!("resource server:    {base}\n");
    println!("# 200, public:\ncurl -i {base}/health\n");
    println!(
        "# 200, RFC 9728 protected-resource metadata:\ncurl -i {base}/.well-known/oauth-protected-resource\n"
    );
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

fn usage(problem: &str) -> Result<(), Box<dyn std::error::Error>> {
    eprintln!("{problem}\n{USAGE}");
    std::process::exit(2);
}

async fn shutdown() {
    let _ = tokio::signal::ctrl_c().await;
}

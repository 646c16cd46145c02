//! `tower-bearer`: an OAuth 2.0 resource server in front of services that do not check tokens
//! themselves, as a forward-auth service for an existing gateway (`auth`) or as a verifying
//! reverse proxy (`proxy`). Run `tower-bearer --help`.
//!
//! Arguments are parsed by hand: three subcommands and four options do not pay for a parser
//! dependency in every `cargo install`.

mod config;
#[cfg(feature = "dev")]
mod dev;
mod file;
mod fleet;
mod forwarded;
mod guard;
mod hop_by_hop;
mod idle;
mod listen;
mod normalize;
mod proxy;
mod reload;
mod revoke;
mod rules;
mod sender;
mod server;
mod tls;
mod upgrade;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use tracing_subscriber::EnvFilter;

use crate::listen::Shared;
use crate::server::Mode;

const HELP: &str = "\
tower-bearer: an OAuth 2.0 resource server for APIs that do not check tokens themselves.

Every request must carry a valid `Authorization: Bearer <token>` (RFC 6750), checked against
your authorization server's keys (JWT, JWKS) or its introspection endpoint, and the route
rules of the configuration file decide which scopes each path needs.

USAGE:
    tower-bearer <COMMAND> [OPTIONS]

COMMANDS:
    auth           Forward-auth service: answers the authorization sub-request of nginx
                   (auth_request), Caddy (forward_auth), Traefik (forwardAuth) or Envoy
                   (ext_authz, HTTP). 200 + identity headers (X-Auth-Subject,
                   X-Auth-Client-Id, X-Auth-Scopes) when allowed; otherwise the exact
                   RFC 6750 status and WWW-Authenticate challenge.
    proxy          Verifying reverse proxy in front of the [upstream] of the configuration:
                   allowed requests are forwarded with identity headers, others answered.
    check-config   Reads and checks the configuration, prints a summary, exits 0 if good.
    dev            A DEVELOPMENT authorization server (feature `dev`): sign-in page, code +
                   PKCE, refresh, client credentials, JWKS, introspection, a token debugger.
                   Listens on 127.0.0.1:8000 unless --listen; clients, users and audiences
                   from -c dev.toml, or two clients and two users printed at start.
    revoke         Revokes tokens on every replica sharing the [redis] of the configuration
                   (--jti ID | --sub S | --client-id C [--for SECS]); see `revoke --help`.

OPTIONS:
    -c, --config <FILE>       Configuration file [default: tower-bearer.toml,
                              or $TOWER_BEARER_CONFIG]
        --listen <ADDR>       Overrides `listen` (e.g. 127.0.0.1:9090)
        --log-format <FMT>    text (default; coloured on a terminal unless NO_COLOR is set)
                              or json; filter with $TOWER_BEARER_LOG (e.g. TOWER_BEARER_LOG=debug)
        --watch-config        Reloads the configuration when the file changes (as on SIGHUP)
    -h, --help                This text
    -V, --version             The version

ENDPOINTS (both modes):
    /healthz    200 while the process runs
    /readyz     200 once every issuer's keys are loaded, 503 before

EXAMPLES:
    tower-bearer check-config -c examples/gateways/tower-bearer.toml
    tower-bearer auth -c examples/gateways/tower-bearer.toml
    tower-bearer proxy -c tower-bearer.toml --listen 0.0.0.0:8080 --log-format json
    tower-bearer dev -c dev.toml

Example configurations for the gateways: examples/gateways/ in the source repository.
Exit codes: 0 ok, 1 runtime failure (e.g. cannot listen), 2 bad usage or configuration.
";

#[derive(Debug)]
struct Args {
    command: Command,
    config: PathBuf,
    listen: Option<String>,
    json_logs: bool,
    /// `-c` as given on the command line (not the default or the environment): `dev` has no
    /// default file.
    explicit_config: Option<PathBuf>,
    watch_config: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Auth,
    Proxy,
    CheckConfig,
    Dev,
}

enum Parsed {
    Run(Args),
    Help,
    Version,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let mut command = None;
    let mut config = std::env::var_os("TOWER_BEARER_CONFIG").map(PathBuf::from);
    let mut listen = None;
    let mut json_logs = false;
    let mut explicit_config = None;
    let mut watch_config = false;
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| {
            inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{what} needs a value"))
        };
        match name.as_str() {
            "-h" | "--help" | "help" => return Ok(Parsed::Help),
            "-V" | "--version" => return Ok(Parsed::Version),
            "-c" | "--config" => {
                let path = PathBuf::from(value("--config")?);
                explicit_config = Some(path.clone());
                config = Some(path);
            }
            "--listen" => listen = Some(value("--listen")?),
            "--watch-config" => watch_config = true,
            "--log-format" => {
                json_logs = match value("--log-format")?.as_str() {
                    "json" => true,
                    "text" => false,
                    other => return Err(format!("--log-format: `{other}`: expected text or json")),
                }
            }
            "auth" | "proxy" | "check-config" | "dev" if command.is_none() => {
                command = Some(match name.as_str() {
                    "auth" => Command::Auth,
                    "proxy" => Command::Proxy,
                    "dev" => Command::Dev,
                    _ => Command::CheckConfig,
                })
            }
            other if other.starts_with('-') => return Err(format!("unknown option `{other}`")),
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    let command = command.ok_or("missing command: auth, proxy, check-config or dev")?;
    Ok(Parsed::Run(Args {
        command,
        config: config.unwrap_or_else(|| PathBuf::from("tower-bearer.toml")),
        listen,
        json_logs,
        explicit_config,
        watch_config,
    }))
}

fn init_logs(json: bool) {
    let filter = EnvFilter::try_from_env("TOWER_BEARER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours for a terminal only: in a file, journald or a log shipper they are escape codes
    // between a field's name and its value (`status=502` could not be searched for). And never
    // with NO_COLOR set (https://no-color.org), which `with_ansi` would otherwise override.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("revoke") {
        return revoke::main(std::env::args().skip(2));
    }
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("tower-bearer {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("tower-bearer: {e}\nRun `tower-bearer --help` for usage.");
            return ExitCode::from(2);
        }
    };
    init_logs(args.json_logs);
    if args.command == Command::Dev {
        #[cfg(feature = "dev")]
        return dev::run(args.explicit_config.as_deref(), args.listen.as_deref());
        #[cfg(not(feature = "dev"))]
        {
            eprintln!(
                "tower-bearer: `dev` needs the `dev` feature (cargo install tower-bearer --features gateway,dev)"
            );
            return ExitCode::from(2);
        }
    }
    let mut config = match config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tower-bearer: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(listen) = &args.listen {
        match listen.parse() {
            Ok(addr) => config.listen = addr,
            Err(e) => {
                eprintln!("tower-bearer: --listen `{listen}`: not host:port ({e})");
                return ExitCode::from(2);
            }
        }
    }
    if args.command == Command::Proxy
        && let Err(e) = reload::check_upstreams(&config, &args.config)
    {
        eprintln!("tower-bearer: configuration error: {e}");
        return ExitCode::from(2);
    }
    let Some(runtime) = crate::runtime() else { return ExitCode::FAILURE };
    runtime.block_on(run(args, config))
}

/// The multi-threaded runtime every command runs on; `None` (said on stderr) if it cannot start.
fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .inspect_err(|e| eprintln!("tower-bearer: cannot start the runtime: {e}"))
        .ok()
}

async fn run(args: Args, config: config::Config) -> ExitCode {
    if args.command != Command::CheckConfig
        && let Some(redis) = &config.redis
        && let Err(e) = fleet::install(redis)
    {
        eprintln!("tower-bearer: configuration error: {}: {e}", args.config.display());
        return ExitCode::from(2);
    }
    let mode = match args.command {
        Command::CheckConfig => {
            // Building validators needs the runtime (discovery starts in the background); the
            // other commands build theirs below.
            if let Err(e) = server::build_validator(&config) {
                eprintln!("tower-bearer: configuration error: {}: {e}", args.config.display());
                return ExitCode::from(2);
            }
            println!("{}: ok", args.config.display());
            println!("  listen: {}", config.listen);
            for i in &config.issuers {
                let keys = i.jwks_url.as_deref().unwrap_or("(discovered)");
                let intro = if i.introspection.is_some() { ", introspection" } else { "" };
                println!("  issuer {} (audience {}, keys {keys}{intro})", i.issuer, i.audience);
            }
            for r in &config.rules.rules {
                let method = r.method.as_ref().map_or("*", |m| m.as_str());
                println!("  route {method} {} -> {}", r.path, r.access);
            }
            if let Some(u) = &config.upstream {
                println!("  upstream: {}", u.url);
            }
            if let Some((dpop, replay)) = &config.dpop {
                println!("  dpop: {dpop:?}, replay store: {replay:?}");
            }
            if let Some((header, format)) = &config.client_certificate {
                println!("  client certificate: header {header} ({format:?}), trusted from the gateway");
            }
            for u in &config.upstreams {
                println!("  upstream {}: {}", u.name.as_deref().unwrap_or_default(), u.url);
            }
            if let Some(t) = &config.tls {
                println!("  tls: {}", t.cert.display());
            }
            if let Some(redis) = &config.redis {
                println!("  {}", redis.summary());
            }
            return ExitCode::SUCCESS;
        }
        Command::Auth => Mode::Auth,
        Command::Proxy => Mode::Proxy,
        Command::Dev => unreachable!("handled before the configuration is read"),
    };
    let tls = match config.tls.clone().map(tls::Tls::new).transpose() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tower-bearer: configuration error: {}: tls: {e}", args.config.display());
            return ExitCode::from(2);
        }
    };
    let running = match reload::running(mode, &config, &args.config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tower-bearer: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some((_, bounds)) = &config.dpop {
        // The first configuration's window, in the replay store's history (see `reload`).
        bounds.apply();
    }
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tower-bearer: cannot listen on {}: {e}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().map_or_else(|_| config.listen.to_string(), |a| a.to_string());
    if let Some(tls) = &tls {
        tls.watch();
    }
    let shared = Arc::new(Shared { running: std::sync::RwLock::new(Arc::new(running)), tls });
    let from_file = args.listen.is_none().then_some(config.listen);
    tokio::spawn(reload::on_sighup(args.config.clone(), mode, shared.clone(), from_file));
    if args.watch_config {
        tokio::spawn(reload::on_change(args.config.clone(), mode, shared.clone(), from_file));
    }
    tracing::info!(mode = ?mode, %addr, tls = shared.tls.is_some(), "listening");
    // One line on stdout for scripts and tests that started us with port 0.
    println!("listening on {addr}");
    let grace = config.shutdown_grace;
    if listen::serve(listener, shared, server::shutdown_signal(), grace).await {
        tracing::info!("stopped");
    } else {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "requests still in flight after the grace period: exiting"
        );
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Parsed, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn arguments() {
        let Ok(Parsed::Run(a)) = parse(&["auth", "-c", "x.toml", "--log-format=json"]) else { panic!() };
        assert_eq!(a.command, Command::Auth);
        assert_eq!(a.config, PathBuf::from("x.toml"));
        assert!(a.json_logs);
        assert!(matches!(parse(&["--help"]), Ok(Parsed::Help)));
        assert!(parse(&[]).is_err());
        assert!(parse(&["auth", "--bogus"]).is_err());
        assert!(parse(&["auth", "proxy"]).is_err());
        assert!(parse(&["auth", "--log-format", "xml"]).is_err());
        assert!(parse(&["auth", "--config"]).is_err());
        let Ok(Parsed::Run(a)) = parse(&["dev", "--listen", "127.0.0.1:0"]) else { panic!() };
        assert_eq!(
            (a.command, a.explicit_config, a.listen.as_deref()),
            (Command::Dev, None, Some("127.0.0.1:0"))
        );
    }
}

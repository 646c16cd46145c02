//! `tower-bearer revoke`: writes a revocation to the fleet's deny-list in the `[redis]` of the
//! configuration; every replica refuses the tokens concerned within the bound of the README.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::fleet::RedisConfig;

const REVOKE_HELP: &str = "\
tower-bearer revoke: revokes tokens on every replica sharing the [redis] of the configuration.

USAGE:
    tower-bearer revoke -c <FILE> (--jti <ID> | --sub <SUBJECT> | --client-id <CLIENT>) [--for <SECS>]

    --jti <ID>            One token, by its `jti`
    --sub <SUBJECT>       Every token of a subject
    --client-id <CLIENT>  Every token of a client
    --for <SECS>          How long the revocation lasts [default: 86400]; make it at least the
                          longest lifetime of the tokens concerned
";

/// `tower-bearer revoke …` (the arguments after `revoke`).
pub fn main(args: impl Iterator<Item = String>) -> ExitCode {
    let mut config = std::env::var_os("TOWER_BEARER_CONFIG").map(PathBuf::from);
    let mut what = None;
    let mut lifetime = Duration::from_secs(86_400);
    let mut args = args.peekable();
    let usage = |e: String| {
        eprintln!("tower-bearer revoke: {e}\n\n{REVOKE_HELP}");
        ExitCode::from(2)
    };
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        if matches!(name.as_str(), "-h" | "--help") {
            print!("{REVOKE_HELP}");
            return ExitCode::SUCCESS;
        }
        let Some(value) = inline.or_else(|| args.next()) else {
            return usage(format!("{name} needs a value"));
        };
        let kind = match name.as_str() {
            "-c" | "--config" => {
                config = Some(PathBuf::from(value));
                continue;
            }
            "--for" => match value.parse::<u64>() {
                Ok(secs) if secs > 0 => {
                    lifetime = Duration::from_secs(secs);
                    continue;
                }
                _ => return usage(format!("--for `{value}`: a number of seconds above 0")),
            },
            "--jti" => Kind::Jti,
            "--sub" => Kind::Subject,
            "--client-id" => Kind::ClientId,
            other => return usage(format!("unknown argument `{other}`")),
        };
        if what.is_some() {
            return usage("give one of --jti, --sub and --client-id".into());
        }
        if value.is_empty() {
            return usage(format!("{name}: empty value"));
        }
        what = Some((kind, value));
    }
    let Some(what) = what else { return usage("give one of --jti, --sub and --client-id".into()) };
    let path = config.unwrap_or_else(|| PathBuf::from("tower-bearer.toml"));
    let config = match crate::config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tower-bearer: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(redis) = config.redis else {
        eprintln!("tower-bearer: configuration error: {}: revoke needs a [redis] table", path.display());
        return ExitCode::from(2);
    };
    run(&redis, what, lifetime)
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Jti,
    Subject,
    ClientId,
}

#[cfg(feature = "redis")]
fn run(redis: &RedisConfig, (kind, value): (Kind, String), lifetime: Duration) -> ExitCode {
    use tower_bearer::fleet::Revocation;
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tower-bearer: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let revocation = match kind {
        Kind::Jti => Revocation::Jti(value),
        Kind::Subject => Revocation::Subject(value),
        Kind::ClientId => Revocation::ClientId(value),
    };
    runtime.block_on(async {
        let fleet = match crate::fleet::build(redis) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("tower-bearer: configuration error: {e}");
                return ExitCode::from(2);
            }
        };
        // A fresh connection: a first attempt may race the connect; try a few times.
        let mut last = None;
        for _ in 0..5 {
            match fleet.revoke(revocation.clone(), lifetime).await {
                Ok(()) => {
                    println!("revoked {revocation:?} for {} s", lifetime.as_secs());
                    return ExitCode::SUCCESS;
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!("tower-bearer: revoke failed: {}", last.map(|e| e.to_string()).unwrap_or_default());
        ExitCode::FAILURE
    })
}

#[cfg(not(feature = "redis"))]
fn run(_: &RedisConfig, _: (Kind, String), _: Duration) -> ExitCode {
    // Refused at check time already.
    eprintln!("tower-bearer: this tower-bearer was built without the `redis` feature");
    ExitCode::from(2)
}

//! `SIGHUP`: read the configuration file again and run with it. A file that `check-config`
//! would refuse is refused with the same errors, and the running configuration stays.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::config::{self, Config};
use crate::listen::{Running, Shared};
use crate::server::{self, App, Mode};

/// Whether proxy mode has an upstream for every route.
pub fn check_upstreams(config: &Config, origin: &Path) -> Result<(), String> {
    let unrouted = config.rules.rules.iter().any(|r| r.upstream.is_none());
    if unrouted && config.upstream.is_none() {
        return Err(format!(
            "{}: upstream: proxy mode needs an [upstream] table with `url` (or an `upstream` on every route)",
            origin.display()
        ));
    }
    Ok(())
}

/// Builds what a configuration runs with (keys start loading in the background).
pub fn running(mode: Mode, config: &Config, origin: &Path) -> Result<Running, String> {
    let (validator, validators) =
        server::build_validator(config).map_err(|e| format!("{}: {e}", origin.display()))?;
    let preload = validators.clone();
    let app =
        App::new(mode, config, validator, validators).map_err(|e| format!("{}: {e}", origin.display()))?;
    server::preload_keys(&preload);
    Ok(Running {
        app: Arc::new(app),
        header_read_timeout: config.header_read_timeout,
        http2_keep_alive: config.http2_keep_alive,
        max_header_bytes: config.max_header_bytes,
    })
}

/// `listen`: the address from the file, unless `--listen` overrode it.
fn reload(
    path: &Path,
    mode: Mode,
    shared: &Shared,
    listen: Option<std::net::SocketAddr>,
) -> Result<(), String> {
    // One reload at a time (`SIGHUP` and `--watch-config` may ask at once): two overlapping could
    // leave one file's configuration running with the other's DPoP replay bounds, or an older
    // file's configuration running after a newer one.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let config = config::load(path).map_err(|e| e.to_string())?;
    if mode == Mode::Proxy {
        check_upstreams(&config, path)?;
    }
    let tls = match (&shared.tls, &config.tls) {
        (Some(_), Some(files)) => Some((files.clone(), files.server_config()?)),
        (None, None) => None,
        _ => return Err("tls: switching TLS on or off needs a restart".to_owned()),
    };
    if listen.is_some_and(|l| l != config.listen) {
        tracing::warn!(listen = %config.listen, "a new listen address needs a restart: still listening on the old one");
    }
    let running = running(mode, &config, path)?;
    if let (Some(current), Some((files, server_config))) = (&shared.tls, tls) {
        current.replace(files, server_config);
    }
    if let Some((_, bounds)) = &config.dpop {
        // The replay store the new configuration shares with the old one takes its bounds, and
        // its history the new window, just before the new configuration takes over: its first
        // proof is judged with the old window's entry in place.
        bounds.apply();
    }
    shared.replace(running);
    Ok(())
}

/// Reloads when the file's modification time or size changes (`--watch-config`), looked at
/// every two seconds: polling needs no platform watcher and a configuration changes rarely.
pub async fn on_change(path: PathBuf, mode: Mode, shared: Arc<Shared>, listen: Option<std::net::SocketAddr>) {
    let stamp = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.modified().ok(), m.len()));
    let mut last = stamp(&path);
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let now = stamp(&path);
        if now == last || now.is_none() {
            continue;
        }
        last = now;
        match reload(&path, mode, &shared, listen) {
            Ok(()) => tracing::info!(config = %path.display(), "configuration reloaded (file changed)"),
            Err(e) => tracing::error!(error = %e, "configuration refused: the running one stays"),
        }
    }
}

/// Reloads on every `SIGHUP` for as long as the process runs.
pub async fn on_sighup(path: PathBuf, mode: Mode, shared: Arc<Shared>, listen: Option<std::net::SocketAddr>) {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle SIGHUP: no reloads");
            return;
        }
    };
    while hup.recv().await.is_some() {
        match reload(&path, mode, &shared, listen) {
            Ok(()) => tracing::info!(config = %path.display(), "configuration reloaded"),
            Err(e) => tracing::error!(error = %e, "configuration refused: the running one stays"),
        }
    }
}

//! The TLS listener: rustls with the certificate and key of PEM files, read again when they
//! change (certificates are renewed under a running proxy), ALPN `h2` and `http/1.1`, and
//! client certificates when asked for.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// How often the certificate files are looked at for a change.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// The crypto provider of every TLS configuration of the binary.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The `[tls]` table, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub require_client_cert: bool,
}

/// Every certificate of a PEM file (at least one).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    Ok(certs)
}

impl TlsFiles {
    /// Reads the files and builds the rustls configuration.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, String> {
        let certs = read_certs(&self.cert)?;
        let key =
            PrivateKeyDer::from_pem_file(&self.key).map_err(|e| format!("{}: {e}", self.key.display()))?;
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(ca)? {
                    roots.add(cert).map_err(|e| format!("{}: {e}", ca.display()))?;
                }
                let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                if !self.require_client_cert {
                    verifier = verifier.allow_unauthenticated();
                }
                builder.with_client_cert_verifier(verifier.build().map_err(|e| e.to_string())?)
            }
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| format!("{} and {}: {e}", self.cert.display(), self.key.display()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Modification times of the files: a change means "read them again".
    fn stamp(&self) -> Vec<Option<SystemTime>> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect()
    }
}

/// The running TLS configuration, swapped when the files or the configuration change.
pub struct Tls {
    files: Mutex<(TlsFiles, Vec<Option<SystemTime>>)>,
    config: ArcSwap<ServerConfig>,
}

impl Tls {
    pub fn new(files: TlsFiles) -> Result<Arc<Tls>, String> {
        let stamp = files.stamp();
        let config = files.server_config()?;
        Ok(Arc::new(Tls { files: Mutex::new((files, stamp)), config: ArcSwap::new(config) }))
    }

    /// The configuration for the next handshake.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.load_full())
    }

    /// Uses `files` from now on (a reloaded configuration); already checked by the caller.
    pub fn replace(&self, files: TlsFiles, config: Arc<ServerConfig>) {
        let stamp = files.stamp();
        *self.files.lock().unwrap_or_else(|e| e.into_inner()) = (files, stamp);
        self.config.store(config);
    }

    /// Reads the files again if they changed; a bad new file is logged and the running
    /// certificate stays.
    fn check(&self) {
        let files = {
            let mut guard = self.files.lock().unwrap_or_else(|e| e.into_inner());
            let stamp = guard.0.stamp();
            if stamp == guard.1 {
                return;
            }
            guard.1 = stamp;
            guard.0.clone()
        };
        match files.server_config() {
            Ok(config) => {
                self.config.store(config);
                tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS files changed but cannot be used: the running certificate stays")
            }
        }
    }

    /// Looks at the files every few seconds for as long as the process runs.
    pub fn watch(self: &Arc<Self>) {
        let tls = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(WATCH_EVERY).await;
                let Some(tls) = tls.upgrade() else { return };
                tls.check();
            }
        });
    }
}

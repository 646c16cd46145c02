//! Issuer metadata discovery: OpenID Connect Discovery 1.0 and RFC 8414 (OAuth 2.0
//! Authorization Server Metadata). Given only an issuer URL, find its `jwks_uri` and
//! `introspection_endpoint`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use serde::Deserialize;

use crate::config::ConfigError;
use crate::outbound::{HttpClient, TransportError, Url, http_url};

/// Defaults of [`DiscoveryBuilder`].
pub mod defaults {
    use std::time::Duration;
    /// Timeout of one metadata request, body included.
    pub const TIMEOUT: Duration = Duration::from_secs(5);
    /// Connect timeout.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    /// Largest metadata document accepted.
    pub const MAX_BODY_BYTES: usize = 256 * 1024;
    /// First wait after a failed discovery; doubles with each failure in a row.
    pub const RETRY_MIN: Duration = Duration::from_secs(1);
    /// Longest wait between two attempts.
    pub const RETRY_MAX: Duration = Duration::from_secs(30);
    /// How long a discovered document is used before it is fetched again.
    pub const REFRESH_AFTER: Duration = Duration::from_secs(24 * 3600);
}

/// The members of an authorization server's metadata this crate uses (RFC 8414 §2; the OpenID
/// Connect discovery document is a superset).
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct IssuerMetadata {
    /// The issuer identifier. Equal to the configured issuer: anything else was refused.
    pub issuer: String,
    /// Where the issuer publishes its signing keys.
    pub jwks_uri: Option<String>,
    /// The RFC 7662 introspection endpoint, if the issuer has one.
    pub introspection_endpoint: Option<String>,
    /// The token endpoint (informational).
    pub token_endpoint: Option<String>,
    /// The scopes the issuer supports (informational).
    pub scopes_supported: Option<Vec<String>>,
}

/// Why discovery failed. Logged, never shown to clients (who get `503`).
#[derive(Debug)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// Neither metadata location answered: the last failure.
    Transport(TransportError),
    /// A location answered, but not with a metadata document (the last one tried).
    NotMetadata(serde_json::Error),
    /// The document's `issuer` is not the configured issuer (RFC 8414 §3.3): refused, since
    /// accepting it would let one issuer speak for another.
    IssuerMismatch {
        /// The issuer we asked about.
        expected: String,
        /// What the document says.
        found: String,
    },
    /// The document has no `jwks_uri` (or it is not an http(s) URL).
    NoJwksUri,
    /// The document has no `introspection_endpoint`, and an introspector needs one.
    NoIntrospectionEndpoint,
    /// A previous attempt failed and the retry back-off has not elapsed.
    Backoff,
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoveryError::Transport(e) => write!(f, "issuer metadata unavailable: {e}"),
            DiscoveryError::NotMetadata(e) => write!(f, "not an issuer metadata document: {e}"),
            DiscoveryError::IssuerMismatch { expected, found } => {
                write!(f, "metadata names issuer {found:?}, expected {expected:?}")
            }
            DiscoveryError::NoJwksUri => f.write_str("metadata has no usable jwks_uri"),
            DiscoveryError::NoIntrospectionEndpoint => {
                f.write_str("metadata has no usable introspection_endpoint")
            }
            DiscoveryError::Backoff => f.write_str("discovery failed recently; waiting before retrying"),
        }
    }
}

impl std::error::Error for DiscoveryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DiscoveryError::Transport(e) => Some(e),
            DiscoveryError::NotMetadata(e) => Some(e),
            _ => None,
        }
    }
}

/// Discovers an issuer's metadata once and keeps it.
///
/// The OpenID Connect location (`{issuer}/.well-known/openid-configuration`) is tried first,
/// then RFC 8414's (`/.well-known/oauth-authorization-server` inserted before the issuer's
/// path). The document's `issuer` must equal the configured one exactly. Failures are retried
/// with exponential back-off; concurrent callers share one attempt. Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_bearer::Discovery;
///
/// let discovery = Discovery::builder("https://as.example/tenant").build()?;
/// let metadata = discovery.metadata().await?;
/// println!("keys at {:?}", metadata.jwks_uri);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Discovery {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    locations: [Url; 2],
    client: HttpClient,
    timeout: Duration,
    max_body_bytes: usize,
    retry_min: Duration,
    retry_max: Duration,
    found: ArcSwapOption<IssuerMetadata>,
    /// When `found` was fetched; it is fetched again after `refresh_after`, or sooner once a
    /// fetch of an endpoint it named failed (`mark_stale`).
    found_at: std::sync::Mutex<Option<Instant>>,
    stale: std::sync::atomic::AtomicBool,
    refresh_after: Duration,
    /// Single flight and back-off state: `(last failure, wait before the next attempt)`.
    attempt: tokio::sync::Mutex<Option<(Instant, Duration)>>,
}

/// Builder for [`Discovery`].
#[derive(Debug)]
pub struct DiscoveryBuilder {
    issuer: String,
    timeout: Duration,
    connect_timeout: Option<Duration>,
    max_body_bytes: usize,
    retry_min: Duration,
    retry_max: Duration,
    refresh_after: Duration,
    client: Option<HttpClient>,
}

impl DiscoveryBuilder {
    /// Timeout of one metadata request (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Connect timeout (default 2 s). Setting it gives discovery a client of its own instead
    /// of the shared one.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }
    /// Largest metadata document accepted (default 256 KiB).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }
    /// Back-off after failures: the first wait, doubled per failure in a row up to `max`
    /// (default 1 s to 30 s).
    pub fn retry_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.retry_min = min;
        self.retry_max = max;
        self
    }
    /// How long discovered metadata is used before it is fetched again (default 24 h). A failed
    /// fetch keeps the previous document; a failed fetch of the JWKS it names makes the next
    /// use rediscover (within the back-off), so a moved `jwks_uri` is followed.
    pub fn refresh_after(mut self, age: Duration) -> Self {
        self.refresh_after = age;
        self
    }
    /// Fetches with this client instead of the shared one. The per-request timeout of this
    /// builder still applies.
    pub fn http_client(mut self, client: HttpClient) -> Self {
        self.client = Some(client);
        self
    }

    /// Checks the issuer URL and builds. Nothing is fetched yet.
    pub fn build(self) -> Result<Discovery, ConfigError> {
        let locations = metadata_locations(&self.issuer)?;
        if self.retry_min > self.retry_max {
            return Err(ConfigError::Invalid("discovery retry_backoff: min is above max"));
        }
        let client = match self.client {
            Some(c) => c,
            None => HttpClient::shared_or_with(self.connect_timeout)?,
        };
        Ok(Discovery {
            inner: Arc::new(Inner {
                issuer: self.issuer,
                locations,
                client,
                timeout: self.timeout,
                max_body_bytes: self.max_body_bytes,
                retry_min: self.retry_min,
                retry_max: self.retry_max,
                found: ArcSwapOption::empty(),
                found_at: std::sync::Mutex::new(None),
                stale: std::sync::atomic::AtomicBool::new(false),
                refresh_after: self.refresh_after,
                attempt: tokio::sync::Mutex::new(None),
            }),
        })
    }
}

/// The OpenID Connect and RFC 8414 metadata URLs of `issuer`.
fn metadata_locations(issuer: &str) -> Result<[Url; 2], ConfigError> {
    let invalid = |reason: &str| ConfigError::InvalidUrl { what: "issuer", reason: reason.into() };
    let url = http_url("issuer", issuer)?;
    // RFC 8414 §2: an issuer has no query or fragment.
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("an issuer has no query or fragment"));
    }
    let path = url.path().trim_end_matches('/').to_owned();
    let mut oidc = url.clone();
    oidc.set_path(&format!("{path}/.well-known/openid-configuration"));
    let mut rfc8414 = url;
    rfc8414.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    Ok([oidc, rfc8414])
}

impl Discovery {
    /// Discovery for `issuer` (an `https` URL, or `http` for development).
    pub fn builder(issuer: impl Into<String>) -> DiscoveryBuilder {
        DiscoveryBuilder {
            issuer: issuer.into(),
            timeout: defaults::TIMEOUT,
            connect_timeout: None,
            max_body_bytes: defaults::MAX_BODY_BYTES,
            retry_min: defaults::RETRY_MIN,
            retry_max: defaults::RETRY_MAX,
            refresh_after: defaults::REFRESH_AFTER,
            client: None,
        }
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The metadata discovered so far, without waiting.
    pub fn cached(&self) -> Option<Arc<IssuerMetadata>> {
        self.inner.found.load_full()
    }

    /// The metadata: cached after the first success; otherwise one attempt (shared with
    /// concurrent callers), unless the back-off after a recent failure has not elapsed.
    pub async fn metadata(&self) -> Result<Arc<IssuerMetadata>, DiscoveryError> {
        if let Some(found) = self.fresh() {
            return Ok(found);
        }
        let mut attempt = self.inner.attempt.lock().await;
        if let Some(found) = self.fresh() {
            return Ok(found);
        }
        let stale = self.cached();
        if let Some((failed_at, wait)) = *attempt
            && failed_at.elapsed() < wait
        {
            return stale.ok_or(DiscoveryError::Backoff);
        }
        match self.fetch().await {
            Ok(metadata) => {
                let metadata = Arc::new(metadata);
                self.inner.found.store(Some(metadata.clone()));
                *self.inner.found_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some(Instant::now());
                self.inner.stale.store(false, std::sync::atomic::Ordering::Release);
                *attempt = None;
                tracing::info!(issuer = %self.inner.issuer, jwks_uri = ?metadata.jwks_uri, "issuer metadata discovered");
                Ok(metadata)
            }
            Err(err) => {
                let wait = attempt.map_or(self.inner.retry_min, |(_, wait)| {
                    wait.saturating_mul(2).min(self.inner.retry_max)
                });
                *attempt = Some((Instant::now(), wait));
                tracing::warn!(issuer = %self.inner.issuer, error = %err, retry_in_ms = wait.as_millis() as u64, "issuer discovery failed");
                // Stale-if-error: a document that worked beats none.
                stale.ok_or(err)
            }
        }
    }

    /// The cached document, if it is still fresh.
    fn fresh(&self) -> Option<Arc<IssuerMetadata>> {
        let found = self.cached()?;
        let at = *self.inner.found_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let expired = at.is_none_or(|at| at.elapsed() >= self.inner.refresh_after);
        (!expired && !self.inner.stale.load(std::sync::atomic::Ordering::Acquire)).then_some(found)
    }

    /// Asks for the document to be fetched again at next use (an endpoint it named failed).
    pub(crate) fn mark_stale(&self) {
        self.inner.stale.store(true, std::sync::atomic::Ordering::Release);
    }

    /// The `jwks_uri`, discovering first if needed.
    pub(crate) async fn jwks_uri(&self) -> Result<Url, DiscoveryError> {
        let metadata = self.metadata().await?;
        let uri = metadata.jwks_uri.as_deref().ok_or(DiscoveryError::NoJwksUri)?;
        self.endpoint(uri).ok_or(DiscoveryError::NoJwksUri)
    }

    /// The `introspection_endpoint`, discovering first if needed.
    pub(crate) async fn introspection_endpoint(&self) -> Result<Url, DiscoveryError> {
        let metadata = self.metadata().await?;
        let uri =
            metadata.introspection_endpoint.as_deref().ok_or(DiscoveryError::NoIntrospectionEndpoint)?;
        self.endpoint(uri).ok_or(DiscoveryError::NoIntrospectionEndpoint)
    }

    /// An endpoint named by the metadata, if usable: an `https` issuer's endpoints must be
    /// `https` too (keys or our client secret over plain HTTP could be swapped or read on the
    /// way); an `http` issuer (development) may name either.
    fn endpoint(&self, uri: &str) -> Option<Url> {
        let url = Url::parse(uri).ok()?;
        let issuer_is_https = self.inner.locations[0].scheme() == "https";
        match url.scheme() {
            "https" => Some(url),
            "http" if !issuer_is_https => Some(url),
            _ => {
                tracing::warn!(issuer = %self.inner.issuer, endpoint = uri, "metadata endpoint refused: not https");
                None
            }
        }
    }

    async fn fetch(&self) -> Result<IssuerMetadata, DiscoveryError> {
        let mut last = None;
        for location in &self.inner.locations {
            match self.fetch_one(location).await {
                Ok(metadata) if metadata.issuer == self.inner.issuer => return Ok(metadata),
                // RFC 8414 §3.3: a document for another issuer is refused outright, not skipped.
                Ok(metadata) => {
                    return Err(DiscoveryError::IssuerMismatch {
                        expected: self.inner.issuer.clone(),
                        found: metadata.issuer,
                    });
                }
                // Not served here (404, an HTML catch-all page, a huge body): try the other
                // location. Only a network failure stops the search.
                Err(err @ DiscoveryError::NotMetadata(_)) => last = Some(err),
                Err(DiscoveryError::Transport(err)) if err.is_answer() => {
                    last = Some(DiscoveryError::Transport(err))
                }
                Err(err) => return Err(err),
            }
        }
        Err(last.unwrap_or(DiscoveryError::NoJwksUri))
    }

    async fn fetch_one(&self, location: &Url) -> Result<IssuerMetadata, DiscoveryError> {
        let inner = &self.inner;
        // No redirects: the metadata must come from the issuer's own locations.
        let (_, body) = inner
            .client
            .get(location.clone(), "application/json", inner.timeout, inner.max_body_bytes, 0)
            .await
            .map_err(DiscoveryError::Transport)?;
        serde_json::from_slice(&body).map_err(DiscoveryError::NotMetadata)
    }
}

impl fmt::Debug for Discovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Discovery")
            .field("issuer", &self.inner.issuer)
            .field("discovered", &self.cached().is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_locations_follow_both_specs() {
        let [oidc, rfc] = metadata_locations("https://as.example").unwrap();
        assert_eq!(oidc.as_str(), "https://as.example/.well-known/openid-configuration");
        assert_eq!(rfc.as_str(), "https://as.example/.well-known/oauth-authorization-server");
        let [oidc, rfc] = metadata_locations("https://as.example/tenant/one/").unwrap();
        assert_eq!(oidc.as_str(), "https://as.example/tenant/one/.well-known/openid-configuration");
        assert_eq!(rfc.as_str(), "https://as.example/.well-known/oauth-authorization-server/tenant/one");
        assert!(metadata_locations("ftp://as.example").is_err());
        assert!(metadata_locations("https://as.example/?tenant=1").is_err());
        assert!(metadata_locations("not a url").is_err());
    }

    #[test]
    fn an_https_issuer_only_names_https_endpoints() {
        let https = Discovery::builder("https://as.example").build().unwrap();
        assert!(https.endpoint("https://keys.example/jwks").is_some());
        assert!(https.endpoint("http://keys.example/jwks").is_none());
        assert!(https.endpoint("ftp://keys.example/jwks").is_none());
        assert!(https.endpoint("not a url").is_none());
        let http = Discovery::builder("http://127.0.0.1:8080").build().unwrap();
        assert!(http.endpoint("http://127.0.0.1:8080/jwks").is_some());
    }
}

//! Outbound HTTP: the one place this crate talks to the network (key sets, issuer metadata,
//! introspection). Every call is bounded in time (a per-request timeout, on top of the client's
//! connect timeout) and in size; redirects are followed only where the caller allows them, and
//! never from `https` to anything else. One client (one connection pool) is shared by default.
//!
//! reqwest is how it is done, not part of the API: [`HttpClient`] and [`TransportError`] wrap it,
//! so that this crate's semver is not tied to reqwest's.

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use http::header::{ACCEPT, LOCATION};
use http::{HeaderMap, StatusCode};

use crate::config::ConfigError;

/// Defaults of [`HttpClientBuilder`].
pub mod defaults {
    use std::time::Duration;
    /// Connect timeout.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
}

pub(crate) use reqwest::Url;

/// The HTTP client that key sets, discovery and introspection fetch with.
///
/// Cheap to clone (clones share one connection pool). Without one of your own, every part of
/// this crate shares a default client: a 2 s connect timeout, the system's proxy settings, the
/// built-in web roots, no cookies, no redirects of its own.
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::{HttpClient, KeySet};
///
/// let http = HttpClient::builder().connect_timeout(Duration::from_secs(1)).build()?;
/// let keys = KeySet::builder("https://issuer.example/jwks.json").http_client(http).build()?;
/// # Ok::<(), tower_bearer::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HttpClient")
    }
}

/// Builder for [`HttpClient`].
#[derive(Debug, Default)]
pub struct HttpClientBuilder {
    connect_timeout: Option<Duration>,
    roots: Vec<Vec<u8>>,
    proxy: Option<String>,
    no_proxy: bool,
    max_idle_per_host: Option<usize>,
}

impl HttpClientBuilder {
    /// Connect timeout (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }
    /// Also trusts the certificate authorities of this PEM bundle (a private issuer's CA).
    pub fn add_root_certificates_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.roots.push(pem.as_ref().to_vec());
        self
    }
    /// Sends every request through this proxy (`http://…`, `https://…` or `socks5://…` where
    /// supported).
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = Some(url.into());
        self
    }
    /// Ignores the system's proxy settings (`HTTP_PROXY` and friends).
    pub fn no_proxy(mut self) -> Self {
        self.no_proxy = true;
        self
    }
    /// Most idle connections kept per host (default: no limit); `0` dials anew for every call.
    pub fn max_idle_per_host(mut self, connections: usize) -> Self {
        self.max_idle_per_host = Some(connections);
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<HttpClient, ConfigError> {
        let failed = |e: reqwest::Error| ConfigError::HttpClient(e.to_string());
        let mut builder = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout.unwrap_or(defaults::CONNECT_TIMEOUT))
            // Redirects are followed by `get`, where the caller allows them (no downgrade).
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tower-bearer/", env!("CARGO_PKG_VERSION")));
        for pem in &self.roots {
            for certificate in reqwest::Certificate::from_pem_bundle(pem).map_err(failed)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        if let Some(proxy) = &self.proxy {
            builder = builder.proxy(reqwest::Proxy::all(proxy).map_err(failed)?);
        }
        if self.no_proxy {
            builder = builder.no_proxy();
        }
        if let Some(n) = self.max_idle_per_host {
            builder = builder.pool_max_idle_per_host(n);
        }
        Ok(HttpClient { inner: builder.build().map_err(failed)? })
    }
}

impl HttpClient {
    /// A builder with the defaults of the shared client.
    pub fn builder() -> HttpClientBuilder {
        HttpClientBuilder::default()
    }

    /// The client shared by every part of this crate that was given none, built on first use.
    pub(crate) fn shared() -> Result<HttpClient, ConfigError> {
        static SHARED: OnceLock<Result<HttpClient, ConfigError>> = OnceLock::new();
        SHARED.get_or_init(|| HttpClient::builder().build()).clone()
    }

    /// The shared client, or one with this connect timeout when it differs from the default.
    pub(crate) fn shared_or_with(connect_timeout: Option<Duration>) -> Result<HttpClient, ConfigError> {
        match connect_timeout {
            Some(timeout) if timeout != defaults::CONNECT_TIMEOUT => {
                HttpClient::builder().connect_timeout(timeout).build()
            }
            _ => HttpClient::shared(),
        }
    }

    /// `GET url`: a success status, then the body, bounded in time (`timeout`, on top of the
    /// connect timeout) and in size. Follows up to `max_redirects` redirects, never from `https`
    /// to anything else (keys fetched over plain HTTP could have been swapped on the way).
    pub(crate) async fn get(
        &self,
        mut url: Url,
        accept: &'static str,
        timeout: Duration,
        max_bytes: usize,
        max_redirects: usize,
    ) -> Result<(HeaderMap, Vec<u8>), TransportError> {
        let mut redirects = 0;
        loop {
            let request = self.inner.get(url.clone()).header(ACCEPT, accept).timeout(timeout);
            let response = request.send().await.map_err(TransportError::http)?;
            if response.status().is_redirection() && response.headers().contains_key(LOCATION) {
                if redirects == max_redirects {
                    return Err(TransportError::new(Kind::Redirect("redirects are not followed here")));
                }
                url = next_location(&url, response.headers())?;
                redirects += 1;
                continue;
            }
            return read(response, max_bytes).await;
        }
    }

    /// `POST` of `form` to `url` (no redirects: the form may carry a token and a secret), with
    /// the caller's authentication; a success status, then the body, bounded like [`Self::get`].
    pub(crate) async fn post_form(
        &self,
        url: Url,
        auth: Auth<'_>,
        form: &[(&str, &str)],
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<(HeaderMap, Vec<u8>), TransportError> {
        let mut request = self.inner.post(url).header(ACCEPT, "application/json").timeout(timeout).form(form);
        request = match auth {
            Auth::None => request,
            Auth::Basic { user, password } => request.basic_auth(user, Some(password)),
            Auth::Bearer(token) => request.bearer_auth(token),
        };
        read(request.send().await.map_err(TransportError::http)?, max_bytes).await
    }
}

/// How an outbound request authenticates.
pub(crate) enum Auth<'a> {
    None,
    Basic { user: &'a str, password: &'a str },
    Bearer(&'a str),
}

/// The target of a redirect, if following it keeps the rules.
fn next_location(from: &Url, headers: &HeaderMap) -> Result<Url, TransportError> {
    let location = headers.get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let to = from.join(location).map_err(|_| TransportError::new(Kind::Redirect("bad Location")))?;
    if !matches!(to.scheme(), "https" | "http") {
        return Err(TransportError::new(Kind::Redirect("redirect to a non-HTTP URL refused")));
    }
    if from.scheme() == "https" && to.scheme() != "https" {
        return Err(TransportError::new(Kind::Redirect("redirect from https to plain http refused")));
    }
    Ok(to)
}

/// A success status, then the body, giving up as soon as it passes `max` bytes.
async fn read(mut response: reqwest::Response, max: usize) -> Result<(HeaderMap, Vec<u8>), TransportError> {
    if !response.status().is_success() {
        return Err(TransportError::new(Kind::Status(response.status())));
    }
    if response.content_length().is_some_and(|len| len > max as u64) {
        return Err(TransportError::new(Kind::TooLarge));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(TransportError::http)? {
        if body.len() + chunk.len() > max {
            return Err(TransportError::new(Kind::TooLarge));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((std::mem::take(response.headers_mut()), body))
}

/// Parses a configured URL that this crate will fetch or publish: `https`, or `http` for
/// development.
pub(crate) fn http_url(what: &'static str, value: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value).map_err(|e| ConfigError::InvalidUrl { what, reason: e.to_string() })?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(ConfigError::InvalidUrl { what, reason: "scheme must be https or http".into() });
    }
    Ok(url)
}

/// `max-age` from a `Cache-Control` value; `no-cache`/`no-store` count as zero (callers clamp it
/// up to their minimum: a document that asks not to be cached would otherwise be fetched per
/// request).
pub(crate) fn max_age(value: &str) -> Option<Duration> {
    value.split(',').map(str::trim).find_map(|directive| {
        if directive.eq_ignore_ascii_case("no-cache") || directive.eq_ignore_ascii_case("no-store") {
            return Some(Duration::ZERO);
        }
        let (name, secs) = directive.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| secs.trim().trim_matches('"').parse().ok().map(Duration::from_secs))
            .flatten()
    })
}

/// Why an outbound request failed, at the transport level: connecting, sending, reading, the
/// status, the size or a redirect. Logged; never shown to clients.
pub struct TransportError {
    kind: Kind,
    source: Option<reqwest::Error>,
}

#[derive(Debug)]
enum Kind {
    Timeout,
    Connect,
    Request,
    Status(StatusCode),
    TooLarge,
    Redirect(&'static str),
}

impl TransportError {
    fn new(kind: Kind) -> Self {
        TransportError { kind, source: None }
    }

    fn http(e: reqwest::Error) -> Self {
        let kind = if e.is_timeout() {
            Kind::Timeout
        } else if e.is_connect() {
            Kind::Connect
        } else {
            Kind::Request
        };
        TransportError { kind, source: Some(e) }
    }

    /// The request timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Timeout)
    }
    /// No connection could be made.
    pub fn is_connect(&self) -> bool {
        matches!(self.kind, Kind::Connect)
    }
    /// The body was larger than the configured bound.
    pub fn is_too_large(&self) -> bool {
        matches!(self.kind, Kind::TooLarge)
    }
    /// The non-success status the server answered with, if that is what failed.
    pub fn status(&self) -> Option<StatusCode> {
        match self.kind {
            Kind::Status(status) => Some(status),
            _ => None,
        }
    }
    /// Whether the server answered, but not with what was asked for (a status, a size): the
    /// resource is not there, as opposed to the server not being reachable.
    pub(crate) fn is_answer(&self) -> bool {
        matches!(self.kind, Kind::Status(_) | Kind::TooLarge)
    }
}

impl fmt::Debug for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportError").field("kind", &self.kind).field("source", &self.source).finish()
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Timeout => f.write_str("timed out")?,
            Kind::Connect => f.write_str("cannot connect")?,
            Kind::Request => f.write_str("request failed")?,
            Kind::Status(status) => return write!(f, "unexpected status {status}"),
            Kind::TooLarge => return f.write_str("body exceeds the size bound"),
            Kind::Redirect(why) => return f.write_str(why),
        }
        match &self.source {
            Some(source) => write!(f, ": {source}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_parsing() {
        assert_eq!(max_age("public, max-age=600"), Some(Duration::from_secs(600)));
        assert_eq!(max_age("MAX-AGE = \"60\""), Some(Duration::from_secs(60)));
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=abc"), None);
    }

    #[test]
    fn redirects_never_downgrade() {
        let to = |location: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(LOCATION, location.parse().unwrap());
            headers
        };
        let https = Url::parse("https://as.example/jwks").unwrap();
        let http = Url::parse("http://as.example/jwks").unwrap();
        assert_eq!(next_location(&https, &to("/keys")).unwrap().as_str(), "https://as.example/keys");
        assert!(next_location(&https, &to("http://as.example/keys")).is_err());
        assert!(next_location(&http, &to("ftp://as.example/keys")).is_err());
        assert_eq!(
            next_location(&http, &to("https://cdn.example/k")).unwrap().as_str(),
            "https://cdn.example/k"
        );
    }
}

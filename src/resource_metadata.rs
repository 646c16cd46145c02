//! OAuth 2.0 Protected Resource Metadata (RFC 9728): the document that tells a client which
//! authorization servers issue tokens for this API, and the `resource_metadata` challenge
//! parameter that points a client at it from a `401`.

use std::convert::Infallible;
use std::fmt;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;
use tower_service::Service;

use crate::config::ConfigError;
use crate::extract::TokenSources;
use crate::outbound::http_url;

/// The well-known path segment of RFC 9728 §3.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// An RFC 9728 protected-resource metadata document, built from configuration (never from a
/// request's `Host` header), and the tower [`Service`] that serves it.
///
/// ```
/// use tower_bearer::{BearerLayer, JwtValidator, ProtectedResource, TokenSources};
///
/// let metadata = ProtectedResource::builder("https://api.example/v1")
///     .authorization_server("https://as.example")
///     .scopes_supported(["items:read", "items:write"])
///     .resource_name("Example API")
///     .build()?;
/// assert_eq!(metadata.well_known_path(), "/.well-known/oauth-protected-resource/v1");
/// assert_eq!(metadata.metadata_url(), "https://api.example/.well-known/oauth-protected-resource/v1");
/// // axum: Router::new().route_service(&metadata.well_known_path(), metadata.service())
/// // and every challenge points at it:
/// # let validator = JwtValidator::builder().any_issuer().any_audience().hmac_secret([7; 32]).build()?;
/// let layer = BearerLayer::new(validator).protected_resource(&metadata);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ProtectedResource {
    inner: Arc<Inner>,
}

struct Inner {
    document: Bytes,
    well_known_path: String,
    metadata_url: String,
}

/// The document's members (RFC 9728 §2). Empty lists and unset fields are omitted.
#[derive(Serialize)]
struct Document<'a> {
    resource: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    authorization_servers: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    scopes_supported: &'a [String],
    bearer_methods_supported: &'a [&'static str],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    resource_signing_alg_values_supported: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_documentation: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_policy_uri: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_tos_uri: Option<&'a str>,
}

/// Builder for [`ProtectedResource`].
#[derive(Debug, Clone)]
pub struct ProtectedResourceBuilder {
    resource: String,
    authorization_servers: Vec<String>,
    scopes_supported: Vec<String>,
    sources: TokenSources,
    form: bool,
    signing_algs: Vec<String>,
    name: Option<String>,
    documentation: Option<String>,
    policy_uri: Option<String>,
    tos_uri: Option<String>,
}

impl ProtectedResourceBuilder {
    /// An authorization server (its issuer identifier) whose tokens this resource accepts. Call
    /// once per issuer.
    pub fn authorization_server(mut self, issuer: impl Into<String>) -> Self {
        self.authorization_servers.push(issuer.into());
        self
    }
    /// The scopes the resource uses in authorization decisions.
    pub fn scopes_supported<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes_supported.extend(scopes.into_iter().map(Into::into));
        self
    }
    /// How tokens may be sent: the same [`TokenSources`] as the bearer layer's (`header`
    /// always; `query` when enabled). Cookies are not an RFC 6750 method and are not listed.
    pub fn bearer_methods(mut self, sources: &TokenSources) -> Self {
        self.sources = sources.clone();
        self
    }
    /// Lists the RFC 6750 §2.2 form-body method (when a
    /// [`FormTokenLayer`](crate::form::FormTokenLayer) is in front of the bearer layer).
    pub fn form_body_method(mut self) -> Self {
        self.form = true;
        self
    }
    /// `resource_signing_alg_values_supported`: the JWS algorithms this resource uses to *sign
    /// its responses*, if it signs any (this crate does not; leave it unset unless your service
    /// does).
    pub fn resource_signing_algs<S: Into<String>>(mut self, algs: impl IntoIterator<Item = S>) -> Self {
        self.signing_algs.extend(algs.into_iter().map(Into::into));
        self
    }
    /// A human-readable name.
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// A page with documentation for developers.
    pub fn resource_documentation(mut self, url: impl Into<String>) -> Self {
        self.documentation = Some(url.into());
        self
    }
    /// The resource's policy on data use.
    pub fn resource_policy_uri(mut self, url: impl Into<String>) -> Self {
        self.policy_uri = Some(url.into());
        self
    }
    /// The resource's terms of service.
    pub fn resource_tos_uri(mut self, url: impl Into<String>) -> Self {
        self.tos_uri = Some(url.into());
        self
    }

    /// Checks the URLs and renders the document once.
    pub fn build(self) -> Result<ProtectedResource, ConfigError> {
        let invalid = |what, reason: &str| ConfigError::InvalidUrl { what, reason: reason.into() };
        let url = http_url("resource", &self.resource)?;
        // RFC 9728 §1.2: the resource identifier has no fragment (and we refuse a query, which
        // would make the well-known path ambiguous).
        if url.fragment().is_some() || url.query().is_some() {
            return Err(invalid("resource", "a resource identifier has no query or fragment"));
        }
        for (what, value) in [
            ("resource_documentation", &self.documentation),
            ("resource_policy_uri", &self.policy_uri),
            ("resource_tos_uri", &self.tos_uri),
        ] {
            if let Some(value) = value {
                http_url(what, value)?;
            }
        }
        for server in &self.authorization_servers {
            http_url("authorization_servers", server)?;
        }
        let mut methods = vec!["header"];
        if self.form {
            methods.push("body");
        }
        if self.sources.query {
            methods.push("query");
        }
        let document = Document {
            resource: &self.resource,
            authorization_servers: &self.authorization_servers,
            scopes_supported: &self.scopes_supported,
            bearer_methods_supported: &methods,
            resource_signing_alg_values_supported: &self.signing_algs,
            resource_name: self.name.as_deref(),
            resource_documentation: self.documentation.as_deref(),
            resource_policy_uri: self.policy_uri.as_deref(),
            resource_tos_uri: self.tos_uri.as_deref(),
        };
        let document = serde_json::to_vec(&document).map_err(|_| ConfigError::Invalid("metadata"))?;
        // RFC 9728 §3.1: the well-known segment goes between the host and the resource's path.
        let path = url.path().trim_end_matches('/');
        let well_known_path = format!("{WELL_KNOWN}{path}");
        let mut metadata_url = url.clone();
        metadata_url.set_path(&well_known_path);
        Ok(ProtectedResource {
            inner: Arc::new(Inner {
                document: document.into(),
                well_known_path,
                metadata_url: metadata_url.into(),
            }),
        })
    }
}

impl ProtectedResource {
    /// Metadata for the resource identified by `resource` (its public `https` URL, as clients
    /// name it in RFC 8707 `resource` parameters).
    pub fn builder(resource: impl Into<String>) -> ProtectedResourceBuilder {
        ProtectedResourceBuilder {
            resource: resource.into(),
            authorization_servers: Vec::new(),
            scopes_supported: Vec::new(),
            sources: TokenSources::default(),
            form: false,
            signing_algs: Vec::new(),
            name: None,
            documentation: None,
            policy_uri: None,
            tos_uri: None,
        }
    }

    /// The path to serve the document at: `/.well-known/oauth-protected-resource` followed by
    /// the resource's path.
    pub fn well_known_path(&self) -> &str {
        &self.inner.well_known_path
    }

    /// The document's public URL: what goes into `resource_metadata` challenges.
    pub fn metadata_url(&self) -> &str {
        &self.inner.metadata_url
    }

    /// The JSON document.
    pub fn document(&self) -> &[u8] {
        &self.inner.document
    }

    /// A tower service answering `GET`/`HEAD` with the document (`405` otherwise). Mount it at
    /// [`Self::well_known_path`], outside the bearer layer: the document is public.
    pub fn service(&self) -> MetadataService {
        MetadataService { metadata: self.clone() }
    }
}

impl fmt::Debug for ProtectedResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProtectedResource").field("metadata_url", &self.inner.metadata_url).finish()
    }
}

/// Serves a [`ProtectedResource`] document. Made by [`ProtectedResource::service`].
#[derive(Clone, Debug)]
pub struct MetadataService {
    metadata: ProtectedResource,
}

impl<B> Service<Request<B>> for MetadataService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let response = match *req.method() {
            Method::GET | Method::HEAD => {
                let body = if req.method() == Method::HEAD {
                    Bytes::new()
                } else {
                    self.metadata.inner.document.clone()
                };
                let mut res = Response::new(Full::new(body));
                let headers = res.headers_mut();
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                headers.insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
                res
            }
            _ => {
                let mut res = Response::new(Full::new(Bytes::new()));
                *res.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
                res.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
                res
            }
        };
        ready(Ok(response))
    }
}

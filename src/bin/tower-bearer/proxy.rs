//! Forwarding to the upstreams: one pooled hyper-util client each (HTTP/1.1, or HTTP/2 where
//! configured; TLS with the system roots or a configured CA), bodies streamed both ways,
//! hop-by-hop headers removed (RFC 9110 §7.6.1), upgrades spliced.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::Upstream;
use crate::forwarded::Forwarding;
use crate::hop_by_hop::strip_hop_by_hop;
use crate::idle::{IdleTimeout, Progress};

/// What the listener knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Connected {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// One upstream and how to reach it.
#[derive(Clone)]
pub struct Forwarder {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    /// `scheme://authority` of the upstream.
    base: String,
    /// The upstream URL's path without its trailing `/` (`""` for the root).
    prefix: String,
    authority: HeaderValue,
    /// `host:port` for the health check.
    address: String,
    timeout: Duration,
    idle_timeout: Option<Duration>,
    connect_timeout: Duration,
    /// Prior-knowledge HTTP/2: no Host header, no upgrades.
    h2c: bool,
    pub name: String,
}

/// Why forwarding failed.
pub enum ForwardError {
    /// Could not connect, or the connection broke before a response: `502`.
    Unreachable(hyper_util::client::legacy::Error),
    /// No response headers within the timeout: `504`.
    Timeout,
    /// The client's body sent nothing for the idle timeout before the upstream answered: `408`.
    UploadStalled,
    /// The client's body broke off (its connection closed or reset mid-upload) before the
    /// upstream answered: `400`, and no blame on the upstream.
    UploadBroken,
    /// An upgrade to an upstream that speaks HTTP/2 only: `502`.
    NoUpgrade,
    /// The upstream's base and prefix with the request's path and query make no URI (longer
    /// than the 64 KiB the `http` crate takes, with a large `max_header_bytes`): `414`.
    TargetTooLong,
}

impl Forwarder {
    pub fn new(upstream: &Upstream) -> Result<Forwarder, String> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(upstream.connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let https = upstream.url.scheme_str() == Some("https");
        let builder = match &upstream.ca_file {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in crate::tls::read_certs(ca)? {
                    roots.add(cert).map_err(|e| format!("{}: {e}", ca.display()))?;
                }
                let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                HttpsConnectorBuilder::new().with_tls_config(config)
            }
            None => HttpsConnectorBuilder::new()
                .with_provider_and_native_roots(crate::tls::provider())
                .map_err(|e| format!("system root certificates: {e}"))?,
        };
        // SNI is the upstream URL's host (hyper-rustls' default).
        let builder = builder.https_or_http().enable_http1();
        let connector = if upstream.http2 {
            builder.enable_http2().wrap_connector(http)
        } else {
            builder.wrap_connector(http)
        };
        let mut client = Client::builder(TokioExecutor::new());
        client
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(upstream.pool_max_idle)
            .http2_only(upstream.http2 && !https);
        // Only ever set with `http2` (the configuration checks it).
        if let Some(every) = upstream.http2_keep_alive {
            client
                .timer(TokioTimer::new())
                .http2_keep_alive_interval(every)
                .http2_keep_alive_timeout(every)
                .http2_keep_alive_while_idle(true);
        }
        let client = client.build(connector);
        let authority = upstream.url.authority().expect("checked: the upstream URL has a host");
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        Ok(Forwarder {
            client,
            base: format!("{}://{authority}", if https { "https" } else { "http" }),
            prefix: upstream.url.path().trim_end_matches('/').to_owned(),
            authority: HeaderValue::from_str(authority.as_str())
                .expect("an authority is a valid header value"),
            address: format!("{}:{port}", authority.host().trim_start_matches('[').trim_end_matches(']')),
            timeout: upstream.timeout,
            idle_timeout: upstream.idle_timeout,
            connect_timeout: upstream.connect_timeout,
            h2c: upstream.http2 && !https,
            name: upstream.name.clone().unwrap_or_else(|| "default".to_owned()),
        })
    }

    /// Whether the upstream accepts TCP connections now (for `/readyz`).
    pub async fn reachable(&self) -> bool {
        let host = self.address.rsplit_once(':').map_or(self.address.as_str(), |(h, _)| h);
        let port: u16 = self.address.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(80);
        matches!(
            tokio::time::timeout(self.connect_timeout, tokio::net::TcpStream::connect((host, port))).await,
            Ok(Ok(_))
        )
    }

    /// Sends `req` to the upstream at `path_and_query`, with the `identity` headers.
    pub async fn forward(
        &self,
        mut req: Request<Body>,
        identity: Vec<(HeaderName, HeaderValue)>,
        ends: Option<SystemTime>,
        path_and_query: &str,
        forwarding: &Forwarding,
    ) -> Result<Response<Body>, ForwardError> {
        // Normalised paths and the client's query make a valid URI, unless it is too long.
        let uri: Uri = format!("{}{}{}", self.base, self.prefix, path_and_query)
            .parse()
            .map_err(|_| ForwardError::TargetTooLong)?;
        let upgrade = crate::upgrade::requested(&req);
        if upgrade.is_some() && self.h2c {
            return Err(ForwardError::NoUpgrade);
        }
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        // HTTP/2 clients name the host in the URI (`:authority`), HTTP/1.1 clients in `Host`.
        let original_host = req
            .headers_mut()
            .remove(header::HOST)
            .or_else(|| req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
        let connected = req.extensions().get::<Connected>().copied();
        // `TE: trailers` is the one TE HTTP/2 allows, and gRPC servers expect it.
        let trailers = req
            .headers()
            .get_all(header::TE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
        strip_hop_by_hop(req.headers_mut());
        let headers = req.headers_mut();
        if let Some(c) = connected {
            forwarding.apply(headers, c.peer, if c.tls { "https" } else { "http" }, original_host);
        }
        // Last: a client's `Connection: x-auth-subject` (the hop-by-hop strip) or an untrusted
        // peer's forwarding claims (`X-Forwarded-User` is a common identity header name) would
        // otherwise remove the identity the upstream relies on.
        for (name, value) in identity {
            headers.insert(name, value);
        }
        if trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
        if let Some(protocol) = &upgrade {
            headers.insert(header::UPGRADE, protocol.clone());
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        if !self.h2c {
            headers.insert(header::HOST, self.authority.clone());
        }
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_11;
        let idle = self.idle_timeout;
        let progress = Arc::new(Progress::default());
        // Most requests (GET) have no body: nothing to time, nothing to wrap.
        let req = if req.body().is_end_stream() {
            progress.ended.notify_one();
            req
        } else {
            req.map(|body| Body::new(IdleTimeout::new(body, idle).reporting(progress.clone())))
        };
        let mut res = self.send(req, &progress).await?;
        if res.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client) = client_upgrade
        {
            let kept =
                (res.headers().get(header::UPGRADE).cloned(), res.headers().get(header::CONNECTION).cloned());
            crate::upgrade::splice(client, hyper::upgrade::on(&mut res), ends);
            let mut res = res.map(Body::new);
            strip_hop_by_hop(res.headers_mut());
            if let (Some(up), Some(conn)) = kept {
                res.headers_mut().insert(header::UPGRADE, up);
                res.headers_mut().insert(header::CONNECTION, conn);
            }
            return Ok(res);
        }
        let mut res = res.map(|body| Body::new(IdleTimeout::new(body, idle)));
        strip_hop_by_hop(res.headers_mut());
        Ok(res)
    }

    /// Sends `req` (whose body reports to `progress`) and waits for the response headers:
    /// `timeout` after the request body was sent, since a slow upload is the client's time
    /// (bounded by the idle timeout between its pieces). While it is being sent, the upstream
    /// must take a piece at least every `timeout`, unless the body is waiting for the client.
    async fn send(
        &self,
        req: Request<Body>,
        progress: &Progress,
    ) -> Result<Response<Incoming>, ForwardError> {
        let request = self.client.request(req);
        tokio::pin!(request);
        let mut taken = progress.frames();
        let answer = loop {
            tokio::select! {
                answer = &mut request => break answer,
                () = progress.ended.notified() => {
                    match tokio::time::timeout(self.timeout, &mut request).await {
                        Ok(answer) => break answer,
                        Err(_) => return Err(ForwardError::Timeout),
                    }
                }
                () = tokio::time::sleep(self.timeout) => {
                    // `waiting` first: a frame is counted before the body stops waiting.
                    let waiting = progress.waiting();
                    let now = progress.frames();
                    if now == taken && !waiting {
                        // The upstream took nothing for `timeout`, and not for want of data.
                        return Err(ForwardError::Timeout);
                    }
                    taken = now;
                }
            }
        };
        answer.map_err(|e| {
            // Cut for the client's silence, or by the client. (An HTTP/2 upstream sees a reset
            // stream, whose error does not carry ours: hence the flags rather than the error's
            // sources.)
            if progress.stalled() {
                ForwardError::UploadStalled
            } else if progress.broken() {
                ForwardError::UploadBroken
            } else {
                ForwardError::Unreachable(e)
            }
        })
    }
}

/// A short plain-text answer of ours.
pub fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut res = Response::new(Body::from(text));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

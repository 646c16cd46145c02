//! Forwarding to the upstream: hyper-util's pooled client, bodies streamed both ways,
//! hop-by-hop headers removed (RFC 9110 §7.6.1).

use std::time::Duration;

use axum::body::Body;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::Upstream;
use crate::hop_by_hop::strip_hop_by_hop;

/// The upstream and how to reach it.
#[derive(Clone)]
pub struct Forwarder {
    client: Client<HttpConnector, Body>,
    /// `scheme://authority` of the upstream.
    base: String,
    /// The upstream URL's path without its trailing `/` (`""` for the root).
    prefix: String,
    authority: HeaderValue,
    timeout: Duration,
}

/// Why forwarding failed.
pub enum ForwardError {
    /// Could not connect, or the connection broke before a response: `502`.
    Unreachable(hyper_util::client::legacy::Error),
    /// No response headers within the timeout: `504`.
    Timeout,
}

impl Forwarder {
    pub fn new(upstream: &Upstream) -> Forwarder {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(upstream.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let authority = upstream.url.authority().expect("checked: the upstream URL has a host");
        Forwarder {
            client,
            base: format!("http://{authority}"),
            prefix: upstream.url.path().trim_end_matches('/').to_owned(),
            authority: HeaderValue::from_str(authority.as_str())
                .expect("an authority is a valid header value"),
            timeout: upstream.timeout,
        }
    }

    /// Sends `req` (headers already prepared by the caller except hop-by-hop ones) to the
    /// upstream at `path_and_query`.
    pub async fn forward(
        &self,
        mut req: Request<Body>,
        path_and_query: &str,
    ) -> Result<Response<Body>, ForwardError> {
        let uri: Uri = format!("{}{}{}", self.base, self.prefix, path_and_query)
            .parse()
            .expect("normalised paths and the client's query make a valid URI");
        let original_host = req.headers_mut().remove(header::HOST);
        strip_hop_by_hop(req.headers_mut());
        let headers = req.headers_mut();
        if let Some(host) = original_host {
            headers.insert(HeaderName::from_static("x-forwarded-host"), host);
        }
        headers.insert(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static("http"));
        headers.insert(header::HOST, self.authority.clone());
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_11;
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => Err(ForwardError::Timeout),
            Ok(Err(e)) => Err(ForwardError::Unreachable(e)),
            Ok(Ok(res)) => {
                let mut res = res.map(Body::new);
                strip_hop_by_hop(res.headers_mut());
                Ok(res)
            }
        }
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

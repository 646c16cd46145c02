//! RFC 6750 §2.2: the access token as an `access_token` parameter of a form-encoded body.
//!
//! Reading a body is not free and changes nothing for other requests, so it is a layer of its
//! own: put [`FormTokenLayer`] *outside* [`BearerLayer`](crate::BearerLayer). It buffers
//! (bounded) only `application/x-www-form-urlencoded` `POST`/`PUT`/`PATCH` bodies, hands the
//! token to the bearer layer, and passes the body on intact, as a [`FormBody`]: any request
//! body works, hyper's `Incoming` included.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, header::CONTENT_TYPE};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Limited};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::{AuthBody, Dialect, Kind, Rejections, rejection_response};
use crate::error::{AuthError, InvalidRequest};
use crate::extract::FormToken;

/// Default bound on a form body read for a token.
pub const DEFAULT_MAX_FORM_BYTES: usize = 64 * 1024;

/// A [`Layer`] that finds `access_token` in form-encoded request bodies.
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_bearer::form::FormTokenLayer;
///
/// # fn stack<V: tower_bearer::Validator>(bearer: tower_bearer::BearerLayer<V>) {
/// let stack = ServiceBuilder::new().layer(FormTokenLayer::new()).layer(bearer);
/// # let _ = stack; }
/// ```
#[derive(Debug, Clone)]
pub struct FormTokenLayer {
    max_bytes: usize,
}

impl FormTokenLayer {
    /// Bodies up to 64 KiB.
    pub fn new() -> Self {
        FormTokenLayer { max_bytes: DEFAULT_MAX_FORM_BYTES }
    }
    /// Bound on the body read (larger bodies get `400 invalid_request`).
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }
}

impl Default for FormTokenLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for FormTokenLayer {
    type Service = FormTokenService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FormTokenService { inner, max_bytes: self.max_bytes }
    }
}

/// The [`Service`] made by [`FormTokenLayer`].
#[derive(Debug, Clone)]
pub struct FormTokenService<S> {
    inner: S,
    max_bytes: usize,
}

fn is_form(req: &Request<impl Sized>) -> bool {
    matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH)
        && req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

pin_project! {
    /// The request body [`FormTokenService`] hands on: the client's body untouched, or the form
    /// body it read, whole.
    pub struct FormBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

impl<B> FormBody<B> {
    fn untouched(body: B) -> Self {
        FormBody { kind: Kind::Inner { body } }
    }

    fn read(bytes: Bytes) -> Self {
        FormBody { kind: Kind::bytes(bytes) }
    }
}

impl<B> Body for FormBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().kind.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.kind.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.kind.size_hint()
    }
}

impl<B> fmt::Debug for FormBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            Kind::Inner { .. } => "FormBody::Untouched",
            Kind::Ours { .. } => "FormBody::Read",
        })
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqB, ResB> Service<Request<ReqB>> for FormTokenService<S>
where
    S: Service<Request<FormBody<ReqB>>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    ReqB: Body + Send + 'static,
    ReqB::Data: From<Bytes> + Send,
    ReqB::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResB: Send + 'static,
{
    type Response = Response<AuthBody<ResB>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        if !is_form(&req) {
            let future = self.inner.call(req.map(FormBody::untouched));
            return Box::pin(async move { future.await.map(|res| res.map(AuthBody::inner)) });
        }
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        let max = self.max_bytes;
        // Only form-encoded requests get here, never gRPC ones: rejections are plain HTTP.
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let bytes = match Limited::new(body, max).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => {
                    // Too large, or the client stopped sending: either way not a usable request.
                    let err = AuthError::InvalidRequest(InvalidRequest::MalformedToken);
                    return Ok(rejection_response(&err, &Rejections::default(), Dialect::Http));
                }
            };
            let mut tokens = form_urlencoded::parse(&bytes).filter(|(k, _)| k == "access_token");
            match (tokens.next(), tokens.next()) {
                (Some((_, token)), None) => {
                    parts.extensions.insert(FormToken(token.into_owned()));
                }
                (Some(_), Some(_)) => {
                    let err = AuthError::InvalidRequest(InvalidRequest::MultipleTokenSources);
                    return Ok(rejection_response(&err, &Rejections::default(), Dialect::Http));
                }
                _ => {}
            }
            let req = Request::from_parts(parts, FormBody::read(bytes));
            ready.call(req).await.map(|res| res.map(AuthBody::inner))
        })
    }
}

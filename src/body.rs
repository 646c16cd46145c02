//! The response body of the middlewares: the inner service's body, or our own short one.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::error::{AuthError, ChallengeParams};

pin_project! {
    /// Response body of [`BearerService`](crate::BearerService) and
    /// [`RequireScopeService`](crate::scope::RequireScopeService): either the inner service's
    /// body, untouched, or the short body of a rejection.
    pub struct AuthBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Rejection { data: Option<Bytes> },
    }
}

impl<B: fmt::Debug> fmt::Debug for AuthBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Inner { body } => f.debug_tuple("AuthBody::Inner").field(body).finish(),
            Kind::Rejection { data } => f.debug_tuple("AuthBody::Rejection").field(data).finish(),
        }
    }
}

impl<B> AuthBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        AuthBody { kind: Kind::Inner { body } }
    }

    pub(crate) fn rejection(data: Bytes) -> Self {
        AuthBody { kind: Kind::Rejection { data: (!data.is_empty()).then_some(data) } }
    }
}

impl<B> Body for AuthBody<B>
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
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Rejection { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d.into())))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Rejection { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Rejection { data } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}

/// A function that renders a rejection body: content type and bytes, or `None` for no body.
pub type RenderFn = dyn Fn(&AuthError) -> Option<(HeaderValue, Bytes)> + Send + Sync;

/// What the body of a rejection holds. The status and `WWW-Authenticate` challenge are the same
/// whichever you choose.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum ErrorBody {
    /// No body for `400`/`401`/`403` (RFC 6750 puts everything in the header); a short
    /// `text/plain` explanation for `503`, whose failure is ours. The default.
    #[default]
    Empty,
    /// RFC 9457 `application/problem+json` with a stable `type` per error kind
    /// (`urn:tower-bearer:error:<reason>`, e.g. `urn:tower-bearer:error:expired`).
    ProblemJson,
    /// Your own function: return the content type and body, or `None` for an empty body.
    Custom(Arc<RenderFn>),
}

impl ErrorBody {
    /// A body made by `f`.
    ///
    /// ```
    /// use tower_bearer::ErrorBody;
    ///
    /// let body = ErrorBody::custom(|err| {
    ///     let json = format!(r#"{{"error":"{}"}}"#, err.reason());
    ///     Some((http::HeaderValue::from_static("application/json"), json.into()))
    /// });
    /// # let _ = body;
    /// ```
    pub fn custom(f: impl Fn(&AuthError) -> Option<(HeaderValue, Bytes)> + Send + Sync + 'static) -> Self {
        ErrorBody::Custom(Arc::new(f))
    }

    fn render(&self, err: &AuthError) -> Option<(HeaderValue, Bytes)> {
        match self {
            ErrorBody::Empty if err.is_server_error() => Some((
                HeaderValue::from_static("text/plain; charset=utf-8"),
                Bytes::from_static(b"authorization is temporarily unavailable\n"),
            )),
            ErrorBody::Empty => None,
            ErrorBody::ProblemJson => {
                let problem = serde_json::json!({
                    "type": format!("urn:tower-bearer:error:{}", err.reason()),
                    "title": err.error_code().unwrap_or(if err.is_server_error() {
                        "temporarily_unavailable"
                    } else {
                        "unauthorized"
                    }),
                    "status": err.status().as_u16(),
                    "detail": err.description(),
                });
                Some((HeaderValue::from_static("application/problem+json"), problem.to_string().into()))
            }
            ErrorBody::Custom(f) => f(err),
        }
    }
}

impl fmt::Debug for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorBody::Empty => "Empty",
            ErrorBody::ProblemJson => "ProblemJson",
            ErrorBody::Custom(_) => "Custom(..)",
        })
    }
}

/// How rejections are rendered: the challenge parameters and the body style. Set on
/// [`BearerLayer`](crate::BearerLayer) and carried in the request extensions, so that guards
/// further in ([`RequireScope`](crate::RequireScope), extractors) answer the same way.
#[derive(Clone, Debug, Default)]
pub(crate) struct Rejections(pub(crate) Arc<RejectionSettings>);

#[derive(Clone, Debug, Default)]
pub(crate) struct RejectionSettings {
    pub(crate) params: ChallengeParams,
    pub(crate) body: ErrorBody,
}

/// Put in the extensions of a response rendered from an [`AuthError`] by code that does not know
/// the layer's settings (a handler's `?`), so that the [`BearerLayer`](crate::BearerLayer) around
/// it renders the error again with its realm and body style.
#[cfg_attr(not(feature = "axum"), allow(dead_code))]
#[derive(Clone, Debug)]
pub(crate) struct HandlerRejection(pub(crate) AuthError);

/// Builds the response for a rejection: status, RFC 6750 challenge, body as configured.
pub(crate) fn rejection_response<B>(err: &AuthError, how: &Rejections) -> Response<AuthBody<B>> {
    let rendered = how.0.body.render(err);
    let (content_type, body) = match rendered {
        Some((ct, body)) => (Some(ct), body),
        None => (None, Bytes::new()),
    };
    let mut res = Response::new(AuthBody::rejection(body));
    *res.status_mut() = err.status();
    let headers = res.headers_mut();
    if let Some(challenge) = err.challenge(&how.0.params) {
        headers.insert(header::WWW_AUTHENTICATE, challenge);
    }
    if let Some(ct) = content_type {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    if err.is_server_error() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    // Challenges depend on the credentials sent: never let a shared cache replay them.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

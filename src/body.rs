//! The response body of the middlewares: the inner service's body, or our own short one.

use std::fmt;
use std::pin::Pin;
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
        AuthBody {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn rejection(data: Bytes) -> Self {
        AuthBody {
            kind: Kind::Rejection {
                data: (!data.is_empty()).then_some(data),
            },
        }
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
            KindProj::Rejection { data } => {
                Poll::Ready(data.take().map(|d| Ok(Frame::data(d.into()))))
            }
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
            Kind::Rejection { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

/// Builds the response for a rejection: status, RFC 6750 challenge, and a body only for `503`
/// (the client is owed an explanation when the failure is ours).
pub(crate) fn rejection_response<B>(
    err: &AuthError,
    params: &ChallengeParams,
) -> Response<AuthBody<B>> {
    let body = if err.is_server_error() {
        Bytes::from_static(b"authorization is temporarily unavailable\n")
    } else {
        Bytes::new()
    };
    let has_body = !body.is_empty();
    let mut res = Response::new(AuthBody::rejection(body));
    *res.status_mut() = err.status();
    let headers = res.headers_mut();
    if let Some(challenge) = err.challenge(params) {
        headers.insert(header::WWW_AUTHENTICATE, challenge);
    }
    if has_body {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    if err.is_server_error() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    // Challenges depend on the credentials sent: never let a shared cache replay them.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

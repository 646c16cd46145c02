//! The response body of the middlewares (the inner service's body, or our own short one), and
//! how a rejection is rendered: an HTTP status with an RFC 6750 challenge, or a gRPC status.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::error::{AuthError, ChallengeParams, Scheme};

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
    /// A body passed through, or bytes of our own (shared with [`FormBody`](crate::form::FormBody)).
    #[project = KindProj]
    pub(crate) enum Kind<B> {
        Inner { #[pin] body: B },
        Ours { data: Option<Bytes> },
    }
}

impl<B: fmt::Debug> fmt::Debug for AuthBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Inner { body } => f.debug_tuple("AuthBody::Inner").field(body).finish(),
            Kind::Ours { data } => f.debug_tuple("AuthBody::Rejection").field(data).finish(),
        }
    }
}

impl<B> AuthBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        AuthBody { kind: Kind::Inner { body } }
    }

    pub(crate) fn rejection(data: Bytes) -> Self {
        AuthBody { kind: Kind::bytes(data) }
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
        self.project().kind.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.kind.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.kind.size_hint()
    }
}

impl<B> Kind<B> {
    pub(crate) fn bytes(data: Bytes) -> Self {
        Kind::Ours { data: (!data.is_empty()).then_some(data) }
    }
}

/// The body of [`AuthBody`] and of the form layer's requests: a body passed through, or bytes
/// of our own.
impl<B> Body for Kind<B>
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
        match self.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Ours { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d.into())))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Ours { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Kind::Inner { body } => body.size_hint(),
            Kind::Ours { data } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}

/// A function that renders a rejection body: content type and bytes, or `None` for no body.
pub type RenderFn = dyn Fn(&AuthError) -> Option<(HeaderValue, Bytes)> + Send + Sync;

/// What the body of a rejection holds. The status and `WWW-Authenticate` challenge are the same
/// whichever you choose. gRPC requests get no body at all (their answer is a trailers-only gRPC
/// status).
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
                    "title": err.error_code().unwrap_or(match err {
                        AuthError::Unavailable(_) => "temporarily_unavailable",
                        AuthError::Throttled(_) => "too_many_requests",
                        _ => "unauthorized",
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
/// the layer's settings (a handler's `?`, an extractor, [`RequireScope`](crate::RequireScope)),
/// so that the [`BearerLayer`](crate::BearerLayer) around it renders the error again with its
/// realm, body style and scheme. The layer's settings never travel in the request: on the way
/// in, that would cost every request an extension; on the way out only refusals pay.
#[derive(Clone, Debug)]
pub(crate) struct HandlerRejection {
    pub(crate) error: AuthError,
    /// Whether the layer counts it as a scope rejection (a handler's `?`): `RequireScope` counts
    /// its own, and an extractor's refusal is not a scope decision.
    pub(crate) count: bool,
}

impl HandlerRejection {
    /// The refusal of `error`, rendered with default settings (what a client gets where no layer
    /// is around) and marked for the layer to render again.
    pub(crate) fn render<B>(error: AuthError, dialect: Dialect, count: bool) -> Response<AuthBody<B>> {
        let mut response = rejection_response(&error, &Rejections::default(), dialect);
        response.extensions_mut().insert(HandlerRejection { error, count });
        response
    }
}

/// Whom a rejection is for: an HTTP client, or a gRPC client, which reads its answer from
/// `grpc-status` and maps HTTP statuses through a table meant for proxies (`400` would become
/// `INTERNAL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Http,
    Grpc,
}

impl Dialect {
    /// gRPC when the request's `content-type` starts with `application/grpc` (gRPC over HTTP/2:
    /// `application/grpc`, `application/grpc+proto`, …).
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        const GRPC: &[u8] = b"application/grpc";
        match headers.get(header::CONTENT_TYPE) {
            Some(ct) if ct.as_bytes().get(..GRPC.len()).is_some_and(|p| p.eq_ignore_ascii_case(GRPC)) => {
                Dialect::Grpc
            }
            _ => Dialect::Http,
        }
    }
}

/// Builds the response for a rejection: status, RFC 6750 challenge, body as configured; for a
/// gRPC request, a trailers-only gRPC response instead.
pub(crate) fn rejection_response<B>(
    err: &AuthError,
    how: &Rejections,
    dialect: Dialect,
) -> Response<AuthBody<B>> {
    let scheme = if how.0.params.used_dpop { Scheme::Dpop } else { Scheme::Bearer };
    rejection_response_for(err, how, dialect, scheme)
}

/// A rejection of credentials sent under `scheme` (the error's challenge uses that scheme).
pub(crate) fn rejection_response_for<B>(
    err: &AuthError,
    how: &Rejections,
    dialect: Dialect,
    scheme: Scheme,
) -> Response<AuthBody<B>> {
    let mut res = match dialect {
        Dialect::Http => http_rejection(err, how),
        Dialect::Grpc => grpc_rejection(err),
    };
    let headers = res.headers_mut();
    if let Some(challenge) = err.challenge_for(&how.0.params, scheme) {
        headers.insert(header::WWW_AUTHENTICATE, challenge);
    }
    // Challenges depend on the credentials sent: never let a shared cache replay them.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn http_rejection<B>(err: &AuthError, how: &Rejections) -> Response<AuthBody<B>> {
    let (content_type, body) = match how.0.body.render(err) {
        Some((ct, body)) => (Some(ct), body),
        None => (None, Bytes::new()),
    };
    let mut res = Response::new(AuthBody::rejection(body));
    *res.status_mut() = err.status();
    let headers = res.headers_mut();
    if let Some(ct) = content_type {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    if err.is_try_later() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    res
}

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// A trailers-only gRPC response: HTTP `200`, the status in the headers, no body (a body would
/// be read as a message). The configured [`ErrorBody`] does not apply.
fn grpc_rejection<B>(err: &AuthError) -> Response<AuthBody<B>> {
    let mut res = Response::new(AuthBody::rejection(Bytes::new()));
    *res.status_mut() = StatusCode::OK;
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(GRPC_STATUS, HeaderValue::from(err.grpc_status()));
    if let Ok(message) = HeaderValue::try_from(grpc_percent_encode(err.description())) {
        headers.insert(GRPC_MESSAGE, message);
    }
    res
}

/// `grpc-message` encoding (gRPC over HTTP/2, "Responses"): bytes outside `0x20..=0x7E`, and
/// `%` itself, become `%XX`.
fn grpc_percent_encode(message: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7E).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{InvalidRequest, InvalidToken, Throttled, Unavailable};

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(grpc_percent_encode("the access token expired"), "the access token expired");
        assert_eq!(grpc_percent_encode("100% caf\u{e9}\n~"), "100%25 caf%C3%A9%0A~");
    }

    #[test]
    fn dialect_follows_the_content_type() {
        let of = |ct: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            Dialect::of(&headers)
        };
        assert_eq!(of("application/grpc"), Dialect::Grpc);
        assert_eq!(of("application/grpc+proto"), Dialect::Grpc);
        assert_eq!(of("Application/GRPC"), Dialect::Grpc);
        assert_eq!(of("application/json"), Dialect::Http);
        assert_eq!(of("application/grp"), Dialect::Http);
        assert_eq!(Dialect::of(&HeaderMap::new()), Dialect::Http);
    }

    #[test]
    fn grpc_rejections_are_trailers_only() {
        let how = Rejections(Arc::new(RejectionSettings {
            params: ChallengeParams::new().realm("api"),
            body: ErrorBody::ProblemJson,
        }));
        let cases = [
            (AuthError::MissingToken, "16"),
            (AuthError::InvalidRequest(InvalidRequest::MalformedToken), "16"),
            (AuthError::InvalidToken(InvalidToken::Expired), "16"),
            (AuthError::InsufficientScope { required: "a".into() }, "7"),
            (AuthError::Unavailable(Unavailable::KeySet), "14"),
            (AuthError::Throttled(Throttled::DpopProofs), "8"),
        ];
        for (err, code) in cases {
            let res = rejection_response::<String>(&err, &how, Dialect::Grpc);
            assert_eq!(res.status(), StatusCode::OK, "{err:?}");
            assert_eq!(res.headers()["content-type"], "application/grpc");
            assert_eq!(res.headers()["grpc-status"], code, "{err:?}");
            assert_eq!(res.headers()["grpc-message"], err.description());
            assert_eq!(res.headers().get("www-authenticate"), err.challenge(&how.0.params).as_ref());
            assert!(res.body().is_end_stream(), "no body, whatever the ErrorBody");
        }
    }
}

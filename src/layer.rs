//! [`BearerLayer`], [`BearerService`] and their response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use http::HeaderValue;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};

use crate::binding::{self, Checked};
use crate::body::{
    AuthBody, Dialect, ErrorBody, HandlerRejection, RejectionSettings, Rejections, rejection_response,
    rejection_response_for,
};
use crate::certificate::{CertificateHeader, ClientCertificate, ForwardedCertificate};
use crate::dpop::{DPOP, DPOP_NONCE, Dpop, Mode as DpopMode, Proof, Target, proof_header};
use crate::error::{AuthError, ChallengeParams, InvalidRequest, Scheme};
use crate::extract::{
    DEFAULT_MAX_HEADER_BYTES, Found, Remembered, TokenSource, TokenSources, find_credentials,
};
use crate::observe;
use crate::principal::Principal;
use crate::resource_metadata::ProtectedResource;
use crate::revocation::Revocations;
use crate::throttle::Throttle;
use crate::validate::{RequestView, ValidationFuture, Validator, Verdict};

/// A [`Layer`] that lets a request through only with a valid bearer token, and puts the
/// verified [`Principal`] in its extensions.
///
/// ```no_run
/// use axum::{Extension, Router, routing::get};
/// use tower_bearer::{BearerLayer, JwtValidator, Principal};
///
/// # fn app() -> Result<Router, tower_bearer::ConfigError> {
/// let validator = JwtValidator::builder()
///     .issuer("https://issuer.example")
///     .audience("https://api.example")
///     .jwks_url("https://issuer.example/jwks.json")
///     .build()?;
/// let app = Router::new()
///     .route("/me", get(|Extension(p): Extension<Principal>| async move {
///         format!("hello {}", p.subject().unwrap_or("?"))
///     }))
///     .layer(BearerLayer::new(validator).realm("api"));
/// # Ok(app) }
/// ```
pub struct BearerLayer<V> {
    shared: Shared<V>,
}

/// What the layer hands every service it makes: cheap to clone.
struct Shared<V> {
    validator: Arc<V>,
    rejections: Rejections,
    // The same for requests that used the `DPoP` scheme: what is refused after the layer
    // (scopes, handlers) is answered under `DPoP`.
    dpop_rejections: Rejections,
    sources: Arc<TokenSources>,
    optional: bool,
    max_header_bytes: usize,
    dpop: Arc<Dpop>,
    // The gateway's client-certificate header, read only when configured.
    forwarded_certificate: Option<Arc<ForwardedCertificate>>,
    revocations: Option<Arc<dyn Revocations>>,
}

impl<V> Clone for Shared<V> {
    fn clone(&self) -> Self {
        Shared {
            validator: self.validator.clone(),
            rejections: self.rejections.clone(),
            dpop_rejections: self.dpop_rejections.clone(),
            sources: self.sources.clone(),
            optional: self.optional,
            max_header_bytes: self.max_header_bytes,
            dpop: self.dpop.clone(),
            forwarded_certificate: self.forwarded_certificate.clone(),
            revocations: self.revocations.clone(),
        }
    }
}

impl<V> Clone for BearerLayer<V> {
    fn clone(&self) -> Self {
        BearerLayer { shared: self.shared.clone() }
    }
}

impl<V: Validator> BearerLayer<V> {
    /// A layer that validates tokens with `validator`.
    pub fn new(validator: V) -> Self {
        BearerLayer {
            shared: Shared {
                validator: Arc::new(validator),
                rejections: Rejections::default(),
                dpop_rejections: Rejections::default(),
                sources: Arc::new(TokenSources::header_only()),
                optional: false,
                max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
                dpop: Arc::new(Dpop::off()),
                forwarded_certificate: None,
                revocations: None,
            },
        }
    }

    fn map_rejections(mut self, f: impl FnOnce(&mut RejectionSettings)) -> Self {
        let mut settings = (*self.shared.rejections.0).clone();
        f(&mut settings);
        let mut dpop = settings.clone();
        dpop.params.used_dpop = true;
        self.shared.dpop_rejections = Rejections(Arc::new(dpop));
        self.shared.rejections = Rejections(Arc::new(settings));
        self
    }

    fn map_challenge(self, f: impl FnOnce(ChallengeParams) -> ChallengeParams) -> Self {
        self.map_rejections(|s| s.params = f(std::mem::take(&mut s.params)))
    }

    /// What rejection bodies hold (default [`ErrorBody::Empty`]: none for `4xx`, a short text
    /// for `503`). Status and challenge stay as RFC 6750 wants them.
    pub fn error_body(self, body: ErrorBody) -> Self {
        self.map_rejections(|s| s.body = body)
    }

    /// Lets requests *without* credentials through as anonymous (no [`Principal`] in their
    /// extensions). A request with a bad token is still rejected: it is never downgraded to
    /// anonymous. [`RequireScope`](crate::RequireScope) on such a route still demands a token.
    pub fn optional(mut self) -> Self {
        self.shared.optional = true;
        self
    }

    /// Where tokens may come from besides the `Authorization` header.
    pub fn token_sources(mut self, sources: TokenSources) -> Self {
        self.shared.sources = Arc::new(sources);
        self
    }

    /// The `realm` sent in every challenge.
    pub fn realm(self, realm: impl Into<String>) -> Self {
        self.map_challenge(|p| p.realm(realm))
    }

    /// The RFC 9728 `resource_metadata` URL sent in every challenge.
    pub fn resource_metadata(self, url: impl Into<String>) -> Self {
        self.map_challenge(|p| p.resource_metadata(url))
    }

    /// Points every challenge at this RFC 9728 metadata document (its
    /// [`metadata_url`](ProtectedResource::metadata_url)), so that a client can find the
    /// authorization server from a `401`.
    pub fn protected_resource(self, metadata: &ProtectedResource) -> Self {
        self.resource_metadata(metadata.metadata_url())
    }

    /// Bound on the `Authorization` header (default 8 KiB); larger headers get
    /// `400 invalid_request` before any parsing.
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.shared.max_header_bytes = bytes;
        self
    }

    /// Trusts the client certificate a TLS-terminating gateway forwards in header `name`, in
    /// `format`, for certificate-bound tokens (RFC 8705 `cnf["x5t#S256"]`).
    ///
    /// **Only when the service can be reached through that gateway alone** (a private network,
    /// a loopback port, mutual TLS between gateway and service): anyone who can reach the service
    /// directly can write the header. The gateway must also overwrite or remove the header a
    /// client sends (`proxy_set_header` in nginx, `header_up` in Caddy, `SANITIZE_SET` in
    /// Envoy).
    ///
    /// The header is read only on requests with a token. No header, or an empty one, is no
    /// certificate. The header sent twice, or together with a certificate from the TLS
    /// connection (a [`ClientCertificate`] already in the extensions), is `400 invalid_request`
    /// (which one would be the client's?); so is a header that cannot be read as a certificate.
    /// The certificate read is put in the request's extensions.
    ///
    /// ```
    /// use http::HeaderName;
    /// use tower_bearer::{BearerLayer, CertificateHeader, JwtValidator};
    ///
    /// # fn layer() -> Result<(), tower_bearer::ConfigError> {
    /// # let validator = JwtValidator::builder().issuer("https://issuer.example")
    /// #     .audience("https://api.example").jwks_url("https://issuer.example/jwks").build()?;
    /// // nginx: proxy_set_header X-Client-Cert $ssl_client_escaped_cert;
    /// let layer = BearerLayer::new(validator).trust_client_certificate_header(
    ///     HeaderName::from_static("x-client-cert"),
    ///     CertificateHeader::EscapedPem,
    /// );
    /// # Ok(()) }
    /// ```
    pub fn trust_client_certificate_header(
        mut self,
        name: http::HeaderName,
        format: CertificateHeader,
    ) -> Self {
        self.shared.forwarded_certificate = Some(Arc::new(ForwardedCertificate { name, format }));
        self
    }

    /// The DPoP policy (default [`Dpop::off`]). Whatever it is, a token bound to a key or a
    /// certificate (`cnf`) is never accepted as a bearer token. With DPoP on, challenges
    /// announce the `DPoP` scheme and its `algs`.
    pub fn dpop(mut self, dpop: Dpop) -> Self {
        let algs = dpop.is_on().then(|| dpop.algs.clone());
        let only = dpop.mode == DpopMode::Required;
        self.shared.dpop = Arc::new(dpop);
        self.map_challenge(|mut p| {
            p.dpop_algs = algs;
            p.dpop_only = only;
            p
        })
    }

    /// Consults `revocations` about every verified token, cached ones included: a revoked one
    /// is refused (`401 invalid_token`), and an answer that cannot be trusted is a `503`.
    pub fn revocations(mut self, revocations: impl Revocations) -> Self {
        self.shared.revocations = Some(Arc::new(revocations));
        self
    }

    /// The validator.
    pub fn validator(&self) -> &V {
        &self.shared.validator
    }
}

impl<V> fmt::Debug for BearerLayer<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerLayer")
            .field("rejections", &self.shared.rejections.0)
            .field("sources", &self.shared.sources)
            .field("optional", &self.shared.optional)
            .field("max_header_bytes", &self.shared.max_header_bytes)
            .field("dpop", &self.shared.dpop)
            .field("forwarded_certificate", &self.shared.forwarded_certificate)
            .field("revocations", &self.shared.revocations.is_some())
            .finish_non_exhaustive()
    }
}

impl<S, V> Layer<S> for BearerLayer<V> {
    type Service = BearerService<S, V>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerService { inner, shared: Arc::new(self.shared.clone()) }
    }
}

/// The [`Service`] made by [`BearerLayer`].
pub struct BearerService<S, V> {
    inner: S,
    // One reference count for all the settings: routers clone the service for every request
    // (axum does), and each count is a cache line the cores take from each other.
    shared: Arc<Shared<V>>,
}

impl<S: Clone, V> Clone for BearerService<S, V> {
    fn clone(&self) -> Self {
        BearerService { inner: self.inner.clone(), shared: self.shared.clone() }
    }
}

impl<S: fmt::Debug, V> fmt::Debug for BearerService<S, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerService").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<S, V> BearerService<S, V> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The validator.
    pub fn validator(&self) -> &V {
        &self.shared.validator
    }

    fn reject<B, ReqB>(
        &self,
        err: &AuthError,
        req: &Request<ReqB>,
        scheme: Scheme,
    ) -> ResponseFuture<S::Future, S, ReqB, B>
    where
        S: Service<Request<ReqB>>,
    {
        ResponseFuture::rejected(rejection(
            err,
            &self.shared.rejections,
            req.headers(),
            scheme,
            &self.shared.dpop,
        ))
    }
}

/// The response to a refused request, logged and counted.
fn rejection<B>(
    err: &AuthError,
    rejections: &Rejections,
    headers: &http::HeaderMap,
    scheme: Scheme,
    dpop: &Dpop,
) -> Response<AuthBody<B>> {
    log_rejection(err);
    let mut res = rejection_response_for(err, rejections, Dialect::of(headers), scheme);
    if *err == AuthError::UseDpopNonce
        && let Some(nonce) = fresh_nonce(dpop)
    {
        res.headers_mut().insert(DPOP_NONCE, nonce);
    }
    res
}

fn fresh_nonce(dpop: &Dpop) -> Option<HeaderValue> {
    let nonces = dpop.nonces.as_ref()?;
    HeaderValue::try_from(nonces.current(dpop.clock.unix_now())).ok()
}

/// The DPoP proof of a request sent with the `DPoP` scheme, checked but for single use.
fn dpop_proof<B>(dpop: &Dpop, req: &Request<B>, token: &str) -> Result<Proof, AuthError> {
    let proof = proof_header(req.headers(), dpop.max_proof_bytes)?;
    // Under axum's `Router::nest` the layer sees the path without the nest's prefix; the client
    // signed the one it sent, which the router kept.
    #[cfg(feature = "axum")]
    let uri = req.extensions().get::<axum::extract::OriginalUri>().map_or(req.uri(), |original| &original.0);
    #[cfg(not(feature = "axum"))]
    let uri = req.uri();
    let target = Target { method: req.method(), uri, headers: req.headers() };
    let proof = dpop.verify(proof, Some(token), &target, dpop.clock.unix_now())?;
    if !proof.nonce_ok {
        return Err(AuthError::UseDpopNonce);
    }
    Ok(proof)
}

/// The certificate in the gateway's header, to be put in the request's extensions.
fn forwarded_certificate<B>(
    forwarded: &ForwardedCertificate,
    req: &Request<B>,
) -> Result<Option<ClientCertificate>, AuthError> {
    let Some(cert) = forwarded.read(req.headers())? else { return Ok(None) };
    // A certificate from the connection too: the header would override what TLS established.
    if req.extensions().get::<ClientCertificate>().is_some() {
        return Err(InvalidRequest::MultipleClientCertificates.into());
    }
    Ok(Some(cert))
}

fn log_rejection(err: &AuthError) {
    observe::rejected(err);
    if err.is_try_later() {
        // Every request of an outage, or of a client flooding us, lands here: a line now and
        // then, the metric for each. Each its own throttle: a flood must not hide an outage.
        static OUTAGE: Throttle = Throttle::new();
        static FLOOD: Throttle = Throttle::new();
        let throttle = if err.is_server_error() { &OUTAGE } else { &FLOOD };
        if let Some(repeated) = throttle.admit() {
            tracing::warn!(
                reason = err.reason(),
                status = err.status().as_u16(),
                repeated,
                "request not authorized"
            );
        }
    } else {
        tracing::debug!(reason = err.reason(), status = err.status().as_u16(), "request not authorized");
    }
}

impl<S, V, ReqB, ResB> Service<Request<ReqB>> for BearerService<S, V>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    V: Validator,
{
    type Response = Response<AuthBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S, ReqB, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let shared = &self.shared;
        let dpop = &*shared.dpop;
        let dpop_header = dpop.is_on() && req.headers().contains_key(DPOP);
        // A token the validator remembers (its cache) passed every check once, the syntax check
        // included: its header's bytes are looked up as they came, before that check. Only
        // where nothing else in the request could change the answer: no certificate header is
        // trusted, and with DPoP on a bearer token is allowed and comes without a proof (else
        // it is refused below). `find_credentials` adds that no other token source is enabled.
        let remember = |token: &[u8]| shared.validator.remembered(token);
        let remembered: Option<Remembered<'_>> =
            (shared.forwarded_certificate.is_none() && !dpop_header && dpop.mode != DpopMode::Required)
                .then_some(&remember);
        let found =
            find_credentials(&req, &shared.sources, shared.max_header_bytes, dpop.is_on(), remembered);
        let (verdict, private, proof, scheme, forwarded) = match found {
            Ok(Found::Remembered(principal)) => {
                return self.admit(req, principal, None, Scheme::Bearer, false);
            }
            Ok(Found::Token(token, source, scheme)) => {
                let proof = match scheme {
                    Scheme::Dpop => match dpop_proof(dpop, &req, &token) {
                        Ok(proof) => Some(proof),
                        Err(err) => return self.reject(&err, &req, scheme),
                    },
                    // A proof with a bearer token: which one did the client mean?
                    Scheme::Bearer if dpop_header => {
                        return self.reject(&InvalidRequest::BearerWithDpopProof.into(), &req, scheme);
                    }
                    // DPoP only: a bearer token counts as no credentials (never as anonymous).
                    Scheme::Bearer if dpop.mode == DpopMode::Required => {
                        return self.reject(&AuthError::MissingToken, &req, scheme);
                    }
                    Scheme::Bearer => None,
                };
                let forwarded = match &shared.forwarded_certificate {
                    Some(forwarded) => match forwarded_certificate(forwarded, &req) {
                        Ok(cert) => cert,
                        Err(err) => return self.reject(&err, &req, scheme),
                    },
                    None => None,
                };
                // RFC 9111 keeps shared caches off responses to `Authorization` requests only: a
                // token from anywhere else makes the response just as personal, so it is marked
                // `private`.
                let verdict = shared.validator.validate(&token, &RequestView::of(&req));
                (verdict, source != TokenSource::Header, proof, scheme, forwarded)
            }
            Err(AuthError::MissingToken) if shared.optional => {
                observe::anonymous();
                let dialect = Dialect::of(req.headers());
                return ResponseFuture::called(
                    self.inner.call(req),
                    shared.rejections.clone(),
                    dialect,
                    false,
                );
            }
            Err(err) => return self.reject(&err, &req, Scheme::Bearer),
        };
        if let Some(cert) = forwarded {
            req.extensions_mut().insert(cert);
        }
        match verdict {
            Verdict::Ready(Ok(principal)) => self.admit(req, principal, proof, scheme, private),
            Verdict::Ready(Err(err)) => self.reject(&err, &req, scheme),
            Verdict::Pending(validation) => {
                let validation = match proof {
                    // The proof is recorded once the token is known to be bound to its key.
                    Some(proof) => {
                        let dpop = shared.dpop.clone();
                        Box::pin(async move {
                            let principal = validation.await?;
                            match binding::check(principal.confirmation(), Some(&proof), || None, &dpop) {
                                Checked::Done(done) => done.map(|()| principal),
                                Checked::Pending(recording) => recording.await.map(|()| principal),
                            }
                        })
                    }
                    None => validation,
                };
                self.validating(validation, req, scheme == Scheme::Dpop, scheme, private)
            }
        }
    }
}

impl<S, V> BearerService<S, V>
where
    S: Clone,
{
    /// Lets a request with a valid token through, once the request itself allows it: the token
    /// is not revoked, and it is bound to nothing or to what the request proves (`proof`, the
    /// client certificate).
    fn admit<ReqB, ResB>(
        &mut self,
        mut req: Request<ReqB>,
        principal: Principal,
        proof: Option<Proof>,
        scheme: Scheme,
        private: bool,
    ) -> ResponseFuture<S::Future, S, ReqB, ResB>
    where
        S: Service<Request<ReqB>>,
    {
        let shared = &self.shared;
        if let Err(err) = not_revoked(shared.revocations.as_deref(), &principal) {
            return self.reject(&err, &req, scheme);
        }
        // The binding is the request's: checked on every request, cache hits included.
        let cert = || req.extensions().get::<ClientCertificate>();
        match binding::check(principal.confirmation(), proof.as_ref(), cert, &shared.dpop) {
            Checked::Done(Ok(())) => {}
            Checked::Done(Err(err)) => return self.reject(&err, &req, scheme),
            // A shared replay store must be asked first: wait as for a validation.
            Checked::Pending(recording) => {
                let validation: ValidationFuture =
                    Box::pin(async move { recording.await.map(|()| principal) });
                return self.validating(validation, req, proof.is_some(), scheme, private);
            }
        }
        let rejections = if proof.is_some() { &shared.dpop_rejections } else { &shared.rejections }.clone();
        let nonce = proof.and_then(|_| fresh_nonce(&shared.dpop));
        authorize(&mut req, principal);
        let dialect = Dialect::of(req.headers());
        let mut future = ResponseFuture::called(self.inner.call(req), rejections, dialect, private);
        future.nonce = nonce;
        future
    }

    /// The future of a request whose verdict needs waiting for. With `used_dpop`, `validation`
    /// has checked the binding already.
    fn validating<ReqB, ResB>(
        &mut self,
        validation: ValidationFuture,
        request: Request<ReqB>,
        used_dpop: bool,
        scheme: Scheme,
        private: bool,
    ) -> ResponseFuture<S::Future, S, ReqB, ResB>
    where
        S: Service<Request<ReqB>>,
    {
        // `self.inner` is the clone that was polled ready: take it into the future and leave a
        // fresh clone behind for the next poll_ready (tower's readiness contract).
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        ResponseFuture {
            state: State::Validating {
                validation,
                pending: Some(Pending {
                    service: ready,
                    request,
                    rejections: if used_dpop {
                        self.shared.dpop_rejections.clone()
                    } else {
                        self.shared.rejections.clone()
                    },
                    used_dpop,
                    scheme,
                    dpop: self.shared.dpop.clone(),
                    revocations: self.shared.revocations.clone(),
                }),
            },
            private,
            nonce: None,
        }
    }
}

/// Whether `principal` is still allowed by the revocations, if any.
fn not_revoked(revocations: Option<&dyn Revocations>, principal: &Principal) -> Result<(), AuthError> {
    revocations.map_or(Ok(()), |r| r.check(principal))
}

fn authorize<B>(req: &mut Request<B>, principal: Principal) {
    tracing::trace!(subject = principal.subject(), "request authorized");
    observe::authenticated();
    req.extensions_mut().insert(principal);
}

/// What a validating future needs to call the inner service afterwards.
struct Pending<S, ReqB> {
    service: S,
    request: Request<ReqB>,
    rejections: Rejections,
    /// The `DPoP` scheme was used: the validation checked the binding already.
    used_dpop: bool,
    scheme: Scheme,
    dpop: Arc<Dpop>,
    revocations: Option<Arc<dyn Revocations>>,
}

pin_project! {
    /// Response future of [`BearerService`].
    pub struct ResponseFuture<F, S, ReqB, ResB> {
        #[pin]
        state: State<F, S, ReqB, ResB>,
        // The token came from the URI (RFC 6750 §2.3), a cookie or a form field: the response
        // gets `Cache-Control: private`.
        private: bool,
        // A fresh `DPoP-Nonce` for a successful DPoP request (nonces on).
        nonce: Option<HeaderValue>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, ReqB, ResB> {
        Validating { validation: ValidationFuture, pending: Option<Pending<S, ReqB>> },
        // `dialect`: whether a handler's `AuthError` is answered as gRPC.
        Called { #[pin] future: F, rejections: Rejections, dialect: Dialect },
        Rejected { response: Option<Response<AuthBody<ResB>>> },
    }
}

impl<F, S, ReqB, ResB> ResponseFuture<F, S, ReqB, ResB> {
    fn called(future: F, rejections: Rejections, dialect: Dialect, private: bool) -> Self {
        ResponseFuture { state: State::Called { future, rejections, dialect }, private, nonce: None }
    }

    fn rejected(response: Response<AuthBody<ResB>>) -> Self {
        ResponseFuture { state: State::Rejected { response: Some(response) }, private: false, nonce: None }
    }
}

impl<S, ReqB, ResB> Future for ResponseFuture<S::Future, S, ReqB, ResB>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
{
    type Output = Result<Response<AuthBody<ResB>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProj::Validating { validation, pending } => {
                    let result = ready!(validation.as_mut().poll(cx));
                    let Pending {
                        mut service,
                        mut request,
                        rejections,
                        used_dpop,
                        scheme,
                        dpop,
                        revocations,
                    } = pending.take().expect("polled after completion");
                    // The binding is the request's: checked on every request (a DPoP one by the
                    // validation future already).
                    let result = result.and_then(|principal| {
                        not_revoked(revocations.as_deref(), &principal)?;
                        if !used_dpop {
                            let cert = || request.extensions().get::<ClientCertificate>();
                            binding::check_bearer(principal.confirmation(), cert)?;
                        }
                        Ok(principal)
                    });
                    match result {
                        Ok(principal) => {
                            if used_dpop {
                                *this.nonce = fresh_nonce(&dpop);
                            }
                            authorize(&mut request, principal);
                            let dialect = Dialect::of(request.headers());
                            let future = service.call(request);
                            this.state.set(State::Called { future, rejections, dialect });
                        }
                        Err(err) => {
                            let response = rejection(&err, &rejections, request.headers(), scheme, &dpop);
                            this.state.set(State::Rejected { response: Some(response) });
                        }
                    }
                }
                StateProj::Called { future, rejections, dialect } => {
                    let private = *this.private;
                    let nonce = this.nonce.take();
                    return future.poll(cx).map_ok(|mut res| {
                        // An `AuthError` answered inside this layer (a handler, an extractor, a
                        // scope guard) was rendered without knowing it: render it again with our
                        // realm and body style.
                        let mut res = match res.extensions_mut().remove::<HandlerRejection>() {
                            Some(HandlerRejection { error, count }) => {
                                if count {
                                    crate::observe::scope_rejected(&error);
                                }
                                rerender(res, &error, rejections, *dialect)
                            }
                            None => res.map(AuthBody::inner),
                        };
                        if private {
                            mark_private(&mut res);
                        }
                        if let Some(nonce) = nonce {
                            res.headers_mut().insert(DPOP_NONCE, nonce);
                        }
                        res
                    });
                }
                StateProj::Rejected { response } => {
                    return Poll::Ready(Ok(response.take().expect("polled after completion")));
                }
            }
        }
    }
}

/// The rejection a handler answered, rendered our way, keeping the other headers it or the
/// middleware between us set (CORS, `Set-Cookie`, request ids): only what the rejection itself
/// owns is replaced.
fn rerender<B>(
    original: Response<B>,
    err: &AuthError,
    rejections: &Rejections,
    dialect: Dialect,
) -> Response<AuthBody<B>> {
    let (mut parts, _) = original.into_parts();
    let ours = rejection_response::<B>(err, rejections, dialect);
    for name in [WWW_AUTHENTICATE, CONTENT_TYPE, CONTENT_LENGTH, CACHE_CONTROL, RETRY_AFTER] {
        parts.headers.remove(name);
    }
    let (our_parts, body) = ours.into_parts();
    // A handler that answered `(StatusCode::NOT_FOUND, err)` chose its status: keep it (gRPC
    // answers are always HTTP 200, their status is `grpc-status`).
    if parts.status == err.status() || matches!(dialect, Dialect::Grpc) {
        parts.status = our_parts.status;
    }
    parts.headers.extend(our_parts.headers);
    Response::from_parts(parts, body)
}

/// `Cache-Control: private` unless the response already forbids shared caching.
fn mark_private<B>(res: &mut Response<B>) {
    let forbids_sharing = res.headers().get(CACHE_CONTROL).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(',').any(|d| matches!(d.trim().to_ascii_lowercase().as_str(), "private" | "no-store"))
    });
    if !forbids_sharing {
        res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("private"));
    }
}

impl<F, S, ReqB, ResB> fmt::Debug for ResponseFuture<F, S, ReqB, ResB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

//! The running service: health endpoints, route rules, the bearer layer, and what happens to
//! a request once it is let through (an answer for the gateway, or a trip to the upstream).

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::IntoResponse;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use tower::ServiceExt;
use tower_bearer::{
    BearerLayer, BearerService, Discovery, ErrorBody, Introspector, JwtOrOpaque, JwtValidator, MultiIssuer,
    Principal, Validator, jwt_defaults,
};
use tower_layer::Layer;

use crate::config::{Config, IdentityHeaders};
use crate::forwarded::Forwarding;
use crate::normalize::{normalize, split_target};
use crate::proxy::{Connected, ForwardError, Forwarder, plain};
use crate::rules::{Access, Rule, Rules};

/// Which service we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Answers a gateway's authorization sub-request.
    Auth,
    /// Sits in front of the upstream.
    Proxy,
}

/// The header nginx's shipped configuration puts on its sub-request (see `nginx.conf`): every
/// denial is then answered as `403` with the real status in [`AUTH_STATUS`], because nginx's
/// `auth_request` turns anything but 2xx, 401 and 403 into a 500.
pub const REQUEST_MODE: HeaderName = HeaderName::from_static("x-auth-request-mode");
/// The real status of a denial in nginx mode.
pub const AUTH_STATUS: HeaderName = HeaderName::from_static("x-auth-status");

/// What the log line of a request says: the request judged and why it got its answer.
#[derive(Default)]
struct Decision {
    reason: &'static str,
    /// The original method and normalised path (the auth sub-request's own are not interesting).
    target: Option<(Method, String)>,
    rule: Option<usize>,
}

tokio::task_local! {
    /// The current request's decision, for the log line.
    static DECISION: RefCell<Decision>;
}

fn set_reason(reason: &'static str) {
    let _ = DECISION.try_with(|d| d.borrow_mut().reason = reason);
}

fn set_target(method: &Method, path: &str) {
    let _ = DECISION.try_with(|d| d.borrow_mut().target = Some((method.clone(), path.to_owned())));
}

fn set_rule(index: usize) {
    let _ = DECISION.try_with(|d| d.borrow_mut().rule = Some(index));
}

/// The validator behind the bearer layer, and the JWT validators whose key sets `/readyz` waits for.
pub fn build_validator(config: &Config) -> Result<(Arc<dyn Validator>, Vec<JwtValidator>), String> {
    let mut jwts = Vec::new();
    let mut opaque = None;
    for (i, issuer) in config.issuers.iter().enumerate() {
        let fail = |e: tower_bearer::ConfigError| format!("issuers[{i}]: {e}");
        let mut builder = match &issuer.jwks_url {
            Some(url) => JwtValidator::builder().issuer(&issuer.issuer).jwks_url(url),
            None => JwtValidator::from_issuer(&issuer.issuer).map_err(fail)?,
        };
        builder = builder.audience(&issuer.audience);
        if let Some(algs) = &issuer.algorithms {
            builder = builder.algorithms(algs.iter().copied());
        }
        builder = match config.token_cache {
            Some((entries, ttl)) => builder.token_cache(entries, ttl),
            None => builder.no_token_cache(),
        };
        jwts.push(builder.build().map_err(fail)?);
        if let Some(intro) = &issuer.introspection {
            let mut b = match &intro.endpoint {
                Some(url) => Introspector::builder(url),
                None => Introspector::discover(Discovery::builder(&issuer.issuer).build().map_err(fail)?),
            };
            b = b
                .client_secret_basic(&intro.client_id, &intro.client_secret)
                .issuer(&issuer.issuer)
                .audience(&issuer.audience);
            if let Some(n) = config.introspection_entries {
                b = b.max_entries(n);
            }
            if let Some(ttl) = config.introspection_ttl {
                b = b.max_ttl(ttl);
            }
            #[cfg(feature = "redis")]
            if let Some(tier) = config
                .redis
                .as_ref()
                .filter(|r| r.shared_introspection)
                .and_then(|_| crate::fleet::introspection_tier())
            {
                b = b.shared_tier(tier);
            }
            opaque = Some(b.build().map_err(fail)?);
        }
    }
    let validator: Arc<dyn Validator> = match (jwts.as_slice(), opaque) {
        ([one], Some(opaque)) => Arc::new(JwtOrOpaque::new(one.clone(), opaque)),
        ([one], None) => Arc::new(one.clone()),
        (_, Some(_)) => return Err("introspection is supported with a single issuer only".into()),
        (many, None) => {
            Arc::new(MultiIssuer::new(many.iter().cloned()).map_err(|e| format!("issuers: {e}"))?)
        }
    };
    Ok((validator, jwts))
}

/// Loads every key set now rather than at the first request, retrying with back-off, so that
/// `/readyz` can say when tokens can be checked.
pub fn preload_keys(validators: &[JwtValidator]) {
    for v in validators {
        let Some(keys) = v.key_set().cloned() else { continue };
        let issuer = v.issuer().unwrap_or_default().to_owned();
        tokio::spawn(async move {
            let mut delay = Duration::from_secs(1);
            while !keys.is_loaded() {
                match keys.refresh().await {
                    Ok(n) => tracing::info!(issuer, keys = n, "key set loaded"),
                    Err(e) => {
                        tracing::warn!(issuer, error = %e, retry_in_secs = delay.as_secs(), "key set not loaded yet");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(30));
                    }
                }
            }
        });
    }
}

/// What a let-through request gets: the gateway's `200` with identity headers, or the upstream.
struct Dispatch {
    mode: Mode,
    headers: IdentityHeaders,
    /// The `[upstream]` table's, then the named ones (proxy mode).
    forwarders: Vec<Forwarder>,
    forwarding: Forwarding,
}

/// Where the request was really going: method and normalised path with the client's query.
#[derive(Clone, Debug)]
struct Target {
    path_and_query: String,
    /// The named upstream of the matched rule.
    upstream: Option<String>,
}

impl Dispatch {
    fn identity(&self, principal: &Principal) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        let mut push = |name: &HeaderName, value: &str| match HeaderValue::from_bytes(value.as_bytes()) {
            Ok(v) => out.push((name.clone(), v)),
            Err(_) => {
                tracing::warn!(header = %name, "claim value is not a valid header value: header left out")
            }
        };
        if let Some(s) = principal.subject() {
            push(&self.headers.subject, s);
        }
        if let Some(c) = principal.client_id() {
            push(&self.headers.client_id, c);
        }
        push(&self.headers.scopes, &principal.scopes().to_string());
        for (claim, name) in &self.headers.claims {
            let value = match principal.claim(claim) {
                None | Some(serde_json::Value::Null) => continue,
                Some(serde_json::Value::String(s)) => s,
                Some(serde_json::Value::Array(items)) if items.iter().all(|v| v.is_string()) => {
                    items.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(" ")
                }
                Some(other) => other.to_string(),
            };
            push(name, &value);
        }
        out
    }

    async fn allow(&self, mut req: Request<Body>, principal: Option<Principal>) -> Response<Body> {
        let identity = principal.as_ref().map(|p| self.identity(p)).unwrap_or_default();
        match self.mode {
            Mode::Auth => {
                let mut res = Response::new(Body::empty());
                let headers = res.headers_mut();
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                // Every identity header, empty when unknown (public routes, no client id): a
                // gateway copying "the header if present" then overwrites what the client sent,
                // and Caddy 2.6's copy_headers never copies its placeholder text instead.
                for name in self.headers.all() {
                    headers.insert(name.clone(), HeaderValue::from_static(""));
                }
                for (name, value) in identity {
                    headers.insert(name, value);
                }
                res
            }
            Mode::Proxy => {
                let target = req.extensions_mut().remove::<Target>().expect("target set before dispatch");
                let name = target.upstream.as_deref().unwrap_or("default");
                let Some(forwarder) = self.forwarders.iter().find(|f| f.name == name) else {
                    set_reason("no_upstream");
                    return plain(StatusCode::BAD_GATEWAY, "no upstream for this route\n");
                };
                // A WebSocket lives no longer than the token it was opened with: until its `exp`,
                // with the leeway the validators give requests. (An `exp` too far out to add to
                // is no deadline: validation saturates it the same way.)
                let ends = principal
                    .as_ref()
                    .filter(|_| crate::upgrade::requested(&req).is_some())
                    .and_then(Principal::expires_at)
                    .and_then(|exp| exp.checked_add(jwt_defaults::LEEWAY));
                match forwarder.forward(req, identity, ends, &target.path_and_query, &self.forwarding).await {
                    Ok(res) => res,
                    Err(ForwardError::Timeout) => {
                        set_reason("upstream_timeout");
                        tracing::warn!("upstream did not answer in time");
                        plain(StatusCode::GATEWAY_TIMEOUT, "the upstream did not answer in time\n")
                    }
                    Err(ForwardError::UploadStalled) => {
                        set_reason("upload_stalled");
                        // The rest of the body is unread: the connection cannot carry another
                        // request (RFC 9110 §15.5.9).
                        let mut res = plain(StatusCode::REQUEST_TIMEOUT, "the request body stopped coming\n");
                        res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                        res
                    }
                    Err(ForwardError::UploadBroken) => {
                        // Most likely nobody reads this: the client went away mid-upload. Not
                        // the upstream's fault, nor ours: no warning.
                        set_reason("upload_broken");
                        let mut res = plain(StatusCode::BAD_REQUEST, "the request body broke off\n");
                        res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                        res
                    }
                    Err(ForwardError::Unreachable(e)) => {
                        set_reason("upstream_unreachable");
                        tracing::warn!(error = %e, "upstream unreachable");
                        plain(StatusCode::BAD_GATEWAY, "the upstream cannot be reached\n")
                    }
                    Err(ForwardError::NoUpgrade) => {
                        set_reason("upstream_no_upgrade");
                        plain(StatusCode::BAD_GATEWAY, "the upstream speaks HTTP/2 only: no upgrades\n")
                    }
                    Err(ForwardError::TargetTooLong) => {
                        set_reason("target_too_long");
                        plain(StatusCode::URI_TOO_LONG, "the request target is too long\n")
                    }
                }
            }
        }
    }
}

/// The service inside the bearer layer: checks the matched rule's scopes, then dispatches.
#[derive(Clone)]
struct Protected(Arc<Dispatch>);

impl tower_service::Service<Request<Body>> for Protected {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let dispatch = self.0.clone();
        Box::pin(async move {
            let principal = req.extensions().get::<Principal>().cloned().expect("the bearer layer let it in");
            if let Some(Access::Scopes(required, _)) = req.extensions().get::<Arc<Rule>>().map(|r| &r.access)
                && let Err(err) = required.check(&principal)
            {
                set_reason(err.reason());
                // Rendered again by the bearer layer around us, with its realm.
                return Ok(err.into_response());
            }
            set_reason("valid");
            tracing::debug!(
                subject = principal.subject(),
                client_id = principal.client_id(),
                "token accepted"
            );
            Ok(dispatch.allow(req, Some(principal)).await)
        })
    }
}

/// Everything a request needs.
pub struct App {
    mode: Mode,
    rules: Rules,
    path_prefix: Option<String>,
    headers: IdentityHeaders,
    bearer: BearerService<Protected, Arc<dyn Validator>>,
    dispatch: Arc<Dispatch>,
    validators: Vec<JwtValidator>,
    /// `[client_certificate]`'s header, in proxy mode: believed from trusted proxies only.
    certificate_header: Option<HeaderName>,
}

impl App {
    pub fn new(
        mode: Mode,
        config: &Config,
        validator: Arc<dyn Validator>,
        validators: Vec<JwtValidator>,
    ) -> Result<App, String> {
        let mut forwarders = Vec::new();
        if mode == Mode::Proxy {
            for u in config.upstream.iter().chain(&config.upstreams) {
                let key = u.name.as_ref().map_or_else(|| "upstream".to_owned(), |n| format!("upstreams.{n}"));
                forwarders.push(Forwarder::new(u).map_err(|e| format!("{key}: {e}"))?);
            }
        }
        let dispatch = Arc::new(Dispatch {
            mode,
            headers: config.headers.clone(),
            forwarders,
            forwarding: config.forwarding.clone(),
        });
        // The body the library's default gives, plus the reason code for our log line.
        let body = ErrorBody::custom(|err| {
            set_reason(err.reason());
            err.is_server_error().then(|| {
                (
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                    bytes::Bytes::from_static(b"authorization is temporarily unavailable\n"),
                )
            })
        });
        let mut layer = BearerLayer::new(validator).error_body(body);
        if let Some(realm) = &config.realm {
            layer = layer.realm(realm);
        }
        if let Some((dpop, _replay)) = &config.dpop {
            // With [redis], a proof used at one replica is a replay at every other; each replica's
            // own record keeps [dpop]'s bounds.
            #[cfg(feature = "redis")]
            let dpop = match crate::fleet::replay_store() {
                Some(store) if config.redis.is_some() => {
                    dpop.clone().replay_store(store.local_store(_replay.store().0))
                }
                _ => dpop.clone(),
            };
            #[cfg(not(feature = "redis"))]
            let dpop = dpop.clone();
            layer = layer.dpop(dpop);
        }
        if let Some((name, format)) = &config.client_certificate {
            layer = layer.trust_client_certificate_header(name.clone(), *format);
        }
        #[cfg(feature = "redis")]
        if let Some(deny) =
            config.redis.as_ref().filter(|r| r.revocations).and_then(|_| crate::fleet::deny_list())
        {
            layer = layer.revocations(deny);
        }
        Ok(App {
            mode,
            rules: config.rules.clone(),
            path_prefix: config.path_prefix.clone(),
            headers: config.headers.clone(),
            bearer: layer.layer(Protected(dispatch.clone())),
            dispatch,
            validators,
            certificate_header: config
                .client_certificate
                .as_ref()
                .filter(|_| mode == Mode::Proxy)
                .map(|(name, _)| name.clone()),
        })
    }

    /// `None` when ready, or what is missing.
    async fn not_ready(&self) -> Option<String> {
        // With [redis], requests get 503 until the deny-list is loaded: not ready before.
        #[cfg(feature = "redis")]
        if crate::fleet::deny_list().is_some_and(|d| !d.is_current()) {
            return Some("revocation list not loaded yet\n".to_owned());
        }
        if !self.validators.iter().all(|v| v.key_set().is_none_or(|k| k.is_loaded())) {
            return Some("key sets not loaded yet\n".to_owned());
        }
        let mut down = String::new();
        for f in &self.dispatch.forwarders {
            if !f.reachable().await {
                down.push_str(&format!("upstream {} unreachable\n", f.name));
            }
        }
        (!down.is_empty()).then_some(down)
    }

    /// The method and request target the decision is about.
    fn target(&self, req: &Request<Body>) -> Result<(Method, String), &'static str> {
        if self.mode == Mode::Proxy {
            let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str()).to_owned();
            return Ok((req.method().clone(), target));
        }
        if let Some(prefix) = &self.path_prefix {
            // Envoy ext_authz (HTTP service): the original path after our prefix, original
            // method. The path of the sub-request is the gateway's, never the client's: it wins.
            let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
            if let Some(rest) = pq.strip_prefix(prefix.as_str())
                && (rest.starts_with('/') || rest.starts_with('?') || rest.is_empty())
            {
                let rest = if rest.starts_with('/') { rest.to_owned() } else { format!("/{rest}") };
                return Ok((req.method().clone(), rest));
            }
        }
        let h = req.headers();
        // One value or none: a header the client sent next to the gateway's is refused.
        let text = |name: &str| -> Result<Option<String>, &'static str> {
            let mut values = h.get_all(name).iter();
            let Some(first) = values.next() else { return Ok(None) };
            if values.next().is_some() {
                return Err("duplicate_original_header");
            }
            first.to_str().map(|v| Some(v.to_owned())).map_err(|_| "bad_original_header")
        };
        let method = |name: &str| -> Result<Option<Method>, &'static str> {
            match text(name)? {
                None => Ok(None),
                Some(m) => Method::from_bytes(m.as_bytes()).map(Some).map_err(|_| "bad_original_method"),
            }
        };
        // nginx auth_request sets X-Original-*, Traefik and Caddy X-Forwarded-*; each passes the
        // client's other headers on. Both families present and disagreeing means one of them
        // is the client's: refuse rather than guess.
        let original = (text("x-original-uri")?, method("x-original-method")?);
        let forwarded = (text("x-forwarded-uri")?, method("x-forwarded-method")?);
        // A URI without its method is a gateway set up to send only half of the request: judging
        // it as some method (`GET`) would let a `DELETE` pass on a rule made for reads, and a
        // DPoP proof made for a read pass on a write.
        let pick = |(uri, method): (Option<String>, Option<Method>)| match (uri, method) {
            (Some(uri), Some(method)) => Ok(Some((method, uri))),
            (Some(_), None) => Err("no_original_method"),
            (None, _) => Ok(None),
        };
        match (pick(original)?, pick(forwarded)?) {
            (Some(a), Some(b)) if a != b => Err("conflicting_original_headers"),
            (Some(t), _) | (None, Some(t)) => Ok(t),
            (None, None) => Err("no_original_request"),
        }
    }

    async fn handle(&self, mut req: Request<Body>) -> Response<Body> {
        let path = req.uri().path();
        if path == "/healthz" {
            return plain(StatusCode::OK, "ok\n");
        }
        if path == "/readyz" {
            return match self.not_ready().await {
                None => plain(StatusCode::OK, "ready\n"),
                Some(why) => {
                    let mut res = plain(StatusCode::SERVICE_UNAVAILABLE, "");
                    *res.body_mut() = Body::from(why);
                    res
                }
            };
        }
        // A tunnel is no resource the rules can judge (its target is a host, not a path), and
        // the upstream would be asked to open one.
        if self.mode == Mode::Proxy && req.method() == Method::CONNECT {
            set_reason("connect_refused");
            return plain(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not supported\n");
        }
        let (method, target) = match self.target(&req) {
            Ok(t) => t,
            Err(reason) => {
                set_reason(reason);
                return plain(StatusCode::BAD_REQUEST, "cannot tell which request to authorize\n");
            }
        };
        // The gateway's sub-request stands for the original request: the layer judges that one
        // (a DPoP proof's `htm` and `htu` name the client's method and URI, not ours).
        if self.mode == Mode::Auth {
            match target.parse::<http::Uri>() {
                Ok(uri) if target.starts_with('/') => *req.uri_mut() = uri,
                _ => {
                    set_reason("bad_original_uri");
                    return plain(StatusCode::BAD_REQUEST, "cannot tell which request to authorize\n");
                }
            }
            *req.method_mut() = method.clone();
        }
        let (raw_path, query) = split_target(&target);
        let normal = match normalize(raw_path, self.rules.allow_path_parameters) {
            Ok(p) => p,
            Err(e) => {
                set_reason(e.reason());
                return plain(StatusCode::BAD_REQUEST, "the request path is not acceptable\n");
            }
        };
        // In proxy mode clients may reach us directly: a certificate header is a front proxy's
        // word on the client's TLS certificate, believed from a trusted one only (`[forwarded]
        // trusted_proxies`). In auth mode only the gateway can reach the service.
        if let Some(name) = &self.certificate_header
            && let Some(connected) = req.extensions().get::<Connected>().copied()
            && !self.dispatch.forwarding.trusts(connected.peer.ip())
        {
            req.headers_mut().remove(name);
        }
        // Identity headers come from us only: whatever the client sent under those names goes.
        let headers = req.headers_mut();
        for name in self.headers.all() {
            headers.remove(name);
        }
        let spoofed: Vec<HeaderName> =
            headers.keys().filter(|n| n.as_str().starts_with("x-auth-")).cloned().collect();
        for name in spoofed {
            headers.remove(&name);
        }
        set_target(&method, &normal);
        let Some(rule) = self.rules.find(&method, &normal).cloned() else {
            set_reason("no_matching_route");
            return plain(StatusCode::FORBIDDEN, "no route rule allows this request\n");
        };
        set_rule(rule.index);
        tracing::debug!(method = %method, path = %normal, rule = rule.index, pattern = %rule.path, "route matched");
        let path_and_query = match query {
            Some(q) => format!("{normal}?{q}"),
            None => normal,
        };
        req.extensions_mut().insert(Target { path_and_query, upstream: rule.upstream.clone() });
        if matches!(rule.access, Access::Public) {
            set_reason("public");
            return self.dispatch.allow(req, None).await;
        }
        req.extensions_mut().insert(rule);
        // Boxed as `Send` here: the compiler cannot prove it through the layer's generic future.
        let call: Pin<Box<dyn Future<Output = _> + Send>> = Box::pin(self.bearer.clone().oneshot(req));
        match call.await {
            Ok(res) => res.map(Body::new),
            Err(never) => match never {},
        }
    }

    /// Handles one request, with a log line carrying the decision and its reason (never the token).
    pub async fn serve_one(self: Arc<Self>, req: Request<Body>) -> Response<Body> {
        let method = req.method().clone();
        let version = req.version();
        let uri_path = req.uri().path().to_owned();
        let nginx = self.mode == Mode::Auth && req.headers().get(REQUEST_MODE).is_some_and(|v| v == "nginx");
        let app = self.clone();
        let (mut res, decision) = DECISION
            .scope(RefCell::new(Decision { reason: "none", ..Decision::default() }), async move {
                let res = app.handle(req).await;
                (res, DECISION.with(|d| std::mem::take(&mut *d.borrow_mut())))
            })
            .await;
        let status = res.status().as_u16();
        let reason = decision.reason;
        let (method, path) = match &decision.target {
            Some((m, p)) => (m.as_str(), p.as_str()),
            None => (method.as_str(), uri_path.as_str()),
        };
        let rule = decision.rule.map(|r| r as u64);
        if matches!(uri_path.as_str(), "/healthz" | "/readyz") {
            tracing::debug!(path = %uri_path, status, "health check");
        } else if res.status().is_server_error() {
            tracing::warn!(method, path, status, reason, rule, ?version, "request answered");
        } else {
            tracing::info!(method, path, status, reason, rule, ?version, "request answered");
        }
        let status = res.status();
        if nginx && !status.is_success() {
            res.headers_mut().insert(AUTH_STATUS, HeaderValue::from(status.as_u16()));
            *res.status_mut() = StatusCode::FORBIDDEN;
        }
        res
    }
}

/// Waits for SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down: no new connections, finishing requests in flight");
}

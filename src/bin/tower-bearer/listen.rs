//! The listener: plain TCP or TLS, HTTP/1.1 and HTTP/2 on one port (ALPN over TLS, prior
//! knowledge otherwise), upgrades, a header read timeout and a header size limit, and a
//! graceful stop. Each request is handed to the application running at the time: a reload
//! swaps it without touching open connections.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Body;
use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tower_bearer::ClientCertificate;

use crate::guard::{self, Guarded};
use crate::proxy::{Connected, plain};
use crate::server::App;
use crate::tls::Tls;

/// What the connections share: swapped as a whole on reload.
pub struct Running {
    pub app: Arc<App>,
    pub header_read_timeout: Duration,
    pub http2_keep_alive: Option<Duration>,
    pub max_header_bytes: usize,
}

/// The running application and the TLS configuration.
pub struct Shared {
    pub running: RwLock<Arc<Running>>,
    pub tls: Option<Arc<Tls>>,
}

impl Shared {
    pub fn current(&self) -> Arc<Running> {
        self.running.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, running: Running) {
        *self.running.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(running);
    }
}

/// Accepts connections until `stop` resolves, then waits up to `grace` for the open ones.
/// Returns `false` when requests were still in flight at the end of the grace period.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: impl Future<Output = ()>,
    grace: Duration,
) -> bool {
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the open connections.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let running = shared.current();
            let Some(tls) = &shared.tls else {
                let stream = Guarded::new(stream, running.max_header_bytes, running.header_read_timeout);
                let unguarded = Some(stream.unguarded());
                let connected = Connected { peer, tls: false };
                connection(stream, connected, None, unguarded, running, shared.clone(), watcher).await;
                return;
            };
            // The handshake counts against the header read timeout (slowloris over TLS).
            let handshake = tokio::time::timeout(running.header_read_timeout, tls.acceptor().accept(stream));
            let stream = match handshake.await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| ClientCertificate::from_der(c.to_vec()));
            if let Some(cert) = &cert {
                tracing::debug!(%peer, thumbprint = cert.thumbprint_sha256(), "client certificate");
            }
            let connected = Connected { peer, tls: true };
            if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                connection(stream, connected, cert, None, running, shared.clone(), watcher).await;
            } else {
                let stream = Guarded::new(stream, running.max_header_bytes, running.header_read_timeout);
                let unguarded = Some(stream.unguarded());
                connection(stream, connected, cert, unguarded, running, shared.clone(), watcher).await;
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => true,
        () = tokio::time::sleep(grace) => false,
    }
}

/// One HTTP connection, HTTP/1.1 or HTTP/2, with upgrades. `unguarded`: the smuggling guard's
/// flag, on HTTP/1.x connections it reads (see [`Guarded::unguarded`]).
async fn connection<I>(
    io: I,
    connected: Connected,
    cert: Option<ClientCertificate>,
    unguarded: Option<Arc<AtomicBool>>,
    running: Arc<Running>,
    shared: Arc<Shared>,
    watcher: Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(running.header_read_timeout)
        .max_buf_size(running.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(running.http2_keep_alive)
        .keep_alive_timeout(running.http2_keep_alive.unwrap_or(Duration::from_secs(20)))
        .max_header_list_size(u32::try_from(running.max_header_bytes).unwrap_or(u32::MAX));
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let smuggling = req.headers().contains_key(guard::MARKER);
        req.extensions_mut().insert(connected);
        if let Some(cert) = &cert {
            req.extensions_mut().insert(cert.clone());
        }
        let app = shared.current().app.clone();
        // Read when the answer is ready: the guard set its flag (if at all) before hyper could
        // read this request's header block.
        let unguarded = unguarded.clone();
        let http1 = req.version() <= Version::HTTP_11;
        let connect = req.method() == Method::CONNECT;
        async move {
            if smuggling {
                tracing::warn!(peer = %connected.peer, "request with both Content-Length and Transfer-Encoding: refused");
                let mut res = plain(StatusCode::BAD_REQUEST, "ambiguous request framing\n");
                res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                return Ok(res);
            }
            let mut res = app.serve_one(req.map(Body::new)).await;
            // The guard no longer follows this connection's framing: unless the connection now
            // belongs to another protocol, it ends with this answer.
            let handed_over =
                res.status() == StatusCode::SWITCHING_PROTOCOLS || (connect && res.status().is_success());
            if http1 && !handed_over && unguarded.as_ref().is_some_and(|f| f.load(Ordering::Acquire)) {
                res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(res)
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(peer = %connected.peer, error = %e, "connection ended with an error");
    }
}

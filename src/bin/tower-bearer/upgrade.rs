//! Protocol upgrades (WebSockets): an authorised `Upgrade` request goes to the upstream with
//! its `Upgrade` header, and once both sides have switched protocols the two connections are
//! spliced. The token was checked once, at the upgrade request, so the splice ends when the token
//! does: a connection opened with it must not outlive it (nor a revocation by more than that).
//!
//! WebSocket only: any other protocol's `Upgrade` is dropped as the hop-by-hop header it is, and
//! the request goes on as a plain one. An `h2c` upgrade passed on would open HTTP/2 streams to
//! any path of the upstream that the route rules never see.

use http::header::{CONNECTION, UPGRADE};
use std::time::SystemTime;

use http::{HeaderValue, Request, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// The `Upgrade` header of an HTTP/1.1 request that asks for a WebSocket (`Connection: upgrade`,
/// `Upgrade: websocket`).
pub fn requested<B>(req: &Request<B>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let asks = req
        .headers()
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let upgrade = req.headers().get(UPGRADE).filter(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    upgrade.filter(|_| asks).cloned()
}

/// Copies bytes both ways once the client and the upstream have switched, until either side
/// closes or `ends` (the token's expiry) comes: then both connections are closed, and the client
/// reconnects with a fresh token.
pub fn splice(client: OnUpgrade, upstream: OnUpgrade, ends: Option<SystemTime>) {
    tokio::spawn(async move {
        // A token without `exp` (an introspected one may have none) leaves the connection to
        // the two sides.
        let lifetime = ends.map(|at| at.duration_since(SystemTime::now()).unwrap_or_default());
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
        let copied = tokio::io::copy_bidirectional(&mut client, &mut upstream);
        let copied = match lifetime {
            Some(lifetime) => match tokio::time::timeout(lifetime, copied).await {
                Ok(copied) => copied,
                Err(_) => {
                    tracing::debug!("upgraded connection closed: its token expired");
                    return;
                }
            },
            None => copied.await,
        };
        match copied {
            Ok((up, down)) => tracing::debug!(bytes_up = up, bytes_down = down, "upgraded connection closed"),
            Err(e) => tracing::debug!(error = %e, "upgraded connection broke"),
        }
    });
}

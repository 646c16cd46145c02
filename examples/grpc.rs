//! A gRPC service (tonic) protected by tower-bearer.
//!
//! ```text
//! cargo run --example grpc --features dev
//! ```
//!
//! Starts the development issuer, serves `demo.Items` on 127.0.0.1 over HTTP/2 behind
//! `BearerLayer` (every method needs a token; `Delete` also needs the scope `items:write`), then
//! calls it with a tonic client and prints what each call gets: `UNAUTHENTICATED`,
//! `PERMISSION_DENIED`, or the item, whose owner the service read from the verified `Principal`.
//!
//! Rejections of gRPC requests are gRPC statuses (HTTP `200`, `grpc-status`, `grpc-message`),
//! with the RFC 6750 challenge kept in the `www-authenticate` metadata.
//!
//! The messages are written by hand with `#[derive(prost::Message)]` (what `tonic-prost-build`
//! would generate from the `.proto` below), and the methods are plain functions served through
//! tonic's generic `Grpc` plumbing: no `protoc` needed. With generated code, serve the generated
//! `ItemsServer` the same way (`route_service` per method path).
//!
//! ```text
//! syntax = "proto3";
//! package demo;
//! message ItemRequest { string id = 1; }
//! message Item { string id = 1; string owner = 2; }
//! service Items {
//!   rpc Get(ItemRequest) returns (Item);
//!   rpc Delete(ItemRequest) returns (Item);
//! }
//! ```

use std::convert::Infallible;
use std::time::Duration;

use http::uri::PathAndQuery;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;
use tower::service_fn;
use tower_bearer::dev::{DEFAULT_AUDIENCE, DevIssuer};
use tower_bearer::{Algorithm, BearerLayer, JwtValidator, Principal, RequireScope};

/// `demo.ItemRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ItemRequest {
    #[prost(string, tag = "1")]
    pub id: String,
}

/// `demo.Item`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Item {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub owner: String,
}

/// The methods' paths (`/package.Service/Method`).
pub const GET: &str = "/demo.Items/Get";
pub const DELETE: &str = "/demo.Items/Delete";

/// The realm of every challenge.
pub const REALM: &str = "items";

/// The `Principal` was put in the request's extensions by `BearerLayer`; tonic hands them on.
fn caller(request: &Request<ItemRequest>) -> Result<String, Status> {
    let principal = request.extensions().get::<Principal>().ok_or_else(|| Status::unauthenticated(""))?;
    Ok(principal.subject().unwrap_or_default().to_owned())
}

async fn get(request: Request<ItemRequest>) -> Result<Response<Item>, Status> {
    let owner = caller(&request)?;
    Ok(Response::new(Item { id: request.into_inner().id, owner }))
}

async fn delete(request: Request<ItemRequest>) -> Result<Response<Item>, Status> {
    let owner = caller(&request)?;
    Ok(Response::new(Item { id: request.into_inner().id, owner }))
}

/// One unary method as a tower service over HTTP: decode the request message, call `method`,
/// encode its answer (what tonic's generated servers do per method).
fn unary<F, Fut>(
    method: F,
) -> impl tower::Service<
    http::Request<axum::body::Body>,
    Response = http::Response<tonic::body::Body>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ Sync
+ 'static
where
    F: Fn(Request<ItemRequest>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Item>, Status>> + Send + 'static,
{
    service_fn(move |request: http::Request<axum::body::Body>| {
        let method = service_fn(method.clone());
        async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Item, ItemRequest>::default());
            Ok(grpc.unary(method, request).await)
        }
    })
}

/// The service's routes: `Delete` behind `RequireScope` (`route_layer` applies to the routes
/// added before it), `Get` open to any valid token. Unknown methods get `UNIMPLEMENTED`.
pub fn routes() -> Routes {
    let router = axum::Router::new()
        .route_service(DELETE, unary(delete))
        .route_layer(RequireScope::all(["items:write"]))
        .route_service(GET, unary(get))
        .fallback(|| async { Status::unimplemented("no such method").into_http::<axum::body::Body>() });
    Routes::from(router)
}

/// Serves [`routes`] behind `BearerLayer` on `listener` (HTTP/2, as gRPC wants).
pub async fn serve(listener: TcpListener, validator: JwtValidator) -> Result<(), tonic::transport::Error> {
    Server::builder()
        .layer(BearerLayer::new(validator).realm(REALM))
        .add_routes(routes())
        .serve_with_incoming(TcpIncoming::from(listener))
        .await
}

/// A client for `demo.Items`, like the one `tonic-prost-build` generates.
#[derive(Clone)]
pub struct ItemsClient {
    grpc: tonic::client::Grpc<Channel>,
}

impl ItemsClient {
    /// A client over `channel`.
    pub fn new(channel: Channel) -> Self {
        ItemsClient { grpc: tonic::client::Grpc::new(channel) }
    }

    /// Calls `path` with `id`, sending `authorization` as metadata when given.
    pub async fn call(
        &mut self,
        path: &'static str,
        id: &str,
        authorization: Option<&str>,
    ) -> Result<Response<Item>, Status> {
        let mut request = Request::new(ItemRequest { id: id.to_owned() });
        if let Some(value) = authorization {
            let value = value.parse().map_err(|_| Status::invalid_argument("not a metadata value"))?;
            request.metadata_mut().insert("authorization", value);
        }
        self.grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
        self.grpc.unary(request, PathAndQuery::from_static(path), ProstCodec::default()).await
    }
}

/// Connects a channel to `addr` over plain-text HTTP/2.
pub async fn connect(addr: std::net::SocketAddr) -> Result<Channel, tonic::transport::Error> {
    Channel::from_shared(format!("http://{addr}")).expect("a valid URI").connect().await
}

/// One line about a call's outcome.
fn outcome(result: &Result<Response<Item>, Status>) -> String {
    match result {
        Ok(response) => format!("OK {:?}", response.get_ref()),
        Err(status) => {
            let challenge = status.metadata().get("www-authenticate").and_then(|v| v.to_str().ok());
            format!(
                "{:?} {:?}, www-authenticate: {}",
                status.code(),
                status.message(),
                challenge.unwrap_or("-")
            )
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = DevIssuer::builder().algorithms([Algorithm::ES256]).start().await?;
    let validator = JwtValidator::builder()
        .issuer(dev.issuer())
        .audience(DEFAULT_AUDIENCE)
        .jwks_url(dev.jwks_url())
        .build()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener, validator));
    println!("demo.Items on {addr} (HTTP/2), issuer {}\n", dev.issuer());

    let reader = format!("Bearer {}", dev.token().subject("ada").scope("items:read").sign());
    let writer = format!("Bearer {}", dev.token().subject("grace").scope("items:read items:write").sign());
    let expired = format!("Bearer {}", dev.token().expired(Duration::from_secs(600)).sign());
    let mut client = ItemsClient::new(connect(addr).await?);
    let calls: [(&str, &'static str, Option<&str>); 6] = [
        ("Get, no token", GET, None),
        ("Get, malformed header", GET, Some("Bearer a,b")),
        ("Get, expired token", GET, Some(&expired)),
        ("Get, items:read", GET, Some(&reader)),
        ("Delete, items:read", DELETE, Some(&reader)),
        ("Delete, items:write", DELETE, Some(&writer)),
    ];
    for (what, path, authorization) in calls {
        let result = client.call(path, "42", authorization).await;
        println!("{what:22} -> {}", outcome(&result));
    }
    Ok(())
}

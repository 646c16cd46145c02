//! A plain hyper 1 server protected by tower-bearer: no axum, just tower layers around a
//! `service_fn`.
//!
//! ```text
//! cargo run --example hyper_server --features dev [-- --listen 127.0.0.1:3000]
//! ```
//!
//! Starts the development issuer in-process, serves on 127.0.0.1:3000 with hyper-util, and prints
//! curl commands with a freshly minted token. The handler reads the verified `Principal` from the
//! request's extensions. The token may come in the `Authorization` header or, through
//! `FormTokenLayer`, as `access_token` in a form-encoded body, which the handler still receives
//! whole.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder};
use tower_bearer::dev::{DEFAULT_AUDIENCE, DevIssuer};
use tower_bearer::form::{FormBody, FormTokenLayer};
use tower_bearer::{Algorithm, BearerLayer, JwtValidator, Principal};

/// The handler: greets the token's subject and says how many body bytes it received.
async fn hello(request: Request<FormBody<Incoming>>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Put there by `BearerLayer`, which lets no request without a valid token reach us.
    let principal = request.extensions().get::<Principal>().cloned();
    let subject = principal.as_ref().and_then(Principal::subject).unwrap_or("?").to_owned();
    let received = match request.into_body().collect().await {
        Ok(body) => body.to_bytes().len(),
        Err(_) => 0, // the client went away mid-body
    };
    Ok(Response::new(Full::new(Bytes::from(format!("hello {subject}, {received} body bytes\n")))))
}

/// The whole stack: form-body tokens, then the bearer check, then the handler.
pub fn service(
    validator: JwtValidator,
) -> impl Service<
    Request<Incoming>,
    Response = Response<impl http_body::Body<Data = Bytes, Error: Into<tower::BoxError>> + Send + 'static>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    ServiceBuilder::new()
        .layer(FormTokenLayer::new())
        .layer(BearerLayer::new(validator).realm("api"))
        .service_fn(hello)
}

/// Serves [`service`] on `listener`, one task per connection (HTTP/1.1).
pub async fn serve(listener: TcpListener, validator: JwtValidator) -> std::io::Result<()> {
    let service = service(validator);
    loop {
        let (stream, _) = listener.accept().await?;
        let connection = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            if let Err(err) = http1::Builder::new().serve_connection(TokioIo::new(stream), connection).await {
                eprintln!("connection: {err}");
            }
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = match (args.next().as_deref(), args.next()) {
        (None, _) => "127.0.0.1:3000".to_owned(),
        (Some("--listen"), Some(addr)) => addr,
        _ => return Err("usage: hyper_server [--listen ADDR]".into()),
    };
    let dev = DevIssuer::builder().algorithms([Algorithm::ES256]).start().await?;
    let validator = JwtValidator::builder()
        .issuer(dev.issuer())
        .audience(DEFAULT_AUDIENCE)
        .jwks_url(dev.jwks_url())
        .build()?;
    let listener = TcpListener::bind(&listen).await?;
    let addr = listener.local_addr()?;
    let token = dev.token().subject("ada").scope("items:read").sign();
    println!("listening on http://{addr} (issuer {})\n", dev.issuer());
    println!("TOKEN={token}");
    println!("curl -i -H \"Authorization: Bearer $TOKEN\" http://{addr}/   # 200 hello ada");
    println!("curl -i -d \"access_token=$TOKEN&note=hi\" http://{addr}/   # 200, the token in a form body");
    println!("curl -i http://{addr}/   # 401, Bearer realm=\"api\"");
    println!("curl -i -H 'Authorization: Bearer a,b' http://{addr}/   # 400 invalid_request");
    serve(listener, validator).await?;
    Ok(())
}

//! Plain hyper, no axum: `examples/hyper_server.rs` (`FormTokenLayer` and `BearerLayer` around
//! a `service_fn`, served by hyper 1 over `Incoming` bodies) on 127.0.0.1, with keys from the
//! development issuer's JWKS, driven by a real HTTP client.
#![cfg(all(feature = "dev", feature = "axum"))]

#[allow(dead_code)]
#[path = "../examples/hyper_server.rs"]
mod example;

mod common;

use common::{Challenge, Reply, client, dev_issuer, guarded, send, validator};
use http::{StatusCode, header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_bearer::Algorithm;
use tower_bearer::dev::DevIssuer;

const FORM: &str = "application/x-www-form-urlencoded";

/// Serves the example on 127.0.0.1 with `dev`'s keys; its base URL.
async fn start(dev: &DevIssuer) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(example::serve(listener, validator(dev)));
    format!("http://{addr}/")
}

/// Asserts a rejection's status, `realm="api"` and `error` (none when `None`).
#[track_caller]
fn assert_rejected(reply: &Reply, status: StatusCode, error: Option<&str>) {
    assert_eq!(reply.status, status, "{reply:?}");
    let challenge = Challenge::parse(reply.headers[header::WWW_AUTHENTICATE].to_str().unwrap());
    assert_eq!((challenge.get("realm"), challenge.get("error")), (Some("api"), error), "{reply:?}");
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
}

#[tokio::test]
async fn the_handler_reads_the_principal_from_the_extensions() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let url = start(&dev).await;
    let token = dev.token().subject("ada").sign();
    let http = client();

    let reply = guarded(send(http.get(&url).bearer_auth(&token))).await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "hello ada, 0 body bytes\n"));

    assert_rejected(&guarded(send(http.get(&url))).await, StatusCode::UNAUTHORIZED, None);
    let forged = dev_issuer([Algorithm::ES256]).await.token().claim("iss", dev.issuer()).sign();
    let reply = guarded(send(http.get(&url).bearer_auth(forged))).await;
    assert_rejected(&reply, StatusCode::UNAUTHORIZED, Some("invalid_token"));
    let reply = guarded(send(http.get(&url).header(header::AUTHORIZATION, "Bearer a,b"))).await;
    assert_rejected(&reply, StatusCode::BAD_REQUEST, Some("invalid_request"));
}

#[tokio::test]
async fn form_tokens_work_with_hyper_bodies_and_the_body_is_handed_on_whole() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let url = start(&dev).await;
    let token = dev.token().subject("ada").sign();
    let http = client();
    let post = |body: String| http.post(&url).header(header::CONTENT_TYPE, FORM).body(body);

    let form = format!("note=hi&access_token={token}&more=1");
    let reply = guarded(send(post(form.clone()))).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body, format!("hello ada, {} body bytes\n", form.len()));

    // A body that is not a form is not read by the layer: streamed through to the handler.
    let big = vec![b'x'; 1 << 20];
    let reply = guarded(send(http.post(&url).bearer_auth(&token).body(big))).await;
    assert_eq!(reply.body, format!("hello ada, {} body bytes\n", 1 << 20));

    assert_rejected(&guarded(send(post("note=hi".into()))).await, StatusCode::UNAUTHORIZED, None);
    // Answered by the form layer itself, outside the bearer layer: no realm.
    let twice = format!("access_token={token}&access_token={token}");
    let reply = guarded(send(post(twice))).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
    assert_eq!(reply.challenge().get("error"), Some("invalid_request"));
    let header_and_form = post(format!("access_token={token}")).bearer_auth(&token);
    let reply = guarded(send(header_and_form)).await;
    assert_rejected(&reply, StatusCode::BAD_REQUEST, Some("invalid_request"));
    // Over the 64 KiB bound: refused by the form layer too.
    let huge = format!("access_token={token}&pad={}", "x".repeat(64 * 1024));
    let reply = guarded(send(post(huge))).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
}

/// A form body in HTTP/1.1 chunks, as hyper hands it on in several frames.
#[tokio::test]
async fn a_chunked_form_body_is_read_whole() {
    let dev = dev_issuer([Algorithm::ES256]).await;
    let url = start(&dev).await;
    let token = dev.token().subject("ada").sign();
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let (head, tail) = token.split_at(token.len() / 2);
    let chunks = ["note=hi&access_", &format!("token={head}"), &format!("{tail}&x=1")];
    let mut request = format!(
        "POST / HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {FORM}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    for chunk in chunks {
        request.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    request.push_str("0\r\n\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    guarded(stream.read_to_string(&mut response)).await.unwrap();
    let length: usize = chunks.iter().map(|c| c.len()).sum();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with(&format!("hello ada, {length} body bytes\n")), "{response}");
}

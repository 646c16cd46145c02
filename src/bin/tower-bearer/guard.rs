//! Request smuggling guard for HTTP/1.x connections. hyper refuses most ambiguous framing
//! (two different `Content-Length`s, a `Transfer-Encoding` not ending in `chunked`, obsolete
//! line folding) with a `400`, but a request carrying both `Content-Length` and
//! `Transfer-Encoding` is read as chunked (RFC 9112 §6.3 allows it) and reaches the service with
//! no trace of the `Content-Length`. Such a request is a smuggling attempt more often than not,
//! so this reader follows the framing of each request on the connection, holds each header
//! block back until it is complete, and renames `Transfer-Encoding` in a block that also has a
//! `Content-Length` to [`MARKER`] (same length, in place). The service answers a request with
//! the marker `400` and closes the connection.
//!
//! Once the reader stops following the framing (an upgrade, `CONNECT`, or framing hyper refuses
//! anyway), it says so through [`Guarded::unguarded`]: the service then closes the connection
//! after any answer that does not hand it over to another protocol, so no later request on it
//! goes unchecked. (A refused upgrade used to leave the connection open and unguarded.)

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// What `Transfer-Encoding` becomes in a header block that also has a `Content-Length`.
pub const MARKER: &str = "x-smuggling-te-cl";
const TRANSFER_ENCODING: &[u8] = b"transfer-encoding";

/// Where the reader is in the stream of requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting a header block.
    Head,
    /// A body of this many more bytes.
    Body(u64),
    /// A chunked body.
    Chunk(Chunk),
    /// HTTP/2, an upgrade, or framing hyper will refuse anyway: bytes pass untouched.
    Opaque,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// The size line: the size so far, and whether an extension (`;...`) started.
    Size(u64, bool),
    /// Chunk data left.
    Data(u64),
    /// The CRLF after chunk data.
    DataEnd,
    /// Trailer lines: bytes on the current line.
    Trailer(usize),
}

/// An HTTP/1.x connection with its header blocks checked before hyper reads them.
pub struct Guarded<I> {
    inner: I,
    state: State,
    /// The header block being collected.
    head: Vec<u8>,
    /// Bytes ready for hyper, from `out[pos..]`.
    out: Vec<u8>,
    pos: usize,
    max_head: usize,
    /// The first header block, and each later one once begun, must be complete within this
    /// (slowloris). hyper's own timer cannot see a block this reader still holds back.
    header_timeout: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
    first: bool,
    /// Set once `state` is [`State::Opaque`], shared with the connection's service.
    unguarded: Arc<AtomicBool>,
}

impl<I> Guarded<I> {
    pub fn new(inner: I, max_head: usize, header_timeout: Duration) -> Guarded<I> {
        Guarded {
            inner,
            state: State::Head,
            head: Vec::new(),
            out: Vec::new(),
            pos: 0,
            max_head,
            header_timeout,
            deadline: None,
            first: true,
            unguarded: Arc::default(),
        }
    }

    /// Becomes `true` once bytes pass this reader unchecked: the service must then close the
    /// connection after its answer, unless that answer switches protocols.
    pub fn unguarded(&self) -> Arc<AtomicBool> {
        self.unguarded.clone()
    }

    fn set_state(&mut self, state: State) {
        if state == State::Opaque {
            // Before hyper can read the header block that led here: the service sees it set.
            self.unguarded.store(true, Ordering::Release);
        }
        self.state = state;
    }

    /// Runs `bytes` through the framing, appending what hyper may read to `out`.
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.state {
                State::Opaque => {
                    self.out.extend_from_slice(bytes);
                    return;
                }
                State::Head => {
                    // Empty lines before a request line are tolerated (RFC 9112 §2.2).
                    if self.head.is_empty() && matches!(bytes[0], b'\r' | b'\n') {
                        self.out.push(bytes[0]);
                        bytes = &bytes[1..];
                        continue;
                    }
                    let start = self.head.len();
                    self.head.extend_from_slice(bytes);
                    match end_of_head(&self.head, start.saturating_sub(3)) {
                        Some(end) => {
                            // What follows the block came in `bytes`: it goes round the loop again.
                            let rest = self.head.len() - end;
                            self.head.truncate(end);
                            let next = inspect(&mut self.head);
                            self.set_state(next);
                            self.deadline = None;
                            self.first = false;
                            self.out.append(&mut self.head);
                            bytes = &bytes[bytes.len() - rest..];
                        }
                        None if self.head.len() > self.max_head + 1024 => {
                            // hyper answers 431 for this; no need to hold it any longer.
                            self.out.append(&mut self.head);
                            self.set_state(State::Opaque);
                            return;
                        }
                        None => return,
                    }
                }
                State::Body(left) => {
                    let n = (left.min(bytes.len() as u64)) as usize;
                    self.out.extend_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    self.state = if left == n as u64 { State::Head } else { State::Body(left - n as u64) };
                }
                State::Chunk(chunk) => {
                    let b = bytes[0];
                    let next = match chunk {
                        Chunk::Data(left) => {
                            let n = (left.min(bytes.len() as u64)) as usize;
                            self.out.extend_from_slice(&bytes[..n]);
                            bytes = &bytes[n..];
                            let left = left - n as u64;
                            self.state =
                                State::Chunk(if left == 0 { Chunk::DataEnd } else { Chunk::Data(left) });
                            continue;
                        }
                        Chunk::Size(size, ext) => match (b, ext) {
                            (b'\n', _) if size == 0 => State::Chunk(Chunk::Trailer(0)),
                            (b'\n', _) => State::Chunk(Chunk::Data(size)),
                            (b'\r', _) | (_, true) => State::Chunk(Chunk::Size(size, ext)),
                            // hyper allows whitespace after the size (`5 \r\n`): as an
                            // extension, the rest of the line is skipped.
                            (b';' | b' ' | b'\t', false) => State::Chunk(Chunk::Size(size, true)),
                            (_, false) => match (b as char).to_digit(16) {
                                Some(d) if size < (1 << 56) => {
                                    State::Chunk(Chunk::Size(size * 16 + u64::from(d), false))
                                }
                                // Whitespace, junk or an absurd size: hyper refuses it.
                                _ => State::Opaque,
                            },
                        },
                        Chunk::DataEnd => match b {
                            b'\r' => State::Chunk(Chunk::DataEnd),
                            b'\n' => State::Chunk(Chunk::Size(0, false)),
                            _ => State::Opaque,
                        },
                        Chunk::Trailer(len) => match b {
                            b'\n' if len == 0 => State::Head,
                            b'\n' => State::Chunk(Chunk::Trailer(0)),
                            b'\r' => State::Chunk(Chunk::Trailer(len)),
                            _ => State::Chunk(Chunk::Trailer(len + 1)),
                        },
                    };
                    self.out.push(b);
                    bytes = &bytes[1..];
                    self.set_state(next);
                }
            }
        }
    }
}

/// The index just past the empty line that ends a header block, searching from `from`.
fn end_of_head(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some(i + 2);
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

/// Looks at a complete header block, renames `Transfer-Encoding` next to a `Content-Length`,
/// and says what follows the block.
fn inspect(head: &mut [u8]) -> State {
    let mut lines = head.split(|b| *b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(|b| *b == b' ');
    let method = parts.next().unwrap_or_default();
    let version = parts.nth(1).unwrap_or_default();
    if version != b"HTTP/1.1" && version != b"HTTP/1.0" || method == b"CONNECT" {
        // The HTTP/2 preface (`PRI * HTTP/2.0`), or something hyper refuses or tunnels.
        return State::Opaque;
    }
    let (mut length, mut te, mut chunked, mut upgrade) = (None::<Option<u64>>, None::<usize>, false, false);
    let mut offset = 0;
    for line in head.split(|b| *b == b'\n') {
        let at = offset;
        offset += line.len() + 1;
        if at == 0 {
            continue; // the request line
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            length = Some(std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()));
        } else if name.eq_ignore_ascii_case(TRANSFER_ENCODING) {
            te = Some(at);
            chunked = value
                .rsplit(|b| *b == b',')
                .next()
                .is_some_and(|last| trim(last).eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade = true;
        }
    }
    match (length, te) {
        (Some(_), Some(at)) => {
            head[at..at + TRANSFER_ENCODING.len()].copy_from_slice(MARKER.as_bytes());
            // Answered with 400 and a closed connection: nothing after it matters.
            State::Opaque
        }
        _ if upgrade => State::Opaque,
        (None, Some(_)) if chunked => State::Chunk(Chunk::Size(0, false)),
        (None, Some(_)) => State::Opaque,
        (Some(Some(0)), None) | (None, None) => State::Head,
        (Some(Some(n)), None) => State::Body(n),
        (Some(None), None) => State::Opaque,
    }
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

impl<I: AsyncRead + Unpin> AsyncRead for Guarded<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.pos < this.out.len() {
                let n = (this.out.len() - this.pos).min(buf.remaining());
                buf.put_slice(&this.out[this.pos..this.pos + n]);
                this.pos += n;
                if this.pos == this.out.len() {
                    this.out.clear();
                    this.pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.state == State::Opaque && this.head.is_empty() {
                // Nothing to look at any more: straight through.
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            if this.state == State::Head && (this.first || !this.head.is_empty()) {
                let timeout = this.header_timeout;
                let deadline = this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "header read timeout")));
                }
            }
            let mut chunk = [0u8; 8192];
            let n = {
                let mut read = ReadBuf::new(&mut chunk);
                ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
                read.filled().len()
            };
            if n == 0 {
                // End of stream: hand over a partial block for hyper to judge.
                if this.head.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                this.out.append(&mut this.head);
                continue;
            }
            this.feed(&chunk[..n]);
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Guarded<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What hyper would read after `input`, fed in pieces of `step` bytes.
    fn through(input: &str, step: usize) -> String {
        let mut g = Guarded::new((), 16 * 1024, Duration::from_secs(1));
        for piece in input.as_bytes().chunks(step) {
            g.feed(piece);
        }
        String::from_utf8(g.out).unwrap()
    }

    #[test]
    fn transfer_encoding_next_to_content_length_is_renamed() {
        for step in [1, 3, 7, 1000] {
            let both = "POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
            assert_eq!(through(both, step), both.replace("Transfer-Encoding", MARKER), "step {step}");
            let other_order = "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n";
            assert_eq!(through(other_order, step), other_order.replace("transfer-encoding", MARKER));
        }
    }

    #[test]
    fn framing_is_followed_across_requests() {
        // A body and a chunked body that contain what looks like a header block: not inspected.
        let inner = "X: 1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let sized = format!("POST /a HTTP/1.1\r\nContent-Length: {}\r\n\r\n{inner}", inner.len());
        let chunked = format!(
            "POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x};ext=1\r\n{inner}\r\n0\r\nTrailer: x\r\n\r\n",
            inner.len()
        );
        let third = "POST /c HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let all = format!("{sized}{chunked}GET /x HTTP/1.1\r\n\r\n{third}");
        for step in [1, 2, 5, 64, 10_000] {
            let out = through(&all, step);
            let expected = format!(
                "{sized}{chunked}GET /x HTTP/1.1\r\n\r\n{}",
                third.replace("Transfer-Encoding", MARKER)
            );
            assert_eq!(out, expected, "step {step}");
        }
    }

    #[test]
    fn held_until_complete_and_http2_passes() {
        let mut g = Guarded::new((), 16 * 1024, Duration::from_secs(1));
        g.feed(b"GET / HTTP/1.1\r\nHost: a\r\n");
        assert!(g.out.is_empty(), "an incomplete block is held back");
        g.feed(b"\r\n");
        assert_eq!(g.out, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nTransfer-Encoding: x\r\nContent-Length: 1\r\n\r\n";
        assert_eq!(through(preface, 5), preface);
        let upgrade = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n\r\n";
        assert_eq!(through(upgrade, 4), upgrade, "bytes after an upgrade are not HTTP");
    }

    /// The flag the service closes the connection by: set with the header block that made the
    /// reader stop checking (before hyper can read it), and only then.
    #[test]
    fn unguarded_is_said_before_the_block_is_read() {
        let mut g = Guarded::new((), 16 * 1024, Duration::from_secs(1));
        let flag = g.unguarded();
        g.feed(b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n");
        g.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(!flag.load(Ordering::Acquire), "a chunk size with a space is still followed");
        g.feed(b"GET /ws HTTP/1.1\r\nUpgrade: foo\r\n\r");
        assert!(!flag.load(Ordering::Acquire));
        g.feed(b"\n");
        assert!(g.out.ends_with(b"Upgrade: foo\r\n\r\n") && flag.load(Ordering::Acquire));
    }
}

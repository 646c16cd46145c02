//! Bodies that stop coming. Once the response headers went out, the upstream's `timeout_secs`
//! no longer applies: a stalled upstream, or a client that stops sending its upload, would
//! otherwise hold both connections for ever. [`IdleTimeout`] cuts a body that is silent for
//! too long, and [`Progress`] tells the forwarder how the request body is going.

use std::error::Error;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn Error + Send + Sync>;

/// How a request body is going, for the forwarder's timeouts: frames handed on, whether the
/// body is waiting for its source (the client), whether it was cut, and when it ended.
#[derive(Default)]
pub struct Progress {
    frames: AtomicU64,
    waiting: AtomicBool,
    stalled: AtomicBool,
    broken: AtomicBool,
    pub ended: Notify,
}

impl Progress {
    /// Frames handed on so far. Read after [`waiting`](Self::waiting): a frame is counted
    /// before the body stops waiting, so a reader that sees it no longer waiting sees the frame.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Acquire)
    }
    /// Whether the body is waiting for its source: a silence that is the client's, not the
    /// reader's.
    pub fn waiting(&self) -> bool {
        self.waiting.load(Ordering::Acquire)
    }
    /// Whether the body was cut for its silence.
    pub fn stalled(&self) -> bool {
        self.stalled.load(Ordering::Acquire)
    }
    /// Whether the body's source failed: the client's connection closed or was reset before the
    /// body was whole.
    pub fn broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }
}

pin_project! {
    /// `body`, cut with an [`Idle`] error when it keeps its reader waiting for `idle` (`None`:
    /// never). Only the body's own silence counts: the clock runs from the first poll that finds
    /// nothing, not while the reader does not ask.
    pub struct IdleTimeout<B> {
        #[pin]
        body: B,
        #[pin]
        sleep: Sleep,
        idle: Option<Duration>,
        waiting: bool,
        progress: Option<Reporter>,
    }
}

/// The body's link to its [`Progress`]. Dropped with the body, it says the body ended: hyper
/// lets go of a body once it wrote what `Content-Length` announced, or its trailers, without
/// asking for its end.
struct Reporter(Arc<Progress>);

impl Drop for Reporter {
    fn drop(&mut self) {
        self.0.ended.notify_one();
    }
}

impl<B: Body> IdleTimeout<B> {
    pub fn new(body: B, idle: Option<Duration>) -> Self {
        let sleep = tokio::time::sleep(idle.unwrap_or(Duration::ZERO));
        IdleTimeout { body, sleep, idle, waiting: false, progress: None }
    }

    /// Reports to `progress` (an empty body has ended already: it may never be polled).
    pub fn reporting(mut self, progress: Arc<Progress>) -> Self {
        if self.body.is_end_stream() {
            progress.ended.notify_one();
        }
        self.progress = Some(Reporter(progress));
        self
    }
}

/// A body's silence outlasted the idle timeout.
#[derive(Debug)]
pub struct Idle(Duration);

impl fmt::Display for Idle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no body data for {} s", self.0.as_secs())
    }
}

impl Error for Idle {}

impl<B> Body for IdleTimeout<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let mut this = self.project();
        let progress = this.progress.as_ref().map(|r| &*r.0);
        match this.body.as_mut().poll_frame(cx) {
            Poll::Ready(frame) => {
                *this.waiting = false;
                if let Some(p) = progress {
                    // Counted before the body stops waiting (see `Progress::frames`).
                    p.frames.fetch_add(1, Ordering::Release);
                    p.waiting.store(false, Ordering::Release);
                    if matches!(frame, Some(Err(_))) {
                        p.broken.store(true, Ordering::Release);
                    }
                    // A body that knows it is done may never be polled for its end.
                    let trailers = matches!(&frame, Some(Ok(f)) if f.is_trailers());
                    if frame.is_none() || trailers || this.body.is_end_stream() {
                        p.ended.notify_one();
                    }
                }
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                // Waiting for the client, with or without a bound: the forwarder must not
                // blame the upstream for this silence.
                if !*this.waiting {
                    *this.waiting = true;
                    if let Some(p) = progress {
                        p.waiting.store(true, Ordering::Release);
                    }
                    if let Some(idle) = *this.idle {
                        this.sleep.as_mut().reset(Instant::now() + idle);
                    }
                }
                let Some(idle) = *this.idle else { return Poll::Pending };
                if this.sleep.poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if let Some(p) = progress {
                    p.stalled.store(true, Ordering::Release);
                }
                Poll::Ready(Some(Err(Box::new(Idle(idle)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

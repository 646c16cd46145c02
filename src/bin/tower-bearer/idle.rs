//! A body that fails when no frame comes for a while. Once the response headers went out, the
//! upstream's `timeout_secs` no longer applies: a stalled upstream (or a client that stops
//! sending its upload) would otherwise hold both connections for ever.

use std::error::Error;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn Error + Send + Sync>;

pin_project! {
    /// `body`, cut with an [`Idle`] error when `idle` passes between two of its frames (or
    /// between the first poll and the first frame).
    pub struct IdleTimeout<B> {
        #[pin]
        body: B,
        #[pin]
        sleep: Sleep,
        idle: Duration,
        // The clock starts at the first poll: time before it is the reader's, not the body's.
        started: bool,
    }
}

impl<B> IdleTimeout<B> {
    pub fn new(body: B, idle: Duration) -> Self {
        IdleTimeout { body, sleep: tokio::time::sleep(idle), idle, started: false }
    }
}

/// No frame for the idle timeout.
#[derive(Debug)]
pub struct Idle(Duration);

impl fmt::Display for Idle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no body data for {} s", self.0.as_secs())
    }
}

impl Error for Idle {}

/// Whether `err` came from an [`Idle`] body (somewhere in its chain of sources).
pub fn caused(err: &(dyn Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<Idle>() {
            return true;
        }
        next = e.source();
    }
    false
}

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
        if !*this.started {
            *this.started = true;
            this.sleep.as_mut().reset(Instant::now() + *this.idle);
        }
        match this.body.poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep.as_mut().reset(Instant::now() + *this.idle);
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending if this.sleep.poll(cx).is_ready() => {
                Poll::Ready(Some(Err(Box::new(Idle(*this.idle)))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

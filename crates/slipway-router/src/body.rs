//! Response body types: streamed upstream bodies that hold their release's in-flight
//! guard and give their connection back to the pool at the end, and the router's own
//! short pages.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::pool::{Pool, Sender};
use crate::release::InFlightGuard;

/// The body the router answers with: an upstream's, streamed, or a page of its own.
pub(crate) enum ProxyBody {
    /// An upstream response body.
    Upstream(GuardedBody),
    /// A complete in-memory body (taken when sent).
    Page(Option<Bytes>),
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Upstream(body) => Pin::new(body).poll_frame(cx),
            ProxyBody::Page(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream(body) => body.is_end_stream(),
            ProxyBody::Page(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream(body) => body.size_hint(),
            ProxyBody::Page(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}

/// An upstream response body, streamed as it arrives. The request stays counted in flight
/// on its release until this body is dropped, which hyper does once it has written the
/// last frame to the client (or the client went away). If the body was read to its end,
/// the upstream connection goes back to its pool.
pub(crate) struct GuardedBody {
    inner: Incoming,
    ended: bool,
    conn: Option<(Arc<Pool>, Sender)>,
    _guard: InFlightGuard,
}

impl GuardedBody {
    /// Wrap `inner`, holding `guard` for the body's lifetime; `conn` is checked in at the end.
    pub(crate) fn boxed(
        inner: Incoming,
        guard: InFlightGuard,
        conn: Option<(Arc<Pool>, Sender)>,
    ) -> ProxyBody {
        ProxyBody::Upstream(GuardedBody {
            inner,
            ended: false,
            conn,
            _guard: guard,
        })
    }
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for GuardedBody {
    fn drop(&mut self) {
        if let Some((pool, sender)) = self.conn.take() {
            if self.ended || self.inner.is_end_stream() {
                pool.checkin(sender);
            }
        }
    }
}

/// A complete in-memory body.
pub(crate) fn full(text: impl Into<Bytes>) -> ProxyBody {
    let data: Bytes = text.into();
    ProxyBody::Page((!data.is_empty()).then_some(data))
}

//! Response body types: streamed upstream bodies that hold their route's in-flight guard,
//! and the router's own short pages.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::route::InFlightGuard;

/// The body type the router answers with.
pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// An upstream response body, streamed as it arrives. The request stays counted in flight
/// on its route until this body is dropped, which hyper does once it has written the
/// last frame to the client (or the client went away).
pub(crate) struct GuardedBody {
    inner: Incoming,
    _guard: InFlightGuard,
}

impl GuardedBody {
    /// Wrap `inner`, holding `guard` for the body's lifetime.
    pub(crate) fn boxed(inner: Incoming, guard: InFlightGuard) -> ProxyBody {
        UnsyncBoxBody::new(GuardedBody {
            inner,
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
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A complete in-memory body.
pub(crate) fn full(text: impl Into<Bytes>) -> ProxyBody {
    UnsyncBoxBody::new(Full::new(text.into()).map_err(|never| match never {}))
}

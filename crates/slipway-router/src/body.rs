//! Response body types: streamed upstream bodies that hold their release's in-flight
//! guard (the router's own client gives its connection back to the pool at the end:
//! [`crate::upstream::LeanBody`]), and the router's own short pages.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::release::InFlightGuard;
use crate::upstream::LeanBody;

/// The error of a [`ProxyBody`]: hyper's, or the lean client's I/O error.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body the router answers with: an upstream's, streamed, or a page of its own.
pub(crate) enum ProxyBody {
    /// An upstream response body read by the router's client.
    Lean(LeanBody),
    /// The body of an answer to an upgrade request that was not upgraded (hyper's client).
    Upstream(GuardedBody),
    /// A complete in-memory body (taken when sent).
    Page(Option<Bytes>),
    /// A static file, read as it is sent.
    File(FileBody),
    /// A static answer made as it is sent (gzip of a large file, several ranges).
    Produced(ProducedBody),
    /// A body read by another task (a FastCGI answer: [`crate::fastcgi`]), chunk by chunk.
    Channel(tokio::sync::mpsc::Receiver<Result<Bytes, BoxError>>),
    /// An answer of the web console ([`crate::ConsoleSite`]).
    Console(crate::console::ConsoleBody),
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Upstream(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            ProxyBody::Lean(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            ProxyBody::Page(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ProxyBody::File(body) => Poll::Ready(body.next_chunk().map(|r| r.map(Frame::data))),
            ProxyBody::Produced(body) => Poll::Ready(body.next_chunk().map(|r| r.map(Frame::data))),
            ProxyBody::Channel(rx) => rx.poll_recv(cx).map(|c| c.map(|r| r.map(Frame::data))),
            ProxyBody::Console(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream(body) => body.is_end_stream(),
            ProxyBody::Lean(body) => body.is_end_stream(),
            ProxyBody::Page(data) => data.is_none(),
            ProxyBody::File(body) => body.remaining == 0,
            ProxyBody::Produced(body) => body.ended,
            ProxyBody::Channel(_) => false,
            ProxyBody::Console(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream(body) => body.size_hint(),
            ProxyBody::Lean(body) => body.size_hint(),
            ProxyBody::Page(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ProxyBody::File(body) => SizeHint::with_exact(body.remaining),
            ProxyBody::Produced(body) => body
                .length
                .map_or_else(SizeHint::default, SizeHint::with_exact),
            ProxyBody::Channel(_) => SizeHint::default(),
            ProxyBody::Console(body) => body.size_hint(),
        }
    }
}

/// An upstream response body read by hyper's client (the answer to an upgrade request
/// that was not upgraded), streamed as it arrives. The request stays counted in flight on
/// its release until this body is dropped, which hyper does once it has written the last
/// frame to the client (or the client went away).
pub(crate) struct GuardedBody {
    inner: Incoming,
    ended: bool,
    _guard: InFlightGuard,
}

impl GuardedBody {
    /// Wrap `inner`, holding `guard` for the body's lifetime.
    pub(crate) fn boxed(inner: Incoming, guard: InFlightGuard) -> ProxyBody {
        ProxyBody::Upstream(GuardedBody {
            inner,
            ended: false,
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

/// A complete in-memory body.
pub(crate) fn full(text: impl Into<Bytes>) -> ProxyBody {
    let data: Bytes = text.into();
    ProxyBody::Page((!data.is_empty()).then_some(data))
}

/// A part of a static file, read in chunks of [`FILE_CHUNK`] as hyper asks for them (from
/// the page cache: slugs are local and unpacked). The request stays counted in flight on
/// its release until the body is dropped.
pub(crate) struct FileBody {
    file: std::sync::Arc<std::fs::File>,
    offset: u64,
    remaining: u64,
    _guard: Option<InFlightGuard>,
}

impl FileBody {
    /// `len` bytes of `file` from `offset`, holding `guard` while they are sent.
    pub(crate) fn new(
        file: std::sync::Arc<std::fs::File>,
        offset: u64,
        len: u64,
        guard: Option<InFlightGuard>,
    ) -> FileBody {
        FileBody {
            file,
            offset,
            remaining: len,
            _guard: guard,
        }
    }

    /// The next chunk; `None` at the end. A file that became shorter is an error (the
    /// length was promised).
    pub(crate) fn next_chunk(&mut self) -> Option<Result<Bytes, BoxError>> {
        if self.remaining == 0 {
            return None;
        }
        match crate::file_body::read_chunk(&self.file, self.offset, self.remaining) {
            Ok(buf) => {
                self.offset += buf.len() as u64;
                self.remaining -= buf.len() as u64;
                Some(Ok(Bytes::from(buf)))
            }
            Err(e) => {
                self.remaining = 0;
                Some(Err(e.into()))
            }
        }
    }
}

/// A static answer's body made while it is sent ([`crate::file_body`]), a chunk each
/// time hyper asks. The request stays counted in flight on its release until the body is
/// dropped.
pub(crate) struct ProducedBody {
    inner: crate::file_body::Produced,
    /// The whole length, if known before (several ranges), for the size hint.
    length: Option<u64>,
    ended: bool,
    _guard: InFlightGuard,
}

impl ProducedBody {
    /// `inner`, of `length` bytes if known, holding `guard` while it is sent.
    pub(crate) fn new(
        inner: crate::file_body::Produced,
        length: Option<u64>,
        guard: InFlightGuard,
    ) -> ProducedBody {
        ProducedBody {
            inner,
            length,
            ended: false,
            _guard: guard,
        }
    }

    fn next_chunk(&mut self) -> Option<Result<Bytes, BoxError>> {
        if self.ended {
            return None;
        }
        match self.inner.next_chunk() {
            None => {
                self.ended = true;
                None
            }
            Some(Ok(chunk)) => Some(Ok(chunk)),
            Some(Err(e)) => {
                self.ended = true;
                Some(Err(e.into()))
            }
        }
    }
}

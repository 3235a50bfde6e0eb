//! Responses of the console: HTML pages with safe headers, redirects, and bodies fed by a
//! task (server-sent events).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use maud::Markup;
use slipway_router::ConsoleBody;

/// The security headers of every console answer: no caching, no framing, no referrer (a
/// login link's token never leaves in one), scripts and styles of the page only.
fn secure(resp: &mut Response<ConsoleBody>) {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
}

fn full(bytes: impl Into<Bytes>) -> ConsoleBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An HTML page with `status`.
pub fn page(status: StatusCode, markup: Markup) -> Response<ConsoleBody> {
    let mut resp = Response::new(full(markup.into_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure(&mut resp);
    resp
}

/// A 303 to `location` (a path of the console), setting `cookie` if given.
pub fn see_other(location: &str, cookie: Option<&str>) -> Response<ConsoleBody> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(c).ok()) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    secure(&mut resp);
    resp
}

/// Add `Set-Cookie: cookie` to `resp`.
pub fn with_cookie(mut resp: Response<ConsoleBody>, cookie: &str) -> Response<ConsoleBody> {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// A body whose chunks a task sends; it ends when the task drops its sender.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

/// A `text/event-stream` answer fed through the returned sender; the stream ends when
/// the sender is dropped, and sending fails once the client went away.
pub fn event_stream() -> (Response<ConsoleBody>, tokio::sync::mpsc::Sender<Bytes>) {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let mut resp = Response::new(ChannelBody(rx).boxed_unsync());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    secure(&mut resp);
    (resp, tx)
}

/// One server-sent event: `data` as a JSON string, with an event name unless it is a
/// plain message.
pub fn event(name: Option<&str>, data: &str) -> Bytes {
    let data = serde_json::Value::String(data.to_string()).to_string();
    Bytes::from(match name {
        Some(name) => format!("event: {name}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    })
}

//! Handling one client request: pick the route, forward to the upstream, stream back.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;

use crate::body::{full, GuardedBody, ProxyBody};
use crate::headers::{
    add_forwarded, ensure_request_id, strip_hop_by_hop, wants_upgrade, X_REQUEST_ID,
};
use crate::netns;
use crate::route::InFlightGuard;
use crate::router::Router;
use crate::table::Target;

/// How often route selection retries when a switch happens while it picks a route.
const MAX_ROUTE_RETRIES: usize = 16;

/// Answer one client request.
pub(crate) async fn handle(
    router: &Router,
    client: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    // Absolute-form targets and HTTP/2 carry the host in the URI; it wins over `Host`.
    let host_value = match req.uri().authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
        None => req.headers().get(header::HOST).cloned(),
    };
    let Some(host) = host_value
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return page(
            StatusCode::BAD_REQUEST,
            "400 Bad Request: the request names no host.\n",
            None,
        );
    };
    let request_id = ensure_request_id(req.headers_mut());

    let guard = match pick_route(router, &host) {
        Picked::Live(guard) => guard,
        Picked::Deploying => {
            let mut resp = page(
                StatusCode::SERVICE_UNAVAILABLE,
                "503 Service Unavailable: this site is being deployed. Retry in a few seconds.\n",
                Some(&request_id),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return resp;
        }
        Picked::Unknown => {
            tracing::debug!(host = %host, "no route for host");
            return page(
                StatusCode::NOT_FOUND,
                "404 Not Found: nothing is deployed at this address.\n",
                Some(&request_id),
            );
        }
    };
    forward(router, client, req, host_value, request_id, guard).await
}

enum Picked {
    Live(InFlightGuard),
    Deploying,
    Unknown,
}

/// Find the host's target and, for a live route, count the request in on it.
///
/// The count is taken before a second look at the table: if that look still shows the same
/// route, any switch away from it happens later, so whoever waits for the old route to
/// drain sees this request.
fn pick_route(router: &Router, host: &str) -> Picked {
    let mut attempt = 0;
    loop {
        let table = router.table.load();
        let route = match table.lookup(host) {
            None => return Picked::Unknown,
            Some(Target::Deploying) => return Picked::Deploying,
            Some(Target::Live(route)) => route,
        };
        let guard = route.enter();
        attempt += 1;
        let still = matches!(router.table.load().lookup(host), Some(Target::Live(now)) if Arc::ptr_eq(now, route));
        if still || attempt >= MAX_ROUTE_RETRIES {
            return Picked::Live(guard);
        }
    }
}

/// Send the request to the guard's upstream and stream its answer back.
async fn forward(
    router: &Router,
    client: SocketAddr,
    mut req: Request<Incoming>,
    host_value: Option<HeaderValue>,
    request_id: HeaderValue,
    guard: InFlightGuard,
) -> Response<ProxyBody> {
    let upstream = guard.route().upstream().clone();
    let upgrade = (req.version() == Version::HTTP_11 && wants_upgrade(req.headers()))
        .then(|| req.headers().get(header::UPGRADE).cloned())
        .flatten();
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));

    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if let Some(protocol) = &upgrade {
        parts.headers.insert(header::UPGRADE, protocol.clone());
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    join_cookies(&mut parts.headers);
    add_forwarded(&mut parts.headers, client.ip(), host_value.as_ref());
    if !parts.headers.contains_key(header::HOST) {
        if let Some(host) = &host_value {
            parts.headers.insert(header::HOST, host.clone());
        }
    }
    parts.uri = origin_form(&parts.uri);
    parts.version = Version::HTTP_11;
    let method = parts.method.clone();
    let path = parts.uri.clone();

    let config = &router.config;
    let stream = match tokio::time::timeout(
        config.connect_timeout,
        netns::connect(upstream.netns.as_deref(), upstream.port),
    )
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            tracing::warn!(release = %upstream.release, port = upstream.port, error = %err, request_id = ?request_id, "upstream connect failed");
            return bad_gateway(&request_id);
        }
        Err(_) => {
            tracing::warn!(release = %upstream.release, port = upstream.port, request_id = ?request_id, "upstream connect timed out");
            return bad_gateway(&request_id);
        }
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(pair) => pair,
        Err(err) => {
            tracing::warn!(release = %upstream.release, error = %err, "upstream handshake failed");
            return bad_gateway(&request_id);
        }
    };
    // Until the response headers arrived, giving up on the request (timeout, or the client
    // went away and hyper dropped this future) also closes the upstream connection.
    let connection = AbortOnDrop(Some(tokio::spawn(async move {
        if let Err(err) = conn.with_upgrades().await {
            tracing::debug!(error = %err, "upstream connection ended with an error");
        }
    })));

    let sent = sender.send_request(Request::from_parts(parts, body));
    let result = match config.request_timeout {
        Some(limit) => match tokio::time::timeout(limit, sent).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(release = %upstream.release, %method, %path, request_id = ?request_id, "upstream response timed out");
                return page(
                    StatusCode::GATEWAY_TIMEOUT,
                    "504 Gateway Timeout: the application did not answer in time.\n",
                    Some(&request_id),
                );
            }
        },
        None => sent.await,
    };
    let mut resp = match result {
        Ok(resp) => resp,
        Err(err) => {
            tracing::warn!(release = %upstream.release, %method, %path, error = %err, request_id = ?request_id, "upstream request failed");
            return bad_gateway(&request_id);
        }
    };
    // From here on the connection lives as long as the response body (or upgrade) needs it.
    connection.disarm();
    tracing::debug!(release = %upstream.release, %method, %path, status = resp.status().as_u16(), "proxied");

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                // The upgraded stream stays counted in flight on its route.
                let _guard = guard;
                match tokio::try_join!(client_upgrade, upstream_upgrade) {
                    Ok((client_io, upstream_io)) => {
                        let mut client_io = TokioIo::new(client_io);
                        let mut upstream_io = TokioIo::new(upstream_io);
                        if let Err(err) =
                            tokio::io::copy_bidirectional(&mut client_io, &mut upstream_io).await
                        {
                            tracing::debug!(error = %err, "upgraded connection ended with an error");
                        }
                    }
                    Err(err) => tracing::debug!(error = %err, "upgrade failed"),
                }
            });
            let (parts, _) = resp.into_parts();
            return Response::from_parts(parts, full(""));
        }
        // The client asked for no upgrade: an upstream 101 is a protocol error.
        return bad_gateway(&request_id);
    }

    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if !parts.headers.contains_key(&X_REQUEST_ID) {
        parts.headers.insert(&X_REQUEST_ID, request_id);
    }
    Response::from_parts(parts, GuardedBody::boxed(body, guard))
}

/// Aborts the task when dropped, unless disarmed.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl AbortOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// `Uri` reduced to path and query (what an HTTP/1.1 origin server expects).
fn origin_form(uri: &Uri) -> Uri {
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::from(path)
}

/// HTTP/2 clients may split `Cookie` into several fields; HTTP/1.1 wants one.
fn join_cookies(headers: &mut hyper::HeaderMap) {
    let cookies: Vec<&[u8]> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    if cookies.len() < 2 {
        return;
    }
    let joined = cookies.join(&b"; "[..]);
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}

fn bad_gateway(request_id: &HeaderValue) -> Response<ProxyBody> {
    page(
        StatusCode::BAD_GATEWAY,
        "502 Bad Gateway: the application is not answering.\n",
        Some(request_id),
    )
}

/// A short plain-text answer of the router itself.
fn page(
    status: StatusCode,
    text: &'static str,
    request_id: Option<&HeaderValue>,
) -> Response<ProxyBody> {
    let mut resp = Response::new(full(text));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(id) = request_id {
        headers.insert(&X_REQUEST_ID, id.clone());
    }
    resp
}

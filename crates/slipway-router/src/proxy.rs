//! Handling one client request: pick the rule, answer a redirect or forward to the
//! upstream over a pooled connection, stream the answer back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::http::request::Parts;
use hyper::http::uri::PathAndQuery;
use hyper::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;

use crate::body::{full, FileBody, GuardedBody, ProducedBody, ProxyBody};
use crate::files::{StaticAnswer, StaticBody};
use crate::gate::Gate;
use crate::headers::{
    add_forwarded, add_hsts, client_value, ensure_request_id, strip_hop_by_hop, wants_upgrade,
    X_REQUEST_ID,
};
use crate::locations::{Ask, Resolved, WebSite};
use crate::metrics::EnvStats;
use crate::pool::Pool;
use crate::release::{InFlightGuard, LiveRelease};
use crate::request_body::{announced_over, linger, refusal_page, BodyFailure, BodyLimits};
use crate::router::Router;
use crate::table::{redirect_location, Action, HostEntry, HostTarget};
use crate::upstream::{LeanBody, UpstreamError};

/// How often route selection retries when a switch happens while it picks a release.
const MAX_ROUTE_RETRIES: usize = 16;
/// How many times a request is sent again after its upstream connection failed in a way
/// that proves the request was not processed.
pub(crate) const MAX_SEND_RETRIES: usize = 3;
/// How long a closed upgraded connection waits for the client's end of stream.
const LINGER: Duration = Duration::from_secs(2);

/// The client connection a request came on.
pub(crate) struct Client {
    /// The client's address as `X-Forwarded-For` gives it (formatted once per connection).
    pub(crate) forwarded_for: HeaderValue,
    /// The connection's place under the cap on open client connections, if it has one:
    /// an upgraded connection's tunnel keeps a share of it, so that the connection still
    /// counts once hyper let go of it.
    place: Option<Arc<OwnedSemaphorePermit>>,
    /// Whether the client connection is TLS (the HTTPS listener).
    pub(crate) tls: bool,
    /// The one app a connection on an app's relationship address is for
    /// ([`Router::listen_app`]): its requests go there whatever their `Host`, never to the
    /// route table, the console or an ACME answer.
    pub(crate) fixed: Option<Arc<HostEntry>>,
}

impl Client {
    /// The client connected from `addr`.
    pub(crate) fn new(addr: SocketAddr) -> Client {
        Client {
            forwarded_for: client_value(addr.ip()),
            place: None,
            tls: false,
            fixed: None,
        }
    }

    /// The client connected from `addr`, holding `place` under the cap on open client
    /// connections for as long as its connection is open.
    pub(crate) fn with_place(addr: SocketAddr, place: OwnedSemaphorePermit) -> Client {
        Client {
            place: Some(Arc::new(place)),
            ..Client::new(addr)
        }
    }
}

/// Answer one client request.
pub(crate) async fn handle(
    router: &Router,
    client: &Client,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    // Routed by one and read by the app as the other: refused (as on the router's own path).
    let mut hosts = req.headers().get_all(header::HOST).iter();
    if hosts.next().is_some() && hosts.next().is_some() {
        return bad_request("400 Bad Request: the request has more than one Host field.\n");
    }
    // Absolute-form targets and HTTP/2 carry the host in the URI; it wins over `Host`.
    let host_value = match req.uri().authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
        None => req.headers().get(header::HOST).cloned(),
    };
    let Some(host) = host_value.as_ref().and_then(|v| v.to_str().ok()) else {
        return page(
            StatusCode::BAD_REQUEST,
            "400 Bad Request: the request names no host.\n",
            None,
        );
    };
    // An ACME challenge in progress: answered on plain HTTP for any host, before the
    // console, the routes and their redirects.
    if !client.tls && client.fixed.is_none() {
        if let Some(key_authorization) = router.acme_answer(req.uri().path()) {
            let mut resp = page(StatusCode::OK, "", None);
            *resp.body_mut() = full(key_authorization);
            return resp;
        }
    }
    if let Some(console) = router.console_for(host).filter(|_| client.fixed.is_none()) {
        let site = Arc::clone(&console.site);
        return site.serve(req, client.tls).await.map(ProxyBody::Console);
    }
    let request_id = ensure_request_id(req.headers_mut());
    let started = std::time::Instant::now();
    // HSTS only ever over TLS; the app's own field, if it sends one, stays.
    let hsts = client
        .tls
        .then(|| router.hsts(host, req.uri().path()))
        .flatten();
    let mut resp = match pick(
        router,
        client.fixed.as_ref(),
        host,
        req.uri().path(),
        req.uri().query(),
        client.tls,
    )
    .await
    {
        Picked::Live(guard, pool) => {
            let stats = Arc::clone(guard.stats());
            let resp = forward(router, client, req, host_value, request_id, guard, pool).await;
            stats.record(resp.status().as_u16(), started.elapsed());
            resp
        }
        Picked::Site(guard, pool, site) => {
            let stats = Arc::clone(guard.stats());
            let ask = Ask::of(
                req.method(),
                req.uri().path(),
                req.uri().query(),
                req.headers(),
            );
            let resp = match site.resolve(&ask) {
                Resolved::Forward => {
                    forward(router, client, req, host_value, request_id, guard, pool).await
                }
                Resolved::Answer(answer) => static_response(answer, guard, &request_id),
                Resolved::Script(call) => {
                    // The same request fields the app would get over HTTP.
                    let mut req = req;
                    let headers = req.headers_mut();
                    strip_hop_by_hop(headers);
                    headers.insert(&X_REQUEST_ID, request_id.clone());
                    join_cookies(headers);
                    add_forwarded(
                        headers,
                        &client.forwarded_for,
                        host_value.as_ref(),
                        client.tls,
                    );
                    let remote = client.forwarded_for.to_str().unwrap_or("").to_string();
                    let (name, port) = crate::fastcgi::server_name_port(host, client.tls);
                    crate::fastcgi::respond(
                        pool.upstream(),
                        req,
                        call,
                        &remote,
                        name,
                        port,
                        &request_id,
                        guard,
                        BodyLimits::of(&router.config),
                    )
                    .await
                }
            };
            stats.record(resp.status().as_u16(), started.elapsed());
            resp
        }
        Picked::Answer(answer, stats) => {
            let resp = router_answer(answer, host, &request_id);
            let stats = stats.as_deref().unwrap_or(&router.stats.unrouted);
            stats.record(resp.status().as_u16(), started.elapsed());
            resp
        }
    };
    add_hsts(resp.headers_mut(), hsts.as_ref());
    resp
}

/// The response for a static answer; the request stays counted in flight on its release
/// until the file was sent.
fn static_response(
    answer: StaticAnswer,
    guard: InFlightGuard,
    request_id: &HeaderValue,
) -> Response<ProxyBody> {
    let body = match answer.body {
        StaticBody::Empty => full(""),
        StaticBody::Text(text) => full(text),
        StaticBody::File { file, offset, len } => {
            ProxyBody::File(FileBody::new(file, offset, len, Some(guard)))
        }
        StaticBody::Produced(body) => {
            ProxyBody::Produced(ProducedBody::new(body, answer.length, guard))
        }
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = answer.status;
    let headers = resp.headers_mut();
    for (name, value) in answer.headers {
        headers.append(name, value);
    }
    match answer.length {
        Some(length) if answer.status != StatusCode::NOT_MODIFIED => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        // Not known before the body is made: hyper chunks it (or closes, HTTP/1.0).
        _ => {}
    }
    headers.insert(&X_REQUEST_ID, request_id.clone());
    resp
}

/// Where a request goes.
pub(crate) enum Picked {
    /// To an app of a live release (counted in flight there), over this pool.
    Live(InFlightGuard, Arc<Pool>),
    /// To an app with locations (counted in flight on its release): its files first,
    /// then this pool.
    Site(InFlightGuard, Arc<Pool>, Arc<WebSite>),
    /// Nowhere: the router answers itself (counted on this environment's counters, if
    /// the host has one live, else on the router's own).
    Answer(RouterAnswer, Option<Arc<EnvStats>>),
}

/// A request the router answers itself.
pub(crate) enum RouterAnswer {
    Redirect(HeaderValue, StatusCode),
    Deploying,
    Unknown,
}

/// The router's own answer (a short page) to a request for `host`.
pub(crate) fn router_answer(
    answer: RouterAnswer,
    host: &str,
    request_id: &HeaderValue,
) -> Response<ProxyBody> {
    match answer {
        RouterAnswer::Redirect(location, code) => {
            let mut resp = page(code, "Moved.\n", Some(request_id));
            resp.headers_mut().insert(header::LOCATION, location);
            resp
        }
        RouterAnswer::Deploying => {
            let mut resp = page(
                StatusCode::SERVICE_UNAVAILABLE,
                "503 Service Unavailable: this site is being deployed. Retry in a few seconds.\n",
                Some(request_id),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            resp
        }
        RouterAnswer::Unknown => {
            tracing::debug!(host = %host, "no route for host");
            page(
                StatusCode::NOT_FOUND,
                "404 Not Found: nothing is deployed at this address.\n",
                Some(request_id),
            )
        }
    }
}

enum Step {
    Done(Picked),
    Wait(Arc<Gate>),
    Retry,
}

/// Find the rule for a request of `path` (and `query`) on `host` (or in `fixed`, the
/// entry of a connection to an app's relationship address) and, for an upstream, count
/// the request in on its release. Waits (bounded) while the environment's routes are
/// held.
pub(crate) async fn pick(
    router: &Router,
    fixed: Option<&Arc<HostEntry>>,
    host: &str,
    path: &str,
    query: Option<&str>,
    tls: bool,
) -> Picked {
    let mut may_wait = true;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match step(
            router,
            fixed,
            host,
            path,
            query,
            tls,
            may_wait,
            attempt >= MAX_ROUTE_RETRIES,
        ) {
            Step::Done(picked) => return picked,
            Step::Wait(gate) => {
                may_wait = false;
                if !gate.wait_open(router.config.hold_timeout).await {
                    tracing::warn!(host, "routes held longer than the hold timeout; going on");
                }
            }
            Step::Retry => {}
        }
    }
}

/// `https://HOST[:PORT]PATH[?QUERY]` for a plain-HTTP request to a route written only
/// `https://`: the host without the port the client named, the HTTPS listener's port
/// unless it is 443.
fn https_location(host: &str, port: u16, path: &str, query: Option<&str>) -> Option<HeaderValue> {
    let name = match host.rsplit_once(':') {
        Some((name, p)) if p.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let mut location = format!("https://{name}");
    if port != 443 {
        location.push_str(&format!(":{port}"));
    }
    location.push_str(path);
    if let Some(q) = query {
        location.push('?');
        location.push_str(q);
    }
    HeaderValue::from_str(&location).ok()
}

#[allow(clippy::too_many_arguments)]
fn step(
    router: &Router,
    fixed: Option<&Arc<HostEntry>>,
    host: &str,
    path: &str,
    query: Option<&str>,
    tls: bool,
    may_wait: bool,
    last: bool,
) -> Step {
    let unknown = Step::Done(Picked::Answer(RouterAnswer::Unknown, None));
    let table;
    let entry = match fixed {
        Some(entry) => entry,
        None => {
            table = router.table.load();
            let Some(entry) = table.lookup(host) else {
                return unknown;
            };
            entry
        }
    };
    if may_wait && entry.gate.is_closed() {
        return Step::Wait(Arc::clone(&entry.gate));
    }
    let release = match &entry.target {
        HostTarget::Deploying => return Step::Done(Picked::Answer(RouterAnswer::Deploying, None)),
        HostTarget::Live { release, .. } => release,
    };
    let Some(rule) = entry.rule_for(path, tls) else {
        return unknown;
    };
    // Not on an app's relationship listener (`fixed`): apps call each other over plain HTTP.
    if fixed.is_none() && !tls && !rule.scheme.prefers(false) {
        if let Some(port) = router.config.https_redirect_port {
            return match https_location(host, port, path, query) {
                Some(location) => Step::Done(Picked::Answer(
                    RouterAnswer::Redirect(location, hyper::StatusCode::MOVED_PERMANENTLY),
                    Some(Arc::clone(release.stats())),
                )),
                None => unknown,
            };
        }
    }
    match &rule.action {
        Action::Redirect { to, code } => match redirect_location(to, &rule.prefix, path, query) {
            Some(location) => Step::Done(Picked::Answer(
                RouterAnswer::Redirect(location, *code),
                Some(Arc::clone(release.stats())),
            )),
            None => unknown,
        },
        Action::Upstream(index) => {
            let Some(pool) = release.pool(*index) else {
                return unknown;
            };
            // Counted in before the retired flag is read: a switch that retires the release
            // after this point sees the request in `drained`; one that retired it before
            // is seen here, and the table is read again.
            let guard = release.enter();
            if release.is_retired() && !last {
                return Step::Retry;
            }
            Step::Done(Picked::Live(guard, Arc::clone(pool)))
        }
        Action::Site(index, site) => {
            let Some(pool) = release.pool(*index) else {
                return unknown;
            };
            // As above: the files are the release's, counted in on it.
            let guard = release.enter();
            if release.is_retired() && !last {
                return Step::Retry;
            }
            Step::Done(Picked::Site(guard, Arc::clone(pool), Arc::clone(site)))
        }
    }
}

/// Send the request to the pool's upstream and stream its answer back.
async fn forward(
    router: &Router,
    client: &Client,
    mut req: Request<Incoming>,
    host_value: Option<HeaderValue>,
    request_id: HeaderValue,
    guard: InFlightGuard,
    pool: Arc<Pool>,
) -> Response<ProxyBody> {
    let upgrade = (req.version() == Version::HTTP_11 && wants_upgrade(req.headers()))
        .then(|| req.headers().get(header::UPGRADE).cloned())
        .flatten();
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));

    let (mut parts, body) = req.into_parts();
    let client_version = parts.version;
    if announced_over(&body, BodyLimits::of(&router.config)) {
        let refused = (BodyFailure::TooLarge, Some(body), client_version);
        return refuse_body(refused, &parts, &router.config, &request_id);
    }
    strip_hop_by_hop(&mut parts.headers);
    // After the stripping: a client that names `X-Request-Id` (or `X-Forwarded-*`) in
    // `Connection` cannot take them off the request the app gets.
    parts.headers.insert(&X_REQUEST_ID, request_id.clone());
    if let Some(protocol) = &upgrade {
        parts.headers.insert(header::UPGRADE, protocol.clone());
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    join_cookies(&mut parts.headers);
    add_forwarded(
        &mut parts.headers,
        &client.forwarded_for,
        host_value.as_ref(),
        client.tls,
    );
    if !parts.headers.contains_key(header::HOST) {
        if let Some(host) = &host_value {
            parts.headers.insert(header::HOST, host.clone());
        }
    }
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        parts.uri = origin_form(&parts.uri);
    }
    parts.version = Version::HTTP_11;

    match client_upgrade {
        None => {
            send(
                router,
                pool,
                (parts, client_version),
                body,
                request_id,
                guard,
            )
            .await
        }
        Some(client_upgrade) => {
            let upgrade = ClientUpgrade {
                on: client_upgrade,
                place: client.place.clone(),
            };
            send_upgrade(router, pool, parts, body, request_id, guard, upgrade).await
        }
    }
}

/// Send a request with the router's client ([`crate::upstream`]) over a pooled connection
/// and stream the answer back. A request whose head could not be written is sent again on
/// another connection; so is a bodiless GET/HEAD/OPTIONS whose reused connection closed
/// before any response byte (the app closed it as it was reused).
async fn send(
    router: &Router,
    pool: Arc<Pool>,
    (parts, client_version): (Parts, Version),
    body: Incoming,
    request_id: HeaderValue,
    guard: InFlightGuard,
) -> Response<ProxyBody> {
    let config = &router.config;
    let mut body = (!hyper::body::Body::is_end_stream(&body)).then_some(body);
    let repeatable =
        body.is_none() && matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let last = attempt >= MAX_SEND_RETRIES;
        let (mut conn, reused) = match pool.checkout_or_connect(config.connect_timeout).await {
            Ok(got) => got,
            Err(err) => {
                guard.stats().connect_error();
                return upstream_failed(&pool, &err, &request_id);
            }
        };
        let exchange = conn.exchange(&parts, &mut body, config.max_request_body);
        let Some(result) = within_request_timeout(config.request_timeout, exchange).await else {
            return gateway_timeout(&pool, &request_id);
        };
        let head = match result {
            Ok(head) => head,
            Err(failure) => {
                let closed = matches!(failure.error, UpstreamError::ClosedBeforeResponse);
                if !last && (!failure.sent || (reused && closed && repeatable)) {
                    tracing::debug!(error = %failure.error, "upstream connection failed before a response; again");
                    continue;
                }
                if let UpstreamError::BodyTooLarge(rest) = failure.error {
                    let refused = (BodyFailure::TooLarge, rest, client_version);
                    return refuse_body(refused, &parts, config, &request_id);
                }
                if let UpstreamError::ClientBody(err) = &failure.error {
                    tracing::debug!(error = %err, request_id = ?request_id, "the client's request body ended early");
                    return bad_gateway(&request_id);
                }
                return upstream_failed(&pool, &failure.error, &request_id);
            }
        };
        // The answer's hop-by-hop headers were dropped as its head was parsed.
        let (mut resp_parts, ()) = head.response.into_parts();
        if !resp_parts.headers.contains_key(&X_REQUEST_ID) {
            resp_parts.headers.insert(&X_REQUEST_ID, request_id);
        }
        let body = LeanBody::new(conn, head.framing, head.keep_alive, pool, guard);
        return Response::from_parts(resp_parts, ProxyBody::Lean(body));
    }
}

/// Answer a request whose body the router refused (the page of [`crate::request_body`]),
/// lingering on what the client still sends of it.
fn refuse_body(
    (failure, rest, client_version): (BodyFailure, Option<Incoming>, Version),
    parts: &Parts,
    config: &crate::RouterConfig,
    request_id: &HeaderValue,
) -> Response<ProxyBody> {
    tracing::info!(request_id = ?request_id, uri = %parts.uri, "request body refused: {}", failure.text());
    if let Some(rest) = rest {
        linger(rest, BodyLimits::of(config));
    }
    refusal_page(&failure, client_version, request_id).unwrap_or_else(|| bad_gateway(request_id))
}

/// `fut` within the request timeout, if there is one: `None` when the time ran out.
pub(crate) async fn within_request_timeout<F: std::future::Future>(
    limit: Option<Duration>,
    fut: F,
) -> Option<F::Output> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, fut).await.ok(),
        None => Some(fut.await),
    }
}

/// Log an upstream that sent no response headers within the request timeout; the answer
/// is a 504.
pub(crate) fn gateway_timeout(pool: &Pool, request_id: &HeaderValue) -> Response<ProxyBody> {
    let upstream = pool.upstream();
    tracing::warn!(release = %upstream.release, port = upstream.port, request_id = ?request_id, "upstream sent no response headers within the request timeout");
    page(
        StatusCode::GATEWAY_TIMEOUT,
        "504 Gateway Timeout: the application did not answer in time.\n",
        Some(request_id),
    )
}

/// Log a failed upstream request; the answer is a 502.
pub(crate) fn upstream_failed(
    pool: &Pool,
    error: &dyn std::fmt::Display,
    request_id: &HeaderValue,
) -> Response<ProxyBody> {
    let upstream = pool.upstream();
    tracing::warn!(release = %upstream.release, port = upstream.port, error = %error, request_id = ?request_id, "upstream request failed");
    bad_gateway(request_id)
}

/// The client's side of an upgrade: its connection once upgraded, and its place under the
/// cap on open client connections.
struct ClientUpgrade {
    on: hyper::upgrade::OnUpgrade,
    place: Option<Arc<OwnedSemaphorePermit>>,
}

/// Send a request that asks for a protocol upgrade over a connection of its own (hyper's
/// client) and, on `101 Switching Protocols`, join the two upgraded connections.
async fn send_upgrade(
    router: &Router,
    pool: Arc<Pool>,
    parts: Parts,
    body: Incoming,
    request_id: HeaderValue,
    guard: InFlightGuard,
    client_upgrade: ClientUpgrade,
) -> Response<ProxyBody> {
    let config = &router.config;
    let mut sender = match pool.connect_upgrade(config.connect_timeout).await {
        Ok(sender) => sender,
        Err(err) => return upstream_failed(&pool, &err, &request_id),
    };
    let sent = sender.send_request(Request::from_parts(parts, body));
    let Some(result) = within_request_timeout(config.request_timeout, sent).await else {
        return gateway_timeout(&pool, &request_id);
    };
    let mut resp = match result {
        Ok(resp) => resp,
        Err(err) => return upstream_failed(&pool, &err, &request_id),
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            // The upgraded connection stays counted in flight on its release.
            let release = Arc::clone(guard.release());
            let _guard = guard;
            let _sender = sender;
            // So does the client connection's place under the cap.
            let _place = client_upgrade.place;
            match tokio::try_join!(client_upgrade.on, upstream_upgrade) {
                Ok((client_io, upstream_io)) => {
                    let _open = EnvStats::upgrade_opened(release.stats());
                    tunnel(&release, TokioIo::new(client_io), TokioIo::new(upstream_io)).await;
                }
                Err(err) => tracing::debug!(error = %err, "upgrade failed"),
            }
        });
        let (parts, _) = resp.into_parts();
        return Response::from_parts(parts, full(""));
    }
    // Not upgraded: an ordinary answer, on a connection that is not kept.
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if !parts.headers.contains_key(&X_REQUEST_ID) {
        parts.headers.insert(&X_REQUEST_ID, request_id);
    }
    Response::from_parts(parts, GuardedBody::boxed(body, guard))
}

/// Copy bytes both ways until either side ends, or until the release closes its upgrades;
/// then end both sides in order (a FIN, not a reset).
async fn tunnel<C, U>(release: &LiveRelease, mut client: C, mut upstream: U)
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    U: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let closing = {
        let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
        tokio::select! {
            result = copy => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "upgraded connection ended with an error");
                }
                false
            }
            () = release.upgrades_closing() => true,
        }
    };
    if closing {
        tracing::debug!(
            release = release.name(),
            "closing an upgraded connection at the drain timeout"
        );
        let _ = upstream.shutdown().await;
        let _ = client.shutdown().await;
        // Read what the client still sends until it closes too: unread data would turn
        // the close into a reset.
        let _ = tokio::time::timeout(LINGER, async {
            let mut buf = [0u8; 4096];
            while let Ok(n) = client.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
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
fn join_cookies(headers: &mut HeaderMap) {
    let mut cookies = headers.get_all(header::COOKIE).iter();
    if cookies.next().is_none() || cookies.next().is_none() {
        return;
    }
    let joined: Vec<&[u8]> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    let joined = joined.join(&b"; "[..]);
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}

/// The router's 400 answer, saying `why`.
pub(crate) fn bad_request(why: &'static str) -> Response<ProxyBody> {
    page(StatusCode::BAD_REQUEST, why, None)
}

fn bad_gateway(request_id: &HeaderValue) -> Response<ProxyBody> {
    page(
        StatusCode::BAD_GATEWAY,
        "502 Bad Gateway: the application is not answering.\n",
        Some(request_id),
    )
}

/// A short plain-text answer of the router itself.
pub(crate) fn page(
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

#[cfg(test)]
mod tests {
    use super::https_location;

    #[test]
    fn https_location_keeps_host_path_and_query_and_names_the_port_unless_443() {
        let at = |host, port, path, query| {
            https_location(host, port, path, query).map(|v| v.to_str().unwrap_or("?").to_string())
        };
        assert_eq!(
            at("a.example:8080", 8443, "/x/y", Some("z=1")).as_deref(),
            Some("https://a.example:8443/x/y?z=1")
        );
        assert_eq!(
            at("a.example", 443, "/", None).as_deref(),
            Some("https://a.example/")
        );
        // Nothing a header may not carry.
        assert_eq!(at("a.example", 443, "/\n", None), None);
    }
}

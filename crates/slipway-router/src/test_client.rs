//! A raw HTTP/1.1 client for the crate's unit tests: requests written as text, answers
//! read byte for byte, so a stray or missing byte on a kept-alive connection shows.

use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;

/// One answer read off a raw connection: status line, fields (lowercase names) and
/// body (as long as `content-length` says, none for HEAD and 304).
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) fields: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Send `request` on `conn` and read its answer (`head`: the request was a HEAD);
/// `buf` keeps what was read beyond it.
pub(crate) async fn ask(
    conn: &mut TcpStream,
    buf: &mut Vec<u8>,
    request: &str,
    head: bool,
) -> Answer {
    use tokio::io::AsyncWriteExt as _;
    conn.write_all(request.as_bytes()).await.expect("send");
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read_buf(buf).await.expect("read head");
        assert!(
            n > 0,
            "closed before a head: {:?}",
            String::from_utf8_lossy(buf)
        );
    };
    let text = String::from_utf8(buf[..end].to_vec()).expect("an ASCII head");
    let mut lines = text.split("\r\n");
    let status = lines.next().expect("status line")[9..12]
        .parse()
        .expect("a status");
    let fields: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    buf.drain(..end);
    let mut answer = Answer {
        status,
        fields,
        body: Vec::new(),
    };
    if answer.field("transfer-encoding") == Some("chunked") {
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                let n = conn.read_buf(buf).await.expect("read a chunk size");
                assert!(n > 0, "closed within a chunked body");
            };
            let size_text = String::from_utf8_lossy(&buf[..line_end]).to_string();
            let size = usize::from_str_radix(size_text.trim(), 16).expect("a chunk size");
            while buf.len() < line_end + 2 + size + 2 {
                let n = conn.read_buf(buf).await.expect("read a chunk");
                assert!(n > 0, "closed within a chunk");
            }
            answer
                .body
                .extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
            buf.drain(..line_end + 2 + size + 2);
            if size == 0 {
                return answer;
            }
        }
    }
    let len: usize = match answer.field("content-length") {
        Some(l) if !head && answer.status != 304 => l.parse().expect("a length"),
        _ => 0,
    };
    while buf.len() < len {
        let n = conn.read_buf(buf).await.expect("read body");
        assert!(n > 0, "closed after {} of {len} body bytes", buf.len());
    }
    answer.body = buf.drain(..len).collect();
    answer
}

/// A router serving `site` as the only app of host `host` (its upstream on `port`), on a
/// loopback port: its address and the sender that stops it.
pub(crate) async fn serve_site(
    host: &str,
    port: u16,
    site: crate::Site,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    serve_site_with(host, port, site, crate::RouterConfig::default()).await
}

/// A site serving the folder `dir` as static files from `/` (one root location, no PHP,
/// no mounts), to hand to [`serve_site`].
pub(crate) fn static_site(dir: &std::path::Path) -> crate::Site {
    let mut root = crate::Location::new("/");
    root.root = Some(String::new());
    crate::Site {
        app_dir: dir.into(),
        tag: "t1".into(),
        locations: vec![root],
        fastcgi: false,
        no_web_process: false,
        mounts: Vec::new(),
    }
}

/// [`serve_site`] with the router's settings `config`.
pub(crate) async fn serve_site_with(
    host: &str,
    port: u16,
    site: crate::Site,
    config: crate::RouterConfig,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    use crate::{EnvRoutes, Router, Upstream};
    let router = Router::new(config);
    let mut routes = EnvRoutes::single(
        vec![host.into()],
        Upstream {
            release: "r1".into(),
            netns: None,
            port,
            socket: None,
        },
    );
    routes.sites = vec![("app".into(), site)];
    router.switch("p/main", routes).expect("switch");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        router
            .serve(listener, async {
                let _ = stop_rx.await;
            })
            .await
    });
    (addr, stop_tx, serving)
}

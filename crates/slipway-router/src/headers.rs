//! Header rewriting between client and upstream: hop-by-hop headers, `X-Forwarded-*`,
//! `X-Request-Id`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};

/// `X-Request-Id`.
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that apply to one connection only (RFC 9110 7.6.1, plus the usual legacy ones).
/// Static names: removing them costs a hash lookup each, no parsing.
static HOP_BY_HOP: [&HeaderName; 9] = [
    &header::CONNECTION,
    &PROXY_CONNECTION,
    &KEEP_ALIVE,
    &header::PROXY_AUTHENTICATE,
    &header::PROXY_AUTHORIZATION,
    &header::TE,
    &header::TRAILER,
    &header::TRANSFER_ENCODING,
    &header::UPGRADE,
];

/// Whether the field name `name` (any case) is one of the hop-by-hop headers every
/// message loses.
pub(crate) fn is_hop_by_hop_name(name: &str) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| h.as_str().eq_ignore_ascii_case(name))
}

/// Remove hop-by-hop headers, including every header named in `Connection`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names (comparing standard names is an integer compare) finds
    // whether there is anything to remove; most messages carry only `Connection`, if that.
    let mut found = 0u16;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| *h == name) {
            found |= 1 << i;
        }
    }
    if found == 0 {
        return;
    }
    // HOP_BY_HOP[0] is `Connection`.
    if found & 1 != 0 {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            // The usual tokens name no header of their own (or one removed below anyway).
            .filter(|t| {
                !["keep-alive", "close", "upgrade"]
                    .iter()
                    .any(|k| t.eq_ignore_ascii_case(k))
            })
            .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if found & (1 << i) != 0 {
            headers.remove(*name);
        }
    }
}

/// Add `hsts` (a route's HSTS value, over TLS only) to `headers` as
/// `Strict-Transport-Security`, unless they have that field already (an app's own stays).
pub(crate) fn add_hsts(headers: &mut HeaderMap, hsts: Option<&HeaderValue>) {
    if let Some(value) = hsts {
        headers
            .entry(header::STRICT_TRANSPORT_SECURITY)
            .or_insert_with(|| value.clone());
    }
}

/// Append `hsts` as a `strict-transport-security` field to a head being written, unless
/// the head `has` one already (the router's own HTTP/1.1 path).
pub(crate) fn put_hsts(out: &mut Vec<u8>, hsts: Option<&HeaderValue>, has: bool) {
    if let Some(value) = hsts.filter(|_| !has) {
        put_field(out, b"strict-transport-security", value.as_bytes());
    }
}

/// Append the header field `name: value` and its line end to a head being written.
pub(crate) fn put_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Start an answer head for a client: `HTTP/1.1`, the status and its canonical reason (as
/// hyper writes it).
pub(crate) fn put_status_line(out: &mut Vec<u8>, status: hyper::StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Whether the request asks for a protocol upgrade (`Connection: upgrade` + `Upgrade`).
pub(crate) fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// The client address as `X-Forwarded-For` writes it (IPv4-mapped IPv6 as IPv4). Computed
/// once per client connection.
pub(crate) fn client_value(client: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&client.to_canonical().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Add the forwarding headers: append the client (see [`client_value`]) to
/// `X-Forwarded-For`, set `X-Forwarded-Proto` (`https` when the client connection is
/// TLS, else `http`) and `X-Forwarded-Host` (the host the client asked for).
pub(crate) fn add_forwarded(
    headers: &mut HeaderMap,
    client: &HeaderValue,
    host: Option<&HeaderValue>,
    tls: bool,
) {
    if !headers.contains_key(&X_FORWARDED_FOR) {
        headers.insert(&X_FORWARDED_FOR, client.clone());
    } else {
        let mut value = Vec::new();
        for v in headers.get_all(&X_FORWARDED_FOR) {
            value.extend_from_slice(v.as_bytes());
            value.extend_from_slice(b", ");
        }
        value.extend_from_slice(client.as_bytes());
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            headers.insert(&X_FORWARDED_FOR, value);
        }
    }
    let proto = if tls { "https" } else { "http" };
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    match host {
        Some(host) => {
            headers.insert(&X_FORWARDED_HOST, host.clone());
        }
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }
}

/// The request's `X-Request-Id` if it is a sane one (1..=200 visible ASCII characters),
/// otherwise a new id; the header is set to the returned value.
pub(crate) fn ensure_request_id(headers: &mut HeaderMap) -> HeaderValue {
    let existing = headers
        .get(&X_REQUEST_ID)
        .filter(|v| is_sane_request_id(v.as_bytes()));
    let id = match existing {
        Some(v) => v.clone(),
        None => new_request_id(),
    };
    headers.insert(&X_REQUEST_ID, id.clone());
    id
}

/// A client's `X-Request-Id` value, if it is a sane one (see [`ensure_request_id`]).
pub(crate) fn sane_request_id(value: &[u8]) -> Option<HeaderValue> {
    is_sane_request_id(value)
        .then(|| HeaderValue::from_bytes(value).ok())
        .flatten()
}

/// 1..=200 visible ASCII characters.
fn is_sane_request_id(value: &[u8]) -> bool {
    !value.is_empty() && value.len() <= 200 && value.iter().all(|c| c.is_ascii_graphic())
}

/// A new 32-hex-digit request id, unique within the process and unlikely to repeat across
/// processes.
pub(crate) fn new_request_id() -> HeaderValue {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let mut bytes = [0u8; 8];
        // SAFETY: getrandom writes at most `bytes.len()` bytes into the buffer.
        let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
        if n == bytes.len() as isize {
            u64::from_ne_bytes(bytes)
        } else {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            now ^ (u64::from(std::process::id()) << 32)
        }
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let hi = splitmix64(seed ^ n);
    let lo = splitmix64(hi ^ n.rotate_left(32));
    let mut text = [0u8; 32];
    for (i, byte) in hi
        .to_be_bytes()
        .into_iter()
        .chain(lo.to_be_bytes())
        .enumerate()
    {
        text[2 * i] = HEX[usize::from(byte >> 4)];
        text[2 * i + 1] = HEX[usize::from(byte & 0xf)];
    }
    HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, X-Secret , bad header"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("content-type"));
    }

    #[test]
    fn detects_upgrade() {
        let mut h = HeaderMap::new();
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        assert!(!wants_upgrade(&h));
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(wants_upgrade(&h));
    }

    #[test]
    fn forwarded_headers_append_client() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert("x-forwarded-host", HeaderValue::from_static("spoofed"));
        let host = HeaderValue::from_static("main.demo.localhost:8080");
        let client = client_value("::ffff:127.0.0.1".parse().unwrap());
        assert_eq!(client, "127.0.0.1");
        add_forwarded(&mut h, &client, Some(&host), false);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 10.0.0.2, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "main.demo.localhost:8080");
        add_forwarded(&mut h, &client, None, false);
        assert!(!h.contains_key("x-forwarded-host"));
    }

    #[test]
    fn request_ids_are_kept_or_generated() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc-123"));
        assert_eq!(ensure_request_id(&mut h), "abc-123");
        h.insert("x-request-id", HeaderValue::from_static("has space"));
        let id = ensure_request_id(&mut h);
        assert_eq!(id.len(), 32);
        assert!(
            id.as_bytes()
                .iter()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            "{id:?}"
        );
        assert_eq!(h["x-request-id"], id);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            assert!(seen.insert(new_request_id()));
        }
    }
}

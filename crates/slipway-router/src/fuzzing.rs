//! Entry points for the fuzz targets (`crates/slipway-router/fuzz`) and the in-tree check
//! over sample heads: the router's two HTTP/1.1 head parsers on arbitrary bytes, each
//! checked against httparse (the parser hyper serves and reads with) on the same bytes.
//! Not part of the router's API.

/// Parse `data` as a client's request head (the router's own HTTP/1.1 path): panics if
/// the parser disagrees with httparse, serves a head that has two `Host` fields or a bare
/// LF, or writes a head for the app that is not the client's plus the router's fields.
pub fn request_head(data: &[u8]) {
    crate::h1::check_request_head(data);
}

/// Parse `data` as an app's answer head, for a GET and for a HEAD: panics if the typed
/// parse (hyper's side) and the byte-for-byte one (the router's own path) disagree, or
/// what is written for the client does not parse back to the same answer.
pub fn answer_head(data: &[u8]) {
    crate::upstream::check_answer_head(data);
}

/// Read `data` as what a client sends to a static file: a request path, a `Range`, an
/// `Accept-Encoding`, an `If-None-Match`. Panics if a decoded path could leave a root
/// (a `..` segment, NUL, backslash, an empty segment) or a byte range is not within the
/// file.
pub fn static_request(data: &[u8]) {
    crate::locations::check_static_request(data);
}

/// Read `data` as PHP-FPM's answer: FastCGI records, then the CGI head of their
/// `FCGI_STDOUT`. Panics if a record is taken off wrongly or a parsed head is not valid.
pub fn fastcgi_answer(data: &[u8]) {
    crate::fastcgi::check_answer(data);
}

/// Decode `data` as a chunked request body (the router's own HTTP/1.1 path, a PHP
/// upload): panics if decoding it in pieces gives another result than whole, or a body
/// the decoder takes is not the one hyper's HTTP/1.1 server reads from the same bytes.
pub fn chunked_body(data: &[u8]) {
    crate::chunked::check_chunked_body(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sample heads, each also cut at every length: none may make the checks fail.
    #[test]
    fn sample_heads_and_their_prefixes_pass_the_checks() {
        let requests: [&[u8]; 12] = [
            b"GET /a?b=1 HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nX-Request-Id: r-1\r\n\r\n",
            b"HEAD / HTTP/1.1\r\nhost: h\r\nConnection: close, keep-alive\r\nTE: trailers\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n",
            b"GET / HTTP/1.1\nHost: h\n\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\nContent-Type: a/b\r\n\r\nx",
            b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
            b"DELETE /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: x-request-id\r\nX-Forwarded-For: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Host: s\r\nX-Forwarded-Proto: https\r\nCookie: a\r\n\r\nGET",
            b"GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n",
        ];
        let answers: [&[u8]; 8] = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-App: 1\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\nConnection: x-secret\r\nX-Secret: 1\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nKeep-Alive: timeout=5\r\nX-Request-Id: a\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        ];
        for sample in requests {
            for end in 0..=sample.len() {
                request_head(&sample[..end]);
            }
        }
        for sample in [
            &b"/a/../b"[..],
            b"/%2e%2e/x",
            b"/%c0%ae/%00",
            b"/a//./b/",
            b"bytes=0-5",
            b"bytes=-3",
            b"bytes=9-",
        ] {
            for end in 0..=sample.len() {
                static_request(&sample[..end]);
            }
        }
        for sample in answers {
            for end in 0..=sample.len() {
                answer_head(&sample[..end]);
            }
        }
    }

    /// Sample chunked bodies, each also cut at every length.
    #[test]
    fn sample_chunked_bodies_and_their_prefixes_pass_the_checks() {
        for sample in [
            &b"5\r\nhello\r\n0\r\n\r\n"[..],
            b"3;ext=1\r\nabc\r\n1 \r\nd\r\n0\r\nX-T: v\r\n\r\nGET / HTTP/1.1\r\n",
            b"a\r\n0123456789\r\n00\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"2\r\nab\n0\r\n\r\n",
            b"0\r\nX: 1\n\r\n",
        ] {
            for end in 0..=sample.len() {
                chunked_body(&sample[..end]);
            }
        }
    }

    /// Random chunked bodies (chunk sizes, hex case, leading zeros, extensions, trailers,
    /// a pipelined request after them), whole and with one byte changed, cut or dropped:
    /// the checks against hyper hold for each (a small in-tree stand-in for the fuzz
    /// target, with a fixed seed).
    #[test]
    fn random_chunked_bodies_and_mutations_pass_the_checks() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |below: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % below.max(1)
        };
        for _ in 0..150 {
            let mut body = Vec::new();
            for _ in 0..next(4) {
                let size = next(40) as usize;
                let mut hex = format!("{size:x}");
                if next(3) == 0 {
                    hex = hex.to_uppercase();
                }
                if next(4) == 0 {
                    hex.insert(0, '0');
                }
                body.extend_from_slice(hex.as_bytes());
                match next(4) {
                    0 => body.extend_from_slice(b";a=b"),
                    1 => body.extend_from_slice(b" ;x"),
                    _ => {}
                }
                body.extend_from_slice(b"\r\n");
                body.extend((0..size).map(|_| b'a' + next(26) as u8));
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"0\r\n");
            if next(3) == 0 {
                body.extend_from_slice(b"X-Sum: 1\r\n");
            }
            body.extend_from_slice(b"\r\nGET / HTTP/1.1\r\n\r\n");
            chunked_body(&body);
            let at = next(body.len() as u64) as usize;
            let mut changed = body.clone();
            changed[at] = [b'\n', b'\r', b';', b'0', b'f', b' ', b'x'][next(7) as usize];
            chunked_body(&changed);
            chunked_body(&body[..at]);
            let mut dropped = body.clone();
            dropped.remove(at);
            chunked_body(&dropped);
        }
    }

    /// Sample FastCGI answers, each also cut at every length.
    #[test]
    fn sample_fastcgi_answers_and_their_prefixes_pass_the_checks() {
        let mut answer = Vec::new();
        for (kind, content) in [
            (6u8, &b"Status: 404 Not Found\r\nX-A: b\r\n\r\nbody"[..]),
            (7, b"PHP Notice: x"),
            (6, b" more"),
            (3, &[0, 0, 0, 0, 0, 0, 0, 0]),
        ] {
            let padding = (8 - content.len() % 8) % 8;
            answer.extend_from_slice(&[1, kind, 0, 1, 0, content.len() as u8, padding as u8, 0]);
            answer.extend_from_slice(content);
            answer.extend(std::iter::repeat_n(0u8, padding));
        }
        for n in 0..=answer.len() {
            fastcgi_answer(&answer[..n]);
        }
        fastcgi_answer(&[1, 6, 0, 1, 255, 255, 255, 0]);
    }
}

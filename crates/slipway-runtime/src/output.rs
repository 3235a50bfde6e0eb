//! Reading a process's stdout and stderr concurrently and handing out whole lines.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest line handed out; longer output without a newline is split.
const MAX_LINE: usize = 64 * 1024;

/// Collects bytes and cuts them into lines.
#[derive(Default)]
struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    /// Adds bytes; calls `emit` for every finished line (without its line ending).
    fn feed(&mut self, data: &[u8], emit: &mut dyn FnMut(&str)) {
        self.buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(pos) = self.buf[start..].iter().position(|&b| b == b'\n') {
            emit_line(&self.buf[start..start + pos], emit);
            start += pos + 1;
        }
        self.buf.drain(..start);
        while self.buf.len() >= MAX_LINE {
            let rest = self.buf.split_off(MAX_LINE);
            emit_line(&self.buf, emit);
            self.buf = rest;
        }
    }

    /// Hands out what is left (a last line without a newline).
    fn finish(&mut self, emit: &mut dyn FnMut(&str)) {
        if !self.buf.is_empty() {
            emit_line(&self.buf, emit);
            self.buf.clear();
        }
    }
}

fn emit_line(bytes: &[u8], emit: &mut dyn FnMut(&str)) {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    emit(&String::from_utf8_lossy(bytes));
}

/// Reads both streams until both end, calling `on_line` for each line in arrival order.
pub(crate) async fn stream_lines<A, B>(mut a: A, mut b: B, on_line: &mut (dyn FnMut(&str) + Send))
where
    A: AsyncRead + Unpin,
    B: AsyncRead + Unpin,
{
    let (mut sa, mut sb) = (LineSplitter::default(), LineSplitter::default());
    let (mut buf_a, mut buf_b) = (vec![0u8; 8192], vec![0u8; 8192]);
    let (mut a_open, mut b_open) = (true, true);
    let mut emit = |line: &str| on_line(line);
    while a_open || b_open {
        tokio::select! {
            r = a.read(&mut buf_a), if a_open => match r {
                Ok(n) if n > 0 => sa.feed(&buf_a[..n], &mut emit),
                _ => { a_open = false; sa.finish(&mut emit); }
            },
            r = b.read(&mut buf_b), if b_open => match r {
                Ok(n) if n > 0 => sb.feed(&buf_b[..n], &mut emit),
                _ => { b_open = false; sb.finish(&mut emit); }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut out = Vec::new();
        let mut s = LineSplitter::default();
        for c in chunks {
            s.feed(c, &mut |l| out.push(l.to_string()));
        }
        s.finish(&mut |l| out.push(l.to_string()));
        out
    }

    #[test]
    fn splits_lines_across_chunks() {
        assert_eq!(
            split(&[b"a\nb", b"c\r\n", b"\n", b"tail"]),
            vec!["a", "bc", "", "tail"]
        );
        assert_eq!(split(&[b"\xff\n"]), vec!["\u{fffd}"]);
        let long = vec![b'x'; MAX_LINE * 2 + 5];
        let lines = split(&[&long]);
        assert_eq!(
            lines.iter().map(|l| l.len()).collect::<Vec<_>>(),
            vec![MAX_LINE, MAX_LINE, 5]
        );
    }

    #[tokio::test]
    async fn merges_two_streams() {
        let mut lines = Vec::new();
        stream_lines(&b"1\n2\n"[..], &b"e1\ne2"[..], &mut |l: &str| {
            lines.push(l.to_string())
        })
        .await;
        lines.sort();
        assert_eq!(lines, vec!["1", "2", "e1", "e2"]);
    }
}

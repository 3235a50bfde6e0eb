//! pkt-line framing (gitprotocol-common): reading packets and writing (side-band) packets.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest pkt-line, length header included.
pub const MAX_PKT_LEN: usize = 65520;
/// Largest payload of a pkt-line.
pub const MAX_DATA_LEN: usize = MAX_PKT_LEN - 4;
/// Largest payload of a side-band packet (one byte goes to the band number).
pub const MAX_BAND_DATA_LEN: usize = MAX_DATA_LEN - 1;

/// One packet read from the peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet {
    /// `0000`.
    Flush,
    /// `0001` (protocol v2 only; an error in the v0/v1 push protocol).
    Delim,
    /// A data packet's payload, as sent (a trailing `\n` is kept).
    Data(Vec<u8>),
}

/// Errors reading pkt-lines.
#[derive(Debug, thiserror::Error)]
pub enum PktError {
    /// The peer closed the stream before the first byte of a packet.
    #[error("the client closed the connection")]
    Eof,
    /// The peer closed the stream in the middle of a packet.
    #[error("truncated pkt-line")]
    Truncated,
    /// The four length bytes are not hexadecimal digits.
    #[error("bad pkt-line length header {0:?}")]
    BadLength(String),
    /// The length is 2 or 3 (reserved/impossible) or above the protocol maximum.
    #[error("invalid pkt-line length {0}")]
    InvalidLength(usize),
    /// Reading failed.
    #[error("cannot read from the client: {0}")]
    Io(#[from] std::io::Error),
}

/// Parses a 4-byte pkt-line length header.
pub fn parse_len(header: &[u8; 4]) -> Result<usize, PktError> {
    let mut len = 0usize;
    for &b in header {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => {
                return Err(PktError::BadLength(
                    String::from_utf8_lossy(header).into_owned(),
                ))
            }
        };
        len = len * 16 + usize::from(digit);
    }
    Ok(len)
}

/// Reads one packet. `Err(PktError::Eof)` if the stream ends cleanly before it.
pub async fn read_packet<R: AsyncRead + Unpin>(input: &mut R) -> Result<Packet, PktError> {
    let mut header = [0u8; 4];
    let mut filled = 0;
    while filled < 4 {
        let n = input.read(&mut header[filled..]).await?;
        if n == 0 {
            return Err(if filled == 0 {
                PktError::Eof
            } else {
                PktError::Truncated
            });
        }
        filled += n;
    }
    let len = parse_len(&header)?;
    match len {
        0 => Ok(Packet::Flush),
        1 => Ok(Packet::Delim),
        2 | 3 => Err(PktError::InvalidLength(len)),
        len if len > MAX_PKT_LEN => Err(PktError::InvalidLength(len)),
        len => {
            let mut data = vec![0u8; len - 4];
            match input.read_exact(&mut data).await {
                Ok(_) => Ok(Packet::Data(data)),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(PktError::Truncated),
                Err(e) => Err(PktError::Io(e)),
            }
        }
    }
}

/// Appends `data` framed as one pkt-line to `out`. `data` must be at most [`MAX_DATA_LEN`] bytes.
pub fn encode(data: &[u8], out: &mut Vec<u8>) {
    debug_assert!(data.len() <= MAX_DATA_LEN);
    out.extend_from_slice(format!("{:04x}", data.len() + 4).as_bytes());
    out.extend_from_slice(data);
}

/// Appends `data` as side-band packets of `band` to `out`, split at [`MAX_BAND_DATA_LEN`].
pub fn encode_band(band: u8, data: &[u8], out: &mut Vec<u8>) {
    for chunk in data.chunks(MAX_BAND_DATA_LEN) {
        out.extend_from_slice(format!("{:04x}", chunk.len() + 5).as_bytes());
        out.push(band);
        out.extend_from_slice(chunk);
    }
}

/// The flush packet.
pub const FLUSH: &[u8] = b"0000";

/// The keepalive git's receive-pack sends while hooks run: an empty band-1 packet.
pub const KEEPALIVE: &[u8] = b"0005\x01";

/// Writes bytes to the client and flushes them.
pub async fn send<W: AsyncWrite + Unpin>(output: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    output.write_all(bytes).await?;
    output.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(mut input: &[u8]) -> Vec<Result<Packet, String>> {
        let mut out = Vec::new();
        loop {
            match read_packet(&mut input).await {
                Err(PktError::Eof) => return out,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
                Ok(p) => out.push(Ok(p)),
            }
        }
    }

    #[tokio::test]
    async fn parses_data_flush_delim() {
        let got = read_all(b"0009hello0000000100050").await;
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], Ok(Packet::Data(b"hello".to_vec())));
        assert_eq!(got[1], Ok(Packet::Flush));
        assert_eq!(got[2], Ok(Packet::Delim));
        assert_eq!(got[3], Ok(Packet::Data(b"0".to_vec())));
        // Empty data packet.
        assert_eq!(read_all(b"0004").await, vec![Ok(Packet::Data(Vec::new()))]);
        // Upper-case hex is accepted.
        assert_eq!(
            read_all(b"000Aabcdef").await,
            vec![Ok(Packet::Data(b"abcdef".to_vec()))]
        );
    }

    #[tokio::test]
    async fn rejects_bad_hex() {
        for bad in [&b"00g4abcd"[..], b"zzzz", b"-001", b" 004"] {
            let got = read_all(bad).await;
            assert!(
                matches!(got.last(), Some(Err(e)) if e.contains("bad pkt-line length")),
                "{bad:?}: {got:?}"
            );
        }
    }

    #[tokio::test]
    async fn rejects_reserved_and_too_long() {
        assert!(
            matches!(read_all(b"0002").await.last(), Some(Err(e)) if e.contains("invalid pkt-line length 2"))
        );
        assert!(
            matches!(read_all(b"0003").await.last(), Some(Err(e)) if e.contains("invalid pkt-line length 3"))
        );
        // 0xfff1 = 65521 > 65520.
        assert!(matches!(read_all(b"fff1").await.last(), Some(Err(e)) if e.contains("65521")));
        assert!(matches!(read_all(b"ffff").await.last(), Some(Err(e)) if e.contains("65535")));
    }

    #[tokio::test]
    async fn rejects_truncated() {
        assert_eq!(
            read_all(b"00").await,
            vec![Err("truncated pkt-line".to_string())]
        );
        assert_eq!(
            read_all(b"000ahel").await,
            vec![Err("truncated pkt-line".to_string())]
        );
        assert_eq!(
            read_all(b"0009hello000").await.last(),
            Some(&Err("truncated pkt-line".to_string()))
        );
    }

    #[tokio::test]
    async fn max_length_packet_round_trips() {
        let data = vec![b'x'; MAX_DATA_LEN];
        let mut framed = Vec::new();
        encode(&data, &mut framed);
        assert_eq!(&framed[..4], b"fff0");
        assert_eq!(read_all(&framed).await, vec![Ok(Packet::Data(data))]);
    }

    #[test]
    fn band_splits_large_payloads() {
        let data = vec![7u8; MAX_BAND_DATA_LEN + 10];
        let mut out = Vec::new();
        encode_band(2, &data, &mut out);
        assert_eq!(&out[..5], b"fff0\x02");
        let second = 4 + MAX_DATA_LEN;
        assert_eq!(&out[second..second + 5], b"000f\x02");
        assert_eq!(out.len(), 5 + MAX_BAND_DATA_LEN + 5 + 10);
    }
}

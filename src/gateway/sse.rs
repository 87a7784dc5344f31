//! Server-sent events, as streamable HTTP carries MCP messages: a decoder
//! for what an upstream sends, and the encoding of what the gateway sends.
//!
//! Only what MCP uses: `data:` lines joined by `\n` make an event's data,
//! a blank line ends the event; `id:`, `event:`, `retry:` and comments are
//! read and ignored (the gateway does not resume upstream streams). An
//! event whose data is empty carries no message and is skipped: MCP
//! 2025-11-25 has servers open a stream with one (an id and an empty
//! `data:`, to prime the client for resumption; rmcp's server does). An
//! event larger than the decoder's limit is an error, not a truncation.

use bytes::{Bytes, BytesMut};

/// Decodes a byte stream into the data of its events.
pub struct Decoder {
    buf: BytesMut,
    /// Bytes at the start of `buf` known to hold no line end: each byte is
    /// searched once, however the stream is cut.
    scanned: usize,
    data: Vec<u8>,
    has_data: bool,
    limit: usize,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("event stream: an event exceeds {0} bytes")]
pub struct TooLarge(pub usize);

impl Decoder {
    pub fn new(limit: usize) -> Decoder {
        Decoder {
            buf: BytesMut::new(),
            scanned: 0,
            data: Vec::new(),
            has_data: false,
            limit,
        }
    }

    /// Feeds bytes; returns the data of every event they complete.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Vec<u8>>, TooLarge> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = self.buf[self.scanned..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|at| self.scanned + at)
        {
            self.scanned = 0;
            let line = self.buf.split_to(end + 1);
            let mut line = &line[..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            if line.is_empty() {
                if self.has_data {
                    let data = std::mem::take(&mut self.data);
                    if !data.is_empty() {
                        events.push(data);
                    }
                    self.has_data = false;
                }
                continue;
            }
            if let Some(value) = line.strip_prefix(b"data") {
                let value = match value {
                    [b':', b' ', rest @ ..] | [b':', rest @ ..] => rest,
                    [] => &[][..],
                    // `dataX: ...` is another field.
                    _ => continue,
                };
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
                if self.data.len() > self.limit {
                    return Err(TooLarge(self.limit));
                }
            }
        }
        self.scanned = self.buf.len();
        if self.buf.len() > self.limit {
            return Err(TooLarge(self.limit));
        }
        Ok(events)
    }
}

/// One event carrying a message.
pub fn event(data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 24);
    out.extend_from_slice(b"event: message\ndata: ");
    // A JSON text the gateway writes has no raw newlines; a line break
    // would start another field.
    for &b in data {
        if b == b'\n' {
            out.extend_from_slice(b"\ndata: ");
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// A comment line that keeps an idle stream open through proxies.
pub fn keep_alive() -> Bytes {
    Bytes::from_static(b": keep-alive\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_decode_the_same() {
        let stream = b"id: 1\nevent: message\ndata: {\"a\":\ndata: 1}\n\n: comment\n\nretry: 10\r\ndata:{}\r\n\r\n";
        for cut in 0..stream.len() {
            let mut d = Decoder::new(1024);
            let mut got = d.feed(&stream[..cut]).expect("feed");
            got.extend(d.feed(&stream[cut..]).expect("feed"));
            assert_eq!(got, vec![b"{\"a\":\n1}".to_vec(), b"{}".to_vec()], "cut at {cut}");
        }
    }

    /// A priming event (an id and an empty `data:`) is no message; a data
    /// line of its own in a larger event still counts.
    #[test]
    fn events_with_empty_data_are_skipped() {
        let mut d = Decoder::new(1024);
        let got = d
            .feed(
                b"id: 0\nretry: 3000\ndata:\n\nid: 1\ndata: \n\ndata:\ndata: {}\n\nevent: message\ndata: {\"a\":1}\n\n",
            )
            .expect("feed");
        assert_eq!(got, vec![b"\n{}".to_vec(), b"{\"a\":1}".to_vec()]);
    }

    #[test]
    fn oversized_events_are_errors() {
        let mut d = Decoder::new(8);
        assert_eq!(d.feed(b"data: 0123456789\n"), Err(TooLarge(8)));
        let mut d = Decoder::new(8);
        assert_eq!(
            d.feed(b"data: 0123456789"),
            Err(TooLarge(8)),
            "an unterminated line counts too"
        );
    }

    /// This thread's CPU time (the least of three runs is taken, so other
    /// load on the machine does not decide the outcome).
    fn thread_cpu() -> std::time::Duration {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .map(std::time::Duration::from_nanos)
            .expect("/proc/thread-self/schedstat")
    }

    /// An upstream decides how its event stream is cut: a long line sent
    /// in small pieces must cost linear time, not a search of everything
    /// waiting in the buffer for every piece. Checked as a ratio: 8 times
    /// the line must cost well under 64 times the time (quadratic). Linear
    /// decoding measures 8x to 26x on a 2-core VM (a 32 MiB line leaves the
    /// caches and faults in fresh pages), so the bound is 40x.
    #[test]
    fn a_long_line_in_small_pieces_decodes_in_linear_time() {
        const GROWTH: usize = 8;
        const MOST: f64 = 40.0;
        const MEASURABLE: std::time::Duration = std::time::Duration::from_millis(20);
        let cost = |size: usize| {
            let line = [b"data: ".as_slice(), &vec![b'x'; size], b"\n\n"].concat();
            (0..3)
                .map(|_| {
                    let mut d = Decoder::new(64 << 20);
                    let started = thread_cpu();
                    let events: usize = line.chunks(256).map(|piece| d.feed(piece).expect("feed").len()).sum();
                    assert_eq!(events, 1);
                    thread_cpu().saturating_sub(started)
                })
                .min()
                .unwrap_or_default()
        };
        let mut size = 64 << 10;
        let mut small = cost(size);
        while small < MEASURABLE && size < 4 << 20 {
            size *= 2;
            small = cost(size);
        }
        let large = cost(size * GROWTH);
        let growth = large.as_secs_f64() / small.as_secs_f64().max(1e-9);
        assert!(
            growth < MOST,
            "{small:?} for {} KiB, {large:?} for {} KiB ({growth:.1}x for {GROWTH}x the line)",
            size >> 10,
            (size * GROWTH) >> 10
        );
    }

    #[test]
    fn encoded_events_decode() {
        let mut d = Decoder::new(1024);
        assert_eq!(d.feed(&event(b"{\"x\":1}")).expect("feed"), vec![b"{\"x\":1}".to_vec()]);
    }
}

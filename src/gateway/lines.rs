//! Newline-delimited messages, as MCP's stdio transport frames them, read
//! with a size limit: a peer cannot make the gateway buffer without end.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One line read.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line without its end (`\n`, or `\r\n`).
    Text(Vec<u8>),
    /// A line longer than the limit; its bytes were read and dropped.
    TooLong(usize),
}

/// Reads the next line, or `None` at the end of the stream. Empty lines
/// are skipped. A last line without a newline still counts.
pub async fn next_line<R: AsyncBufRead + Unpin>(reader: &mut R, limit: usize) -> std::io::Result<Option<Line>> {
    loop {
        let mut line = Vec::new();
        let mut dropped = 0usize;
        loop {
            let available = reader.fill_buf().await?;
            if available.is_empty() {
                if line.is_empty() && dropped == 0 {
                    return Ok(None);
                }
                break;
            }
            let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
                Some(end) => (&available[..end], Some(end + 1)),
                None => (available, None),
            };
            if dropped > 0 || line.len() + chunk.len() > limit {
                dropped += line.len() + chunk.len();
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
            let consumed = done.unwrap_or(available.len());
            reader.consume(consumed);
            if done.is_some() {
                break;
            }
        }
        if dropped > 0 {
            return Ok(Some(Line::TooLong(dropped)));
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        return Ok(Some(Line::Text(line)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_with_a_limit() {
        let input: &[u8] = b"{\"a\":1}\r\n\n   \n0123456789abcdef\nlast";
        let mut r = tokio::io::BufReader::with_capacity(4, input);
        assert_eq!(
            next_line(&mut r, 10).await.expect("io"),
            Some(Line::Text(b"{\"a\":1}".to_vec()))
        );
        assert_eq!(next_line(&mut r, 10).await.expect("io"), Some(Line::TooLong(16)));
        assert_eq!(
            next_line(&mut r, 10).await.expect("io"),
            Some(Line::Text(b"last".to_vec()))
        );
        assert_eq!(next_line(&mut r, 10).await.expect("io"), None);
    }
}

//! RFC 6587's two framings of syslog over TCP: octet counting (`LEN SP MSG`), chosen when a frame
//! starts with a digit, and a line feed after each message otherwise. A frame longer than
//! `MAX_MESSAGE` ends the connection: its sender is broken or hostile.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

use super::MAX_MESSAGE;

/// Why a connection's framing broke.
#[derive(Debug, thiserror::Error)]
pub enum FramingError {
    #[error("a frame of {0} bytes: at most {MAX_MESSAGE}")]
    TooLong(usize),
    #[error("`{0}` is not an octet count")]
    BadCount(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The next message on `r`, or `None` at the end of the stream.
pub async fn next_frame<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Option<String>, FramingError> {
    loop {
        let first = match r.fill_buf().await?.first() {
            None => return Ok(None),
            Some(b) => *b,
        };
        if first == b'\n' || first == b'\r' {
            r.consume(1);
            continue;
        }
        if first.is_ascii_digit() {
            let mut count = Vec::new();
            loop {
                let mut b = [0u8; 1];
                if r.read(&mut b).await? == 0 {
                    return Ok(None);
                }
                if b[0] == b' ' {
                    break;
                }
                if !b[0].is_ascii_digit() || count.len() >= 6 {
                    count.push(b[0]);
                    return Err(FramingError::BadCount(String::from_utf8_lossy(&count).into_owned()));
                }
                count.push(b[0]);
            }
            let text = String::from_utf8_lossy(&count).into_owned();
            let len: usize = text.parse().map_err(|_| FramingError::BadCount(text.clone()))?;
            if len > MAX_MESSAGE {
                return Err(FramingError::TooLong(len));
            }
            let mut buf = vec![0u8; len];
            r.read_exact(&mut buf).await?;
            return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
        }
        let mut line = Vec::new();
        let n = (&mut *r).take(MAX_MESSAGE as u64 + 1).read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Ok(None);
        }
        if line.len() > MAX_MESSAGE {
            return Err(FramingError::TooLong(line.len()));
        }
        return Ok(Some(String::from_utf8_lossy(&line).trim_end_matches(['\n', '\r']).to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn both_framings_and_their_limits() {
        let input = b"<13>1 - - - - - - one\n11 <13>1 - two\n<13>three".to_vec();
        let mut r = tokio::io::BufReader::new(&input[..]);
        assert_eq!(next_frame(&mut r).await.unwrap().as_deref(), Some("<13>1 - - - - - - one"));
        assert_eq!(next_frame(&mut r).await.unwrap().as_deref(), Some("<13>1 - two"));
        assert_eq!(next_frame(&mut r).await.unwrap().as_deref(), Some("<13>three"));
        assert!(next_frame(&mut r).await.unwrap().is_none());
        let huge = format!("{} x", MAX_MESSAGE + 1);
        let mut r = tokio::io::BufReader::new(huge.as_bytes());
        assert!(matches!(next_frame(&mut r).await, Err(FramingError::TooLong(_))));
        let mut r = tokio::io::BufReader::new(&b"12x <13>"[..]);
        assert!(matches!(next_frame(&mut r).await, Err(FramingError::BadCount(_))));
        let long_line = vec![b'a'; MAX_MESSAGE + 10];
        let mut r = tokio::io::BufReader::new(&long_line[..]);
        assert!(matches!(next_frame(&mut r).await, Err(FramingError::TooLong(_))));
    }
}

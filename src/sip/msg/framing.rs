//! Framing: one message per datagram, or Content-Length framing on a stream (TCP/TLS),
//! with CRLF keepalives (RFC 5626 §3.5.1) and a size cap.

use super::error::ParseError;
use super::message::{find_head_end, parse_header_lines, parse_message, Message};

/// Largest message accepted by [`parse_datagram`] and [`Message::parse`].
pub const MAX_MESSAGE_SIZE: usize = 65_535;

/// What a datagram or a stream chunk carried.
#[derive(Debug, Clone, PartialEq)]
pub enum Datagram {
    /// Only CR/LF bytes: a keepalive ping or pong.
    KeepAlive,
    /// A SIP message.
    Message(Message),
}

fn is_crlf(b: &u8) -> bool {
    *b == b'\r' || *b == b'\n'
}

/// Parse one UDP datagram: CR/LF only -> `KeepAlive`, else one message.
pub fn parse_datagram(data: &[u8]) -> Result<Datagram, ParseError> {
    if !data.is_empty() && data.iter().all(is_crlf) {
        return Ok(Datagram::KeepAlive);
    }
    parse_message(data, MAX_MESSAGE_SIZE).map(Datagram::Message)
}

/// Cuts a byte stream (TCP/TLS) into messages by Content-Length.
///
/// After an error that loses the framing (bad head, missing Content-Length, too large)
/// the buffer is dropped and the caller should close the connection. A message that is
/// framed but malformed (e.g. a bad Via) is consumed and reported as an error; the stream
/// can go on.
#[derive(Debug, Clone)]
pub struct StreamFramer {
    buf: Vec<u8>,
    max: usize,
    /// Bytes at the start of `buf` already searched for the end of the head.
    scanned: usize,
    /// Length of the message at the start of `buf`, once its head has been read.
    total: Option<usize>,
}

impl StreamFramer {
    /// A framer that refuses messages larger than `max` bytes.
    pub fn new(max: usize) -> StreamFramer {
        StreamFramer {
            buf: Vec::new(),
            max,
            scanned: 0,
            total: None,
        }
    }

    /// Append bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered and not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Drop `n` bytes from the front and forget what was learned about them.
    fn consume(&mut self, n: usize) -> Vec<u8> {
        self.scanned = 0;
        self.total = None;
        self.buf.drain(..n.min(self.buf.len())).collect()
    }

    /// Framing is lost: drop everything buffered.
    fn fail<T>(&mut self, e: ParseError) -> Result<T, ParseError> {
        self.consume(self.buf.len());
        Err(e)
    }

    /// The next complete keepalive or message, `Ok(None)` when more bytes are needed.
    #[allow(clippy::should_implement_trait)] // name fixed by the contract; not an Iterator (Result)
    pub fn next(&mut self) -> Result<Option<Datagram>, ParseError> {
        if self.total.is_none() && self.read_head()? {
            return Ok(Some(Datagram::KeepAlive));
        }
        let Some(total) = self.total else {
            return Ok(None);
        };
        if self.buf.len() < total {
            return Ok(None);
        }
        let bytes = self.consume(total);
        parse_message(&bytes, self.max).map(|m| Some(Datagram::Message(m)))
    }

    /// Consume a keepalive (returns true), or find the end of the head and set `total`.
    fn read_head(&mut self) -> Result<bool, ParseError> {
        let crlf = self.buf.iter().take_while(|b| is_crlf(b)).count();
        if crlf > 0 {
            if crlf == self.buf.len() && self.buf.last() == Some(&b'\r') {
                return Ok(false);
            }
            self.consume(crlf);
            return Ok(true);
        }
        // A blank line is at most 3 bytes ("\n\r\n"): resume just before the old end.
        let from = self.scanned.saturating_sub(3);
        let Some((head_len, body_start)) = find_head_end(&self.buf[from..]) else {
            self.scanned = self.buf.len();
            if self.buf.len() > self.max {
                return self.fail(ParseError::new("message header too large"));
            }
            return Ok(false);
        };
        let (head_len, body_start) = (head_len + from, body_start + from);
        let length = match self.content_length(head_len) {
            Ok(Some(n)) => n,
            Ok(None) => return self.fail(ParseError::new("missing Content-Length on a stream")),
            Err(e) => return self.fail(e),
        };
        let total = body_start.saturating_add(length);
        if total > self.max {
            return self.fail(ParseError::new("message too large"));
        }
        self.total = Some(total);
        Ok(false)
    }

    fn content_length(&self, head_len: usize) -> Result<Option<usize>, ParseError> {
        let head = std::str::from_utf8(&self.buf[..head_len])
            .map_err(|_| ParseError::new("header section is not UTF-8"))?;
        let lines: Vec<&str> = head.lines().skip(1).filter(|l| !l.is_empty()).collect();
        parse_header_lines(&lines)?.content_length(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &[u8] = b"OPTIONS sip:bob@example.org SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.10;branch=z9hG4bK1\r\nContent-Length: 4\r\n\r\nbody";

    #[test]
    fn datagram_keepalive() {
        assert_eq!(parse_datagram(b"\r\n\r\n").unwrap(), Datagram::KeepAlive);
        assert_eq!(parse_datagram(b"\r\n").unwrap(), Datagram::KeepAlive);
        assert!(parse_datagram(b"").is_err());
        assert!(matches!(
            parse_datagram(OPTIONS).unwrap(),
            Datagram::Message(_)
        ));
        let big = vec![b'a'; MAX_MESSAGE_SIZE + 1];
        assert!(parse_datagram(&big).is_err());
    }

    #[test]
    fn stream_byte_by_byte() {
        let mut f = StreamFramer::new(MAX_MESSAGE_SIZE);
        let mut data = b"\r\n\r\n".to_vec();
        data.extend_from_slice(OPTIONS);
        data.extend_from_slice(OPTIONS);
        let mut got = Vec::new();
        for b in data {
            f.push(&[b]);
            while let Some(d) = f.next().unwrap() {
                got.push(d);
            }
        }
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0], Datagram::KeepAlive);
        assert_eq!(got[1], Datagram::KeepAlive);
        match &got[2] {
            Datagram::Message(m) => assert_eq!(m.body(), b"body"),
            other => panic!("{other:?}"),
        }
        assert_eq!(got[2], got[3]);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn stream_errors() {
        let mut f = StreamFramer::new(MAX_MESSAGE_SIZE);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n");
        assert!(f.next().is_err());
        assert_eq!(f.buffered(), 0);
        let mut f = StreamFramer::new(100);
        f.push(&[b'a'; 101]);
        assert!(f.next().is_err());
        let mut f = StreamFramer::new(100);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nl: 1000\r\n\r\n");
        assert!(f.next().is_err());
        // Framed but bad: consumed, the next message still comes out.
        let mut f = StreamFramer::new(MAX_MESSAGE_SIZE);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nVia: bad\r\nl: 0\r\n\r\n");
        f.push(OPTIONS);
        assert!(f.next().is_err());
        assert!(matches!(f.next().unwrap(), Some(Datagram::Message(_))));
    }

    #[test]
    fn stream_byte_by_byte_is_linear() {
        // A 60 kB head pushed one byte at a time must not be rescanned from the start.
        let mut msg = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
        while msg.len() < 60_000 {
            msg.extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        msg.extend_from_slice(b"Content-Length: 2\r\n\r\nhi");
        let mut f = StreamFramer::new(MAX_MESSAGE_SIZE);
        let mut got = None;
        for b in &msg {
            f.push(&[*b]);
            if let Some(d) = f.next().unwrap() {
                got = Some(d);
            }
        }
        match got {
            Some(Datagram::Message(m)) => assert_eq!(m.body(), b"hi"),
            other => panic!("{other:?}"),
        }
    }
}

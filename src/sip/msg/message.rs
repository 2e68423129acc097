//! Requests, responses and their wire format (RFC 3261 §7).

use super::error::{err, ParseError};
use super::headers::Headers;
use super::method::Method;
use super::name::HeaderName;
use super::scan::{is_token, parse_u32, trim_lws};
use super::uri::{Uri, UNSUPPORTED_SCHEME};
use super::MAX_MESSAGE_SIZE;

/// A SIP request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Request method.
    pub method: Method,
    /// Request-URI.
    pub uri: Uri,
    /// Headers in wire order.
    pub headers: Headers,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// Status code, 100..=699.
    pub code: u16,
    /// Reason phrase (may be empty).
    pub reason: String,
    /// Headers in wire order.
    pub headers: Headers,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// A request or a response.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

impl Request {
    /// A request without headers or body.
    pub fn new(method: Method, uri: Uri) -> Request {
        Request {
            method,
            uri,
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// Wire format; Content-Length is always written as `body.len()`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let start = format!("{} {} SIP/2.0", self.method, self.uri);
        write_message(&start, &self.headers, &self.body)
    }
}

impl Response {
    /// A response without headers or body.
    pub fn new(code: u16, reason: impl Into<String>) -> Response {
        Response {
            code,
            reason: reason.into(),
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// Wire format; Content-Length is always written as `body.len()`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let start = format!("SIP/2.0 {} {}", self.code, self.reason);
        write_message(&start, &self.headers, &self.body)
    }
}

impl Message {
    /// Parse one datagram (UDP): body = rest of the datagram if no Content-Length;
    /// Content-Length larger than the rest -> error; smaller -> truncate the body.
    pub fn parse(data: &[u8]) -> Result<Message, ParseError> {
        parse_message(data, MAX_MESSAGE_SIZE)
    }

    /// Wire format; Content-Length is always written as `body.len()`.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    /// The headers, mutable.
    pub fn headers_mut(&mut self) -> &mut Headers {
        match self {
            Message::Request(r) => &mut r.headers,
            Message::Response(r) => &mut r.headers,
        }
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        match self {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        }
    }
}

impl From<Request> for Message {
    fn from(r: Request) -> Message {
        Message::Request(r)
    }
}

impl From<Response> for Message {
    fn from(r: Response) -> Message {
        Message::Response(r)
    }
}

/// Header text without CR/LF, so a value can never start a new line on the wire.
fn push_clean(out: &mut Vec<u8>, s: &str) {
    out.extend(
        s.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
}

/// Write start line, headers (Content-Length where the first one was, else last), body.
fn write_message(start: &str, headers: &Headers, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(start.len() + 32 * headers.len() + body.len() + 24);
    push_clean(&mut out, start);
    out.extend_from_slice(b"\r\n");
    let content_length = format!("{}", body.len());
    let mut length_written = false;
    for (name, value) in headers.iter() {
        let value = if *name == HeaderName::CONTENT_LENGTH {
            if length_written {
                continue;
            }
            length_written = true;
            content_length.as_str()
        } else {
            value
        };
        push_clean(&mut out, name.as_str());
        out.extend_from_slice(b": ");
        push_clean(&mut out, value);
        out.extend_from_slice(b"\r\n");
    }
    if !length_written {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(content_length.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// Where the header section ends: (length of the head including its last line break,
/// start of the body). `None` when there is no empty line yet.
pub(crate) fn find_head_end(data: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while let Some(off) = data.get(i..)?.iter().position(|&b| b == b'\n') {
        let nl = i + off;
        match data.get(nl + 1..) {
            Some([b'\n', ..]) => return Some((nl + 1, nl + 2)),
            Some([b'\r', b'\n', ..]) => return Some((nl + 1, nl + 3)),
            _ => i = nl + 1,
        }
    }
    None
}

/// Split the head into lines (LF or CRLF); a CR anywhere else is an error.
fn head_lines(head: &[u8]) -> Result<Vec<&str>, ParseError> {
    let text =
        std::str::from_utf8(head).map_err(|_| ParseError::new("header section is not UTF-8"))?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    text.split('\n')
        .map(|l| {
            let l = l.strip_suffix('\r').unwrap_or(l);
            if l.contains('\r') {
                err("stray CR in header section")
            } else {
                Ok(l)
            }
        })
        .collect()
}

/// Parse header lines, undoing folding (a line starting with SP/HTAB continues the last).
pub(crate) fn parse_header_lines(lines: &[&str]) -> Result<Headers, ParseError> {
    let mut names = Vec::with_capacity(lines.len());
    let mut values: Vec<String> = Vec::with_capacity(lines.len());
    for line in lines {
        if line.starts_with([' ', '\t']) {
            let Some(last) = values.last_mut() else {
                return err("continuation line before the first header");
            };
            let more = trim_lws(line);
            if !more.is_empty() {
                if !last.is_empty() {
                    last.push(' ');
                }
                last.push_str(more);
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return err("header line without a colon");
        };
        let name = name.trim_end_matches([' ', '\t']);
        if !is_token(name) {
            return err("bad header name");
        }
        names.push(HeaderName::new(name));
        values.push(trim_lws(value).to_string());
    }
    let mut headers = Headers::new();
    for (n, v) in names.into_iter().zip(values) {
        headers.push(n, v);
    }
    Ok(headers)
}

/// Parsed start line.
enum StartLine {
    Request(Method, Uri),
    Response(u16, String),
}

fn check_version(v: &str) -> Result<(), ParseError> {
    if v.eq_ignore_ascii_case("SIP/2.0") {
        Ok(())
    } else {
        err("unsupported SIP version")
    }
}

/// Parse the start line; the flag says whether it has the shape of a request line.
fn parse_start_line(line: &str) -> (Result<StartLine, ParseError>, bool) {
    let is_response = line
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"));
    if is_response {
        return (parse_status_line(line), false);
    }
    let (Some((method, rest)), Some((_, version))) = (line.split_once(' '), line.rsplit_once(' '))
    else {
        return (err("malformed request line"), false);
    };
    let Some((uri, _)) = rest.rsplit_once(' ') else {
        return (err("malformed request line"), false);
    };
    let parsed = (|| {
        check_version(version)?;
        if !is_token(method) {
            return err("bad method");
        }
        let uri: Uri = uri
            .parse()
            .map_err(|e: ParseError| e.context("bad Request-URI"))?;
        if !uri.headers.is_empty() {
            return err("headers in the Request-URI");
        }
        Ok(StartLine::Request(Method::from_token(method), uri))
    })();
    (parsed, true)
}

fn parse_status_line(line: &str) -> Result<StartLine, ParseError> {
    let mut parts = line.splitn(3, ' ');
    check_version(parts.next().unwrap_or(""))?;
    let code = parts.next().unwrap_or("");
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return err("bad status code");
    }
    let code: u16 = code
        .parse()
        .map_err(|_| ParseError::new("bad status code"))?;
    if !(100..=699).contains(&code) {
        return err("status code out of range");
    }
    Ok(StartLine::Response(
        code,
        trim_lws(parts.next().unwrap_or("")).to_string(),
    ))
}

/// Check every line of the headers the layers above rely on, when they are present.
fn check_headers(h: &Headers) -> Result<(), ParseError> {
    h.vias()?;
    for (name, msg) in [
        (HeaderName::FROM, "bad From header"),
        (HeaderName::TO, "bad To header"),
    ] {
        for v in h.get_all(&name) {
            // A well-formed From/To with another URI scheme (RFC 4475 §3.3.4 unksm2) is
            // not a framing error: `Headers::from()` reports it to whoever reads it.
            match v.parse::<super::NameAddr>() {
                Err(e) if !e.reason().ends_with(UNSUPPORTED_SCHEME) => return Err(e.context(msg)),
                _ => {}
            }
        }
    }
    for v in h.get_all(&HeaderName::CSEQ) {
        v.parse::<super::CSeq>()
            .map_err(|e: ParseError| e.context("bad CSeq header"))?;
    }
    for v in h.get_all(&HeaderName::MAX_FORWARDS) {
        if !matches!(parse_u32(v, ""), Ok(0..=255)) {
            return err("bad Max-Forwards header");
        }
    }
    Ok(())
}

/// Parse one whole message from `data` (leading CR/LF skipped), limited to `max` bytes.
pub(crate) fn parse_message(data: &[u8], max: usize) -> Result<Message, ParseError> {
    if data.len() > max {
        return err("message too large");
    }
    let skip = data
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let data = &data[skip..];
    if data.is_empty() {
        return err("empty message");
    }
    let Some((head_len, body_start)) = find_head_end(data) else {
        return err("no empty line after the headers");
    };
    let lines = head_lines(&data[..head_len])?;
    let (start, is_request) = parse_start_line(lines.first().copied().unwrap_or(""));
    let headers = parse_header_lines(lines.get(1..).unwrap_or(&[]))?;
    let attach = |e: ParseError, headers: &Headers| {
        if is_request {
            e.with_headers(headers.clone())
        } else {
            e
        }
    };
    let start = start.map_err(|e| attach(e, &headers))?;
    let body = (|| {
        check_headers(&headers)?;
        let rest = data.get(body_start..).unwrap_or(&[]);
        match headers.content_length(max)? {
            Some(n) if n > rest.len() => err("Content-Length larger than the message"),
            Some(n) => Ok(rest[..n].to_vec()),
            None => Ok(rest.to_vec()),
        }
    })()
    .map_err(|e| attach(e, &headers))?;
    Ok(match start {
        StartLine::Request(method, uri) => Message::Request(Request {
            method,
            uri,
            headers,
            body,
        }),
        StartLine::Response(code, reason) => Message::Response(Response {
            code,
            reason,
            headers,
            body,
        }),
    })
}

/// The usual reason phrase for a status code ("" when unknown).
pub fn default_reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        199 => "Early Dialog Terminated",
        200 => "OK",
        202 => "Accepted",
        204 => "No Notification",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        412 => "Conditional Request Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        417 => "Unknown Resource-Priority",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        428 => "Use Identity Header",
        429 => "Provide Referrer Identity",
        430 => "Flow Failed",
        433 => "Anonymity Disallowed",
        436 => "Bad Identity-Info",
        437 => "Unsupported Certificate",
        438 => "Invalid Identity Header",
        439 => "First Hop Lacks Outbound Support",
        440 => "Max-Breadth Exceeded",
        469 => "Bad Info Package",
        470 => "Consent Needed",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        494 => "Security Agreement Required",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        555 => "Push Notification Service Not Supported",
        580 => "Precondition Failure",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        607 => "Unwanted",
        608 => "Rejected",
        _ => "",
    }
}

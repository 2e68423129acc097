//! The SIP message layer: parse and print messages, headers and URIs (RFC 3261 §7, §19,
//! §20, §25), plus datagram and stream framing. Sans-IO, never panics on input.
//!
//! - [`Headers`] keeps every header line in order with its raw value (folding undone,
//!   outer blanks trimmed); the typed readers (`vias()`, `from()`, `cseq()`, ...) parse
//!   on demand. Each typed value ([`Via`], [`NameAddr`], [`CSeq`], [`Uri`], [`Contacts`])
//!   prints with `Display` and parses with `FromStr`, and print -> parse -> print is stable.
//! - [`Message::parse`] accepts what real devices send (bare LF, folding, blanks before the
//!   colon, compact names) and rejects what RFC 4475 calls invalid: bad Content-Length,
//!   version other than SIP/2.0, status outside 100..=699, `<...>` or blanks in the
//!   Request-URI, and a malformed Via, From, To, CSeq or Max-Forwards (missing ones are
//!   fine: the transaction layer checks those). A request whose headers parsed keeps them
//!   in the error ([`ParseError::request_headers`]) so the caller can answer 400.
//! - `to_bytes` always writes `Content-Length: <body length>` (in place of the first one),
//!   so `parse(to_bytes(m))` is `m` with that header normalized.
//! - Header parameter values are kept as written (quoted ones with their quotes); URI
//!   parts are stored unescaped and re-escaped when printed.
//!
//! ```
//! use termphone::sip::msg::{HeaderName, Message, Method};
//!
//! let data = b"OPTIONS sip:bob@example.org SIP/2.0\r\n\
//!              v: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1\r\n\
//!              f: \"Doe, John \\\"JD\\\"\" <sip:jd@example.com>;tag=a\r\n\
//!              CSeq: 1 OPTIONS\r\nl: 0\r\n\r\n";
//! let msg = Message::parse(data).unwrap();
//! let h = msg.headers();
//! assert_eq!(h.top_via().unwrap().branch(), Some("z9hG4bK1"));
//! assert_eq!(h.from().unwrap().display.as_deref(), Some("Doe, John \"JD\""));
//! assert_eq!(h.cseq().unwrap().method, Method::Options);
//! assert_eq!(h.get(&HeaderName::new("content-length")), Some("0"));
//! ```

mod cseq;
mod error;
mod framing;
mod headers;
mod message;
mod method;
mod name;
mod name_addr;
mod params;
mod scan;
mod uri;
mod via;

pub use cseq::CSeq;
pub use error::ParseError;
pub use framing::{parse_datagram, Datagram, StreamFramer, MAX_MESSAGE_SIZE};
pub use headers::Headers;
pub use message::{default_reason, Message, Request, Response};
pub use method::Method;
pub use name::HeaderName;
pub use name_addr::{Contacts, NameAddr};
pub use params::Params;
pub use uri::{Host, Scheme, Uri};
pub use via::Via;

//! The SIP message layer: parse and print messages, headers and URIs (RFC 3261 §7, §19,
//! §20, §25), plus datagram and stream framing. Sans-IO, never panics on input.

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

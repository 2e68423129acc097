//! SIP, sans-IO: the message layer, transactions (RFC 3261 §17), dialogs, the user agent
//! core, digest auth, registration and SDP offer/answer. No clocks, no sockets: time and bytes are inputs.

pub mod auth;
pub mod dialog;
pub mod dtmf_info;
pub mod locate;
pub mod msg;
pub mod registration;
pub mod sdp;
pub mod transport;
pub mod txn;
pub mod ua;

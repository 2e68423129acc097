//! SIP, sans-IO.

pub mod msg;

//! SIP, sans-IO.

pub mod msg;
pub mod txn;

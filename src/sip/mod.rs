//! SIP, sans-IO.

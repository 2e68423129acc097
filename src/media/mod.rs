//! Media, sans-IO.

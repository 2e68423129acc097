//! The CSeq header value: `314159 INVITE`.

use std::fmt;
use std::str::FromStr;

use super::error::{err, ParseError};
use super::method::Method;
use super::scan::{is_token, parse_u32, trim_lws};

/// Sequence number and method of a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CSeq {
    /// Sequence number.
    pub seq: u32,
    /// Method of the request.
    pub method: Method,
}

impl FromStr for CSeq {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<CSeq, ParseError> {
        let s = trim_lws(s);
        let Some((seq, method)) = s.split_once([' ', '\t']) else {
            return err("bad CSeq");
        };
        let method = trim_lws(method);
        if !is_token(method) {
            return err("bad CSeq method");
        }
        Ok(CSeq {
            seq: parse_u32(seq, "bad CSeq number")?,
            method: Method::from_token(method),
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn print_parse() {
        let c = CSeq {
            seq: 314159,
            method: Method::Invite,
        };
        assert_eq!(c.to_string(), "314159 INVITE");
        assert_eq!("314159 INVITE".parse::<CSeq>().unwrap(), c);
        let c: CSeq = "0009   INVITE".parse().unwrap();
        assert_eq!(c.seq, 9);
        let c: CSeq = "1 RE%47IST%45R".parse().unwrap();
        assert_eq!(c.method, Method::Other("RE%47IST%45R".into()));
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "1",
            "INVITE",
            "-1 INVITE",
            "36893488147419103232 REGISTER",
            "1 IN VITE",
            "x INVITE",
        ] {
            assert!(bad.parse::<CSeq>().is_err(), "{bad}");
        }
    }
}

//! DTMF in SIP INFO requests: `application/dtmf-relay` (the `Signal=`/`Duration=` body most
//! PBXes and phones use) and `application/dtmf` (the digit alone), read both ways, written as
//! dtmf-relay. Pure functions over bodies; the user agent carries the requests.

/// The content type we send.
pub const DTMF_RELAY: &str = "application/dtmf-relay";
/// The other content type we read.
pub const DTMF: &str = "application/dtmf";

/// The digit in an INFO body of `content_type`, if it carries one (`0-9 * # A-D`). Both
/// spellings of `*` and `#` in the wild are read: the characters, and the event codes 10 and
/// 11 (RFC 4733 numbering). Anything else (other content types, no digit, junk) is `None`.
pub fn parse(content_type: &str, body: &[u8]) -> Option<char> {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let text = std::str::from_utf8(body).ok()?;
    let value = match ct.as_str() {
        DTMF_RELAY => text.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            key.trim()
                .eq_ignore_ascii_case("signal")
                .then(|| value.trim())
        })?,
        DTMF => text.trim(),
        _ => return None,
    };
    digit(value)
}

fn digit(value: &str) -> Option<char> {
    match value {
        "10" => Some('*'),
        "11" => Some('#'),
        v => {
            let mut chars = v.chars();
            let c = chars.next()?.to_ascii_uppercase();
            (chars.next().is_none() && "0123456789*#ABCD".contains(c)).then_some(c)
        }
    }
}

/// The `application/dtmf-relay` body for `digit` lasting `duration_ms`.
pub fn relay_body(digit: char, duration_ms: u32) -> String {
    format!("Signal={digit}\r\nDuration={duration_ms}\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_dtmf_relay_in_its_spellings() {
        assert_eq!(
            parse(DTMF_RELAY, b"Signal=5\r\nDuration=160\r\n"),
            Some('5')
        );
        assert_eq!(
            parse("Application/DTMF-Relay", b"signal = #\nduration=100"),
            Some('#')
        );
        assert_eq!(
            parse(DTMF_RELAY, b"Signal=10\r\nDuration=250\r\n"),
            Some('*')
        );
        assert_eq!(parse(DTMF_RELAY, b"Signal=11\r\n"), Some('#'));
        assert_eq!(parse(DTMF_RELAY, b"Signal=a\r\n"), Some('A'));
        assert_eq!(
            parse("application/dtmf-relay; charset=utf-8", b"Signal=9"),
            Some('9')
        );
    }

    #[test]
    fn reads_application_dtmf() {
        assert_eq!(parse(DTMF, b"7"), Some('7'));
        assert_eq!(parse(DTMF, b"*\r\n"), Some('*'));
        assert_eq!(parse(DTMF, b"11"), Some('#'));
    }

    #[test]
    fn rejects_what_is_not_a_digit() {
        assert_eq!(parse(DTMF_RELAY, b"Duration=160\r\n"), None);
        assert_eq!(parse(DTMF_RELAY, b"Signal=12\r\n"), None);
        assert_eq!(parse(DTMF_RELAY, b"Signal=\r\n"), None);
        assert_eq!(parse(DTMF_RELAY, b"Signal=X\r\n"), None);
        assert_eq!(parse(DTMF, b"55"), None);
        assert_eq!(parse("application/sdp", b"Signal=5"), None);
        assert_eq!(parse(DTMF_RELAY, &[0xff, 0xfe]), None);
    }

    #[test]
    fn writes_what_it_reads() {
        for d in "0123456789*#ABCD".chars() {
            assert_eq!(parse(DTMF_RELAY, relay_body(d, 160).as_bytes()), Some(d));
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_finds_only_digits(ct in ".{0,40}", body in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Some(d) = parse(&ct, &body) {
                prop_assert!("0123456789*#ABCD".contains(d));
            }
        }
    }
}

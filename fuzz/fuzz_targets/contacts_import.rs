//! Reading any bytes as a vCard or a CSV contacts file never panics, and every contact read
//! has a non-empty name and address.
#![no_main]

use libfuzzer_sys::fuzz_target;
use termphone::store::import::{parse_csv, parse_vcard};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for (contacts, _errors) in [parse_vcard(&text), parse_csv(&text)] {
        for (name, uri) in contacts {
            assert!(!name.trim().is_empty());
            assert!(!uri.trim().is_empty());
        }
    }
});

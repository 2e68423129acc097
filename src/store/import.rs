//! Contacts from vCard and CSV files: pure parsers from text to `(name, uri)` pairs plus one
//! `line N: why` per record they could not read (a bad record never stops the others), and
//! writers for the same formats. Nothing here panics on any input (property-tested, fuzzed).
//!
//! What is read:
//!
//! - **vCard** 2.1/3.0/4.0: folded lines are unfolded (a line starting with a space or a tab
//!   continues the previous one). The name is `FN`, else `N` put together as "Given Family".
//!   Addresses: every `TEL` (any type; the number without spaces, dashes, dots, slashes or
//!   parentheses, a leading `+` kept; `tel:` URIs too), `TEL;VALUE=uri:sip:...`, `IMPP` with a
//!   `sip:`/`sips:` URI (other messengers are ignored) and `X-SIP` (with `sip:` added when it
//!   has no scheme).
//! - **CSV** (RFC 4180: quoted fields may hold commas, newlines and doubled quotes; `;` or tab
//!   separated files are recognised by their first line). A first row naming its columns is a
//!   header: the name column is `name` (or `full name`, `display name`, `fn`, `contact`), the
//!   address columns `uri`, `sip`, `sip uri`, `sip address`, `number`, `phone`,
//!   `phone number`, `tel`, `telephone`, `mobile` or `cell` (any case). Without a header the
//!   first column is the name and the second the address. Numbers are cleaned as for vCard;
//!   SIP URIs and other values (a plain user name like `alice`) are kept as written.
//!
//! One contact per address: a card or row with a single address gives one contact with its
//! name; with several, each is named "Name (label)", the label being the first `TYPE` of the
//! `TEL` (`cell`, `work`, ..., else `phone`), `sip` for a SIP address, or the CSV column's
//! header, with " 2", " 3" added when labels repeat. The same address twice in one card or row
//! counts once.

/// `(name, uri)` pairs and `line N: why` errors.
pub type Parsed = (Vec<(String, String)>, Vec<String>);

/// The characters allowed between a number's digits and removed: space, no-break space, `-`,
/// `.`, `/`, `(`, `)`.
fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '\u{a0}' | '\t' | '-' | '.' | '/' | '(' | ')')
}

/// A phone number's dialable form: digits, `*` and `#`, with a leading `+` kept; separators
/// removed; a `tel:` prefix and parameters (`;ext=...`) dropped. `None` when anything else is
/// in it (letters) or there is no digit.
pub fn normalize_number(s: &str) -> Option<String> {
    let s = s.trim();
    let s = strip_prefix_ci(s, "tel:").unwrap_or(s);
    let s = s.split(';').next().unwrap_or("").trim();
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '+' if out.is_empty() => out.push('+'),
            '0'..='9' | '*' | '#' => out.push(c),
            c if is_separator(c) => {}
            _ => return None,
        }
    }
    out.chars().any(|c| c.is_ascii_digit()).then_some(out)
}

/// `s` without `prefix` (ASCII, compared ignoring case), if it starts with it.
pub(crate) fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.as_bytes().get(..prefix.len())?;
    // An ASCII prefix that matches ends on a character boundary.
    head.eq_ignore_ascii_case(prefix.as_bytes())
        .then(|| &s[prefix.len()..])
}

/// True for a value written as a SIP URI (`sip:` or `sips:` and something after it).
fn is_sip_uri(s: &str) -> bool {
    strip_prefix_ci(s, "sip:")
        .or_else(|| strip_prefix_ci(s, "sips:"))
        .is_some_and(|rest| !rest.is_empty())
}

/// Names each address of one record: the name alone for one, "name (label)" for several.
fn name_addresses(name: &str, addrs: Vec<(String, String)>) -> Vec<(String, String)> {
    if addrs.len() == 1 {
        return addrs
            .into_iter()
            .map(|(_, uri)| (name.to_string(), uri))
            .collect();
    }
    let mut seen: Vec<(String, usize)> = Vec::new();
    addrs
        .into_iter()
        .map(|(label, uri)| {
            let n = match seen.iter_mut().find(|(l, _)| *l == label) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    seen.push((label.clone(), 1));
                    1
                }
            };
            let label = if n == 1 {
                label
            } else {
                format!("{label} {n}")
            };
            (format!("{name} ({label})"), uri)
        })
        .collect()
}

/// Adds `(label, uri)` unless the record already has that address.
fn push_addr(addrs: &mut Vec<(String, String)>, label: String, uri: String) {
    if !addrs.iter().any(|(_, u)| *u == uri) {
        addrs.push((label, uri));
    }
}

// ----- vCard -----

/// Unfolded logical lines with the 1-based number of the physical line each starts on.
fn unfold(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(rest) = line.strip_prefix([' ', '\t']) {
            if let Some((_, last)) = out.last_mut() {
                last.push_str(rest);
                continue;
            }
        }
        out.push((i + 1, line.to_string()));
    }
    out
}

/// Splits at `sep` outside double quotes.
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Splits a vCard value at `sep` not escaped by a backslash.
fn split_escaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let cur = parts.last_mut().expect("parts is never empty");
            cur.push('\\');
            if let Some(n) = chars.next() {
                cur.push(n);
            }
        } else if c == sep {
            parts.push(String::new());
        } else {
            parts.last_mut().expect("parts is never empty").push(c);
        }
    }
    parts
}

/// A vCard text value unescaped (`\,` `\;` `\\` `\n`), newlines turned into spaces.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n' | 'N') => out.push(' '),
                Some(n) => out.push(n),
                None => {}
            }
        } else if c == '\r' || c == '\n' {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// One content line: upper-case property name (group dropped), lower-case TYPE values (vCard
/// 2.1 bare parameters count as types), the VALUE parameter, and the raw value.
struct Property {
    name: String,
    types: Vec<String>,
    value_param: Option<String>,
    value: String,
}

fn parse_property(line: &str) -> Option<Property> {
    // The value starts after the first colon outside a quoted parameter value.
    let mut quoted = false;
    let mut colon = None;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ':' if !quoted => {
                colon = Some(i);
                break;
            }
            _ => {}
        }
    }
    let colon = colon?;
    let (head, value) = (&line[..colon], &line[colon + 1..]);
    let mut parts = split_unquoted(head, ';').into_iter();
    let name = parts.next().unwrap_or("");
    let name = name
        .rsplit('.')
        .next()
        .unwrap_or(name)
        .trim()
        .to_ascii_uppercase();
    let mut types = Vec::new();
    let mut value_param = None;
    for p in parts {
        let (key, val) = match p.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_uppercase(), v),
            None => ("TYPE".to_string(), p),
        };
        match key.as_str() {
            "TYPE" => types.extend(
                split_unquoted(val, ',')
                    .into_iter()
                    .map(|t| t.trim().trim_matches('"').to_ascii_lowercase())
                    .filter(|t| !t.is_empty()),
            ),
            "VALUE" => value_param = Some(val.trim().trim_matches('"').to_ascii_lowercase()),
            _ => {}
        }
    }
    Some(Property {
        name,
        types,
        value_param,
        value: value.to_string(),
    })
}

/// The label a TEL's types give: the first that says something (not `voice`, `pref`).
fn tel_label(types: &[String]) -> String {
    types
        .iter()
        .find(|t| !matches!(t.as_str(), "voice" | "pref" | "internet"))
        .cloned()
        .unwrap_or_else(|| "phone".to_string())
}

/// A card being read.
#[derive(Default)]
struct Card {
    line: usize,
    fn_name: Option<String>,
    n_name: Option<String>,
    addrs: Vec<(String, String)>,
}

impl Card {
    fn finish(self, out: &mut Vec<(String, String)>, errors: &mut Vec<String>) {
        let name = self
            .fn_name
            .filter(|n| !n.is_empty())
            .or(self.n_name.filter(|n| !n.is_empty()));
        let Some(name) = name else {
            errors.push(format!(
                "line {}: a card without a name (no FN or N)",
                self.line
            ));
            return;
        };
        if self.addrs.is_empty() {
            errors.push(format!(
                "line {}: a card without a number or SIP address (no TEL, IMPP or X-SIP)",
                self.line
            ));
            return;
        }
        out.extend(name_addresses(&name, self.addrs));
    }
}

/// Contacts from vCard text (see the module documentation for what is read).
pub fn parse_vcard(text: &str) -> Parsed {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut card: Option<Card> = None;
    for (line_no, line) in unfold(text) {
        if line.trim().is_empty() {
            continue;
        }
        let Some(prop) = parse_property(&line) else {
            if card.is_some() {
                errors.push(format!("line {line_no}: not a vCard property (no colon)"));
            }
            continue;
        };
        let value = prop.value.trim();
        match prop.name.as_str() {
            "BEGIN" if value.eq_ignore_ascii_case("VCARD") => {
                if let Some(open) = card.take() {
                    errors.push(format!(
                        "line {}: a card not closed by END:VCARD before the next one",
                        open.line
                    ));
                }
                card = Some(Card {
                    line: line_no,
                    ..Card::default()
                });
            }
            "END" if value.eq_ignore_ascii_case("VCARD") => match card.take() {
                Some(c) => c.finish(&mut out, &mut errors),
                None => errors.push(format!("line {line_no}: END:VCARD without BEGIN:VCARD")),
            },
            _ => {
                let Some(c) = card.as_mut() else { continue };
                read_card_property(c, &prop, line_no, &mut errors);
            }
        }
    }
    if let Some(open) = card {
        errors.push(format!(
            "line {}: a card not closed by END:VCARD at the end of the file",
            open.line
        ));
    }
    (out, errors)
}

fn read_card_property(c: &mut Card, prop: &Property, line_no: usize, errors: &mut Vec<String>) {
    let value = prop.value.trim();
    match prop.name.as_str() {
        "FN" => {
            let n = unescape(value).trim().to_string();
            if !n.is_empty() && c.fn_name.is_none() {
                c.fn_name = Some(n);
            }
        }
        "N" => {
            // Family;Given;Additional;Prefixes;Suffixes
            let parts: Vec<String> = split_escaped(value, ';')
                .iter()
                .map(|p| unescape(p).trim().to_string())
                .collect();
            let get = |i: usize| parts.get(i).map(String::as_str).unwrap_or("");
            let n = [get(3), get(1), get(2), get(0), get(4)]
                .into_iter()
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            if !n.is_empty() && c.n_name.is_none() {
                c.n_name = Some(n);
            }
        }
        "TEL" => {
            if is_sip_uri(value) {
                push_addr(&mut c.addrs, "sip".to_string(), value.to_string());
            } else if prop.value_param.as_deref() == Some("uri")
                && strip_prefix_ci(value, "tel:").is_none()
            {
                errors.push(format!(
                    "line {line_no}: a TEL URI that is neither tel: nor sip:"
                ));
            } else {
                match normalize_number(value) {
                    Some(num) => push_addr(&mut c.addrs, tel_label(&prop.types), num),
                    None => errors.push(format!("line {line_no}: a TEL that is not a number")),
                }
            }
        }
        // Other messengers (xmpp:, skype:, ...) are not for a phone.
        "IMPP" if is_sip_uri(value) => {
            push_addr(&mut c.addrs, "sip".to_string(), value.to_string());
        }
        "X-SIP" => {
            if value.is_empty() {
                return;
            }
            let uri = if is_sip_uri(value) {
                value.to_string()
            } else {
                format!("sip:{value}")
            };
            push_addr(&mut c.addrs, "sip".to_string(), uri);
        }
        _ => {}
    }
}

/// vCard text escaped for a text value.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ',' => out.push_str("\\,"),
            ';' => out.push_str("\\;"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Folds a content line at 75 bytes (on character boundaries), CRLF-terminated.
fn fold_line(out: &mut String, line: &str) {
    let mut width = 0;
    for c in line.chars() {
        if width + c.len_utf8() > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += c.len_utf8();
    }
    out.push_str("\r\n");
}

/// vCard 3.0 text for `(name, uri)` pairs, one card each: a SIP URI as `IMPP`, anything else
/// as `TEL` (so [`parse_vcard`] reads it back when it is a number).
pub fn to_vcard(contacts: &[(String, String)]) -> String {
    let mut out = String::new();
    for (name, uri) in contacts {
        out.push_str("BEGIN:VCARD\r\nVERSION:3.0\r\n");
        fold_line(&mut out, &format!("FN:{}", escape(name)));
        let uri = uri.replace(['\r', '\n'], "");
        if is_sip_uri(&uri) {
            fold_line(&mut out, &format!("IMPP:{uri}"));
        } else {
            fold_line(&mut out, &format!("TEL;TYPE=voice:{uri}"));
        }
        out.push_str("END:VCARD\r\n");
    }
    out
}

// ----- CSV -----

/// A CSV record: its fields and the 1-based line it starts on.
struct Record {
    line: usize,
    fields: Vec<String>,
}

/// The separator of a CSV text: `,`, `;` or tab, whichever the first line has most of
/// (outside quotes); `,` when it has none.
fn sniff_separator(text: &str) -> char {
    let first = text.lines().next().unwrap_or("");
    let mut counts = [(',', 0usize), (';', 0), ('\t', 0)];
    let mut quoted = false;
    for c in first.chars() {
        if c == '"' {
            quoted = !quoted;
        } else if !quoted {
            if let Some(e) = counts.iter_mut().find(|(s, _)| *s == c) {
                e.1 += 1;
            }
        }
    }
    counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .max_by_key(|(_, n)| *n)
        .map_or(',', |(s, _)| *s)
}

/// RFC 4180 records (leniently: text after a closing quote is kept, a lone CR ends a line).
/// An unclosed quote is an error for its record, which is dropped.
fn csv_records(text: &str, sep: char, errors: &mut Vec<String>) -> Vec<Record> {
    let mut records = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut line = 1;
    let mut record_line = 1;
    let mut quoted = false;
    let mut field_started = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => {
                    if c == '\n' {
                        line += 1;
                    }
                    field.push(c);
                }
            }
            continue;
        }
        match c {
            '"' if !field_started && field.trim().is_empty() => {
                field.clear();
                quoted = true;
                field_started = true;
            }
            c if c == sep => {
                fields.push(std::mem::take(&mut field));
                field_started = false;
            }
            '\r' | '\n' => {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                fields.push(std::mem::take(&mut field));
                field_started = false;
                records.push(Record {
                    line: record_line,
                    fields: std::mem::take(&mut fields),
                });
                line += 1;
                record_line = line;
            }
            c => {
                field.push(c);
                if !c.is_whitespace() {
                    field_started = true;
                }
            }
        }
    }
    if quoted {
        errors.push(format!(
            "line {record_line}: a quoted field is not closed before the end of the file"
        ));
    } else if field_started || !field.is_empty() || !fields.is_empty() {
        fields.push(field);
        records.push(Record {
            line: record_line,
            fields,
        });
    }
    records
}

const NAME_HEADERS: &[&str] = &["name", "full name", "display name", "fn", "contact"];
const ADDRESS_HEADERS: &[&str] = &[
    "uri",
    "sip",
    "sip uri",
    "sip address",
    "number",
    "phone",
    "phone number",
    "tel",
    "telephone",
    "mobile",
    "cell",
];

/// A CSV address value: a SIP URI as written, a number cleaned, anything else (a user name)
/// as written; `None` when empty.
fn csv_address(s: &str) -> Option<String> {
    let s = s.trim();
    if s.is_empty() {
        None
    } else if is_sip_uri(s) || s.contains('@') {
        Some(s.to_string())
    } else {
        Some(normalize_number(s).unwrap_or_else(|| s.to_string()))
    }
}

/// Contacts from CSV text (see the module documentation for what is read).
pub fn parse_csv(text: &str) -> Parsed {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let sep = sniff_separator(text);
    let records = csv_records(text, sep, &mut errors);
    let mut records = records
        .into_iter()
        .filter(|r| r.fields.iter().any(|f| !f.trim().is_empty()))
        .peekable();
    // (name column, address columns with their labels)
    let mut columns: (usize, Vec<(usize, String)>) = (0, vec![(1, "phone".to_string())]);
    if let Some(first) = records.peek() {
        let heads: Vec<String> = first
            .fields
            .iter()
            .map(|f| f.trim().to_lowercase())
            .collect();
        let name_col = heads
            .iter()
            .position(|h| NAME_HEADERS.contains(&h.as_str()));
        let addr_cols: Vec<(usize, String)> = heads
            .iter()
            .enumerate()
            .filter(|(_, h)| ADDRESS_HEADERS.contains(&h.as_str()))
            .map(|(i, h)| (i, h.clone()))
            .collect();
        if name_col.is_some() || !addr_cols.is_empty() {
            let line = first.line;
            records.next();
            match (name_col, addr_cols.is_empty()) {
                (Some(n), false) => columns = (n, addr_cols),
                (None, _) => {
                    errors.push(format!(
                        "line {line}: the header has no name column (name, full name, display name, fn or contact)"
                    ));
                    return (out, errors);
                }
                (Some(_), true) => {
                    errors.push(format!(
                        "line {line}: the header has no address column (uri, sip, number, phone, tel, mobile, ...)"
                    ));
                    return (out, errors);
                }
            }
        }
    }
    let (name_col, addr_cols) = columns;
    for r in records {
        let name = r
            .fields
            .get(name_col)
            .map(|n| n.trim().replace(['\r', '\n'], " "))
            .unwrap_or_default();
        let mut addrs = Vec::new();
        for (col, label) in &addr_cols {
            if let Some(a) = r.fields.get(*col).and_then(|f| csv_address(f)) {
                push_addr(&mut addrs, label.clone(), a);
            }
        }
        if name.is_empty() {
            errors.push(format!("line {}: no name", r.line));
        } else if addrs.is_empty() {
            errors.push(format!("line {}: no number or SIP address", r.line));
        } else {
            out.extend(name_addresses(&name, addrs));
        }
    }
    (out, errors)
}

/// One CSV field, quoted when it needs to be.
fn csv_field(s: &str) -> String {
    let needs = s.is_empty() || s.contains([',', ';', '\t', '"', '\n', '\r']) || s.trim() != s;
    if needs {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// CSV text with a `name,uri` header for `(name, uri)` pairs ([`parse_csv`] reads it back).
pub fn to_csv(contacts: &[(String, String)]) -> String {
    let mut out = String::from("name,uri\r\n");
    for (name, uri) in contacts {
        out.push_str(&csv_field(name));
        out.push(',');
        out.push_str(&csv_field(uri));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn numbers_are_cleaned() {
        assert_eq!(
            normalize_number("+49 (30) 123-45.6"),
            Some("+4930123456".into())
        );
        assert_eq!(
            normalize_number("tel:+1-555-0100;ext=12"),
            Some("+15550100".into())
        );
        assert_eq!(normalize_number("*21#"), Some("*21#".into()));
        assert_eq!(normalize_number("1-800-FLOWERS"), None);
        assert_eq!(normalize_number("12+3"), None);
        assert_eq!(normalize_number(" - "), None);
    }

    #[test]
    fn vcard_with_folding_types_and_sip() {
        let text = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Alice \r\n Example\r\n\
                    TEL;TYPE=cell,voice:+49 170 1234567\r\n\
                    TEL;TYPE=\"work\":030 / 555-12\r\n\
                    IMPP:xmpp:alice@example.com\r\n\
                    IMPP;PREF=1:sip:alice@example.com\r\n\
                    END:VCARD\r\n\
                    BEGIN:VCARD\nVERSION:3.0\nN:Builder;Bob;;Dr.;\n\
                    item1.TEL;VALUE=uri:sip:bob@pbx.example.org\nEND:VCARD\n\
                    BEGIN:VCARD\nVERSION:2.1\nFN:Carol\\, Esq.\nTEL;HOME:1002\nX-SIP:carol@pbx\nEND:VCARD\n";
        let (got, errors) = parse_vcard(text);
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(
            got,
            pairs(&[
                ("Alice Example (cell)", "+491701234567"),
                ("Alice Example (work)", "03055512"),
                ("Alice Example (sip)", "sip:alice@example.com"),
                ("Dr. Bob Builder", "sip:bob@pbx.example.org"),
                ("Carol, Esq. (home)", "1002"),
                ("Carol, Esq. (sip)", "sip:carol@pbx"),
            ])
        );
    }

    #[test]
    fn vcard_bad_records_do_not_stop_others() {
        let text = "BEGIN:VCARD\nFN:No Number\nEND:VCARD\n\
                    BEGIN:VCARD\nTEL:123\nEND:VCARD\n\
                    BEGIN:VCARD\nFN:Dave\nTEL:call me maybe\nTEL:555\nEND:VCARD\n\
                    BEGIN:VCARD\nFN:Open\nTEL:1\n\
                    BEGIN:VCARD\nFN:Eve\nTEL;TYPE=work:1\nTEL;TYPE=work:2\nTEL:2\nEND:VCARD\n\
                    END:VCARD\n\
                    BEGIN:VCARD\nFN:Unclosed\nTEL:9\n";
        let (got, errors) = parse_vcard(text);
        assert_eq!(
            got,
            pairs(&[("Dave", "555"), ("Eve (work)", "1"), ("Eve (work 2)", "2")])
        );
        assert_eq!(
            errors,
            vec![
                "line 1: a card without a number or SIP address (no TEL, IMPP or X-SIP)",
                "line 4: a card without a name (no FN or N)",
                "line 9: a TEL that is not a number",
                "line 12: a card not closed by END:VCARD before the next one",
                "line 21: END:VCARD without BEGIN:VCARD",
                "line 22: a card not closed by END:VCARD at the end of the file",
            ]
        );
    }

    #[test]
    fn csv_with_header_quotes_and_several_columns() {
        let text = "Name,Phone,SIP\r\n\
                    \"Doe, John\",+1 (555) 010-0,\r\n\
                    \"Quote \"\"Q\"\" Person\",,sip:q@example.com\n\
                    \"Multi\nLine\",1002,sip:1002@pbx\n\
                    ,123,\n\
                    Lonely,,\n\
                    \n";
        let (got, errors) = parse_csv(text);
        assert_eq!(
            got,
            pairs(&[
                ("Doe, John", "+15550100"),
                ("Quote \"Q\" Person", "sip:q@example.com"),
                ("Multi Line (phone)", "1002"),
                ("Multi Line (sip)", "sip:1002@pbx"),
            ])
        );
        assert_eq!(
            errors,
            vec!["line 6: no name", "line 7: no number or SIP address"]
        );
    }

    #[test]
    fn csv_without_header_and_with_semicolons() {
        let (got, errors) = parse_csv("Alice;sip:alice@example.com\nBob;0171 555\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            got,
            pairs(&[("Alice", "sip:alice@example.com"), ("Bob", "0171555")])
        );
        let (got, errors) = parse_csv("x,y\n\"open,1\n");
        assert_eq!(got, pairs(&[("x", "y")]));
        assert_eq!(
            errors,
            vec!["line 2: a quoted field is not closed before the end of the file"]
        );
        let (got, errors) = parse_csv("number,email\n1,a@b\n");
        assert!(got.is_empty());
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("line 1: the header has no name column"));
    }

    fn name() -> impl Strategy<Value = String> {
        "[A-Za-zÄÖüé0-9 ,;:\"\\\\().'-]{0,90}"
            .prop_map(|s| s.trim().to_string())
            .prop_filter("non-empty", |s| !s.is_empty())
    }

    fn address() -> impl Strategy<Value = String> {
        prop_oneof![
            "\\+?[0-9]{1,15}",
            "sips?:[a-z0-9.+_-]{1,20}@[a-z0-9.-]{1,30}(:[0-9]{1,5})?(;transport=tcp)?",
        ]
    }

    proptest! {
        #[test]
        fn parsers_never_panic(text in any::<String>()) {
            let _ = parse_vcard(&text);
            let _ = parse_csv(&text);
        }

        #[test]
        fn parsers_never_panic_on_near_valid_input(
            text in "(BEGIN:VCARD|END:VCARD|FN:|N:|TEL;|IMPP:|X-SIP:|VALUE=uri|TYPE=|\"|,|;|:|\\\\|\r|\n| |\t|sip:|tel:|\\+|[0-9a-z@]){0,60}"
        ) {
            let _ = parse_vcard(&text);
            let _ = parse_csv(&text);
        }

        #[test]
        fn vcard_round_trip(contacts in proptest::collection::vec((name(), address()), 0..8)) {
            let (got, errors) = parse_vcard(&to_vcard(&contacts));
            prop_assert!(errors.is_empty(), "{:?}", errors);
            prop_assert_eq!(got, contacts);
        }

        #[test]
        fn csv_round_trip(contacts in proptest::collection::vec((name(), address()), 0..8)) {
            let (got, errors) = parse_csv(&to_csv(&contacts));
            prop_assert!(errors.is_empty(), "{:?}", errors);
            prop_assert_eq!(got, contacts);
        }
    }
}

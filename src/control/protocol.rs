//! The control protocol: one JSON object per line, both ways (docs/control.md).
//!
//! - request: `{"id":7,"cmd":"dial","to":"sip:1002@pbx"}`; `id` (a number or a string) is
//!   echoed in the response, which has no `id` when the request had none;
//! - response: `{"id":7,"ok":true,"call":"c3"}` or `{"id":7,"ok":false,"error":"..."}`;
//! - event (to subscribed clients): the engine's [`Event`](crate::engine::api::Event) as
//!   [`Event::to_json`](crate::engine::api::Event::to_json) prints it, the same line `serve`
//!   prints: `{"event":"call","call":"c3","state":"alerting","peer":"..."}`.
//!
//! This file only parses requests and prints responses; [`super::server`] runs them.

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::engine::api::CallId;

/// Longest request line the server reads; a longer one is an error and ends the connection.
pub const MAX_LINE: usize = 64 * 1024;

/// The verbs that work, as `supports` lists them.
pub const SUPPORTED_VERBS: &[&str] = &[
    "dial",
    "accept",
    "hangup",
    "dtmf",
    "hold",
    "activate",
    "mute",
    "record",
    "transfer",
    "join",
    "reject",
    "redirect",
    "register",
    "deregister",
    "denoise",
    "status",
    "calls",
    "supports",
    "subscribe",
    "unsubscribe",
];

/// Verbs of the phone-call-handler set that the engine cannot do yet: they answer
/// `not supported yet: VERB` and are absent from `supports`.
pub const UNSUPPORTED_VERBS: &[&str] = &[];

/// A parsed request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The request's `id`, echoed in the response (a JSON number or string).
    pub id: Option<Value>,
    pub verb: Verb,
}

/// What a request asks for, with its arguments checked for presence and type.
#[derive(Debug, Clone, PartialEq)]
pub enum Verb {
    /// Place a call; `play`/`record` are WAV paths on the instance's machine.
    Dial {
        to: String,
        account: Option<String>,
        play: Option<PathBuf>,
        record: Option<PathBuf>,
    },
    /// Answer a ringing incoming call (audio: the instance's default unless given).
    Accept {
        call: CallId,
        play: Option<PathBuf>,
        record: Option<PathBuf>,
    },
    /// End one call, or every call when `call` is absent.
    Hangup { call: Option<CallId> },
    /// Send DTMF digits (RFC 4733) on a connected call.
    Dtmf { call: CallId, digits: String },
    /// Put a call on hold.
    Hold { call: CallId },
    /// Take a call off hold.
    Activate { call: CallId },
    /// Mute (`on`, the default) or unmute a call's outgoing audio.
    Mute { call: CallId, on: bool },
    /// Start (`on`, the default) or stop recording a call, into `path` or a named file in the
    /// instance's recording directory.
    Record {
        call: CallId,
        on: bool,
        path: Option<PathBuf>,
    },
    /// Transfer: the call's peer is asked to call `to` (blind), or to take the place of our
    /// call `with` (attended).
    Transfer {
        call: CallId,
        to: Option<String>,
        with: Option<CallId>,
        /// The answer to a transfer the peer asked for (policy `ask`).
        accept: Option<bool>,
    },
    /// Turn a ringing call away with `code` (486 Busy Here unless given).
    Reject { call: CallId, code: u16 },
    /// Send a ringing call to `to` (302 Moved Temporarily).
    Redirect { call: CallId, to: String },
    /// Register (`on`) or unregister an account of the instance's configuration.
    Register { account: String, on: bool },
    /// Local conference of `call` and `with`.
    Join { call: CallId, with: CallId },
    /// Turn noise suppression of a call's microphone on or off.
    Denoise { call: CallId, on: bool },
    /// Accounts with their registration state, calls, listen address.
    Status,
    /// The current calls.
    Calls,
    /// The verbs that work.
    Supports,
    /// Start receiving events on this connection.
    Subscribe,
    /// Stop receiving events.
    Unsubscribe,
}

/// A request that cannot run: the error to answer, with the request's id when it had a
/// usable one.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRequest {
    pub id: Option<Value>,
    pub error: String,
}

/// Parse one request line (without its newline).
pub fn parse_request(line: &[u8]) -> Result<Request, BadRequest> {
    let value: Value = serde_json::from_slice(line).map_err(|e| BadRequest {
        id: None,
        error: format!("bad JSON: {e}"),
    })?;
    let Value::Object(mut obj) = value else {
        return Err(BadRequest {
            id: None,
            error: format!(
                "a request must be a JSON object like {{\"cmd\":\"status\"}}, not {}",
                kind(&value)
            ),
        });
    };
    let id = match obj.remove("id") {
        None => None,
        Some(v @ (Value::Number(_) | Value::String(_))) => Some(v),
        Some(other) => {
            return Err(BadRequest {
                id: None,
                error: format!("`id` must be a number or a string, not {}", kind(&other)),
            })
        }
    };
    let fail = |error: String| BadRequest {
        id: id.clone(),
        error,
    };
    let cmd = match obj.remove("cmd") {
        None => {
            return Err(fail(
                "missing `cmd` (the verb, e.g. {\"cmd\":\"status\"})".into(),
            ))
        }
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(fail(format!(
                "`cmd` must be a string, not {}",
                kind(&other)
            )))
        }
    };
    let verb = parse_verb(&cmd, obj).map_err(fail)?;
    Ok(Request { id, verb })
}

/// The verb named `cmd` with its arguments from `obj`.
fn parse_verb(cmd: &str, obj: Map<String, Value>) -> Result<Verb, String> {
    let mut args = Args {
        verb: cmd,
        obj,
        allowed: &[],
    };
    let verb = match cmd {
        "dial" => {
            args.allowed = &["to", "account", "play", "record"];
            let to = args.string("to")?.ok_or_else(|| {
                "dial needs `to` (a SIP URI, user@host, or a number with `account`)".to_string()
            })?;
            Verb::Dial {
                to,
                account: args.string("account")?,
                play: args.path("play")?,
                record: args.path("record")?,
            }
        }
        "accept" => {
            args.allowed = &["call", "play", "record"];
            Verb::Accept {
                call: args.required_call()?,
                play: args.path("play")?,
                record: args.path("record")?,
            }
        }
        "hangup" => {
            args.allowed = &["call"];
            Verb::Hangup { call: args.call()? }
        }
        "dtmf" => {
            args.allowed = &["call", "digits"];
            let call = args.required_call()?;
            let digits = args
                .string("digits")?
                .ok_or_else(|| "dtmf needs `digits` (0-9 * # A-D)".to_string())?;
            Verb::Dtmf { call, digits }
        }
        "hold" => {
            args.allowed = &["call"];
            Verb::Hold {
                call: args.required_call()?,
            }
        }
        "activate" => {
            args.allowed = &["call"];
            Verb::Activate {
                call: args.required_call()?,
            }
        }
        "mute" => {
            args.allowed = &["call", "on"];
            Verb::Mute {
                call: args.required_call()?,
                on: args.boolean("on")?.unwrap_or(true),
            }
        }
        "record" => {
            args.allowed = &["call", "on", "path"];
            Verb::Record {
                call: args.required_call()?,
                on: args.boolean("on")?.unwrap_or(true),
                path: args.path("path")?,
            }
        }
        "transfer" => {
            args.allowed = &["call", "to", "with", "accept"];
            let call = args.required_call()?;
            let to = args.string("to")?;
            let with = args.call_named("with")?;
            let accept = args.boolean("accept")?;
            let given = [to.is_some(), with.is_some(), accept.is_some()];
            if given.iter().filter(|g| **g).count() != 1 {
                return Err(
                    "transfer needs either `to` (a SIP URI, user@host, or a number at the \
                            call's account) or `with` (another call id, for an attended transfer)"
                        .into(),
                );
            }
            Verb::Transfer {
                call,
                to,
                with,
                accept,
            }
        }
        "reject" => {
            args.allowed = &["call", "code"];
            let call = args.required_call()?;
            let code = match args.obj.remove("code") {
                None => 486,
                Some(Value::Number(n)) => n
                    .as_u64()
                    .filter(|c| (400..=699).contains(c))
                    .map(|c| c as u16)
                    .ok_or_else(|| {
                        format!("`code` must be a SIP status from 400 to 699, not {n}")
                    })?,
                Some(other) => {
                    return Err(format!("`code` must be a number, not {}", kind(&other)))
                }
            };
            Verb::Reject { call, code }
        }
        "redirect" => {
            args.allowed = &["call", "to"];
            let call = args.required_call()?;
            let to = args
                .string("to")?
                .ok_or_else(|| "redirect needs `to` (a SIP URI or user@host)".to_string())?;
            Verb::Redirect { call, to }
        }
        "register" | "deregister" => {
            args.allowed = &["account"];
            let account = args
                .string("account")?
                .ok_or_else(|| format!("{cmd} needs `account` (an account name of the config)"))?;
            Verb::Register {
                account,
                on: cmd == "register",
            }
        }
        "join" => {
            args.allowed = &["call", "with"];
            let call = args.required_call()?;
            let with = args
                .call_named("with")?
                .ok_or_else(|| "join needs `with` (the other call's id)".to_string())?;
            Verb::Join { call, with }
        }
        "denoise" => {
            args.allowed = &["call", "on"];
            let call = args.required_call()?;
            let on = args
                .boolean("on")?
                .ok_or_else(|| "denoise needs `on` (true or false)".to_string())?;
            Verb::Denoise { call, on }
        }
        "status" => Verb::Status,
        "calls" => Verb::Calls,
        "supports" => Verb::Supports,
        "subscribe" => Verb::Subscribe,
        "unsubscribe" => Verb::Unsubscribe,
        v if UNSUPPORTED_VERBS.contains(&v) => return Err(format!("not supported yet: {v}")),
        v => return Err(format!("unknown verb: {}", printable(v))),
    };
    args.finish()?;
    Ok(verb)
}

/// The arguments of one request, taken one by one; what is left over is an error.
struct Args<'a> {
    verb: &'a str,
    obj: Map<String, Value>,
    allowed: &'static [&'static str],
}

impl Args<'_> {
    fn string(&mut self, name: &str) -> Result<Option<String>, String> {
        match self.obj.remove(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!("`{name}` must be a string, not {}", kind(&other))),
        }
    }

    fn boolean(&mut self, name: &str) -> Result<Option<bool>, String> {
        match self.obj.remove(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(other) => Err(format!(
                "`{name}` must be true or false, not {}",
                kind(&other)
            )),
        }
    }

    fn path(&mut self, name: &str) -> Result<Option<PathBuf>, String> {
        match self.string(name)? {
            Some(s) if s.is_empty() => Err(format!("`{name}` must not be empty")),
            Some(s) if s.contains('\0') => Err(format!("`{name}` must not contain NUL")),
            other => Ok(other.map(PathBuf::from)),
        }
    }

    fn call(&mut self) -> Result<Option<CallId>, String> {
        match self.obj.remove("call") {
            None => Ok(None),
            Some(Value::String(s)) => s
                .parse()
                .map(Some)
                .map_err(|_| format!("`call` must be a call id like \"c3\", not {:?}", s)),
            Some(other) => Err(format!(
                "`call` must be a string like \"c3\", not {}",
                kind(&other)
            )),
        }
    }

    /// A call id under another key than `call` (e.g. `with`).
    fn call_named(&mut self, name: &str) -> Result<Option<CallId>, String> {
        match self.string(name)? {
            None => Ok(None),
            Some(s) => s
                .parse()
                .map(Some)
                .map_err(|_| format!("`{name}` must be a call id like \"c3\", not {s:?}")),
        }
    }

    fn required_call(&mut self) -> Result<CallId, String> {
        self.call()?
            .ok_or_else(|| format!("{} needs `call` (a call id like \"c3\")", self.verb))
    }

    fn finish(self) -> Result<(), String> {
        match self.obj.keys().next() {
            None => Ok(()),
            Some(k) if self.allowed.is_empty() => Err(format!(
                "unknown argument `{}`: {} takes none",
                printable(k),
                self.verb
            )),
            Some(k) => Err(format!(
                "unknown argument `{}` for {} (allowed: {})",
                printable(k),
                self.verb,
                self.allowed.join(", ")
            )),
        }
    }
}

/// A client-supplied name, shortened and with control characters escaped, for messages.
fn printable(s: &str) -> String {
    let short: String = s.chars().take(64).collect();
    let escaped: String = short.escape_debug().collect();
    if short.len() < s.len() {
        format!("{escaped}...")
    } else {
        escaped
    }
}

/// What kind of JSON value this is, for error messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A successful response: `{"id":..,"ok":true,FIELDS}`, each field's value given as JSON
/// text (so that structs keep their field order). Ends with a newline.
pub fn ok_response(id: Option<&Value>, fields: &[(&str, String)]) -> String {
    let mut s = String::from("{");
    if let Some(id) = id {
        s.push_str("\"id\":");
        s.push_str(&id.to_string());
        s.push(',');
    }
    s.push_str("\"ok\":true");
    for (k, v) in fields {
        s.push(',');
        s.push_str(&Value::from(*k).to_string());
        s.push(':');
        s.push_str(v);
    }
    s.push_str("}\n");
    s
}

/// A failed response: `{"id":..,"ok":false,"error":"..."}`. Ends with a newline.
pub fn error_response(id: Option<&Value>, error: &str) -> String {
    let mut s = String::from("{");
    if let Some(id) = id {
        s.push_str("\"id\":");
        s.push_str(&id.to_string());
        s.push(',');
    }
    s.push_str("\"ok\":false,\"error\":");
    s.push_str(&Value::from(error).to_string());
    s.push_str("}\n");
    s
}

/// A value as JSON text, for [`ok_response`] fields.
pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// A request line for a client: `{"id":ID,"cmd":CMD,ARGS}` with a newline.
pub fn request_line(id: &Value, cmd: &str, args: &[(&str, Value)]) -> String {
    let mut s = format!("{{\"id\":{id},\"cmd\":{}", Value::from(cmd));
    for (k, v) in args {
        s.push(',');
        s.push_str(&Value::from(*k).to_string());
        s.push(':');
        s.push_str(&v.to_string());
    }
    s.push_str("}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn parse(s: &str) -> Result<Request, BadRequest> {
        parse_request(s.as_bytes())
    }

    fn err(s: &str) -> String {
        parse(s).expect_err(s).error
    }

    #[test]
    fn a_dial_with_every_argument() {
        let r = parse(r#"{"id":7,"cmd":"dial","to":"sip:1002@pbx","account":"work","play":"/a.wav","record":"/b.wav"}"#).unwrap();
        assert_eq!(r.id, Some(json!(7)));
        assert_eq!(
            r.verb,
            Verb::Dial {
                to: "sip:1002@pbx".into(),
                account: Some("work".into()),
                play: Some("/a.wav".into()),
                record: Some("/b.wav".into()),
            }
        );
    }

    #[test]
    fn ids_are_numbers_or_strings_and_optional() {
        assert_eq!(
            parse(r#"{"id":"abc","cmd":"status"}"#).unwrap().id,
            Some(json!("abc"))
        );
        assert_eq!(
            parse(r#"{"id":1.5,"cmd":"status"}"#).unwrap().id,
            Some(json!(1.5))
        );
        assert_eq!(parse(r#"{"cmd":"status"}"#).unwrap().id, None);
        let bad = parse(r#"{"id":[1],"cmd":"status"}"#).unwrap_err();
        assert_eq!(bad.id, None);
        assert_eq!(bad.error, "`id` must be a number or a string, not an array");
    }

    #[test]
    fn the_other_verbs() {
        assert_eq!(
            parse(r#"{"cmd":"accept","call":"c2"}"#).unwrap().verb,
            Verb::Accept {
                call: CallId(2),
                play: None,
                record: None
            }
        );
        assert_eq!(
            parse(r#"{"cmd":"hangup"}"#).unwrap().verb,
            Verb::Hangup { call: None }
        );
        assert_eq!(
            parse(r#"{"cmd":"hangup","call":"c3"}"#).unwrap().verb,
            Verb::Hangup {
                call: Some(CallId(3))
            }
        );
        assert_eq!(
            parse(r#"{"cmd":"dtmf","call":"c3","digits":"12#"}"#)
                .unwrap()
                .verb,
            Verb::Dtmf {
                call: CallId(3),
                digits: "12#".into()
            }
        );
        for (cmd, verb) in [
            ("status", Verb::Status),
            ("calls", Verb::Calls),
            ("supports", Verb::Supports),
            ("subscribe", Verb::Subscribe),
            ("unsubscribe", Verb::Unsubscribe),
        ] {
            assert_eq!(parse(&format!(r#"{{"cmd":"{cmd}"}}"#)).unwrap().verb, verb);
        }
    }

    #[test]
    fn errors_are_specific_and_keep_the_id() {
        assert!(err("{").starts_with("bad JSON: "), "{}", err("{"));
        assert!(err("not json").starts_with("bad JSON: "));
        assert_eq!(
            err("[1,2]"),
            "a request must be a JSON object like {\"cmd\":\"status\"}, not an array"
        );
        assert_eq!(
            err(r#"{"id":1}"#),
            "missing `cmd` (the verb, e.g. {\"cmd\":\"status\"})"
        );
        assert_eq!(err(r#"{"cmd":5}"#), "`cmd` must be a string, not a number");
        let e = parse(r#"{"id":9,"cmd":"foo"}"#).unwrap_err();
        assert_eq!(e.id, Some(json!(9)));
        assert_eq!(e.error, "unknown verb: foo");
        assert_eq!(
            err(r#"{"cmd":"register","account":"w","call":"c1"}"#),
            "unknown argument `call` for register (allowed: account)"
        );
        assert_eq!(
            err(r#"{"cmd":"dial","to":5}"#),
            "`to` must be a string, not a number"
        );
        assert_eq!(
            err(r#"{"cmd":"dial"}"#),
            "dial needs `to` (a SIP URI, user@host, or a number with `account`)"
        );
        assert_eq!(
            err(r#"{"cmd":"hangup","call":3}"#),
            "`call` must be a string like \"c3\", not a number"
        );
        assert_eq!(
            err(r#"{"cmd":"hangup","call":"x3"}"#),
            "`call` must be a call id like \"c3\", not \"x3\""
        );
        assert_eq!(
            err(r#"{"cmd":"accept"}"#),
            "accept needs `call` (a call id like \"c3\")"
        );
        assert_eq!(
            err(r#"{"cmd":"dtmf","call":"c1"}"#),
            "dtmf needs `digits` (0-9 * # A-D)"
        );
        assert_eq!(
            err(r#"{"cmd":"dial","to":"x","acount":"work"}"#),
            "unknown argument `acount` for dial (allowed: to, account, play, record)"
        );
        assert_eq!(
            err(r#"{"cmd":"status","verbose":true}"#),
            "unknown argument `verbose`: status takes none"
        );
        assert_eq!(
            err(r#"{"cmd":"dial","to":"x","play":""}"#),
            "`play` must not be empty"
        );
        // Control characters of a client's verb are escaped in the message.
        assert_eq!(err("{\"cmd\":\"a\\u001bb\"}"), "unknown verb: a\\u{1b}b");
    }

    #[test]
    fn responses_keep_their_field_order_and_echo_the_id() {
        assert_eq!(
            ok_response(Some(&json!(7)), &[("call", json(&CallId(3)))]),
            "{\"id\":7,\"ok\":true,\"call\":\"c3\"}\n"
        );
        assert_eq!(ok_response(None, &[]), "{\"ok\":true}\n");
        assert_eq!(
            error_response(Some(&json!("a\"b")), "no such call: c99"),
            "{\"id\":\"a\\\"b\",\"ok\":false,\"error\":\"no such call: c99\"}\n"
        );
        let v: Value = serde_json::from_str(&error_response(None, "x\ny")).unwrap();
        assert_eq!(v, json!({"ok": false, "error": "x\ny"}));
    }

    #[test]
    fn request_lines_parse_back() {
        let line = request_line(&json!(1), "dial", &[("to", json!("sip:a@b"))]);
        assert_eq!(line, "{\"id\":1,\"cmd\":\"dial\",\"to\":\"sip:a@b\"}\n");
        let r = parse_request(line.trim_end().as_bytes()).unwrap();
        assert!(matches!(r.verb, Verb::Dial { ref to, .. } if to == "sip:a@b"));
    }

    #[test]
    fn supported_and_unsupported_verbs_do_not_overlap() {
        for v in UNSUPPORTED_VERBS {
            assert!(!SUPPORTED_VERBS.contains(v));
            assert_eq!(
                err(&format!(r#"{{"cmd":"{v}"}}"#)),
                format!("not supported yet: {v}")
            );
        }
    }

    proptest! {
        #[test]
        fn arbitrary_lines_never_panic(line in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_request(&line);
        }

        #[test]
        fn arbitrary_json_objects_never_panic(
            cmd in prop_oneof![
                Just("dial".to_string()), Just("accept".to_string()), Just("hangup".to_string()),
                Just("dtmf".to_string()), Just("status".to_string()), ".{0,12}".prop_map(|s| s)
            ],
            keys in proptest::collection::vec(
                prop_oneof![Just("to"), Just("call"), Just("digits"), Just("id"), Just("play"), Just("x")],
                0..5),
            vals in proptest::collection::vec(
                prop_oneof![
                    Just(json!(null)), Just(json!(true)), any::<i64>().prop_map(|n| json!(n)),
                    ".{0,20}".prop_map(|s| json!(s)), Just(json!("c7")), Just(json!([1])),
                    Just(json!({"a":1}))
                ],
                0..5),
        ) {
            let mut obj = Map::new();
            obj.insert("cmd".into(), json!(cmd));
            for (k, v) in keys.iter().zip(vals) {
                obj.insert((*k).into(), v);
            }
            let line = Value::Object(obj).to_string();
            match parse_request(line.as_bytes()) {
                Ok(_) => {}
                Err(e) => prop_assert!(!e.error.is_empty()),
            }
        }
    }
}

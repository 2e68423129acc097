//! Editing config.toml in place for `termphone account import`: one `[[account]]` table is
//! added (or replaced), everything else — comments, order, blank lines, formatting — is kept,
//! through toml_edit's format-preserving document. Also reads one account's keys back for
//! `termphone account export`. Messages never contain a value from the file.

use std::fmt;
use std::io::Write;
use std::path::Path;

use toml_edit::{value, ArrayOfTables, DocumentMut, Item, Table};

use super::provision::AccountFields;
use super::Secret;
use crate::sip::transport::Transport;

/// Why the config could not be edited. No message contains a value from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditError {
    /// The text is not TOML (the loader's own error, with its position, is shown before this).
    Syntax,
    /// `account` is not written as `[[account]]` tables.
    NotTables,
    /// An account with this name exists and `--replace` was not given.
    Duplicate(String),
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EditError::Syntax => f.write_str("the config file is not valid TOML"),
            EditError::NotTables => f.write_str(
                "the config's accounts are not written as [[account]] tables, so termphone \
                 cannot add one without rewriting them; add the account by hand",
            ),
            EditError::Duplicate(name) => write!(
                f,
                "an account named {name:?} already exists; choose another with --name, or \
                 overwrite it with --replace"
            ),
        }
    }
}

impl std::error::Error for EditError {}

/// The comment written above an imported account.
pub const IMPORTED_COMMENT: &str = "# Added by `termphone account import`.";

/// The text of a config file that did not exist yet.
pub const NEW_FILE_HEADER: &str = "# termphone configuration (every key is described in \
config.example.toml).\n";

/// The `[[account]]` table for `fields` (and `password`, when it must go into the file).
fn account_table(fields: &AccountFields, password: Option<&Secret>) -> Table {
    let mut t = Table::new();
    t["name"] = value(fields.name.as_str());
    t["user"] = value(fields.user.as_str());
    let optional = [("domain", &fields.domain), ("registrar", &fields.registrar)];
    for (k, v) in optional {
        if let Some(v) = v {
            t[k] = value(v.as_str());
        }
    }
    t["transport"] = value(fields.transport.param_name());
    let optional = [
        ("outbound_proxy", &fields.outbound_proxy),
        ("auth_user", &fields.auth_user),
        ("ws_path", &fields.ws_path),
        ("display_name", &fields.display_name),
    ];
    for (k, v) in optional {
        if let Some(v) = v {
            t[k] = value(v.as_str());
        }
    }
    t["enabled"] = value(fields.enabled);
    if let Some(p) = password {
        t["password"] = value(p.expose());
    }
    t
}

/// The highest document position of `t` and every table under it.
fn max_position(t: &Table) -> isize {
    let mut max = t.position().unwrap_or(0);
    for (_, item) in t.iter() {
        match item {
            Item::Table(sub) => max = max.max(max_position(sub)),
            Item::ArrayOfTables(aot) => {
                for sub in aot.iter() {
                    max = max.max(max_position(sub));
                }
            }
            _ => {}
        }
    }
    max
}

fn name_of(t: &Table) -> Option<&str> {
    t.get("name").and_then(Item::as_str)
}

/// Add `fields` as a new `[[account]]` at the end of `text` (or, with `replace`, in place of
/// the account of the same name, keeping its position and the comments above it). Returns the
/// new text; everything else in `text` is kept byte for byte.
pub fn upsert_account(
    text: &str,
    fields: &AccountFields,
    password: Option<&Secret>,
    replace: bool,
) -> Result<String, EditError> {
    let mut doc: DocumentMut = text.parse().map_err(|_| EditError::Syntax)?;
    let mut table = account_table(fields, password);
    // A new table goes after everything, so the file's text stays a prefix of the result:
    // after the last table, and after the comments that end the file (toml_edit keeps those
    // as the document's trailing text, which would otherwise follow the new table).
    let last = max_position(doc.as_table());
    let trailing = doc.trailing().as_str().unwrap_or("").to_string();
    let accounts = doc
        .entry("account")
        .or_insert_with(|| Item::ArrayOfTables(ArrayOfTables::new()));
    let Item::ArrayOfTables(aot) = accounts else {
        return Err(EditError::NotTables);
    };
    let existing = aot
        .iter()
        .position(|t| name_of(t) == Some(fields.name.as_str()));
    match existing {
        Some(_) if !replace => return Err(EditError::Duplicate(fields.name.clone())),
        Some(i) => {
            let old = aot.get_mut(i).expect("index from position");
            table.set_position(old.position());
            *table.decor_mut() = old.decor().clone();
            *old = table;
        }
        None => {
            let sep = if text.is_empty() || text.ends_with("\n\n") {
                ""
            } else if text.ends_with('\n') {
                "\n"
            } else {
                "\n\n"
            };
            table
                .decor_mut()
                .set_prefix(format!("{trailing}{sep}{IMPORTED_COMMENT}\n"));
            table.set_position(Some(last + 1));
            aot.push(table);
            doc.set_trailing("");
        }
    }
    Ok(doc.to_string())
}

/// The provisioning keys of the account named `name` in `text` (`None` when there is none).
/// Keys the file does not set stay unset; `transport` defaults to UDP.
pub fn read_account(text: &str, name: &str) -> Option<AccountFields> {
    let doc: DocumentMut = text.parse().ok()?;
    let aot = doc.get("account")?.as_array_of_tables()?;
    let t = aot.iter().find(|t| name_of(t) == Some(name))?;
    let s = |k: &str| t.get(k).and_then(Item::as_str).map(str::to_string);
    Some(AccountFields {
        name: name.to_string(),
        user: s("user")?,
        domain: s("domain"),
        registrar: s("registrar"),
        transport: s("transport")
            .and_then(|t| Transport::from_name(&t))
            .unwrap_or_default(),
        outbound_proxy: s("outbound_proxy"),
        auth_user: s("auth_user"),
        ws_path: s("ws_path"),
        display_name: s("display_name").filter(|d| !d.is_empty()),
        enabled: t.get("enabled").and_then(Item::as_bool).unwrap_or(true),
    })
}

/// Write `text` to `path` atomically (a temp file beside it, then rename), creating the
/// directory if needed. A new file is private (0600); an existing one keeps its permissions.
pub fn write_config(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config.toml".to_string());
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        if let Ok(meta) = std::fs::metadata(path) {
            std::fs::set_permissions(&tmp, meta.permissions())?;
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(name: &str) -> AccountFields {
        AccountFields {
            name: name.into(),
            user: "1001".into(),
            domain: Some("pbx.example.com".into()),
            registrar: Some("sip:pbx.example.com:5080".into()),
            transport: Transport::Udp,
            outbound_proxy: None,
            auth_user: Some("a1001".into()),
            ws_path: None,
            display_name: None,
            enabled: true,
        }
    }

    const FILE: &str = "# my phone config\n[general]\nlisten = \"127.0.0.1:5060\" # local only\n\n\
        # the office\n[[account]]\nname = \"work\"\nuser = \"1\"\n\n[audio]\n# default devices\n";

    #[test]
    fn adds_an_account_keeping_everything_else() {
        let out = upsert_account(FILE, &fields("new"), None, false).unwrap();
        // The new table follows the last account; taking it out gives the original back.
        let start = out.find(IMPORTED_COMMENT).unwrap();
        let end = start + out[start..].find("enabled = true\n").unwrap() + 15;
        assert_eq!(
            format!("{}{}", &out[..start - 1], &out[end..]),
            FILE,
            "{out}"
        );
        let back = read_account(&out, "new").unwrap();
        assert_eq!(back, fields("new"));
        assert!(!out.contains("password"));
        // The work account is still there.
        assert_eq!(read_account(&out, "work").unwrap().user, "1");
    }

    #[test]
    fn duplicate_names_need_replace_which_keeps_place_and_comment() {
        let e = upsert_account(FILE, &fields("work"), None, false).unwrap_err();
        assert_eq!(e, EditError::Duplicate("work".into()));
        assert!(e.to_string().contains("--replace"));
        let out = upsert_account(FILE, &fields("work"), None, true).unwrap();
        assert!(
            out.contains("# the office\n[[account]]\nname = \"work\"\nuser = \"1001\""),
            "{out}"
        );
        assert!(out.contains("[audio]\n# default devices\n"), "{out}");
        assert_eq!(out.matches("[[account]]").count(), 1);
        assert_eq!(read_account(&out, "work").unwrap(), fields("work"));
    }

    #[test]
    fn empty_file_and_password_in_file() {
        let out = upsert_account("", &fields("a"), Some(&Secret::new("pw")), false).unwrap();
        assert!(out.contains("password = \"pw\""), "{out}");
        assert!(out.starts_with(IMPORTED_COMMENT), "{out}");
        // A file without a final newline.
        let out = upsert_account("[general]\nsip_trace = true", &fields("a"), None, false).unwrap();
        assert!(out.starts_with("[general]\nsip_trace = true\n"), "{out}");
        assert!(read_account(&out, "a").is_some());
    }

    #[test]
    fn trailing_comments_stay_before_the_new_table() {
        // Like config.example.toml: commented-out keys end the last account.
        let text = "[[account]]\nname = \"w\"\nuser = \"1\"\n# password_cmd = \"pass x\"\n# password = \"...\"\n";
        let out = upsert_account(text, &fields("new"), None, false).unwrap();
        assert!(out.starts_with(text), "{out}");
        // And with tables after the accounts.
        let out = upsert_account(FILE, &fields("a"), None, false).unwrap();
        let out = upsert_account(&out, &fields("b"), None, false).unwrap();
        assert!(out.starts_with(FILE), "{out}");
        assert!(out.find("name = \"a\"").unwrap() < out.find("name = \"b\"").unwrap());
        let cfg = crate::config::Config::from_str(&out, Path::new("t.toml")).unwrap();
        let names: Vec<&str> = cfg.accounts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["work", "a", "b"]);
    }

    #[test]
    fn the_result_loads_with_the_config_loader() {
        let wss = AccountFields {
            transport: Transport::Wss,
            ws_path: Some("/ws".into()),
            outbound_proxy: Some("sip:edge.example.com;lr".into()),
            ..fields("new")
        };
        let out = upsert_account(FILE, &wss, None, false).unwrap();
        let cfg = crate::config::Config::from_str(&out, Path::new("t.toml")).unwrap();
        let a = cfg.account("new").unwrap();
        assert_eq!(a.transport, Transport::Wss);
        assert_eq!(a.ws_path, "/ws");
        assert_eq!(a.auth_user.as_deref(), Some("a1001"));
        assert_eq!(a.outbound_proxy.as_deref(), Some("sip:edge.example.com;lr"));
        assert_eq!(a.registrar.as_deref(), Some("sip:pbx.example.com:5080"));
    }

    #[test]
    fn inline_accounts_are_refused() {
        let text = "account = [{ name = \"x\", user = \"y\" }]\n";
        assert_eq!(
            upsert_account(text, &fields("a"), None, false).unwrap_err(),
            EditError::NotTables
        );
        assert_eq!(
            upsert_account("a = [", &fields("a"), None, false).unwrap_err(),
            EditError::Syntax
        );
    }

    #[test]
    fn write_is_atomic_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.toml");
        write_config(&path, "x = 1\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x = 1\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
            write_config(&path, "x = 2\n").unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o640);
        }
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            1
        );
    }
}

//! Account passwords: the OS keyring, `password_cmd`, or the config file, in that order.
//!
//! The keyring entry of an account is service [`KEYRING_SERVICE`], user = the account name.
//! Nothing here ever puts a password into an error, a warning or a log line.

use std::fmt;

use super::{AccountConfig, Secret};

/// Keyring service name under which termphone stores passwords.
pub const KEYRING_SERVICE: &str = "termphone";

/// Where an account's password comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordSource {
    /// The OS keyring (Secret Service, macOS Keychain, Windows Credential Manager).
    Keyring,
    /// The output of the account's `password_cmd`.
    PasswordCmd,
    /// `password` in the config file.
    ConfigFile,
    /// No password anywhere.
    None,
}

impl fmt::Display for PasswordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PasswordSource::Keyring => "keyring",
            PasswordSource::PasswordCmd => "password_cmd",
            PasswordSource::ConfigFile => "config file",
            PasswordSource::None => "none",
        })
    }
}

/// What the keyring said about one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyringLookup {
    /// The stored password.
    Found(Secret),
    /// The keyring works but holds no entry for this account.
    NoEntry,
    /// The keyring cannot be used (no Secret Service on the session bus, locked, ...): why.
    Unavailable(String),
}

/// A keyring operation that failed; the text never contains a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyringError(pub String);

impl fmt::Display for KeyringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyringError {}

/// Describe a keyring error without any secret (the crate's messages hold none; we add context).
fn describe(e: &keyring::Error) -> String {
    match e {
        keyring::Error::NoStorageAccess(inner) | keyring::Error::PlatformFailure(inner) => {
            format!("the OS keyring is unavailable ({inner})")
        }
        keyring::Error::NoEntry => "no entry in the OS keyring".to_string(),
        keyring::Error::BadEncoding(_) => "the keyring entry is not valid UTF-8".to_string(),
        other => format!("OS keyring error: {other}"),
    }
}

fn entry(account: &str) -> Result<keyring::Entry, KeyringError> {
    keyring::Entry::new(KEYRING_SERVICE, account).map_err(|e| KeyringError(describe(&e)))
}

/// Look up an account's password in the OS keyring.
pub fn keyring_get(account: &str) -> KeyringLookup {
    let e = match entry(account) {
        Ok(e) => e,
        Err(KeyringError(why)) => return KeyringLookup::Unavailable(why),
    };
    match e.get_password() {
        Ok(p) => KeyringLookup::Found(Secret::new(p)),
        Err(keyring::Error::NoEntry) => KeyringLookup::NoEntry,
        Err(err) => KeyringLookup::Unavailable(describe(&err)),
    }
}

/// Store (or replace) an account's password in the OS keyring.
pub fn keyring_set(account: &str, password: &Secret) -> Result<(), KeyringError> {
    entry(account)?
        .set_password(password.expose())
        .map_err(|e| KeyringError(describe(&e)))
}

/// Delete an account's keyring entry; `Ok(false)` when there was none.
pub fn keyring_delete(account: &str) -> Result<bool, KeyringError> {
    match entry(account)?.delete_credential() {
        Ok(()) => Ok(true),
        Err(keyring::Error::NoEntry) => Ok(false),
        Err(e) => Err(KeyringError(describe(&e))),
    }
}

/// Run `password_cmd` with `sh -c`; its stdout minus one trailing newline is the password.
/// Errors name the exit status or the spawn failure, never the output.
pub fn run_password_cmd(cmd: &str) -> Result<Secret, String> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run password_cmd: {e}"))?;
    if !out.status.success() {
        return Err(format!("password_cmd failed ({})", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(Secret::new(strip_line_end(&text)))
}

/// Remove one trailing `\n` (and a `\r` before it).
pub fn strip_line_end(s: &str) -> &str {
    let s = s.strip_suffix('\n').unwrap_or(s);
    s.strip_suffix('\r').unwrap_or(s)
}

/// The password of an account, where it came from, and warnings for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The password, if any source had one.
    pub password: Option<Secret>,
    /// The source it came from ([`PasswordSource::None`] when none).
    pub source: PasswordSource,
    /// Problems to show (never containing a password).
    pub warnings: Vec<String>,
}

/// Find an account's password: the keyring entry, then `password_cmd`, then `password`.
/// `keyring` is the keyring's answer for this account (so tests can pass any answer).
/// An unavailable keyring is silent when another source exists; when it was the only hope,
/// the warning says so.
pub fn resolve_password(
    a: &AccountConfig,
    keyring: KeyringLookup,
    password_cmd: impl FnOnce(&str) -> Result<Secret, String>,
) -> Resolved {
    let mut warnings = Vec::new();
    let keyring_problem = match keyring {
        KeyringLookup::Found(p) => {
            return Resolved {
                password: Some(p),
                source: PasswordSource::Keyring,
                warnings,
            }
        }
        KeyringLookup::NoEntry => None,
        KeyringLookup::Unavailable(why) => Some(why),
    };
    if let Some(cmd) = &a.password_cmd {
        match password_cmd(cmd) {
            Ok(p) => {
                return Resolved {
                    password: Some(p),
                    source: PasswordSource::PasswordCmd,
                    warnings,
                }
            }
            Err(e) => warnings.push(format!("account {}: {e}", a.name)),
        }
    }
    if let Some(p) = &a.password {
        return Resolved {
            password: Some(p.clone()),
            source: PasswordSource::ConfigFile,
            warnings,
        };
    }
    if let Some(why) = keyring_problem {
        warnings.push(format!(
            "account {}: no password: {why}, and the account has no other working password \
             source (password_cmd or password); it cannot answer a registrar's challenge",
            a.name
        ));
    }
    Resolved {
        password: None,
        source: PasswordSource::None,
        warnings,
    }
}

/// Where an account's password would come from, without running `password_cmd` (for
/// `termphone account list`).
pub fn password_source(a: &AccountConfig, keyring: &KeyringLookup) -> PasswordSource {
    if matches!(keyring, KeyringLookup::Found(_)) {
        PasswordSource::Keyring
    } else if a.password_cmd.is_some() {
        PasswordSource::PasswordCmd
    } else if a.password.is_some() {
        PasswordSource::ConfigFile
    } else {
        PasswordSource::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> AccountConfig {
        let mut a = AccountConfig::local();
        a.name = "alice".into();
        a
    }

    fn never(_: &str) -> Result<Secret, String> {
        panic!("password_cmd must not run")
    }

    #[test]
    fn keyring_wins_over_password_cmd_and_file() {
        let mut a = account();
        a.password_cmd = Some("echo cmd".into());
        a.password = Some(Secret::new("file"));
        let r = resolve_password(&a, KeyringLookup::Found(Secret::new("kr")), never);
        assert_eq!(r.password, Some(Secret::new("kr")));
        assert_eq!(r.source, PasswordSource::Keyring);
        assert!(r.warnings.is_empty());
        assert_eq!(
            password_source(&a, &KeyringLookup::Found(Secret::new("kr"))),
            PasswordSource::Keyring
        );
    }

    #[test]
    fn password_cmd_then_file_when_no_keyring_entry() {
        let mut a = account();
        a.password_cmd = Some("x".into());
        a.password = Some(Secret::new("file"));
        let r = resolve_password(&a, KeyringLookup::NoEntry, |_| Ok(Secret::new("cmd")));
        assert_eq!(
            (r.password, r.source),
            (Some(Secret::new("cmd")), PasswordSource::PasswordCmd)
        );
        // A failing password_cmd falls back to the file, with a warning.
        let r = resolve_password(&a, KeyringLookup::NoEntry, |_| Err("boom".into()));
        assert_eq!(
            (r.password, r.source),
            (Some(Secret::new("file")), PasswordSource::ConfigFile)
        );
        assert_eq!(r.warnings, vec!["account alice: boom".to_string()]);
        a.password_cmd = None;
        let r = resolve_password(&a, KeyringLookup::NoEntry, never);
        assert_eq!(r.source, PasswordSource::ConfigFile);
        assert_eq!(
            password_source(&a, &KeyringLookup::NoEntry),
            PasswordSource::ConfigFile
        );
    }

    #[test]
    fn unavailable_keyring_is_silent_when_another_source_exists() {
        let mut a = account();
        a.password = Some(Secret::new("file"));
        let r = resolve_password(&a, KeyringLookup::Unavailable("no bus".into()), never);
        assert_eq!(r.source, PasswordSource::ConfigFile);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn unavailable_keyring_as_only_hope_warns_clearly() {
        let a = account();
        let r = resolve_password(&a, KeyringLookup::Unavailable("no bus".into()), never);
        assert_eq!((r.password, r.source), (None, PasswordSource::None));
        assert_eq!(r.warnings.len(), 1);
        let w = &r.warnings[0];
        assert!(
            w.contains("alice") && w.contains("no bus") && w.contains("no password"),
            "{w}"
        );
        // No entry and no other source: no password, nothing alarming (accounts may need none).
        let r = resolve_password(&a, KeyringLookup::NoEntry, never);
        assert_eq!(r.source, PasswordSource::None);
        assert!(r.warnings.is_empty());
    }

    #[test]
    fn password_cmd_runs_for_real_and_strips_one_newline() {
        assert_eq!(
            run_password_cmd("printf 's3cr3t\\n'").unwrap(),
            Secret::new("s3cr3t")
        );
        let e = run_password_cmd("echo leaked; exit 3").unwrap_err();
        assert!(e.contains("exit status: 3") && !e.contains("leaked"), "{e}");
        assert_eq!(strip_line_end("a\r\n"), "a");
        assert_eq!(strip_line_end("a\n\n"), "a\n");
    }

    #[test]
    fn mock_store_errors_are_described_without_secrets() {
        // The crate's mock store: a platform failure becomes "unavailable".
        let entry =
            keyring::Entry::new_with_credential(Box::new(keyring::mock::MockCredential::default()));
        let mock: &keyring::mock::MockCredential = entry
            .get_credential()
            .downcast_ref()
            .expect("mock credential");
        mock.set_error(keyring::Error::PlatformFailure("no session bus".into()));
        let err = entry.get_password().unwrap_err();
        assert_eq!(
            describe(&err),
            "the OS keyring is unavailable (no session bus)"
        );
        entry.set_password("topsecret").unwrap();
        assert_eq!(entry.get_password().unwrap(), "topsecret");
        entry.delete_credential().unwrap();
        assert!(matches!(entry.get_password(), Err(keyring::Error::NoEntry)));
    }
}

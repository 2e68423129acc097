//! A password must never appear in an error, a warning or a Debug print, whatever is wrong
//! with the line that holds it.

use std::path::Path;

use termphone::config::Config;

const SECRET: &str = "Hunter2xyzzy";

fn account_with(line: &str) -> String {
    format!("[[account]]\nname = \"a\"\nuser = \"alice\"\n{line}\n")
}

/// Lines that hold the secret and are wrong in some way (type, syntax, place).
fn bad_password_lines() -> Vec<String> {
    let s = SECRET;
    vec![
        format!("password = {s}"),
        format!("password = \"{s}"),
        format!("password = '{s}"),
        format!("password = \"\"\"{s}\nmore"),
        format!("password = \"{s}\" trailing"),
        format!("password = \"{s}\" = 1"),
        format!("password = [\"{s}\"]"),
        format!("password = {{ v = \"{s}\" }}"),
        format!("password = \"\\q{s}\""),
        format!("password = 1979-05-27{s}"),
        format!("password {s}"),
        format!("password = \"{s}\"\npassword = \"{s}\""),
        format!("password = \"{s}\"\nuser = \"not valid\""),
        format!("password = \"{s}\"\nbogus = 1"),
        format!("password = \"{s}\" # {s}\ncodecs = [\"G729\"]"),
        format!("[general]\npassword = \"{s}\""),
        format!("password: \"{s}\""),
        format!("\"password\" = {s}"),
        format!("password = \"{s}\"\n[account.extra]\npassword = \"{s}\""),
    ]
}

fn assert_no_leak(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} leaks the password:\n{text}");
    // Not even a large piece of it.
    assert!(
        !text.contains(&SECRET[..6]),
        "{what} leaks part of the password:\n{text}"
    );
}

#[test]
fn wrong_typed_numeric_password_is_not_echoed() {
    let text = account_with("password = 12345");
    let err = Config::from_str(&text, Path::new("c.toml")).unwrap_err();
    let msg = err.to_string();
    assert_eq!(
        msg,
        "c.toml:4:12: account[0].password: expected a string, found an integer"
    );
    assert!(!msg.contains("12345"));
    assert!(!format!("{err:?}").contains("12345"));
}

#[test]
fn malformed_password_lines_never_leak() {
    for line in bad_password_lines() {
        let text = account_with(&line);
        let err = match Config::from_str(&text, Path::new("c.toml")) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(msg.starts_with("c.toml:"), "{msg}");
        assert_no_leak(&format!("error for {line:?}"), &msg);
        assert_no_leak(&format!("Debug of error for {line:?}"), &format!("{err:?}"));
    }
}

#[test]
fn malformed_password_in_a_file_does_not_leak() {
    let path = std::env::temp_dir().join(format!(
        "termphone-config-secret-{}.toml",
        std::process::id()
    ));
    std::fs::write(&path, account_with(&format!("password = {SECRET}"))).unwrap();
    let result = Config::load(&path);
    std::fs::remove_file(&path).unwrap();
    let err = result.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{}:4:12: ", path.display())),
        "{msg}"
    );
    assert_no_leak("error from a file", &msg);
}

#[test]
fn accepted_password_is_warned_about_without_its_value() {
    let text = account_with(&format!("password = \"{SECRET}\""));
    let config = Config::from_str(&text, Path::new("c.toml")).unwrap();
    assert_eq!(
        config.accounts[0].password.as_ref().map(|p| p.expose()),
        Some(SECRET)
    );
    assert_eq!(config.warnings.len(), 1);
    let warning = config.warnings[0].to_string();
    assert!(
        warning.starts_with("c.toml:4:12: warning: account[0].password: "),
        "{warning}"
    );
    assert_no_leak("warning", &warning);
    assert_no_leak("Debug of the config", &format!("{config:?}"));
}

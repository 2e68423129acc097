//! `termphone account set-password / list / remove` against a real Secret Service (a private
//! session bus + gnome-keyring, tests/keyring_fixture.rs) and without one. No password ever
//! appears on stdout or stderr.

#[path = "keyring_fixture.rs"]
mod keyring_fixture;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use keyring_fixture::secret_service_or_skip;

const PW: &str = "Kr-s3cret-4lice";

fn config(dir: &Path) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        "[[account]]\nname = \"alice\"\nuser = \"alice\"\ndomain = \"example.test\"\n\
         registrar = \"sip:127.0.0.1:5999\"\n\n\
         [[account]]\nname = \"bob\"\nuser = \"bob\"\ndomain = \"example.test\"\n\
         password_cmd = \"echo bobs-cmd-pw\"\n\n\
         [[account]]\nname = \"carol\"\nuser = \"carol\"\ndomain = \"example.test\"\n\
         password = \"carols-file-pw\"\n\n\
         [[account]]\nname = \"dave\"\nuser = \"dave\"\n",
    )
    .unwrap();
    path
}

/// Run termphone with `env`, feeding `stdin` (stdin is a pipe, so not a terminal).
fn termphone(env: &[(String, String)], args: &[&str], stdin: &str) -> Output {
    // A runtime dir of its own: no running instance's control socket is found.
    let run = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_termphone"))
        .args(args)
        .env("XDG_RUNTIME_DIR", run.path())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn assert_no_password(outputs: &[&Output]) {
    for o in outputs {
        let (out, err) = text(o);
        for pw in [PW, "bobs-cmd-pw", "carols-file-pw"] {
            assert!(
                !out.contains(pw) && !err.contains(pw),
                "a password leaked:\n{out}\n{err}"
            );
        }
    }
}

fn line<'a>(list: &'a str, name: &str) -> &'a str {
    list.lines()
        .find(|l| l.starts_with(&format!("{name}\t")))
        .unwrap_or_else(|| panic!("no line for {name} in:\n{list}"))
}

#[test]
fn account_subcommands_have_help_with_an_example() {
    for sub in [
        vec!["account", "--help"],
        vec!["account", "set-password", "--help"],
        vec!["account", "list", "--help"],
        vec!["account", "remove", "--help"],
    ] {
        let o = termphone(&[], &sub, "");
        assert!(o.status.success(), "{sub:?}");
        let (out, _) = text(&o);
        assert!(out.contains("Example"), "{sub:?}:\n{out}");
        assert!(out.contains(&format!("termphone {}", sub[..sub.len() - 1].join(" "))));
    }
    // Without a subcommand: usage error.
    assert_eq!(termphone(&[], &["account"], "").status.code(), Some(2));
    assert_eq!(
        termphone(&[], &["account", "set-password"], "")
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn unknown_account_is_an_error_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let cfg = cfg.to_str().unwrap();
    for args in [
        vec!["--config", cfg, "account", "set-password", "mallory"],
        vec!["--config", cfg, "account", "remove", "mallory"],
    ] {
        let o = termphone(&[], &args, &format!("{PW}\n"));
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let (_, err) = text(&o);
        assert!(
            err.contains("no account named \"mallory\"") && err.contains("alice, bob, carol, dave"),
            "{err}"
        );
        assert_no_password(&[&o]);
    }
}

#[test]
fn set_password_list_remove_with_a_real_secret_service() {
    let Some(ss) = secret_service_or_skip("set_password_list_remove") else {
        return;
    };
    let env = ss.env();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let cfg = cfg.to_str().unwrap();

    let list0 = termphone(&env, &["--config", cfg, "account", "list"], "");
    assert!(list0.status.success());
    let (out, err) = text(&list0);
    assert!(err.is_empty() || !err.contains("unavailable"), "{err}");
    assert!(
        line(&out, "alice").ends_with("\tpassword=none\tstate=not running"),
        "{out}"
    );

    let set = termphone(
        &env,
        &["--config", cfg, "account", "set-password", "alice"],
        &format!("{PW}\n"),
    );
    let (_, err) = text(&set);
    assert!(set.status.success(), "{err}");
    assert!(err.contains("stored in the OS keyring"), "{err}");

    let list = termphone(&env, &["--config", cfg, "account", "list"], "");
    assert!(list.status.success());
    let (out, _) = text(&list);
    assert_eq!(out.lines().count(), 4, "one line per account:\n{out}");
    assert_eq!(
        line(&out, "alice"),
        "alice\talice@example.test\tregistrar=sip:127.0.0.1:5999\ttransport=udp\tpassword=keyring\tstate=not running"
    );
    assert!(
        line(&out, "bob").ends_with("\tpassword=password_cmd\tstate=not running"),
        "{out}"
    );
    assert!(
        line(&out, "carol").ends_with("\tpassword=config file\tstate=not running"),
        "{out}"
    );
    assert!(
        line(&out, "dave").ends_with("\tpassword=none\tstate=not running"),
        "{out}"
    );

    // The keyring entry outranks the file: a keyring password for carol wins over hers.
    let set_carol = termphone(
        &env,
        &["--config", cfg, "account", "set-password", "carol"],
        &format!("{PW}\r\n"),
    );
    assert!(set_carol.status.success());
    let list2 = termphone(&env, &["--config", cfg, "account", "list"], "");
    let (out, _) = text(&list2);
    assert!(
        line(&out, "carol").ends_with("\tpassword=keyring\tstate=not running"),
        "{out}"
    );

    let rm = termphone(&env, &["--config", cfg, "account", "remove", "alice"], "");
    let (_, err) = text(&rm);
    assert!(rm.status.success() && err.contains("removed"), "{err}");
    let rm2 = termphone(&env, &["--config", cfg, "account", "remove", "alice"], "");
    let (_, err) = text(&rm2);
    assert!(
        rm2.status.success() && err.contains("has no password in the OS keyring"),
        "{err}"
    );
    let list3 = termphone(&env, &["--config", cfg, "account", "list"], "");
    let (out, _) = text(&list3);
    assert!(
        line(&out, "alice").ends_with("\tpassword=none\tstate=not running"),
        "{out}"
    );
    assert!(
        line(&out, "carol").ends_with("\tpassword=keyring\tstate=not running"),
        "{out}"
    );
    // The config file is untouched by remove.
    assert!(std::fs::read_to_string(cfg)
        .unwrap()
        .contains("name = \"alice\""));

    // Empty input stores nothing.
    let empty = termphone(
        &env,
        &["--config", cfg, "account", "set-password", "alice"],
        "\n",
    );
    assert_eq!(empty.status.code(), Some(1));

    assert_no_password(&[
        &list0, &set, &list, &set_carol, &list2, &rm, &rm2, &list3, &empty,
    ]);
    // And the secret really is in gnome-keyring's store on disk only in encrypted form.
    let keyrings = ss.dir().join("home/.local/share/keyrings");
    for f in std::fs::read_dir(&keyrings).into_iter().flatten().flatten() {
        let bytes = std::fs::read(f.path()).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(PW),
            "plain password in {}",
            f.path().display()
        );
    }
}

#[test]
fn without_a_secret_service_list_says_so_and_set_password_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let cfg = cfg.to_str().unwrap();
    // A session bus address where nothing listens.
    let env = vec![(
        "DBUS_SESSION_BUS_ADDRESS".to_string(),
        format!("unix:path={}", dir.path().join("no-bus").display()),
    )];
    let list = termphone(&env, &["--config", cfg, "account", "list"], "");
    assert!(list.status.success());
    let (out, err) = text(&list);
    assert!(err.contains("OS keyring is unavailable"), "{err}");
    assert!(
        line(&out, "alice").ends_with("\tpassword=none (keyring unavailable)\tstate=not running"),
        "{out}"
    );
    assert!(
        line(&out, "bob").ends_with("\tpassword=password_cmd\tstate=not running"),
        "{out}"
    );
    assert!(
        line(&out, "carol").ends_with("\tpassword=config file\tstate=not running"),
        "{out}"
    );

    let set = termphone(
        &env,
        &["--config", cfg, "account", "set-password", "alice"],
        &format!("{PW}\n"),
    );
    assert_eq!(set.status.code(), Some(1));
    let (_, err) = text(&set);
    assert!(
        err.contains("cannot store the password for account alice")
            && err.contains("OS keyring is unavailable"),
        "{err}"
    );
    assert_no_password(&[&list, &set]);
}

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::*;

fn entry(peer: &str, started: i64) -> NewHistoryEntry {
    NewHistoryEntry {
        direction: Direction::Outgoing,
        peer: peer.to_string(),
        name: None,
        account: Some("work".into()),
        started,
        answered: true,
        duration_s: 42,
        end_state: "hanguplocal".into(),
        code: None,
        reason: Some("bye".into()),
    }
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/contacts")
        .join(name)
}

#[test]
fn default_path_follows_xdg_data_home() {
    let os = |s| Some(OsStr::new(s));
    assert_eq!(
        default_path_from(os("/x/data"), os("/home/a")),
        Some(PathBuf::from("/x/data/termphone/termphone.db"))
    );
    let home = Some(PathBuf::from("/home/a/.local/share/termphone/termphone.db"));
    assert_eq!(default_path_from(None, os("/home/a")), home);
    assert_eq!(default_path_from(os(""), os("/home/a")), home);
    // A relative XDG_DATA_HOME is invalid per the spec and ignored.
    assert_eq!(default_path_from(os("rel"), os("/home/a")), home);
    assert_eq!(default_path_from(None, None), None);
    assert_eq!(default_path_from(os("rel"), os("")), None);
}

#[test]
fn open_creates_dir_and_file_migrates_and_uses_wal() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("a/b/termphone.db");
    let store = Store::open(&path).expect("open");
    assert_eq!(store.schema_version().expect("version"), current_version());
    assert_eq!(store.path(), path);
    let mode: String = store
        .conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "wal");
    let sync: i64 = store
        .conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .expect("synchronous");
    assert_eq!(sync, 2, "FULL");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        assert_eq!(mode(&tmp.path().join("a/b")), 0o700);
        assert_eq!(mode(&path), 0o600);
    }
}

#[test]
fn reopen_is_idempotent_and_keeps_data() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("termphone.db");
    let id = {
        let store = Store::open(&path).expect("open");
        store
            .add_history(&entry("sip:1@example.com", 10))
            .expect("add")
    };
    for _ in 0..3 {
        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.schema_version().expect("version"), current_version());
        let all = store.history("", usize::MAX).expect("history");
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].id, id);
    }
}

#[test]
fn newer_schema_is_refused_and_left_alone() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("termphone.db");
    {
        let conn = Connection::open(&path).expect("sqlite");
        conn.execute_batch("CREATE TABLE future (x); PRAGMA user_version = 99;")
            .expect("set up");
    }
    let err = Store::open(&path).expect_err("newer schema");
    assert!(
        matches!(err, StoreError::TooNew { found: 99, known, .. } if known == current_version()),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("termphone.db") && msg.contains("99"), "{msg}");
    // Not altered: same version, still in its old journal mode.
    let conn = Connection::open(&path).expect("sqlite");
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("mode");
    assert_eq!((v, mode.as_str()), (99, "delete"));
}

#[test]
fn not_a_database_is_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("termphone.db");
    std::fs::write(&path, "this is a text file, not SQLite\n".repeat(200)).expect("write");
    let err = Store::open(&path).expect_err("not a database");
    assert!(matches!(err, StoreError::NotADatabase { .. }), "{err:?}");
    assert!(err.to_string().contains("termphone.db"), "{err}");
    // And the file is untouched.
    assert!(std::fs::read_to_string(&path)
        .expect("read")
        .starts_with("this is a text file"));
}

#[test]
fn foreign_database_and_directory_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("other.db");
    Connection::open(&path)
        .expect("sqlite")
        .execute_batch("CREATE TABLE accounts (x);")
        .expect("set up");
    let err = Store::open(&path).expect_err("foreign");
    assert!(matches!(err, StoreError::Foreign { .. }), "{err:?}");

    let dir = tmp.path().join("dir.db");
    std::fs::create_dir(&dir).expect("mkdir");
    let err = Store::open(&dir).expect_err("a directory");
    assert!(err.to_string().contains("dir.db"), "{err}");
}

#[test]
fn migrations_run_in_order_from_empty() {
    let store = Store::open_in_memory().expect("open");
    assert_eq!(
        store.schema_version().expect("version"),
        MIGRATIONS.len() as u32
    );
    for table in ["history", "contacts"] {
        let n: i64 = store
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .expect("query");
        assert_eq!(n, 1, "{table}");
    }
    // Running them again changes nothing.
    migrate(&store.conn, store.path()).expect("migrate again");
    assert_eq!(store.schema_version().expect("version"), current_version());
}

#[test]
fn history_round_trips_newest_first_and_filters() {
    let store = Store::open_in_memory().expect("open");
    let mut missed = entry("sip:2002@pbx.example.com", 200);
    missed.direction = Direction::Incoming;
    missed.answered = false;
    missed.duration_s = 0;
    missed.end_state = "missed".into();
    missed.name = Some("Ünal Öztürk".into());
    missed.account = None;
    missed.code = Some(487);
    let a = store
        .add_history(&entry("sip:1001@example.com", 100))
        .expect("add");
    let b = store.add_history(&missed).expect("add");
    let c = store
        .add_history(&entry("sip:3003@example.com", 100))
        .expect("add");

    let all = store.history("", usize::MAX).expect("history");
    assert_eq!(
        all.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![b, c, a],
        "by start time, then newest id"
    );
    let got = &all[0];
    assert_eq!(got.peer, missed.peer);
    assert_eq!(got.name, missed.name);
    assert_eq!(got.account, None);
    assert_eq!(got.code, Some(487));
    assert_eq!(got.end_state, "missed");
    assert!(got.missed());
    assert!(!all[1].missed());

    assert_eq!(store.history("", 2).expect("history").len(), 2);
    assert!(store.history("", 0).expect("history").is_empty());
    let ids = |f: &str| -> Vec<i64> {
        store
            .history(f, usize::MAX)
            .expect("history")
            .iter()
            .map(|e| e.id)
            .collect()
    };
    assert_eq!(ids("ÜNAL"), vec![b], "name, ignoring case beyond ASCII");
    assert_eq!(ids("PBX.example"), vec![b], "peer");
    assert_eq!(ids("WORK"), vec![c, a], "account");
    assert_eq!(ids("%"), Vec::<i64>::new(), "no SQL wildcards");
    assert_eq!(ids("  3003 "), vec![c], "trimmed");

    store.delete_history(c).expect("delete");
    assert!(matches!(
        store.delete_history(c),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(ids(""), vec![b, a]);
}

#[test]
fn contacts_crud_sorted_and_validated() {
    let store = Store::open_in_memory().expect("open");
    let bob = store
        .add_contact(" bob ", " sip:bob@example.com ")
        .expect("add");
    let alice = store.add_contact("Alice", "1002").expect("add");
    let zed = store
        .add_contact("Zed", "sip:zed@example.com")
        .expect("add");
    let names = |f: &str| -> Vec<String> {
        store
            .contacts(f)
            .expect("contacts")
            .into_iter()
            .map(|c| c.name)
            .collect()
    };
    assert_eq!(names(""), vec!["Alice", "bob", "Zed"]);
    assert_eq!(names("EXAMPLE"), vec!["bob", "Zed"]);
    assert_eq!(names("100"), vec!["Alice"]);

    store
        .update_contact(bob, "Bob", "sip:bob@pbx.example.com")
        .expect("update");
    let c = store.contacts("bob").expect("contacts");
    assert_eq!(
        c,
        vec![Contact {
            id: bob,
            name: "Bob".into(),
            uri: "sip:bob@pbx.example.com".into()
        }]
    );
    assert!(matches!(
        store.add_contact("  ", "1"),
        Err(StoreError::Invalid { .. })
    ));
    assert!(matches!(
        store.update_contact(alice, "Alice", ""),
        Err(StoreError::Invalid { .. })
    ));
    assert!(matches!(
        store.update_contact(9999, "X", "1"),
        Err(StoreError::NotFound { .. })
    ));
    store.delete_contact(zed).expect("delete");
    assert!(matches!(
        store.delete_contact(zed),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(names(""), vec!["Alice", "Bob"]);
}

#[test]
fn addresses_are_keyed_by_user_and_host() {
    let k = |s| address_key(s);
    let full = Some(("1002".to_string(), Some("pbx.example.com".to_string())));
    assert_eq!(k("sip:1002@pbx.example.com"), full);
    assert_eq!(k("SIPS:1002@PBX.example.com:5061;transport=tls"), full);
    assert_eq!(
        k("\"Desk\" <sip:1002@pbx.example.com;user=phone>;tag=x"),
        full
    );
    assert_eq!(k("1002@pbx.example.com"), full);
    assert_eq!(k("sip:1002:secret@pbx.example.com"), full);
    assert_eq!(k("1002"), Some(("1002".to_string(), None)));
    assert_eq!(k("tel:+49-30-1234"), Some(("+49301234".to_string(), None)));
    assert_eq!(
        k("sip:alice@[2001:db8::1]:5060"),
        Some(("alice".to_string(), Some("2001:db8::1".to_string())))
    );
    assert_eq!(k("sip:@host"), None);
    assert_eq!(k(""), None);
    assert_eq!(k("<>"), None);
}

#[test]
fn name_for_matches_user_and_host() {
    let store = Store::open_in_memory().expect("open");
    store.add_contact("Desk anywhere", "1002").expect("add");
    store
        .add_contact("Desk at pbx", "sip:1002@pbx.example.com")
        .expect("add");
    store
        .add_contact("Alice", "sips:alice@example.com")
        .expect("add");
    store.add_contact("Mobile", "+49 170 1234567").expect("add");

    assert_eq!(
        store.name_for("\"x\" <sip:1002@PBX.example.com:5060;transport=udp>"),
        Some("Desk at pbx".into()),
        "a contact with the host wins"
    );
    assert_eq!(
        store.name_for("sip:1002@other.example.net"),
        Some("Desk anywhere".into())
    );
    assert_eq!(
        store.name_for("sip:alice@example.com"),
        Some("Alice".into())
    );
    assert_eq!(store.name_for("sip:alice@example.org"), None);
    assert_eq!(store.name_for("sip:bob@example.com"), None);
    assert_eq!(
        store.name_for("sip:+491701234567@gw.example.com;user=phone"),
        Some("Mobile".into())
    );
    assert_eq!(store.name_for(""), None);
}

#[test]
fn import_sample_vcard_and_csv() {
    let store = Store::open_in_memory().expect("open");
    let report = store.import_contacts(&data("sample.vcf")).expect("import");
    assert_eq!(report.added, 6, "{report:?}");
    assert_eq!(report.skipped, 0);
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert!(report.errors[0].starts_with("line 20: "), "{report:?}");
    assert_eq!(
        store.name_for("sip:+491701234567@pbx"),
        Some("Alice Example (cell)".into())
    );
    assert_eq!(
        store.name_for("sip:1002@pbx.example.com"),
        Some("Front Desk".into())
    );
    assert_eq!(
        store.name_for("tel:+1 555 010 9999"),
        Some(
            "Bob Builder with a name long enough that a careful vCard writer folds the line".into()
        )
    );

    let report = store.import_contacts(&data("sample.csv")).expect("import");
    assert_eq!(
        report,
        ImportReport {
            added: 4,
            skipped: 1, // Carol, already there from the vCard
            errors: vec!["line 5: no name".into()],
        }
    );
    assert_eq!(
        store.name_for("sip:nick@example.org"),
        Some("Quoted \"Nick\" Name".into())
    );
    // A second import adds nothing.
    let again = store.import_contacts(&data("sample.csv")).expect("import");
    assert_eq!((again.added, again.skipped), (0, 5));
}

#[test]
fn import_detects_vcard_by_content_and_reports_unreadable_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("export.txt");
    std::fs::write(&path, "\u{feff}begin:vcard\nfn:X\ntel:1\nend:vcard\n").expect("write");
    let store = Store::open_in_memory().expect("open");
    let report = store.import_contacts(&path).expect("import");
    assert_eq!((report.added, report.errors.len()), (1, 0), "{report:?}");

    let missing = tmp.path().join("missing.vcf");
    let err = store.import_contacts(&missing).expect_err("missing");
    assert!(matches!(err, StoreError::Read { .. }));
    assert!(err.to_string().contains("missing.vcf"), "{err}");

    let latin1 = tmp.path().join("latin1.csv");
    std::fs::write(&latin1, b"name,number\nJ\xfcrgen,123\n").expect("write");
    let report = store.import_contacts(&latin1).expect("import");
    assert_eq!(report.added, 1);
    assert!(report.errors[0].contains("UTF-8"), "{report:?}");
}

#[test]
fn import_refuses_what_is_not_a_contacts_file_without_blocking() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open_in_memory().expect("open");
    // A directory, a FIFO (opening one would block until a writer came) and a file past the
    // size limit (sparse: no disk used).
    let fifo = tmp.path().join("pipe.vcf");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: mkfifo reads the NUL-terminated path only.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let big = tmp.path().join("big.csv");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(MAX_IMPORT_BYTES + 1))
        .expect("sparse file");
    for path in [tmp.path().to_path_buf(), fifo, big] {
        let err = store.import_contacts(&path).expect_err("refused");
        assert!(matches!(err, StoreError::NotImportable { .. }), "{err}");
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
    }
    assert!(store.contacts("").expect("contacts").is_empty());
}

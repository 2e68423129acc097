//! A SIGKILL while the history is being written loses no committed entry, and the database
//! opens cleanly afterwards (issue 6: "killing the TUI mid-call loses no history entry of an
//! already finished call").
//!
//! The test re-runs its own binary as a child in "writer" mode (the `writer_child` test, which
//! does nothing unless `TERMPHONE_STORE_KILL_DB` is set): the child adds history entries as
//! fast as it can and prints `committed ID` after each `add_history` returns. The parent kills
//! it with SIGKILL after 20 such lines, reopens the database and checks that every reported
//! entry is there, that `PRAGMA integrity_check` passes and that a new entry can be added.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use termphone::store::{Direction, NewHistoryEntry, Store};

const DB_ENV: &str = "TERMPHONE_STORE_KILL_DB";

fn entry(n: i64) -> NewHistoryEntry {
    NewHistoryEntry {
        direction: if n % 2 == 0 {
            Direction::Incoming
        } else {
            Direction::Outgoing
        },
        peer: format!("sip:{n}@example.com"),
        name: Some(format!("caller {n}")),
        account: Some("work".into()),
        started: 1_700_000_000 + n,
        answered: n % 3 != 0,
        duration_s: (n % 100) as u32,
        end_state: "hangupremote".into(),
        code: Some(200),
        reason: Some("bye".into()),
    }
}

/// The child: writes until killed (or for at most a minute, should the parent be gone).
#[test]
fn writer_child() {
    let Some(db) = std::env::var_os(DB_ENV) else {
        return; // an ordinary test run: nothing to do
    };
    let store = Store::open(Path::new(&db)).expect("child opens the store");
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(60) {
        let id = store.add_history(&entry(n)).expect("child adds an entry");
        println!("committed {id} {n}");
        n += 1;
    }
}

#[test]
fn sigkill_mid_write_loses_no_committed_entry() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = tmp.path().join("data/termphone/termphone.db");
    // Created (and migrated) here, so the child is killed while it appends, not while it sets
    // up; the child's own open is the "next start" of an existing file.
    drop(Store::open(&db).expect("parent creates the store"));

    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["writer_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(DB_ENV, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the writer");
    let stdout = child.stdout.take().expect("child stdout");
    let mut committed = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child stdout");
        if let Some(rest) = line.strip_prefix("committed ") {
            let mut parts = rest.split(' ');
            let id: i64 = parts.next().and_then(|s| s.parse().ok()).expect("an id");
            let n: i64 = parts.next().and_then(|s| s.parse().ok()).expect("a number");
            committed.push((id, n));
            if committed.len() >= 20 {
                break;
            }
        }
    }
    assert_eq!(committed.len(), 20, "the writer stopped early");
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) on our own child's pid, which we have not yet waited for (so it cannot
    // have been reused).
    let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    let status = child.wait().expect("wait for the writer");
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    }

    let store = Store::open(&db).expect("the next start opens the database");
    assert_eq!(
        store.integrity_check().expect("integrity_check"),
        Ok(()),
        "integrity"
    );
    let all = store.history("", usize::MAX).expect("history");
    assert!(
        all.len() >= committed.len(),
        "{} < {}",
        all.len(),
        committed.len()
    );
    for (id, n) in &committed {
        let found = all
            .iter()
            .find(|e| e.id == *id)
            .unwrap_or_else(|| panic!("committed entry {id} lost"));
        let want = entry(*n);
        assert_eq!(
            (
                &found.peer,
                found.started,
                found.duration_s,
                found.direction
            ),
            (&want.peer, want.started, want.duration_s, want.direction)
        );
    }
    let new = store
        .add_history(&entry(-1))
        .expect("a new entry after the kill");
    assert!(store
        .history("", usize::MAX)
        .expect("history")
        .iter()
        .any(|e| e.id == new));
}

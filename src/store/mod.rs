//! Call history and contacts, kept in an SQLite database (through rusqlite, SQLite bundled).
//!
//! - The file lives in the XDG data directory ([`default_path`]); [`Store::open`] creates the
//!   directory (0700) and the file (0600; SQLite gives its `-wal`/`-shm` files the same mode).
//! - WAL journal with `synchronous = FULL`: every [`Store::add_history`] is one committed
//!   transaction, so a crash or a SIGKILL of the TUI never loses a finished call's record, and
//!   the next start opens the database cleanly (tests/store_kill.rs).
//! - The schema is versioned in `PRAGMA user_version`; [`MIGRATIONS`] are applied in order, one
//!   transaction each. A database from a newer termphone is refused and left untouched.
//! - [`recorder::HistoryRecorder`] turns the engine's events into [`NewHistoryEntry`]s;
//!   [`import`] reads contacts from vCard and CSV files.
//!
//! Errors name the file and never contain a contact's or a call's data.

pub mod import;
pub mod recorder;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};

pub use recorder::HistoryRecorder;

/// The database file's name inside termphone's data directory.
pub const FILE_NAME: &str = "termphone.db";

/// How long a statement waits for another connection's lock (a second termphone on the same
/// file) before it fails with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema, as an ordered list of steps: step `i` takes the database from version `i` to
/// version `i + 1` (kept in `PRAGMA user_version`). Only ever append; never edit a step that
/// has shipped.
pub const MIGRATIONS: &[&str] = &[
    // 1: history and contacts.
    "CREATE TABLE history (
        id INTEGER PRIMARY KEY,
        direction TEXT NOT NULL CHECK (direction IN ('incoming', 'outgoing')),
        peer TEXT NOT NULL,
        name TEXT,
        account TEXT,
        started INTEGER NOT NULL,
        answered INTEGER NOT NULL CHECK (answered IN (0, 1)),
        duration_s INTEGER NOT NULL CHECK (duration_s >= 0),
        end_state TEXT NOT NULL,
        code INTEGER,
        reason TEXT
    );
    CREATE INDEX history_by_time ON history (started DESC, id DESC);
    CREATE TABLE contacts (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        uri TEXT NOT NULL
    );
    CREATE INDEX contacts_by_name_uri ON contacts (name, uri);",
];

/// The schema version this code writes and understands (the number of [`MIGRATIONS`]).
pub fn current_version() -> u32 {
    MIGRATIONS.len() as u32
}

/// Why a store operation failed. Every variant that concerns the database names its file
/// (`:memory:` for an in-memory store); none contains a contact's or a call's data.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory for the database could not be created.
    #[error("cannot create the directory {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The database file could not be created.
    #[error("cannot create the history database {}: {source}", path.display())]
    CreateFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The database could not be switched to write-ahead logging (a file system without
    /// shared memory support, for one); without it a crash could cost more than one write.
    #[error("cannot use write-ahead logging for {} (journal mode stays {mode})", path.display())]
    NoWal { path: PathBuf, mode: String },
    /// The database could not be opened or set up (permissions, a directory in its place, ...).
    #[error("cannot open the history database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// The file exists but is not an SQLite database (or is damaged beyond reading).
    #[error("{} is not an SQLite database (damaged, or some other file): move it away and termphone starts a new one", path.display())]
    NotADatabase { path: PathBuf },
    /// An SQLite database, but not one of termphone's (it has other tables and no version).
    #[error("{} is an SQLite database but not termphone's (it has tables of its own and no termphone schema version): refusing to change it", path.display())]
    Foreign { path: PathBuf },
    /// Written by a newer termphone: this one would not understand it, so it leaves it alone.
    #[error("{} has schema version {found}, newer than this termphone knows ({known}): refusing to change it (use a newer termphone)", path.display())]
    TooNew {
        path: PathBuf,
        found: u32,
        known: u32,
    },
    /// A schema migration failed; the database stays at the version before it.
    #[error("cannot upgrade {} to schema version {version}: {source}", path.display())]
    Migrate {
        path: PathBuf,
        version: u32,
        source: rusqlite::Error,
    },
    /// A query or an update failed (disk full, locked by another process for too long, ...).
    #[error("history database {}: {source}", path.display())]
    Sql {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// A contact or entry given to the store is not acceptable.
    #[error("invalid {what}: {reason}")]
    Invalid {
        what: &'static str,
        reason: &'static str,
    },
    /// No row with that id (deleted meanwhile, or never there).
    #[error("no {what} with id {id}")]
    NotFound { what: &'static str, id: i64 },
    /// A file to import could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file to import is not a regular file of a sane size (an address book is kilobytes;
    /// this guards against a device, a FIFO or the wrong file).
    #[error("cannot import {}: {why}", path.display())]
    NotImportable { path: PathBuf, why: String },
}

/// The largest contacts file [`Store::import_contacts`] reads.
pub const MAX_IMPORT_BYTES: u64 = 16 * 1024 * 1024;

/// Which way a call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The peer called us.
    Incoming,
    /// We called the peer.
    Outgoing,
}

impl Direction {
    /// The word stored in the database and shown to the user.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Incoming => "incoming",
            Direction::Outgoing => "outgoing",
        }
    }

    fn from_db(s: &str) -> Option<Direction> {
        match s {
            "incoming" => Some(Direction::Incoming),
            "outgoing" => Some(Direction::Outgoing),
            _ => None,
        }
    }
}

/// A finished call, to be added to the history.
#[derive(Debug, Clone, PartialEq)]
pub struct NewHistoryEntry {
    pub direction: Direction,
    /// The peer's SIP URI as the engine reports it.
    pub peer: String,
    /// The display name, if known.
    pub name: Option<String>,
    /// The account the call was placed as or arrived for (`None`: a direct call).
    pub account: Option<String>,
    /// When the call was placed or started ringing: Unix seconds, UTC.
    pub started: i64,
    /// Whether the call was ever connected.
    pub answered: bool,
    /// Talk time in seconds (0 when not answered).
    pub duration_s: u32,
    /// The engine's final call state word: hanguplocal, hangupremote, missed, networkfailure,
    /// otherfailure.
    pub end_state: String,
    /// The SIP status that ended the call, if any.
    pub code: Option<u16>,
    /// Why it ended, in words, if known.
    pub reason: Option<String>,
}

/// A call in the history, with its row id.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub id: i64,
    pub direction: Direction,
    pub peer: String,
    pub name: Option<String>,
    pub account: Option<String>,
    pub started: i64,
    pub answered: bool,
    pub duration_s: u32,
    pub end_state: String,
    pub code: Option<u16>,
    pub reason: Option<String>,
}

impl HistoryEntry {
    /// An incoming call that was never answered.
    pub fn missed(&self) -> bool {
        self.direction == Direction::Incoming && !self.answered
    }
}

/// A contact: a name and a SIP URI or number to call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub id: i64,
    pub name: String,
    pub uri: String,
}

/// What [`Store::import_contacts`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImportReport {
    /// Contacts added.
    pub added: usize,
    /// Contacts left out because the store already had one with the same name and URI (or the
    /// file had it twice).
    pub skipped: usize,
    /// One `line N: why` per record that could not be read; the other records were imported.
    pub errors: Vec<String>,
}

/// The default database path from the values of `XDG_DATA_HOME` and `HOME`:
/// `$XDG_DATA_HOME/termphone/termphone.db` when `XDG_DATA_HOME` is set, non-empty and absolute
/// (the XDG spec says to ignore a relative one), else `$HOME/.local/share/termphone/termphone.db`
/// when `HOME` is set and non-empty, else `None`.
pub fn default_path_from(xdg_data_home: Option<&OsStr>, home: Option<&OsStr>) -> Option<PathBuf> {
    fn usable(v: Option<&OsStr>) -> Option<&Path> {
        v.filter(|v| !v.is_empty()).map(Path::new)
    }
    let base = match usable(xdg_data_home).filter(|p| p.is_absolute()) {
        Some(xdg) => xdg.to_path_buf(),
        None => usable(home)?.join(".local/share"),
    };
    Some(base.join(crate::config::APP_DIR).join(FILE_NAME))
}

/// The default database path, from this process's environment ([`default_path_from`]).
pub fn default_path() -> Option<PathBuf> {
    default_path_from(
        std::env::var_os("XDG_DATA_HOME").as_deref(),
        std::env::var_os("HOME").as_deref(),
    )
}

/// The history and contacts database.
pub struct Store {
    conn: Connection,
    /// The file, for error messages (`:memory:` for an in-memory store).
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens the database at `path`, creating its directory (mode 0700) and the file (0600)
    /// when missing; sets WAL, `synchronous = FULL` and a busy timeout, and brings the schema
    /// up to date. A file that is not SQLite, another program's database or one with a newer
    /// schema is refused with an error and not changed.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        create_private_file(path).map_err(|source| StoreError::CreateFile {
            path: path.to_path_buf(),
            source,
        })?;
        // No SQLITE_OPEN_URI: a file named "file:..." is a file, not a URI.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Store::set_up(conn, path.to_path_buf(), true)
    }

    /// A fresh database in memory (tests; a TUI without a data directory).
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        Store::set_up(conn, path, false)
    }

    fn set_up(mut conn: Connection, path: PathBuf, file: bool) -> Result<Store, StoreError> {
        let open_err = |path: &Path, source: rusqlite::Error| match source.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => StoreError::NotADatabase {
                path: path.to_path_buf(),
            },
            _ => StoreError::Open {
                path: path.to_path_buf(),
                source,
            },
        };
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| open_err(&path, e))?;
        // Read before changing anything: this is where a non-SQLite file shows, and a newer
        // database must be left exactly as it is.
        let found = read_version(&conn).map_err(|e| open_err(&path, e))?;
        if found > current_version() {
            return Err(StoreError::TooNew {
                path,
                found,
                known: current_version(),
            });
        }
        if found == 0 {
            let tables: i64 = conn
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'",
                    [],
                    |r| r.get(0),
                )
                .map_err(|e| open_err(&path, e))?;
            if tables > 0 {
                return Err(StoreError::Foreign { path });
            }
        }
        if file {
            let mode: String = conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                .map_err(|e| open_err(&path, e))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::NoWal { path, mode });
            }
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| open_err(&path, e))?;
        conn.set_transaction_behavior(TransactionBehavior::Immediate);
        migrate(&conn, &path)?;
        Ok(Store { conn, path })
    }

    /// The file this store is kept in (`:memory:` for an in-memory store).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sql {
            path: self.path.clone(),
            source,
        }
    }

    /// The schema version of the open database (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        read_version(&self.conn).map_err(|e| self.sql(e))
    }

    /// Adds a finished call to the history, as one committed transaction (durable once this
    /// returns). Returns the new entry's id.
    pub fn add_history(&self, e: &NewHistoryEntry) -> Result<i64, StoreError> {
        // One INSERT in autocommit mode is one transaction; in WAL with synchronous = FULL
        // its commit is on disk when execute returns.
        self.conn
            .execute(
                "INSERT INTO history (direction, peer, name, account, started, answered,
                     duration_s, end_state, code, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    e.direction.as_str(),
                    e.peer,
                    e.name,
                    e.account,
                    e.started,
                    e.answered,
                    e.duration_s,
                    e.end_state,
                    e.code,
                    e.reason,
                ],
            )
            .map_err(|e| self.sql(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Up to `limit` history entries, newest first (by start time, then by id). `filter` = ""
    /// gives all; otherwise only entries whose peer, name or account contains it, ignoring case.
    /// A `limit` of 0 gives nothing; pass `usize::MAX` for everything.
    pub fn history(&self, filter: &str, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        let needle = filter.trim().to_lowercase();
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, direction, peer, name, account, started, answered, duration_s,
                        end_state, code, reason
                 FROM history ORDER BY started DESC, id DESC",
            )
            .map_err(|e| self.sql(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.sql(e))?;
        while let Some(row) = rows.next().map_err(|e| self.sql(e))? {
            let entry = history_row(row).map_err(|e| self.sql(e))?;
            let hit = needle.is_empty()
                || contains_ci(&entry.peer, &needle)
                || entry
                    .name
                    .as_deref()
                    .is_some_and(|n| contains_ci(n, &needle))
                || entry
                    .account
                    .as_deref()
                    .is_some_and(|a| contains_ci(a, &needle));
            if hit {
                out.push(entry);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Deletes one history entry; [`StoreError::NotFound`] when there is none with that id.
    pub fn delete_history(&self, id: i64) -> Result<(), StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM history WHERE id = ?1", [id])
            .map_err(|e| self.sql(e))?;
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "history entry",
                id,
            });
        }
        Ok(())
    }

    /// The contacts whose name or URI contains `filter` (ignoring case; "" = all), sorted by
    /// name ignoring case, then by URI.
    pub fn contacts(&self, filter: &str) -> Result<Vec<Contact>, StoreError> {
        let needle = filter.trim().to_lowercase();
        let mut all = self.all_contacts()?;
        all.retain(|c| {
            needle.is_empty() || contains_ci(&c.name, &needle) || contains_ci(&c.uri, &needle)
        });
        all.sort_by_cached_key(|c| (c.name.to_lowercase(), c.uri.to_lowercase(), c.id));
        Ok(all)
    }

    fn all_contacts(&self) -> Result<Vec<Contact>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, name, uri FROM contacts")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Contact {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    uri: r.get(2)?,
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.sql(e))
    }

    /// Adds a contact (name and URI trimmed; both must be non-empty). Returns its id.
    pub fn add_contact(&self, name: &str, uri: &str) -> Result<i64, StoreError> {
        let (name, uri) = valid_contact(name, uri)?;
        self.conn
            .execute(
                "INSERT INTO contacts (name, uri) VALUES (?1, ?2)",
                params![name, uri],
            )
            .map_err(|e| self.sql(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Changes a contact's name and URI (validated as in [`Store::add_contact`]);
    /// [`StoreError::NotFound`] when there is no contact with that id.
    pub fn update_contact(&self, id: i64, name: &str, uri: &str) -> Result<(), StoreError> {
        let (name, uri) = valid_contact(name, uri)?;
        let n = self
            .conn
            .execute(
                "UPDATE contacts SET name = ?1, uri = ?2 WHERE id = ?3",
                params![name, uri, id],
            )
            .map_err(|e| self.sql(e))?;
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "contact",
                id,
            });
        }
        Ok(())
    }

    /// Deletes a contact; [`StoreError::NotFound`] when there is none with that id.
    pub fn delete_contact(&self, id: i64) -> Result<(), StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM contacts WHERE id = ?1", [id])
            .map_err(|e| self.sql(e))?;
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "contact",
                id,
            });
        }
        Ok(())
    }

    /// Imports contacts from a vCard file (`.vcf`/`.vcard`, or content that starts with
    /// `BEGIN:VCARD`) or else a CSV file (see [`import`] for what is read from each). Contacts
    /// already in the store with the same name and URI are skipped; records that cannot be read
    /// are reported as `line N: why` and do not stop the others. All additions are one
    /// transaction: an import is either all in or (on a database error) not at all.
    pub fn import_contacts(&self, path: &Path) -> Result<ImportReport, StoreError> {
        let read_err = |source| StoreError::Read {
            path: path.to_path_buf(),
            source,
        };
        let refuse = |why: String| StoreError::NotImportable {
            path: path.to_path_buf(),
            why,
        };
        // Check what it is before opening it: opening a FIFO would block.
        let meta = std::fs::metadata(path).map_err(read_err)?;
        if !meta.is_file() {
            return Err(refuse("not a regular file".into()));
        }
        if meta.len() > MAX_IMPORT_BYTES {
            return Err(refuse(format!(
                "{} bytes, more than the {MAX_IMPORT_BYTES} a contacts file may have",
                meta.len()
            )));
        }
        let mut bytes = Vec::new();
        {
            use std::io::Read;
            let file = std::fs::File::open(path).map_err(read_err)?;
            file.take(MAX_IMPORT_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(read_err)?;
        }
        if bytes.len() as u64 > MAX_IMPORT_BYTES {
            return Err(refuse(
                "it grew past the size limit while being read".into(),
            ));
        }
        let text = String::from_utf8_lossy(&bytes);
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let vcard_ext = path
            .extension()
            .and_then(OsStr::to_str)
            .is_some_and(|e| e.eq_ignore_ascii_case("vcf") || e.eq_ignore_ascii_case("vcard"));
        let vcard_content = import::strip_prefix_ci(text.trim_start(), "BEGIN:VCARD").is_some();
        let (pairs, mut errors) = if vcard_ext || vcard_content {
            import::parse_vcard(text)
        } else {
            import::parse_csv(text)
        };
        if std::str::from_utf8(&bytes).is_err() {
            errors.insert(
                0,
                "the file is not valid UTF-8: unreadable characters were replaced by \u{fffd}"
                    .to_string(),
            );
        }
        let mut report = ImportReport {
            errors,
            ..ImportReport::default()
        };
        let tx = self.conn.unchecked_transaction().map_err(|e| self.sql(e))?;
        for (name, uri) in pairs {
            let Ok((name, uri)) = valid_contact(&name, &uri) else {
                report
                    .errors
                    .push("a record without a name or a number was left out".to_string());
                continue;
            };
            let exists = tx
                .query_row(
                    "SELECT 1 FROM contacts WHERE name = ?1 AND uri = ?2",
                    params![name, uri],
                    |_| Ok(()),
                )
                .optional()
                .map_err(|e| self.sql(e))?
                .is_some();
            if exists {
                report.skipped += 1;
                continue;
            }
            tx.execute(
                "INSERT INTO contacts (name, uri) VALUES (?1, ?2)",
                params![name, uri],
            )
            .map_err(|e| self.sql(e))?;
            report.added += 1;
        }
        tx.commit().map_err(|e| self.sql(e))?;
        Ok(report)
    }

    /// The name of the contact whose URI is the same address as `peer`: same user part and
    /// host, ignoring the scheme (sip:, sips:, tel:), parameters, port, a display name and <>;
    /// a contact without a host ("1002") matches that user at any host. Phone-number users are
    /// compared without visual separators (spaces, dashes, dots, parentheses). A contact with
    /// the same host wins over one without; among equals, the first by name. `None` when no
    /// contact matches (or the database cannot be read).
    pub fn name_for(&self, peer: &str) -> Option<String> {
        let contacts = self.contacts("").ok()?;
        contact_for(&contacts, peer).map(|c| c.name.clone())
    }

    /// Runs SQLite's `PRAGMA integrity_check`: `Ok(())` when it says "ok", else its findings.
    pub fn integrity_check(&self) -> Result<Result<(), Vec<String>>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("PRAGMA integrity_check")
            .map_err(|e| self.sql(e))?;
        let lines = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.sql(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.sql(e))?;
        if lines.len() == 1 && lines[0] == "ok" {
            Ok(Ok(()))
        } else {
            Ok(Err(lines))
        }
    }
}

fn read_version(conn: &Connection) -> rusqlite::Result<u32> {
    let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    // user_version is a signed 32-bit field; a negative one is certainly not ours and newer
    // than anything we know.
    Ok(u32::try_from(v).unwrap_or(u32::MAX))
}

/// Applies the missing [`MIGRATIONS`], each in its own IMMEDIATE transaction that re-reads the
/// version first (so two processes opening a new file at once do not both create the tables).
fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    for (i, step) in MIGRATIONS.iter().enumerate() {
        let version = i as u32 + 1;
        let err = |source: rusqlite::Error| StoreError::Migrate {
            path: path.to_path_buf(),
            version,
            source,
        };
        let tx = conn.unchecked_transaction().map_err(err)?;
        let now = read_version(&tx).map_err(err)?;
        if now > current_version() {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found: now,
                known: current_version(),
            });
        }
        if now >= version {
            continue;
        }
        tx.execute_batch(step).map_err(err)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(err)?;
        tx.commit().map_err(err)?;
    }
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Creates the database file with mode 0600 if it is missing (SQLite would use 0644); SQLite
/// gives the `-wal` and `-shm` files the database file's mode.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(_) => Ok(()),
        // Read-only but present: let SQLite say what it can do with it.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && path.exists() => Ok(()),
        Err(e) => Err(e),
    }
}

fn history_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HistoryEntry> {
    let dir: String = r.get(1)?;
    let direction = Direction::from_db(&dir).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            1,
            rusqlite::types::Type::Text,
            "not a call direction".into(),
        )
    })?;
    Ok(HistoryEntry {
        id: r.get(0)?,
        direction,
        peer: r.get(2)?,
        name: r.get(3)?,
        account: r.get(4)?,
        started: r.get(5)?,
        answered: r.get(6)?,
        duration_s: r.get(7)?,
        end_state: r.get(8)?,
        code: r.get(9)?,
        reason: r.get(10)?,
    })
}

/// `hay` contains `needle_lower` (already lowercased), ignoring case.
fn contains_ci(hay: &str, needle_lower: &str) -> bool {
    hay.to_lowercase().contains(needle_lower)
}

fn valid_contact<'a>(name: &'a str, uri: &'a str) -> Result<(&'a str, &'a str), StoreError> {
    let (name, uri) = (name.trim(), uri.trim());
    if name.is_empty() {
        return Err(StoreError::Invalid {
            what: "contact",
            reason: "the name is empty",
        });
    }
    if uri.is_empty() {
        return Err(StoreError::Invalid {
            what: "contact",
            reason: "the SIP address or number is empty",
        });
    }
    Ok((name, uri))
}

/// The address a URI or number stands for, for matching: the user part (visual separators
/// removed when it is a phone number) and the host in lowercase without port (`None` when
/// there is no `@`). `None` for an empty user.
///
/// Accepts `"Name" <sip:user@host:port;params>`, `sips:`, `tel:+1-555`, `user@host`, `1002`.
/// The contact a peer URI belongs to (see [`Store::name_for`] for the rule: same user, and
/// same host when the contact names one; a contact with the host beats a hostless one). Pure,
/// so the TUI names calls from the contacts it holds without asking the database.
pub fn contact_for<'a>(contacts: &'a [Contact], peer: &str) -> Option<&'a Contact> {
    let (user, host) = address_key(peer)?;
    let mut hostless = None;
    for c in contacts {
        let Some((cuser, chost)) = address_key(&c.uri) else {
            continue;
        };
        if cuser != user {
            continue;
        }
        match (&chost, &host) {
            (Some(ch), Some(h)) if ch == h => return Some(c),
            (None, _) if hostless.is_none() => hostless = Some(c),
            _ => {}
        }
    }
    hostless
}

pub fn address_key(s: &str) -> Option<(String, Option<String>)> {
    let mut s = s.trim();
    if let Some(open) = s.find('<') {
        let rest = &s[open + 1..];
        s = rest.find('>').map_or(rest, |close| &rest[..close]);
    }
    let s = s.trim();
    let s = ["sip:", "sips:", "tel:"]
        .iter()
        .find_map(|p| import::strip_prefix_ci(s, p))
        .unwrap_or(s);
    let (user, host) = match s.rfind('@') {
        Some(at) => (&s[..at], Some(&s[at + 1..])),
        None => (s, None),
    };
    // A user part may carry a password (user:pw) or parameters (;phone-context=...).
    let user = user.split([':', ';', '?']).next().unwrap_or("").trim();
    let user = normalize_user(user);
    if user.is_empty() {
        return None;
    }
    let host = host.and_then(|h| {
        let h = h.split([';', '?', '>']).next().unwrap_or("").trim();
        let h = if let Some(v6) = h.strip_prefix('[') {
            v6.split(']').next().unwrap_or("")
        } else {
            h.split(':').next().unwrap_or("")
        };
        (!h.is_empty()).then(|| h.to_ascii_lowercase())
    });
    Some((user, host))
}

/// A phone number's digits (and a leading +, * and #) without visual separators; any other
/// user part unchanged.
fn normalize_user(user: &str) -> String {
    let is_number = user.chars().any(|c| c.is_ascii_digit())
        && user
            .chars()
            .all(|c| c.is_ascii_digit() || "+*#-. ()".contains(c));
    if is_number {
        user.chars().filter(|c| !"-. ()".contains(*c)).collect()
    } else {
        user.to_string()
    }
}

#[cfg(test)]
mod tests;

//! The client side: `termphone ctl` (one request, optionally following events) and the
//! one-shot status query `termphone account list` makes.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::protocol::request_line;

/// Exit statuses of `termphone ctl` (documented in docs/control.md and `--help`).
pub mod exit {
    /// The instance answered ok (or `--follow` ended at the socket's close or a signal).
    pub const OK: i32 = 0;
    /// The instance answered with an error.
    pub const ERROR: i32 = 1;
    /// Usage error.
    pub const USAGE: i32 = 2;
    /// Cannot connect to the control socket (missing, refused) or lost the connection.
    pub const CONNECT: i32 = 7;
}

/// How long `ctl` waits for the socket to accept.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `ctl` waits for the answer to its request (the engine answers every command at
/// once, after checking it; an instance that does not is stuck, and a script must not hang).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why there is no connection to an instance.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "cannot connect to {0}: no control socket there (is `termphone serve` running, \
         and with this --control path?)"
    )]
    Missing(PathBuf),
    #[error(
        "cannot connect to {0}: connection refused (a stale socket: the instance that made it \
         has stopped)"
    )]
    Refused(PathBuf),
    #[error("cannot connect to {0}: no answer within {1:?}")]
    Timeout(PathBuf, Duration),
    #[error("cannot connect to {0}: {1}")]
    Other(PathBuf, io::Error),
}

/// Connect to the control socket at `path`.
pub async fn connect(path: &Path, timeout: Duration) -> Result<UnixStream, ConnectError> {
    match tokio::time::timeout(timeout, UnixStream::connect(path)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(match e.kind() {
            io::ErrorKind::NotFound => ConnectError::Missing(path.to_path_buf()),
            io::ErrorKind::ConnectionRefused => ConnectError::Refused(path.to_path_buf()),
            _ => ConnectError::Other(path.to_path_buf(), e),
        }),
        Err(_) => Err(ConnectError::Timeout(path.to_path_buf(), timeout)),
    }
}

/// One request for `ctl`: the verb and its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct CtlRequest {
    pub cmd: String,
    pub args: Vec<(&'static str, Value)>,
}

/// `termphone ctl`: send `request` (if any), print its response as one JSON line; with
/// `follow`, subscribe first and print every event as a JSON line until the socket closes or
/// SIGINT/SIGTERM. Returns the exit status ([`exit`]).
pub async fn run_ctl(path: &Path, follow: bool, request: Option<CtlRequest>) -> i32 {
    run_ctl_within(path, follow, request, RESPONSE_TIMEOUT).await
}

/// [`run_ctl`], waiting at most `response_timeout` for the answer to the request.
pub async fn run_ctl_within(
    path: &Path,
    follow: bool,
    request: Option<CtlRequest>,
    response_timeout: Duration,
) -> i32 {
    if !follow && request.is_none() {
        eprintln!("termphone: ctl needs a verb (or --follow); see termphone ctl --help");
        return exit::USAGE;
    }
    let stream = match connect(path, CONNECT_TIMEOUT).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("termphone: {e}");
            return exit::CONNECT;
        }
    };
    let (read, mut write) = stream.into_split();
    let mut out = String::new();
    if follow {
        out.push_str(&request_line(&Value::from("follow"), "subscribe", &[]));
    }
    if let Some(r) = &request {
        out.push_str(&request_line(&Value::from(1), &r.cmd, &r.args));
    }
    if let Err(e) = write.write_all(out.as_bytes()).await {
        eprintln!("termphone: cannot send to {}: {e}", path.display());
        return exit::CONNECT;
    }
    let mut lines = BufReader::new(read).lines();
    let mut waiting = request.is_some();
    let mut status = exit::OK;
    let signal = crate::headless::termination_signal();
    tokio::pin!(signal);
    let deadline = tokio::time::sleep(response_timeout);
    tokio::pin!(deadline);
    loop {
        let line = tokio::select! {
            line = lines.next_line() => line,
            _ = &mut signal => return status,
            _ = &mut deadline, if waiting => {
                eprintln!(
                    "termphone: {}: no answer to {:?} within {response_timeout:?}",
                    path.display(),
                    request.as_ref().map(|r| r.cmd.as_str()).unwrap_or_default()
                );
                return exit::CONNECT;
            }
        };
        let line = match line {
            Ok(Some(l)) => l,
            Ok(None) if waiting => {
                eprintln!(
                    "termphone: {}: the instance closed the connection without answering",
                    path.display()
                );
                return exit::CONNECT;
            }
            Ok(None) => return status,
            Err(e) => {
                eprintln!("termphone: reading from {}: {e}", path.display());
                return exit::CONNECT;
            }
        };
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            eprintln!("termphone: not JSON from the instance: {line}");
            continue;
        };
        if v.get("event").is_some() {
            if follow {
                println!("{line}");
            }
            continue;
        }
        let ok = v.get("ok") == Some(&Value::Bool(true));
        if v.get("id") == Some(&Value::from("follow")) {
            if !ok {
                println!("{line}");
                return exit::ERROR;
            }
            continue;
        }
        // The response to our request.
        println!("{line}");
        waiting = false;
        status = if ok { exit::OK } else { exit::ERROR };
        if !follow || !ok {
            return status;
        }
    }
}

/// One request and its response (events before it are skipped), each step within `timeout`.
pub async fn request(
    path: &Path,
    cmd: &str,
    args: &[(&str, Value)],
    timeout: Duration,
) -> Result<Value, String> {
    let stream = connect(path, timeout).await.map_err(|e| e.to_string())?;
    exchange(stream, path, cmd, args, timeout).await
}

async fn exchange(
    stream: UnixStream,
    path: &Path,
    cmd: &str,
    args: &[(&str, Value)],
    timeout: Duration,
) -> Result<Value, String> {
    let work = async {
        let (read, mut write) = stream.into_split();
        write
            .write_all(request_line(&Value::from(1), cmd, args).as_bytes())
            .await
            .map_err(|e| format!("cannot send to {}: {e}", path.display()))?;
        let mut lines = BufReader::new(read).lines();
        loop {
            match lines.next_line().await {
                Ok(Some(line)) => {
                    let v: Value = serde_json::from_str(&line)
                        .map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
                    if v.get("event").is_none() {
                        return Ok(v);
                    }
                }
                Ok(None) => {
                    return Err(format!(
                        "{}: the instance closed the connection without answering",
                        path.display()
                    ))
                }
                Err(e) => return Err(format!("reading from {}: {e}", path.display())),
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| Err(format!("{}: no answer within {timeout:?}", path.display())))
}

/// What `account list` learns from a running instance.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveState {
    /// No instance answers on the socket.
    NotRunning,
    /// An instance answered `status`: its accounts (name → state text).
    Running(Vec<(String, String)>),
    /// Something answered, but not usefully.
    Unknown(String),
}

/// Ask the instance at `path` for its accounts' registration state (never blocks for long).
pub async fn live_accounts(path: &Path, timeout: Duration) -> LiveState {
    let stream = match connect(path, timeout).await {
        Err(ConnectError::Missing(_) | ConnectError::Refused(_)) => return LiveState::NotRunning,
        Err(e) => return LiveState::Unknown(e.to_string()),
        Ok(s) => s,
    };
    let v = match exchange(stream, path, "status", &[], timeout).await {
        Ok(v) => v,
        Err(e) => return LiveState::Unknown(e),
    };
    if v.get("ok") != Some(&Value::Bool(true)) {
        return LiveState::Unknown(format!("{}: status failed: {v}", path.display()));
    }
    let accounts = v["accounts"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|a| Some((a["name"].as_str()?.to_string(), state_text(a))))
                .collect()
        })
        .unwrap_or_default();
    LiveState::Running(accounts)
}

/// `registered (expires 3600 s)`, `failed: wrong password`, `registering`, ...
pub fn state_text(account: &Value) -> String {
    let state = account["state"].as_str().unwrap_or("unknown");
    let mut s = state.to_string();
    if let Some(e) = account["expires"].as_u64() {
        s.push_str(&format!(" (expires {e} s)"));
    }
    if let Some(r) = account["reason"].as_str() {
        s.push_str(&format!(": {r}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn state_texts() {
        assert_eq!(
            state_text(&json!({"state":"registered","reason":null,"expires":3600})),
            "registered (expires 3600 s)"
        );
        assert_eq!(
            state_text(&json!({"state":"failed","reason":"wrong password","expires":null})),
            "failed: wrong password"
        );
        assert_eq!(state_text(&json!({})), "unknown");
    }

    #[tokio::test]
    async fn connect_errors_say_missing_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.sock");
        let e = connect(&missing, Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(e, ConnectError::Missing(_)), "{e}");
        assert!(e.to_string().contains("no control socket there"), "{e}");
        // A socket file nobody listens on.
        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        let e = connect(&stale, Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(e, ConnectError::Refused(_)), "{e}");
        assert!(e.to_string().contains(&stale.display().to_string()));
        assert_eq!(
            live_accounts(&stale, Duration::from_secs(1)).await,
            LiveState::NotRunning
        );
    }

    /// An instance that accepts and never answers: ctl gives up with exit 7 instead of hanging.
    #[tokio::test]
    async fn a_silent_instance_does_not_hang_ctl() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("silent.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (conn, _) = listener.accept().await.unwrap();
            // Hold the connection open, never write.
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(conn);
        });
        let request = CtlRequest {
            cmd: "status".into(),
            args: Vec::new(),
        };
        let status = run_ctl_within(&path, false, Some(request), Duration::from_millis(300)).await;
        assert_eq!(status, exit::CONNECT);
        server.abort();
    }
}

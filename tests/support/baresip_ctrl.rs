//! What both baresip fixtures share (tests/support/baresip.rs, registered through Kamailio, and
//! tests/support/baresip_peer.rs, stand-alone for the benchmarks): the ctrl_tcp command channel
//! (netstring JSON), finding its `sndfile` dumps, stopping it by its own PID.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// Send one ctrl_tcp command to baresip's control port; the response's JSON text.
pub fn command(port: u16, token: &str, command: &str, params: &str) -> Result<String, String> {
    let json =
        serde_json::json!({ "command": command, "params": params, "token": token }).to_string();
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| format!("connect ctrl_tcp {port}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    s.write_all(format!("{}:{json},", json.len()).as_bytes())
        .map_err(|e| format!("send to ctrl_tcp: {e}"))?;
    // Read netstrings until the response carrying our token (events may come first).
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut buf, mut chunk) = (Vec::new(), [0u8; 4096]);
    while Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => return Err(format!("read ctrl_tcp: {e}")),
        }
        while let Some((msg, rest)) = split_netstring(&buf) {
            let text = String::from_utf8_lossy(&msg).into_owned();
            buf = rest;
            if text.contains("\"response\"") && text.contains(token) {
                return Ok(text);
            }
        }
    }
    Err(format!("no ctrl_tcp response to {json}"))
}

/// The newest `sndfile` dump in `snd_dir` whose name ends in `suffix` (`-dec.wav`, `-enc.wav`).
pub fn newest_dump(snd_dir: &Path, suffix: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(snd_dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    found.sort();
    found.pop()
}

/// Stop baresip: SIGTERM, wait 3 s, a second SIGTERM, wait 3 s, then SIGKILL — always its own
/// PID. Reaps it.
pub fn stop(mut child: Child) -> Option<ExitStatus> {
    if let Ok(Some(st)) = child.try_wait() {
        return Some(st);
    }
    for _ in 0..2 {
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill(2) with the PID of a child we spawned and have not reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = child.kill(); // SIGKILL to the same PID
    child.wait().ok()
}

/// Split one netstring `LEN:DATA,` off the front of `buf`; None until it is complete.
pub fn split_netstring(buf: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let colon = buf.iter().position(|&b| b == b':')?;
    let len: usize = std::str::from_utf8(&buf[..colon])
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let end = colon + 1 + len;
    if buf.len() <= end {
        return None;
    }
    Some((buf[colon + 1..end].to_vec(), buf[end + 1..].to_vec()))
}

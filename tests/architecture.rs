//! The dependency rule of DESIGN.md, checked on the source: the sans-IO cores (`src/sip`,
//! `src/media`) use neither tokio, cpal, ratatui nor crossterm, never read the clock, never
//! sleep and never open a socket. Test code inside them may build `Instant`s to feed in.

use std::fs;
use std::path::Path;

const FORBIDDEN: &[&str] = &[
    "tokio",
    "cpal",
    "ratatui",
    "crossterm",
    "Instant::now",
    "SystemTime::now",
    "std::net",
    "std::thread::sleep",
    "UdpSocket",
    "TcpStream",
    "std::fs",
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).expect("source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The non-test part of a file: everything before its `#[cfg(test)]` module.
fn production_code(text: &str) -> &str {
    match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    }
}

#[test]
fn sans_io_cores_do_no_io_and_read_no_clock() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut violations = Vec::new();
    let mut checked = 0;
    for core in ["src/sip", "src/media"] {
        let mut files = Vec::new();
        rust_files(&root.join(core), &mut files);
        for file in files {
            checked += 1;
            let text = fs::read_to_string(&file).expect("readable source");
            for (n, line) in production_code(&text).lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                for word in FORBIDDEN {
                    if code.contains(word) {
                        violations.push(format!(
                            "{}:{}: {word}: {}",
                            file.display(),
                            n + 1,
                            line.trim()
                        ));
                    }
                }
            }
        }
    }
    assert!(checked > 20, "the cores were found ({checked} files)");
    assert!(
        violations.is_empty(),
        "sans-IO rule broken:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_checker_sees_a_violation() {
    let sample = "use tokio::net::UdpSocket;\nfn f() { let _ = std::time::Instant::now(); }\n#[cfg(test)]\nmod t { fn g() { std::time::Instant::now(); } }";
    let code = production_code(sample);
    let hits: Vec<_> = FORBIDDEN.iter().filter(|w| code.contains(**w)).collect();
    assert_eq!(hits, [&"tokio", &"Instant::now", &"UdpSocket"]);
}

/// What the TUI's model, update and view may not touch: I/O, the clock, and anything of the
/// engine but its API (DESIGN.md: "`ui/` knows `engine::api` only"; the runtime, run.rs, is
/// the one edge that starts the engine and does I/O).
const UI_FORBIDDEN: &[&str] = &[
    "tokio",
    "cpal",
    "Instant::now",
    "SystemTime::now",
    "std::net",
    "std::fs",
    "std::process",
    "std::thread",
    "crate::sip",
    "crate::media",
    "crate::audio",
    "crate::control",
    "engine::actor",
    "engine::media",
    "EngineHandle",
    "Store::open",
];

#[test]
fn the_tui_core_does_no_io_and_knows_only_the_engine_api() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ui");
    let mut violations = Vec::new();
    for name in ["model.rs", "update.rs", "view.rs", "keymap.rs"] {
        let file = root.join(name);
        let text = fs::read_to_string(&file).expect("readable source");
        for (n, line) in production_code(&text).lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for word in UI_FORBIDDEN {
                if code.contains(word) {
                    violations.push(format!(
                        "{}:{}: {word}: {}",
                        file.display(),
                        n + 1,
                        line.trim()
                    ));
                }
            }
            // The engine only through its API.
            if code.contains("crate::engine") && !code.contains("crate::engine::api") {
                violations.push(format!(
                    "{}:{}: engine internals: {}",
                    file.display(),
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "TUI rule broken:\n{}",
        violations.join("\n")
    );
}

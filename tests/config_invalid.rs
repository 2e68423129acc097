//! Every fixture under tests/invalid_configs/ must fail to load with an error that names the
//! file, the exact line:column and what was expected. Each fixture says what it expects on its
//! first line: `# expect-error: LINE:COL: TEXT` (TEXT must appear in that error line).

use std::path::{Path, PathBuf};

use termphone::config::Config;

const HEADER: &str = "# expect-error: ";

struct Expectation {
    line: usize,
    column: usize,
    text: String,
}

fn expectation(path: &Path) -> Expectation {
    let bytes = std::fs::read(path).expect("read fixture");
    let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = std::str::from_utf8(first).expect("fixture header is UTF-8");
    let rest = first
        .strip_prefix(HEADER)
        .unwrap_or_else(|| panic!("{}: first line must start with {HEADER:?}", path.display()));
    let mut parts = rest.splitn(3, ':');
    let mut num = || -> usize {
        parts
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("{}: bad header", path.display()))
    };
    let (line, column) = (num(), num());
    let text = parts.next().unwrap_or_default().trim().to_string();
    assert!(!text.is_empty(), "{}: header has no text", path.display());
    Expectation { line, column, text }
}

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid_configs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read tests/invalid_configs")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_invalid_fixture_names_file_line_column_and_expectation() {
    let files = fixtures();
    assert!(
        files.len() >= 30,
        "expected the fixture set, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let want = expectation(path);
        let err = match Config::load(path) {
            Ok(_) => {
                failures.push(format!("{}: loaded without error", path.display()));
                continue;
            }
            Err(e) => e,
        };
        let text = err.to_string();
        let prefix = format!("{}:{}:{}: ", path.display(), want.line, want.column);
        let Some(line) = text.lines().find(|l| l.starts_with(&prefix)) else {
            failures.push(format!(
                "{}: no error at {}:{}; got:\n{text}",
                path.display(),
                want.line,
                want.column
            ));
            continue;
        };
        if !line.contains(&want.text) || !line.contains("expected") {
            failures.push(format!(
                "{}: error line lacks {:?} or \"expected\"; got:\n{line}",
                path.display(),
                want.text
            ));
        }
        let first = &err.problems()[0];
        if (first.location.line, first.location.column) != (want.line, want.column) {
            failures.push(format!(
                "{}: first problem at {} (want {}:{}); got:\n{text}",
                path.display(),
                first.location,
                want.line,
                want.column
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[test]
fn errors_name_the_file_by_its_path() {
    let path = Path::new("/etc/somewhere/my-phone.toml");
    let err = Config::from_str("[general]\nlisten = 1\n", path).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/etc/somewhere/my-phone.toml:2:10: general.listen: expected a socket address such as \
         \"0.0.0.0:5060\" or \"[::]:5060\", found an integer"
    );
    assert_eq!(err.path(), path);
}

#[test]
fn all_problems_are_reported_in_file_order() {
    let text = "[[account]]\nname = \"a\"\nuser = \"alice\"\ncodecs = [\"G729\"]\n\
                [general]\nlisten = 1\nsip_trace = 2\n";
    let err = Config::from_str(text, Path::new("c.toml")).unwrap_err();
    let places: Vec<String> = err
        .problems()
        .iter()
        .map(|p| p.location.to_string())
        .collect();
    assert_eq!(places, ["4:11", "6:10", "7:13"]);
    assert_eq!(err.to_string().lines().count(), 3);
}

#[test]
fn missing_file_is_a_read_error_naming_the_file() {
    let path = Path::new("/nonexistent/termphone/config.toml");
    let err = Config::load(path).unwrap_err();
    assert!(err.problems().is_empty());
    let text = err.to_string();
    assert!(
        text.starts_with("/nonexistent/termphone/config.toml: cannot read config file"),
        "{text}"
    );
}

#[test]
fn no_input_makes_the_loader_panic() {
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml"))
            .unwrap();
    let mut texts = vec![
        "a = ".to_string() + &"[".repeat(100_000),
        "a = ".to_string() + &"{ b = ".repeat(50_000),
        "[[account]]\n".repeat(10_000),
        "\u{feff}[general]\nsip_trace = true\n".to_string(),
        "[general]\r\nlisten = 7\r\n".to_string(),
    ];
    // Every prefix of the example (cut at character boundaries) and each line removed.
    texts.extend(
        (0..=example.len())
            .filter(|&i| example.is_char_boundary(i))
            .map(|i| example[..i].to_string()),
    );
    let lines: Vec<&str> = example.lines().collect();
    texts.extend((0..lines.len()).map(|skip| {
        let kept: Vec<&str> = (0..lines.len())
            .filter(|&i| i != skip)
            .map(|i| lines[i])
            .collect();
        kept.join("\n")
    }));
    for text in &texts {
        let line_count = text.lines().count().max(1) + 1;
        if let Err(e) = Config::from_str(text, Path::new("c.toml")) {
            assert!(!e.problems().is_empty());
            for p in e.problems() {
                assert!(p.location.line >= 1 && p.location.line <= line_count, "{e}");
                assert!(p.location.column >= 1, "{e}");
            }
        }
    }
}

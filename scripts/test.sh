#!/usr/bin/env bash
# test.sh: the project's test command (README). Format check, clippy with warnings as
# errors, then every test target (lib, bin, tests/, benches, examples) built by
# `cargo test --all-targets`, each test binary run under its own time limit. Installs the
# Debian packages it needs (scripts/install-deps.sh) and starts headless audio first.
#
#   scripts/test.sh                 everything
#   scripts/test.sh FILTER [ARGS]   passes FILTER/ARGS to every test binary (libtest args)
#
# Env: TEST_BIN_TIMEOUT (seconds per test binary, default 900), SKIP_LINT=1 (tests only).
# Exits non-zero if any step, any test, or any time limit fails. Ends with each binary's
# libtest summary ("test result: ...") and a total line "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x "$HOME/.cargo/bin/cargo" ] && ! command -v cargo >/dev/null; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
per_bin_timeout="${TEST_BIN_TIMEOUT:-900}"

# System packages (sipp, PulseAudio, ALSA headers); skip with TERMPHONE_NO_INSTALL=1.
if [ "${TERMPHONE_NO_INSTALL:-0}" != 1 ]; then
    bash scripts/install-deps.sh
fi

# Real audio devices for the cpal tests: a private PulseAudio with null sinks, stopped at exit
# (only the server this script started, by its PID file).
audio_started=0
if [ -z "${PULSE_SERVER:-}" ] && [ "${TERMPHONE_NO_AUDIO:-0}" != 1 ]; then
    bash scripts/headless-audio.sh start
    eval "$(bash scripts/headless-audio.sh env)"
    audio_started=1
    export TERMPHONE_REQUIRE_AUDIO="${TERMPHONE_REQUIRE_AUDIO:-1}"
fi
stop_audio() {
    if [ "$audio_started" = 1 ]; then
        bash scripts/headless-audio.sh stop || true
    fi
}
trap stop_audio EXIT

# The keyring tests run a private D-Bus session and gnome-keyring; where those are installed a
# skipped keyring test is a failure.
if command -v gnome-keyring-daemon >/dev/null && command -v dbus-daemon >/dev/null; then
    export TERMPHONE_REQUIRE_KEYRING="${TERMPHONE_REQUIRE_KEYRING:-1}"
fi

if [ "${SKIP_LINT:-0}" != 1 ]; then
    echo "==> cargo fmt --all --check"
    cargo fmt --all --check
    echo "==> cargo clippy --all-targets -- -D warnings"
    cargo clippy --all-targets -- -D warnings
fi

echo "==> cargo test --all-targets --no-run"
list=$(mktemp)
trap 'rm -f "$list"; stop_audio' EXIT
cargo test --all-targets --no-run --message-format=json-render-diagnostics >"$list"
# test executables only: artifacts built with the test profile flag ("test":true); the plain
# bin artifact (for CARGO_BIN_EXE_termphone) is not a test and must not be run
mapfile -t bins < <(grep '"reason":"compiler-artifact"' "$list" | grep -E '"profile":\{[^}]*"test":true\}' |
    grep -o '"executable":"[^"]*"' | sed 's/^"executable":"//; s/"$//' | sort -u)
# what cargo test also sets at run time, for tests that read them with std::env::var
export CARGO_MANIFEST_DIR="$PWD"
while read -r name exe; do
    [ -n "$exe" ] && export "CARGO_BIN_EXE_${name}=${exe}"
done < <(grep '"reason":"compiler-artifact"' "$list" | grep '"kind":\["bin"\]' |
    grep -E '"profile":\{[^}]*"test":false\}' |
    sed -nE 's/.*"target":\{"kind":\["bin"\],"crate_types":\["bin"\],"name":"([A-Za-z0-9_]+)".*"executable":"([^"]*)".*/\1 \2/p')
if [ ${#bins[@]} -eq 0 ]; then
    echo "no test executables were built" >&2
    exit 1
fi

failed_bins=()
summaries=()
total_pass=0
total_fail=0
for bin in "${bins[@]}"; do
    rel=${bin#"$PWD/"}
    echo
    echo "     Running $rel (limit ${per_bin_timeout}s)"
    out=$(mktemp)
    rc=0
    # cargo runs test binaries from the package root; so do we. Output streams as it comes.
    timeout --signal=TERM --kill-after=15 "$per_bin_timeout" "$bin" "$@" 2>&1 | tee "$out" || rc=${PIPESTATUS[0]}
    line=$(grep -E '^test result: ' "$out" | tail -n 1 || true)
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        echo "TIMEOUT: $rel did not finish within ${per_bin_timeout}s" >&2
        line="test result: FAILED (timeout after ${per_bin_timeout}s)"
    fi
    if [ -n "$line" ]; then
        summaries+=("$rel: $line")
        p=$(sed -nE 's/.* ([0-9]+) passed.*/\1/p' <<<"$line")
        f=$(sed -nE 's/.* ([0-9]+) failed.*/\1/p' <<<"$line")
        total_pass=$((total_pass + ${p:-0}))
        total_fail=$((total_fail + ${f:-0}))
    fi
    if [ "$rc" != 0 ]; then
        failed_bins+=("$rel (exit $rc)")
        if [ -z "${f:-}" ] || [ "${f:-0}" = 0 ]; then
            total_fail=$((total_fail + 1)) # crashed, timed out, or failed outside a test
        fi
    fi
    rm -f "$out"
done

# doc tests (not part of --all-targets); only when there is a library target
if grep -q '"kind":\["lib"\]' "$list"; then
    echo
    echo "     Doc-tests (limit ${per_bin_timeout}s)"
    out=$(mktemp)
    rc=0
    timeout --signal=TERM --kill-after=15 "$per_bin_timeout" cargo test --doc 2>&1 | tee "$out" || rc=${PIPESTATUS[0]}
    line=$(grep -E '^test result: ' "$out" | tail -n 1 || true)
    f=""
    if [ -n "$line" ]; then
        summaries+=("doc-tests: $line")
        p=$(sed -nE 's/.* ([0-9]+) passed.*/\1/p' <<<"$line")
        f=$(sed -nE 's/.* ([0-9]+) failed.*/\1/p' <<<"$line")
        total_pass=$((total_pass + ${p:-0}))
        total_fail=$((total_fail + ${f:-0}))
    fi
    if [ "$rc" != 0 ]; then
        failed_bins+=("doc-tests (exit $rc)")
        if [ -z "${f:-}" ] || [ "${f:-0}" = 0 ]; then
            total_fail=$((total_fail + 1))
        fi
    fi
    rm -f "$out"
fi

echo
echo "==> summary"
for s in "${summaries[@]}"; do
    echo "$s"
done
if [ ${#failed_bins[@]} -gt 0 ]; then
    echo "failed test binaries:"
    printf '  %s\n' "${failed_bins[@]}"
fi
echo "$total_pass passed, $total_fail failed"
[ ${#failed_bins[@]} -eq 0 ]

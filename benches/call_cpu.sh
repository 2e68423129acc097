#!/usr/bin/env bash
# call_cpu.sh: CPU time and peak RSS of a `termphone serve` carrying one call from
# `termphone dial --play` on 127.0.0.1, for each codec and each way of answering:
#
#   echo      serve --echo: the caller's audio straight back (no sound device, no DSP)
#   device    serve --device: microphone and speaker through the 48 kHz pipeline with the
#             sound-device processing on (RNNoise and the echo canceller)
#   device-ns-off   the same with --no-noise-suppression (echo canceller only)
#   device-aec-off  the same with --no-echo-cancellation (RNNoise only)
#   device-plain    both off: the device streams and the resampling alone
#
# CPU is user+sys of the serve process from /proc/PID/stat over the call, per minute of call;
# memory is its peak RSS (VmHWM). Each row is a fresh serve. The device rows need a sound
# server: a private PulseAudio with null sinks is started (scripts/headless-audio.sh) unless
# PULSE_SERVER is set, and stopped at the end.
#
#   benches/call_cpu.sh [SECONDS]      default 30 per row; builds the release binary first;
#                                      writes the table into BENCHMARKS.md and prints it
# Env: CPU_CODECS (default "PCMU G722 opus"), CPU_MODES (default: all five).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-30}"
codecs=(${CPU_CODECS:-PCMU G722 opus})
modes=(${CPU_MODES:-echo device device-ns-off device-aec-off device-plain})
cargo build --release --quiet
bin=$PWD/target/release/termphone
tmp=$(mktemp -d)
serve_pid=""
audio_started=0
cleanup() {
    if [ -n "$serve_pid" ]; then kill "$serve_pid" 2>/dev/null || true; fi
    if [ "$audio_started" = 1 ]; then bash scripts/headless-audio.sh stop >/dev/null 2>&1 || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
if [ -z "${PULSE_SERVER:-}" ]; then
    # Stop it at the end only if this script started it.
    if ! bash scripts/headless-audio.sh start 2>&1 | grep -q "already running"; then
        audio_started=1
    fi
    eval "$(bash scripts/headless-audio.sh env)"
fi
export XDG_RUNTIME_DIR="$tmp/run"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

rows=()
for codec in "${codecs[@]}"; do
    for mode in "${modes[@]}"; do
        case "$mode" in
            echo) args=(--echo) ;;
            device) args=(--device) ;;
            device-ns-off) args=(--device --no-noise-suppression) ;;
            device-aec-off) args=(--device --no-echo-cancellation) ;;
            device-plain) args=(--device --no-noise-suppression --no-echo-cancellation) ;;
            *) echo "unknown mode $mode" >&2; exit 2 ;;
        esac
        "$bin" serve --no-control --listen 127.0.0.1:0 --codec "$codec" "${args[@]}" --json \
            >"$tmp/serve.json" 2>"$tmp/serve.err" &
        serve_pid=$!
        for _ in $(seq 100); do grep -q listening "$tmp/serve.json" 2>/dev/null && break; sleep 0.1; done
        addr=$(sed -n 's/.*"addr":"\([^"]*\)".*/\1/p' "$tmp/serve.json" | head -1)
        [ -n "$addr" ] || { echo "serve did not start: $(cat "$tmp/serve.err")" >&2; exit 1; }
        before=$(ticks "$serve_pid")
        "$bin" dial "sip:bench@$addr" --listen 127.0.0.1:0 --codec "$codec" \
            --play tests/data/speech-48k.wav --duration "$secs" --json >"$tmp/dial.json" 2>/dev/null
        after=$(ticks "$serve_pid")
        grep -q '"summary"' "$tmp/dial.json" || { echo "the $codec $mode call failed" >&2; exit 1; }
        rss=$(awk '/VmHWM/ {print $2}' "/proc/$serve_pid/status")
        kill "$serve_pid"; wait "$serve_pid" 2>/dev/null || true; serve_pid=""
        rows+=("$(awk -v c="$codec" -v m="$mode" -v b="$before" -v a="$after" -v hz="$hz" \
            -v s="$secs" -v rss="$rss" 'BEGIN {
            cpu = (a - b) / hz;
            printf "| %s | %s | %.2f | %.2f %% | %.1f MiB |", c, m, cpu / s * 60, cpu / s * 100, rss / 1024 }')")
        echo "${rows[-1]}" >&2
    done
done
table=$(printf '| codec | serve answers with | CPU s per minute of call | share of one core | peak RSS |\n|---|---|---|---|---|\n'; printf '%s\n' "${rows[@]}")
printf '%s\n' "$table"
python3 - "$table" "$secs" <<'PY'
import datetime, re, sys
table, secs = sys.argv[1], sys.argv[2]
path = "BENCHMARKS.md"
text = open(path).read()
block = (f"<!-- call_cpu:begin -->\n`bash benches/call_cpu.sh {secs}`, {datetime.date.today()}:\n\n{table}\n"
         "<!-- call_cpu:end -->")
text = re.sub(r"<!-- call_cpu:begin -->.*?<!-- call_cpu:end -->", lambda m: block, text, flags=re.S)
open(path, "w").write(text)
PY

#!/usr/bin/env bash
# call_cpu.sh: CPU time and peak RSS of `termphone serve --echo` carrying one G.711 call from
# `termphone dial` on 127.0.0.1, measured from /proc (user+sys ticks of the serve process).
#
#   benches/call_cpu.sh [SECONDS]      default 30; builds the release binary first
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-30}"
cargo build --release --quiet
bin=target/release/termphone
tmp=$(mktemp -d)
trap 'kill "$serve_pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
"$bin" serve --listen 127.0.0.1:0 --echo --json >"$tmp/serve.json" 2>"$tmp/serve.err" &
serve_pid=$!
for _ in $(seq 50); do grep -q listening "$tmp/serve.json" 2>/dev/null && break; sleep 0.1; done
addr=$(sed -n 's/.*"addr":"\([^"]*\)".*/\1/p' "$tmp/serve.json" | head -1)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
idle0=$(ticks "$serve_pid"); sleep 5; idle1=$(ticks "$serve_pid")
before=$(ticks "$serve_pid")
"$bin" dial "sip:echo@$addr" --listen 127.0.0.1:0 --play tests/data/speech-8k.wav --duration "$secs" --json >"$tmp/dial.json" 2>/dev/null
after=$(ticks "$serve_pid")
rss=$(awk '/VmHWM/ {print $2}' "/proc/$serve_pid/status")
awk -v i0="$idle0" -v i1="$idle1" -v b="$before" -v a="$after" -v hz="$hz" -v s="$secs" -v rss="$rss" 'BEGIN {
    call = (a - b) / hz; idle = (i1 - i0) / hz / 5;
    printf "serve idle: %.3f CPU s per s (%.2f %% of one core)\n", idle, idle * 100;
    printf "serve with one G.711 echo call: %.2f CPU s over %d s = %.2f CPU s per minute (%.2f %% of one core)\n", call, s, call / s * 60, call / s * 100;
    printf "serve peak RSS: %.1f MiB\n", rss / 1024 }'

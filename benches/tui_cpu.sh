#!/usr/bin/env bash
# tui_cpu.sh: CPU time and peak RSS of the interactive phone (`termphone`, release build) in a
# private tmux window of 100x30: first idle (the clock ticks, the screen redraws four times a
# second), then carrying one Opus call to `termphone serve --echo` through the sound card
# (a private PulseAudio null sink), with its meters and quality line updating.
#
# CPU is user+sys of the termphone process from /proc/PID/stat over each phase, in seconds of
# CPU per minute; memory is its peak RSS (VmHWM). Everything on 127.0.0.1; every process is
# stopped by its PID at the end.
#
#   benches/tui_cpu.sh [SECONDS]      default 30 per phase; prints one line per phase
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-30}"
cargo build --release --quiet
bin=$PWD/target/release/termphone
tmp=$(mktemp -d)
sock="tpbench$$"
serve_pid=""
audio_started=0
cleanup() {
    tmux -L "$sock" kill-server 2>/dev/null || true
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
mkdir -p "$tmp/xdg/runtime" && chmod 700 "$tmp/xdg/runtime"
"$bin" serve --listen 127.0.0.1:0 --echo --no-control --json > "$tmp/serve.out" 2>/dev/null &
serve_pid=$!
for _ in $(seq 50); do grep -q '"listening"' "$tmp/serve.out" && break; sleep 0.1; done
addr=$(grep -m1 '"transport":"udp"' "$tmp/serve.out" | sed 's/.*"addr":"\([^"]*\)".*/\1/')
tmux -L "$sock" -f /dev/null new-session -d -s b -x 100 -y 30 \
    "env HOME=$tmp XDG_CONFIG_HOME=$tmp/xdg/c XDG_DATA_HOME=$tmp/xdg/d XDG_STATE_HOME=$tmp/xdg/s \
     XDG_RUNTIME_DIR=$tmp/xdg/runtime PULSE_SERVER=$PULSE_SERVER TERM=xterm-256color \
     $bin --listen 127.0.0.1:0 --no-control --database $tmp/tui.db --log-file $tmp/tui.log; sleep 600"
pid=""
for _ in $(seq 100); do
    pid=$(pgrep -P "$(tmux -L "$sock" display -p -t b '#{pane_pid}')" termphone || true)
    [ -n "$pid" ] && tmux -L "$sock" capture-pane -p -t b | grep -q "Dial as" && break
    sleep 0.1
done
[ -n "$pid" ] || { echo "tui_cpu: the TUI did not start" >&2; exit 1; }
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
phase() {
    local name=$1 before after
    before=$(cpu "$pid")
    sleep "$secs"
    after=$(cpu "$pid")
    awk -v n="$name" -v b="$before" -v a="$after" -v t="$ticks" -v s="$secs" \
        'BEGIN { printf "%-10s %.2f s CPU per minute (%.2f %% of a core)\n", n, (a-b)/t*60/s, (a-b)/t/s*100 }'
}
sleep 2
phase idle
tmux -L "$sock" send-keys -t b -l "sip:echo@$addr"
tmux -L "$sock" send-keys -t b Enter
for _ in $(seq 100); do tmux -L "$sock" capture-pane -p -t b | grep -q "connected" && break; sleep 0.1; done
phase call
echo "peak RSS $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' "/proc/$pid/status")"
tmux -L "$sock" send-keys -t b e
sleep 1

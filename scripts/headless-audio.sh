#!/usr/bin/env bash
# scripts/headless-audio.sh — real audio for termphone's tests on a machine with no sound card.
#
# Starts a private, per-user PulseAudio daemon with null sinks, so cpal (default ALSA host,
# routed to pulse by libasound2-plugins) can really play and capture in CI and containers:
#
#   virt_speaker          null sink, the default sink: what termphone plays ends up here
#   virt_speaker.monitor  records what was played into virt_speaker
#   virt_mic              null sink: a test plays the "microphone" signal into it
#   virt_mic.monitor      the default source: termphone's capture reads what virt_mic got
#   keepalive             null sink fed by two server-side loopbacks from both monitors
#
# An idle null sink sleeps in 2 s blocks, so a fresh stream's first callback can come 1-2 s
# late. The two loopbacks (10 ms latency, pinned with *_dont_move) keep both sinks ticking;
# they live inside the daemon, so there are no extra processes to track.
#
# Usage:
#   scripts/headless-audio.sh start    start (or reuse) the daemon, idempotent; prints the env line
#   eval "$(scripts/headless-audio.sh env)"   export PULSE_SERVER for this shell
#   scripts/headless-audio.sh verify   tone into virt_mic, record virt_mic.monitor, check the level
#   scripts/headless-audio.sh status   server, sinks, sources
#   scripts/headless-audio.sh stop     stop the daemon this script started (by its PID file only)
#
# termphone's device tests (tests/audio_cpal.rs) run only when PULSE_SERVER is set, and
# say "NOT RUN" otherwise; TERMPHONE_REQUIRE_AUDIO=1 turns that into a failure:
#   bash scripts/headless-audio.sh start && eval "$(bash scripts/headless-audio.sh env)"
#   TERMPHONE_REQUIRE_AUDIO=1 cargo test --test audio_cpal
#   bash scripts/headless-audio.sh stop
#
# Per process, pick devices with PULSE_SINK=... / PULSE_SOURCE=...; for example
# PULSE_SOURCE=virt_speaker.monitor lets one program record its own playback.
#
# Knobs:
#   TERMPHONE_AUDIO_DIR      state dir (default ${XDG_RUNTIME_DIR:-${TMPDIR:-/tmp}}/termphone-audio-$UID);
#                            keep it short: a unix socket path must fit in 108 bytes
#   TERMPHONE_AUDIO_NO_APT=1 never run apt-get (fail if a tool is missing)
#
# Only perl (part of every Debian base system), pulseaudio, pulseaudio-utils and
# libasound2-plugins are needed; nothing else is started and nothing else is stopped.
set -euo pipefail

CMD="${1:-start}"
DIR="${TERMPHONE_AUDIO_DIR:-${XDG_RUNTIME_DIR:-${TMPDIR:-/tmp}}/termphone-audio-$(id -u)}"
SOCK="$DIR/pulse/native"
PIDFILE="$DIR/pulseaudio.pid"
PA=(env XDG_RUNTIME_DIR="$DIR" PULSE_SERVER="unix:$SOCK")

log() { echo "headless-audio: $*" >&2; }
die() { log "$*"; exit 1; }

[ "${#SOCK}" -lt 108 ] || die "socket path too long (${#SOCK} bytes): $SOCK; set TERMPHONE_AUDIO_DIR shorter"

need_pkgs() {
    local missing=()
    command -v pulseaudio >/dev/null || missing+=(pulseaudio)
    command -v pactl >/dev/null || missing+=(pulseaudio-utils)
    command -v parec >/dev/null || missing+=(pulseaudio-utils)
    [ -e /usr/share/alsa/alsa.conf.d/pulse.conf ] || [ -e /usr/share/alsa/alsa.conf.d/50-pulseaudio.conf ] \
        || missing+=(libasound2-plugins)
    command -v perl >/dev/null || missing+=(perl)
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "${TERMPHONE_AUDIO_NO_APT:-0}" = 1 ] && die "missing packages: ${missing[*]} (TERMPHONE_AUDIO_NO_APT=1)"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    log "installing ${missing[*]}"
    $sudo apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
        pulseaudio pulseaudio-utils libasound2-plugins perl >/dev/null
}

running() { "${PA[@]}" pactl info >/dev/null 2>&1; }

# the PID of the daemon this script started, if that process is still a pulseaudio
our_pid() {
    local pid
    [ -r "$PIDFILE" ] || return 1
    pid=$(tr -dc 0-9 <"$PIDFILE")
    [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 1
    [ "$(cat "/proc/$pid/comm")" = pulseaudio ] || return 1
    # and it is the one serving this state dir's socket (not a reused PID)
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -F "socket=$SOCK" >/dev/null || return 1
    echo "$pid"
}

# (grep without -q: it reads all its input, so pipefail never sees a writer's SIGPIPE)
has_sink() { "${PA[@]}" pactl list short sinks | awk '{print $2}' | grep -x "$1" >/dev/null; }
has_loopback() { "${PA[@]}" pactl list short modules | grep "module-loopback.*source=$1 " >/dev/null; }

# load whatever is missing, so a half-set-up daemon is repaired rather than duplicated
ensure_devices() {
    local s
    for s in virt_speaker virt_mic keepalive; do
        has_sink "$s" || "${PA[@]}" pactl load-module module-null-sink sink_name="$s" rate=48000 \
            sink_properties=device.description="$s" >/dev/null
    done
    for s in virt_speaker.monitor virt_mic.monitor; do
        has_loopback "$s" || "${PA[@]}" pactl load-module module-loopback source="$s" sink=keepalive \
            latency_msec=10 source_dont_move=true sink_dont_move=true >/dev/null
    done
    "${PA[@]}" pactl set-default-sink virt_speaker
    "${PA[@]}" pactl set-default-source virt_mic.monitor
}

settled() {
    # both monitors must have left the idle 2 s latency
    local n
    n=$("${PA[@]}" pactl list sources 2>/dev/null | awk '
        /Name: virt_(speaker|mic)\.monitor/ {f = 1}
        f && /configured/ {if ($(NF-1) < 100000) c++; f = 0}
        END {print c + 0}')
    [ "$n" = 2 ]
}

start() {
    need_pkgs
    mkdir -p "$DIR"
    chmod 700 "$DIR"
    local fresh=0
    if running; then
        log "PulseAudio already running at $SOCK"
    else
        log "starting PulseAudio (socket $SOCK, log $DIR/pulse.log)"
        # -n: no default.pa, only what we load. Running as root in per-user mode is fine for
        # CI (pulseaudio warns and carries on).
        "${PA[@]}" pulseaudio --daemonize=yes --use-pid-file=yes --exit-idle-time=-1 \
            --disallow-exit --disallow-module-loading=no -n --log-target="file:$DIR/pulse.log" \
            --load="module-native-protocol-unix auth-anonymous=1 socket=$SOCK"
        for _ in $(seq 50); do running && break; sleep 0.1; done
        running || die "PulseAudio did not come up; see $DIR/pulse.log"
        cp "$DIR/pulse/pid" "$PIDFILE"
        fresh=1
    fi
    ensure_devices
    for _ in $(seq 50); do settled && break; sleep 0.1; done
    settled || log "warning: monitors still at idle latency; the first stream may start late"
    # each new null sink starts inside a 2 s sleep block; wait it out once, on a fresh start
    [ "$fresh" = 1 ] && sleep 2.5
    print_env
    log "ready: eval \"\$($0 env)\"; check with: $0 verify"
}

print_env() { echo "export PULSE_SERVER=unix:$SOCK"; }

verify() {
    running || die "not running; run: $0 start"
    local raw="$DIR/verify.raw" rp rms
    # record 16-bit mono 48 kHz from the default source's device while a 1 kHz tone at
    # amplitude 0.5 plays into virt_mic for 1.5 s
    "${PA[@]}" parec -d virt_mic.monitor --raw --rate=48000 --channels=1 --format=s16le >"$raw" &
    rp=$!
    sleep 0.3
    perl -e 'binmode STDOUT; print pack("s<*", map { int(16384 * sin(6.283185307 * 1000 * $_ / 48000)) } 0 .. 71999)' \
        | "${PA[@]}" pacat -d virt_mic --raw --rate=48000 --channels=1 --format=s16le
    sleep 0.3
    kill "$rp"
    wait "$rp" 2>/dev/null || true
    # RMS of the loudest 1 s (silence around the tone would lower the whole-file figure)
    rms=$(perl -e 'local $/; binmode STDIN; my @s = unpack("s<*", <STDIN>); my ($best, $n) = (0, 48000);
        for (my $i = 0; $i + $n <= @s; $i += 4800) { my $e = 0; $e += $_ * $_ for @s[$i .. $i + $n - 1];
        $best = $e if $e > $best } printf "%.4f\n", sqrt($best / $n) / 32768' <"$raw")
    rm -f "$raw"
    log "recorded RMS $rms (a 0.5 sine is 0.354, silence is 0)"
    if perl -e "exit !($rms > 0.3)"; then echo "verify: OK"; else echo "verify: FAILED"; exit 1; fi
}

status() {
    if running; then
        "${PA[@]}" pactl info | grep -E 'Server (String|Version)|Default (Sink|Source)'
        "${PA[@]}" pactl list short sinks
        "${PA[@]}" pactl list short sources
        local pid
        if pid=$(our_pid); then echo "daemon PID $pid (started by this script)"; fi
    else
        echo "not running ($SOCK)"
    fi
}

stop() {
    local pid
    if pid=$(our_pid); then
        kill -TERM "$pid"
        for _ in $(seq 50); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
        [ -e "/proc/$pid" ] && kill -KILL "$pid"
        log "stopped PulseAudio (PID $pid)"
    elif running; then
        log "a server answers at $SOCK but it was not started by this script (no PID file); left alone"
    else
        log "not running"
    fi
    rm -f "$PIDFILE"
}

case "$CMD" in
    start) start ;;
    env) print_env ;;
    verify) verify ;;
    status) status ;;
    stop) stop ;;
    *) echo "usage: $0 [start|env|verify|status|stop]" >&2; exit 2 ;;
esac

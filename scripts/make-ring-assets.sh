#!/usr/bin/env bash
# make-ring-assets.sh: regenerate the ring sounds in assets/ (committed; the binary embeds
# them with include_bytes!, tests/ring_assets.rs checks them against the parameters).
#
#   assets/ringtone.wav   incoming call: a soft synthesized chime, the rising arpeggio
#                         E5 G#5 B5 E6 twice, sounding 2 s of a 4 s cycle
#   assets/ringback.wav   caller side (the remote phone rings): 425 Hz, 1 s on, 4 s off, the
#                         European ringing tone (ETSI ES 201 970 / CEPT; within ITU-T E.180's
#                         400-450 Hz, 0.67-1.5 s on, 3-5 s off); one 5 s cycle
#
# Both are one cycle of 48 kHz mono 16-bit, looped by termphone::audio::RingSource. They are
# original: synthesized from sines and envelopes by examples/make_ring_assets/synth.rs, whose
# constants are the design (change them there, run this, commit both). The generator is
# standard-library Rust compiled here with plain rustc (the termphone library embeds these
# files, so it cannot be needed to make them); with sox installed (scripts/install-deps.sh)
# the script also prints each file's statistics. Output is deterministic.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x "$HOME/.cargo/bin/rustc" ] && ! command -v rustc >/dev/null; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rustc --edition 2021 -O -o "$tmp/make_ring_assets" examples/make_ring_assets/main.rs
"$tmp/make_ring_assets" assets
if command -v sox >/dev/null; then
    for f in assets/ringtone.wav assets/ringback.wav; do
        echo "== $f"
        sox "$f" -n stat 2>&1 | grep -E 'Length|Maximum amplitude|RMS +amplitude|Rough +frequency'
    done
fi
ls -l assets/ringtone.wav assets/ringback.wav

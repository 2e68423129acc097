#!/usr/bin/env bash
# fuzz.sh: run every cargo-fuzz target for a while (needs a nightly toolchain and cargo-fuzz:
# `rustup toolchain install nightly && cargo install cargo-fuzz`). The SIP targets start from
# the parser corpus in tests/data/sip-corpus.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     default 60
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-60}"
for target in sip_message ua_datagrams; do
    mkdir -p "corpus/$target"
    cp ../tests/data/sip-corpus/*.sip "corpus/$target/"
done
status=0
for target in sip_message rtp_packet rtcp_packet sdp_offer ua_datagrams contacts_import; do
    echo "==> $target (${secs}s)"
    cargo +nightly fuzz run "$target" -- -max_total_time="$secs" -rss_limit_mb=2048 || status=1
done
exit "$status"

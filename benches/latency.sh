#!/usr/bin/env bash
# latency.sh: added endpoint latency by click test (benches/latency.rs): `termphone dial --play
# clicks.wav --record back.wav` to `termphone serve --echo` on 127.0.0.1, per codec; each
# click's round trip from the file to the recording, halved per direction after taking off the
# RTCP round-trip time. Writes the table between the latency markers of BENCHMARKS.md and prints
# it.
#
#   benches/latency.sh
#
# Honours CARGO_TARGET_DIR and CARGO_BUILD_JOBS; TERMPHONE_BIN overrides the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
export TERMPHONE_BIN="${TERMPHONE_BIN:-${CARGO_TARGET_DIR:-target}/release/termphone}"
# Every click's delay and both ends' stats go to $CARGO_TARGET_DIR/latency.log (default target/).
log="${CARGO_TARGET_DIR:-target}/latency.log"
table=$(cargo bench --quiet --bench latency 2>"$log" | grep '^|')
printf '%s\n' "$table"
python3 - "$table" <<'PY'
import datetime, re, sys
table = sys.argv[1]
path = "BENCHMARKS.md"
text = open(path).read()
block = (f"<!-- latency:begin -->\n`benches/latency.sh`, {datetime.date.today()}:\n\n{table}\n"
         "<!-- latency:end -->")
pattern = r"<!-- latency:begin -->.*?<!-- latency:end -->"
if re.search(pattern, text, flags=re.S) is None:
    sys.exit(f"{path}: no latency markers")
text = re.sub(pattern, lambda m: block, text, flags=re.S)
open(path, "w").write(text)
PY

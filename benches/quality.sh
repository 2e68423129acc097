#!/usr/bin/env bash
# quality.sh: PESQ of real calls through the impairment relay (benches/quality.rs): each codec
# at 0 / 5 / 10 % loss with 30 ms jitter, termphone → termphone against the same codec with the
# lost packets replaced by silence (table 1), and the same calls with baresip 1.0 receiving or
# sending (table 2, when baresip is installed). Mean over the seeds in QUALITY_SEEDS (default
# 1,2,3). Writes table 1 between the quality markers of BENCHMARKS.md, table 2 between the
# quality-baresip markers, and prints both.
#
#   benches/quality.sh            needs python3 with pip (installs PyPI `pesq` and numpy)
#
# Honours CARGO_TARGET_DIR and CARGO_BUILD_JOBS; TERMPHONE_BIN overrides the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import pesq, numpy' 2>/dev/null || python3 -m pip install --quiet pesq numpy
cargo build --release --quiet
export TERMPHONE_BIN="${TERMPHONE_BIN:-${CARGO_TARGET_DIR:-target}/release/termphone}"
export QUALITY_SEEDS="${QUALITY_SEEDS:-1,2,3}"
# Every call's score and lost packets go to $CARGO_TARGET_DIR/quality.log (default target/).
log="${CARGO_TARGET_DIR:-target}/quality.log"
out=$(cargo bench --quiet --bench quality 2>"$log")
printf '%s\n' "$out" | grep '^|'
python3 - "$out" "$QUALITY_SEEDS" <<'PY'
import datetime, re, sys
out, seeds = sys.argv[1], sys.argv[2]
# Tables: runs of consecutive lines starting with "|".
tables, cur = [], []
for line in out.splitlines() + [""]:
    if line.startswith("|"):
        cur.append(line)
    elif cur:
        tables.append("\n".join(cur))
        cur = []
path = "BENCHMARKS.md"
text = open(path).read()
for marker, table in zip(["quality", "quality-baresip"], tables):
    block = (f"<!-- {marker}:begin -->\n`benches/quality.sh`, {datetime.date.today()}, "
             f"seeds {seeds}:\n\n{table}\n<!-- {marker}:end -->")
    pattern = rf"<!-- {marker}:begin -->.*?<!-- {marker}:end -->"
    if re.search(pattern, text, flags=re.S) is None:
        sys.exit(f"{path}: no {marker} markers")
    text = re.sub(pattern, lambda m: block, text, flags=re.S)
open(path, "w").write(text)
PY

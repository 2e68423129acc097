#!/usr/bin/env bash
# quality.sh: PESQ of real calls between two termphone instances through the impairment relay
# (benches/quality.rs): each codec at 0 / 5 / 10 % loss with 30 ms jitter, against the same
# codec with the lost packets replaced by silence. Writes the table into BENCHMARKS.md between
# the quality markers and prints it.
#
#   benches/quality.sh            needs python3 with pip (installs PyPI `pesq` and numpy)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import pesq, numpy' 2>/dev/null || python3 -m pip install --quiet pesq numpy
cargo build --release --quiet
table=$(cargo bench --quiet --bench quality 2>/dev/null | grep '^|')
printf '%s\n' "$table"
python3 - "$table" <<'PY'
import datetime, re, sys
table = sys.argv[1]
path = "BENCHMARKS.md"
text = open(path).read()
block = (f"<!-- quality:begin -->\n`benches/quality.sh`, {datetime.date.today()}:\n\n{table}\n"
         "<!-- quality:end -->")
text = re.sub(r"<!-- quality:begin -->.*?<!-- quality:end -->", lambda m: block, text, flags=re.S)
open(path, "w").write(text)
PY

#!/usr/bin/env bash
# Allocation check: builds the release binary, counts the allocations its loop thread makes
# per connection, per MiB and per request under short loads (Perf/alloc-count.sh, tcp, http
# and https), compares them with Perf/alloc-thresholds.txt, prints a table and exits 1 when
# any load allocates more than its threshold.
#
#   ALLOC_THRESHOLDS=FILE  thresholds to compare with (default Perf/alloc-thresholds.txt)
#   ALLOC_SCRATCH=DIR      scratch path of the release build (default .build)
#   SLUICE_BIN=PATH        count this binary instead of building one
set -euo pipefail
cd "$(dirname "$0")/.."
thresholds=${ALLOC_THRESHOLDS:-Perf/alloc-thresholds.txt}
scratch=${ALLOC_SCRATCH:-.build}
[ -r "$thresholds" ] || { echo "alloc-check: no thresholds file $thresholds" >&2; exit 2; }
SLUICE_TESTS=1 bash scripts/setup.sh

if [ -z "${SLUICE_BIN:-}" ]; then
    echo "== release build"
    swift build -c release --product sluice --scratch-path "$scratch"
    SLUICE_BIN="$(swift build -c release --scratch-path "$scratch" --show-bin-path)/sluice"
fi
export SLUICE_BIN

echo "== allocation counts ($SLUICE_BIN)"
out=Perf/out/alloc-check
rm -rf "$out"
mkdir -p "$out"
started=$SECONDS
failed=0
# count NAME VAR=VALUE...: one run of Perf/alloc-count.sh, its output in $out/NAME.txt.
count() {
    local name=$1
    shift
    local t0=$SECONDS
    if env "$@" bash Perf/alloc-count.sh > "$out/$name.txt" 2>&1; then
        echo "$name: $((SECONDS - t0)) s"
    else
        echo "$name: Perf/alloc-count.sh failed:" >&2
        tail -20 "$out/$name.txt" >&2
        failed=1
    fi
}
count tcp MODE=tcp SHORT=5000 BULK=256
count http MODE=http SECS=2 WRK_CONNS=4 LOADS="ka-64 ka-16k ka-64-ab close-64 h2-64"
count https MODE=https SECS=2 WRK_CONNS=4 LOADS="ka-64 close-64 h2-64"
# HTTP/2 to endpoints (a service with protocol h2c, nghttpd origins), each load in a process
# of its own: its buffer pools start from that load's own peak.
count http-h2c MODE=http SECS=2 WRK_CONNS=4 LOADS="h2c-up-64"
count http-h2-h2c MODE=http SECS=2 WRK_CONNS=4 LOADS="h2-h2c-up-64"
count http-h2s MODE=http SECS=2 WRK_CONNS=4 LOADS="h2s-up-64"
echo "counted in $((SECONDS - started)) s"

cat "$out"/{tcp,http,https,http-h2c,http-h2-h2c,http-h2s}.txt | grep '^alloc-result:' > "$out/results" || true
python3 - "$thresholds" "$out/results" "$failed" <<'PY'
import sys

thresholds_path, results_path, failed = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
results = {}
for line in open(results_path):
    fields = dict(f.split("=", 1) for f in line.split()[1:])
    results[fields["load"]] = {k: int(v) for k, v in fields.items() if k != "load"}

rows, ok_all = [], not failed
for number, line in enumerate(open(thresholds_path), 1):
    line = line.split("#", 1)[0].split()
    if not line:
        continue
    if len(line) != 4:
        sys.exit(f"{thresholds_path}:{number}: want: load counted max-per-unit slack")
    load, counted, limit, slack = line[0], line[1], float(line[2]), int(line[3])
    r = results.get(load)
    if r is None:
        rows.append((load, counted, "-", "-", "-", f"{limit:g}/unit + {slack}", "FAIL (not measured)"))
        ok_all = False
        continue
    units = r["units"]
    nghttp2 = r.get("loop_nghttp2", 0)
    n = {"loop": r["loop"], "loop-openssl": r["loop_openssl"], "loop-nghttp2": nghttp2,
         "loop-sluice": r["loop"] - r["loop_openssl"] - nghttp2}.get(counted)
    if n is None:
        sys.exit(f"{thresholds_path}:{number}: counted is loop, loop-sluice, loop-openssl or loop-nghttp2, "
                 f"not {counted}")
    allowed = limit * units + slack
    verdict = "OK"
    if units <= 0 or r["errors"]:
        verdict = "FAIL (load failed: no units or errors)"
    elif n > allowed:
        verdict = "FAIL"
    ok_all &= verdict == "OK"
    rows.append((load, counted, str(units), str(n), f"{n / max(units, 1):.4f}", f"{limit:g}/unit + {slack}", verdict))

head = ("load", "counted", "units", "allocations", "per unit", "threshold", "result")
widths = [max(len(row[i]) for row in rows + [head]) for i in range(len(head))]
for row in [head] + rows:
    print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
print("alloc-check:", "OK" if ok_all else "FAIL", f"(thresholds: {thresholds_path})")
sys.exit(0 if ok_all else 1)
PY

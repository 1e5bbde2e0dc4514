#!/usr/bin/env bash
# Allocations on Sluice's data path, counted, not guessed: runs the release binary under an
# LD_PRELOAD malloc counter, warms it up, then reports how many allocations a further
# SHORT short connections (connect, echo 64 B, close) and a BULK MiB transfer each way add.
# Usage: bash Perf/alloc-count.sh   (SHORT=20000 BULK=512 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
SHORT=${SHORT:-20000}
BULK=${BULK:-512}
BIN=${SLUICE_BIN:-.build/release/sluice}
OUT=Perf/out
mkdir -p "$OUT"
[ -x "$BIN" ] || { echo "build first: swift build -c release" >&2; exit 1; }
gcc -O2 -shared -fPIC -o "$OUT/malloc-count.so" Perf/tools/malloc-count.c -ldl

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

rm -f "$OUT/echo.port" "$OUT/alloc.log"
python3 -u Perf/tools/echo-backend.py > "$OUT/echo.port" &
pids+=($!)
until grep -q listening "$OUT/echo.port" 2>/dev/null; do sleep 0.05; done
backend=$(awk '/listening/ {print $2}' "$OUT/echo.port")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$OUT/alloc.yaml" <<YAML
listeners:
  - address: 127.0.0.1:$port
    service: echo
services:
  - name: echo
    endpoints: [127.0.0.1:$backend]
YAML
LD_PRELOAD="$PWD/$OUT/malloc-count.so" "$BIN" run --config "$OUT/alloc.yaml" --workers 1 2> "$OUT/alloc.log" &
sluice=$!
pids+=($sluice)
until grep -q "ready generation=1" "$OUT/alloc.log" 2>/dev/null; do sleep 0.05; done

count() {
    local before
    before=$(grep -c malloc-count "$OUT/alloc.log" || true)
    kill -USR2 "$sluice"
    until [ "$(grep -c malloc-count "$OUT/alloc.log" || true)" -gt "$before" ]; do sleep 0.02; done
    grep malloc-count "$OUT/alloc.log" | tail -1 \
        | awk '{ split($2,a,"="); split($3,b,"="); split($4,c,"="); split($5,d,"="); print a[2]+b[2]+c[2]+d[2] }'
}

# Warm-up: pools, pipes, the slot table's pages and the runtime's caches.
python3 Perf/tools/load.py short "$port" 2000
python3 Perf/tools/load.py bulk "$port" 64
c0=$(count)
python3 Perf/tools/load.py short "$port" "$SHORT"
c1=$(count)
python3 Perf/tools/load.py bulk "$port" "$BULK"
c2=$(count)

short_allocs=$((c1 - c0))
bulk_allocs=$((c2 - c1))
# The counter counts: start-up and warm-up allocate, so c0 cannot be 0.
[ "$c0" -gt 0 ] || { echo "the malloc counter saw nothing: LD_PRELOAD not in effect" >&2; exit 1; }
echo "allocations through start-up and warm-up: $c0"
printf '| load | allocations | per unit |\n| --- | --- | --- |\n'
printf '| %d short connections | %d | %s per connection |\n' "$SHORT" "$short_allocs" \
    "$(python3 -c "print(f'{$short_allocs/$SHORT:.4f}')")"
printf '| %d MiB each way, one connection | %d | %s per MiB |\n' "$BULK" "$bulk_allocs" \
    "$(python3 -c "print(f'{$bulk_allocs/$BULK:.4f}')")"

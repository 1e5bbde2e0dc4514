#!/usr/bin/env bash
# Microbenchmarks of the parsers and the route lookup (wall clock and allocations per
# operation). The harness is only added to the package when SLUICE_BENCHMARKS is set.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SLUICE_BENCHMARKS=1 swift package --disable-sandbox --scratch-path .build-bench benchmark "$@"

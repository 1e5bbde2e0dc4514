#!/usr/bin/env bash
# The whole test suite: format lint, unit tests, loopback integration tests that run the real
# binary against real sockets, then the allocation check of the release binary's data path.
set -euo pipefail
cd "$(dirname "$0")/.."
SLUICE_TESTS=1 bash scripts/setup.sh

echo "== swift format lint"
swift format lint --strict -r Package.swift Sources Tests Benchmarks Fuzz

echo "== build"
swift build --build-tests

echo "== unit tests"
swift test --skip-build

echo "== loopback integration tests"
SLUICE_BIN="$PWD/.build/debug/sluice" python3 -m pytest -q Tests/Integration

echo "== allocation check"
bash scripts/alloc-check.sh

#!/usr/bin/env bash
# Builds Sluice and runs the embedded demo: a listener on 127.0.0.1:8080 balancing three
# local backends round-robin. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release --product sluice
exec .build/release/sluice demo "$@"

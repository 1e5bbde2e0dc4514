#!/usr/bin/env bash
# What metrics and access logs cost: keep-alive and Connection: close CPU per request for
# Sluice before the metrics (SLUICE_BASE_BIN), with metrics (scraped once a second), and with
# a JSON access log, against HAProxy and nginx without and with their logs, in one run.
#   SLUICE_BASE_BIN=/path/to/older/sluice bash Perf/observe-bench.sh
# Without SLUICE_BASE_BIN the "before" column is left out. Other parameters: Perf/http-bench.sh.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
modes="sluice sluice-metrics sluice-log haproxy haproxy-log nginx nginx-log"
[ -n "${SLUICE_BASE_BIN:-}" ] && modes="sluice-base $modes"
export MODES="${MODES:-$modes}"
export LOADS="${LOADS:-ka-64 close-64}"
export REPORT_KIND=observe
exec bash "$HERE/http-bench.sh"

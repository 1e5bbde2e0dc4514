#!/usr/bin/env bash
# Installs what building and testing Sluice needs on a fresh Debian 12 machine (as root, or
# with sudo): the C libraries the shim links, the clients the loopback tests drive, pytest.
# Idempotent and quiet when everything is already there.
set -euo pipefail

packages=(liburing-dev libssl-dev libnghttp2-dev pkg-config curl wrk openssl python3 python3-pip)
# SLUICE_TESTS=1 (scripts/test.sh): prometheus (promtool and a server) and chromium, for the
# admin listener's metrics and stats page tests, nginx and nghttp2-server (nghttpd), the
# HTTP/1.1 and h2c origins of the allocation check (scripts/alloc-check.sh), and
# libseccomp-dev, for the seccomp loader the seccomp profile tests build; the demo does not
# need them.
if [ "${SLUICE_TESTS:-0}" = 1 ]; then
    packages+=(prometheus chromium nginx libseccomp-dev nghttp2-client nghttp2-server)
fi
if [ "${SLUICE_PERF:-0}" = 1 ]; then
    packages+=(haproxy nginx wrk iperf3 nghttp2-client nghttp2-server linux-perf valgrind)
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "setup: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! python3 -c 'import pytest, kubernetes_validate, h2, grpc' 2>/dev/null; then
    echo "setup: installing pytest, kubernetes-validate, h2 and grpcio"
    python3 -m pip install -q -r "$(dirname "$0")/../Tests/Integration/requirements.txt" \
        || python3 -m pip install -q --break-system-packages -r "$(dirname "$0")/../Tests/Integration/requirements.txt"
fi

command -v swift >/dev/null || { echo "setup: swift (6.1 or later) must be on PATH" >&2; exit 1; }

#!/usr/bin/env bash
# Records the system calls a Sluice binary makes while the loopback integration tests drive
# it, on each I/O backend, and prints their names (one a line, sorted) on stdout.
#
#   deploy/seccomp/trace.sh BINARY [TEST_FILE...]   (from the repository root; needs strace)
#
# Every `sluice run` / `sluice kube` the tests start runs as
#   strace -D -f -qq -c -o FILE BINARY ARGS...
# (-D keeps the binary the tests' direct child, so their signals reach it). The per-process
# summaries are kept in $TRACE_DIR (default: a temporary directory). Test failures under the
# tracer's slowdown do not matter here: only the calls made count.
set -euo pipefail
bin=$(realpath "${1:?usage: trace.sh BINARY [TEST_FILE...]}")
shift
cd "$(dirname "$0")/../.."
tests=("$@")
if [ "${#tests[@]}" -eq 0 ]; then
    # every file that starts the binary (not the offline ones, nor the seccomp tests)
    for f in Tests/Integration/test_*.py; do
        case $f in */test_seccomp.py | */test_deploy_manifests.py | */test_fake_kube.py) ;;
            *) tests+=("$f") ;;
        esac
    done
fi
dir=${TRACE_DIR:-$(mktemp -d)}
mkdir -p "$dir"
wrapper="$dir/sluice"
cat >"$wrapper" <<WRAP
#!/bin/sh
exec strace -D -f -qq -c -o "$dir/\${SLUICE_IO_BACKEND}.\$\$" "$bin" "\$@"
WRAP
chmod +x "$wrapper"
for backend in epoll io_uring; do
    echo "trace: $backend: ${tests[*]}" >&2
    SLUICE_IO_BACKEND=$backend SLUICE_BIN="$wrapper" python3 -m pytest -q -p no:cacheprovider \
        "${tests[@]}" >"$dir/pytest-$backend.log" 2>&1 || true
    tail -1 "$dir/pytest-$backend.log" >&2
done
# A summary's rows: "% time seconds usecs/call calls [errors] syscall"; the name is last.
cat "$dir"/epoll.* "$dir"/io_uring.* 2>/dev/null \
    | awk '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" { print $NF }' | sort -u

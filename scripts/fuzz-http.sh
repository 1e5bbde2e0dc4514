#!/usr/bin/env bash
# Builds the HTTP/1.1 parser fuzz target with libFuzzer and AddressSanitizer and runs it.
#   FUZZ_SECONDS  how long to run (default 60)
# The corpus grows in .build-fuzz/corpus-http; crashes are written to .build-fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."

out=.build-fuzz
mkdir -p "$out/corpus-http"
seeds="$out/corpus-http"
# A few seeds so the run starts from valid heads and bodies (the first byte picks the cut).
printf '\007GET / HTTP/1.1\r\nHost: a\r\n\r\n' >"$seeds/seed-get"
printf '\003POST http://b/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: x\r\n\r\n' >"$seeds/seed-post"
printf '\005HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n' >"$seeds/seed-resp"
printf '\0025;a="b"\r\nhello\r\n0\r\nX: y\r\n\r\n' >"$seeds/seed-chunked"

swiftc -parse-as-library -O -g -sanitize=fuzzer,address -module-name HTTPFuzz \
    Sources/SluiceWire/*.swift Fuzz/HTTPFuzz.swift -o "$out/http-fuzz" 2> >(grep -v "Cannot export local symbol" >&2)

"$out/http-fuzz" -max_total_time="${FUZZ_SECONDS:-60}" -max_len=8192 -artifact_prefix="$out/" "$seeds"

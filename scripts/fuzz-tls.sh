#!/usr/bin/env bash
# Builds the ClientHello and PROXY protocol fuzz target with libFuzzer and AddressSanitizer
# and runs it.
#   FUZZ_SECONDS  how long to run (default 60)
# The corpus grows in .build-fuzz/corpus-tls; crashes are written to .build-fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."

out=.build-fuzz
mkdir -p "$out/corpus-tls"
seeds="$out/corpus-tls"
# Seeds so the run starts from valid input (the first byte picks the cut and the size limit):
# a ClientHello with SNI and ALPN in one record and in two, and PROXY headers of each kind.
hello='0100005103030000000000000000000000000000000000000000000000000000000000000000000002130101'
hello+='00002600000010000e00000b6578616d706c652e636f6d0010000e000c02683208687474702f312e31'
printf '\x07' >"$seeds/seed-hello"
echo "1603010055$hello" | xxd -r -p >>"$seeds/seed-hello"
printf '\x45' >"$seeds/seed-hello-split"
{ echo "160303000a${hello:0:20}"; echo "160303004b${hello:20}"; } | xxd -r -p >>"$seeds/seed-hello-split"
printf '\003PROXY TCP4 192.0.2.1 10.0.0.5 56324 443\r\n' >"$seeds/seed-v1"
printf '\005PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 1 65535\r\nGET' >"$seeds/seed-v1-6"
printf '\002PROXY UNKNOWN\r\n' >"$seeds/seed-v1-unknown"
printf '\001\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0f\xc0\x00\x02\x01\x0a\x00\x00\x05\x12\x34\x01\xbb\x04\x00\x00' \
    >"$seeds/seed-v2"
printf '\001\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00' >"$seeds/seed-v2-local"

swiftc -parse-as-library -O -g -sanitize=fuzzer,address -module-name TLSFuzz \
    Sources/SluiceWire/*.swift Fuzz/TLSFuzz.swift -o "$out/tls-fuzz" 2> >(grep -v "Cannot export local symbol" >&2)

"$out/tls-fuzz" -max_total_time="${FUZZ_SECONDS:-60}" -max_len=4096 -artifact_prefix="$out/" "$seeds"

#!/usr/bin/env bash
# Speed figures for the issue notes (not a test: numbers depend on the machine).
#  1. warm resolve+unpack+build of each profile (cache filled by a first run)
#  2. time-to-ready under TCG for edge-minimal and vm-base on x86_64 and aarch64
#  3. ext4 writer vs dd of the same byte count
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
ING=target/release/ingot
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
for p in edge-minimal vm-base; do
  for hw in qemu-x86_64 qemu-aarch64; do
    $ING build -q profiles/$p.toml --hardware hardware/$hw.toml --out "$OUT" >/dev/null
    s=$(date +%s.%N)
    /usr/bin/time -f "%M" -o "$OUT/mem" $ING build -q profiles/$p.toml --hardware hardware/$hw.toml --out "$OUT" >/dev/null
    e=$(date +%s.%N)
    d="$OUT/$p-1.0.0-${hw#qemu-}"
    data=$(( $(stat -c %b "$d/disk.raw") * 512 ))
    echo "build $p $hw: warm $(echo "$e - $s" | bc) s, peak RSS $(cat "$OUT/mem") KiB, disk.raw data $((data >> 20)) MiB"
    if [ -f "$d/disk.raw.zst" ]; then echo "  disk.raw.zst $(( $(stat -c %s "$d/disk.raw.zst") >> 20 )) MiB"; fi
    s=$(date +%s.%N); dd if=/dev/zero of="$OUT/dd.bin" bs=1M count=$((data >> 20)) conv=fsync status=none; e=$(date +%s.%N)
    echo "  dd of the same byte count: $(echo "$e - $s" | bc) s"
    rm -f "$OUT/dd.bin"
    $ING boot-test "$d" --boots 1 --timeout 300 --json "$OUT/r.json" >/dev/null 2>&1 || true
    python3 -c "import json;r=json.load(open('$OUT/r.json'));b=r['images'][0]['boots'][0];print('  time-to-ready', round(b['seconds'],1), 's', 'ok' if b['ok'] else b['failure'])"
  done
done

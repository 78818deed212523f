#!/usr/bin/env bash
# Speed figures for the issue notes (a benchmark, not a test: numbers depend on the machine).
#   cargo bench --bench pipeline   warm resolve+unpack, ext4 writer vs dd vs mke2fs -d
#   benches/run.sh [PROFILE...]    this script: warm build time, peak RSS, sizes and
#                                  time-to-ready under TCG for the shipped images (all by
#                                  default); BOOTS=N boots each N times (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
ING=target/release/ingot
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
BOOTS=${BOOTS:-3}
PROFILES=("$@")
[ ${#PROFILES[@]} -gt 0 ] || PROFILES=(edge-minimal vm-base)
for p in "${PROFILES[@]}"; do
  for hw in qemu-x86_64 qemu-aarch64; do
    $ING build -q "profiles/$p.toml" --hardware "hardware/$hw.toml" --out "$OUT" >/dev/null
    s=$(date +%s.%N)
    /usr/bin/time -f "%M" -o "$OUT/mem" $ING build -q "profiles/$p.toml" --hardware "hardware/$hw.toml" --out "$OUT" >/dev/null
    e=$(date +%s.%N)
    d="$OUT/$p-1.0.0-${hw#qemu-}"
    data=$(( $(stat -c %b "$d/disk.raw") * 512 ))
    printf '%s %s: warm build %.1f s, peak RSS %d MiB, disk.raw %d MiB of data' \
      "$p" "$hw" "$(echo "$e - $s" | bc)" $(( $(cat "$OUT/mem") >> 10 )) $((data >> 20))
    if [ -f "$d/disk.raw.zst" ]; then printf ', disk.raw.zst %.1f MiB' "$(echo "$(stat -c %s "$d/disk.raw.zst") / 1048576" | bc -l)"; fi
    echo
    $ING boot-test -q "$d" --boots "$BOOTS" --timeout 300 --json "$OUT/r.json" >/dev/null 2>&1 || true
    python3 - "$OUT/r.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
boots = r["images"][0]["boots"]
secs = sorted(b["seconds"] for b in boots)
bad = [b["failure"] for b in boots if not b["ok"]]
print("  time-to-ready (%d boots): min %.1f s, median %.1f s, max %.1f s%s" % (
    len(secs), secs[0], secs[len(secs) // 2], secs[-1], ("; FAILED: %s" % bad) if bad else ""))
# The guest's uptime on the ready line starts when the kernel does: the rest is firmware,
# boot loader and the EFI stub.
ok = [b for b in boots if b["ok"]]
if ok:
    fw = sorted(b["seconds"] - float(b["ready"]["uptime"]) for b in ok)
    kern = sorted(float(b["ready"]["uptime"]) for b in ok)
    print("  medians: firmware + loader %.1f s, kernel + userspace %.1f s" % (
        fw[len(fw) // 2], kern[len(kern) // 2]))
PY
  done
done

#!/usr/bin/env bash
# Time to ready under this machine's QEMU (TCG here), median of BOOTS boots, for images built
# by one or more ingot binaries (to compare a change with the code before it), with
# edge-minimal booted in the same run as the reference: the ratio is what carries over to
# another machine.
#   benches/boot.sh [PROFILE...]        profiles/NAME.toml; default vm-base vm-cloud
#   INGOTS="old=/path/ingot new=/path/ingot" benches/boot.sh   (default: this tree's debug build)
#     each binary builds the images; the last one boot-tests them all (the tester only gains
#     features, such as the NoCloud seed a cloud-init image needs to start as on a platform)
#   BOOTS=3 ARCHES="x86_64 aarch64"   (a hybrid x86_64 image alternates UEFI and SeaBIOS boots:
#   the median to ready is over its UEFI boots, with the SeaBIOS median after it)
set -euo pipefail
cd "$(dirname "$0")/.."
BOOTS=${BOOTS:-3}
ARCHES=${ARCHES:-"x86_64 aarch64"}
if [ -z "${INGOTS:-}" ]; then
  cargo build -q
  INGOTS="this=$PWD/target/debug/ingot"
fi
PROFILES=("$@")
[ ${#PROFILES[@]} -gt 0 ] || PROFILES=(vm-base vm-cloud)
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

median() {
  python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
boots = r["images"][0]["boots"]
bad = [b["failure"] for b in boots if not b["ok"]]
def med(v):
    v = sorted(v)
    return v[len(v) // 2]
# A hybrid disk boots under UEFI and SeaBIOS in turn: the headline is UEFI's, BIOS's follows.
uefi = [b for b in boots if b.get("firmware", "uefi") == "uefi"]
bios = [b for b in boots if b.get("firmware") == "bios"]
login = [b["login"]["seconds"] for b in uefi if b.get("login")]
extra = ", SSH login median %.1f s" % med(login) if login else ""
if bios:
    extra += "; under SeaBIOS median %.1f s over %d" % (med([b["seconds"] for b in bios]), len(bios))
print("%.1f|%d|%s%s" % (med([b["seconds"] for b in uefi]), len(uefi), extra, ("; FAILED: %s" % bad) if bad else ""))
PY
}

TESTER=${INGOTS##*=}
boot() { # binary profile arch -> "median|boots|extra"
  local bin=$1 p=$2 arch=$3 d
  rm -rf "$OUT/o"
  d=$("$bin" build -q "profiles/$p.toml" --hardware "hardware/qemu-$arch.toml" --out "$OUT/o" | tail -1)
  "$TESTER" boot-test -q "$d" --boots "$BOOTS" --timeout 600 --json "$OUT/r.json" >/dev/null 2>&1 || true
  median "$OUT/r.json"
}

for arch in $ARCHES; do
  first=${INGOTS%% *}
  ref=$(boot "${first#*=}" edge-minimal "$arch")
  ref=${ref%%|*}
  echo "$arch: edge-minimal (reference, same run): $ref s to ready (median of $BOOTS)"
  for p in "${PROFILES[@]}"; do
    for nb in $INGOTS; do
      r=$(boot "${nb#*=}" "$p" "$arch")
      IFS='|' read -r m n extra <<<"$r"
      printf '%s: %s built by %s: median %s s to ready (%s boots%s), ratio to edge-minimal %.1f\n' \
        "$arch" "$p" "${nb%%=*}" "$m" "$n" "$extra" "$(echo "$m / $ref" | bc -l)"
    done
  done
done

#!/usr/bin/env bash
# Audit speed for the issue notes (a benchmark, not a test): `ingot audit` of one built image
# with a warm cache, against apt asked the same question in the same run: a throwaway apt root
# whose dpkg status holds the image's package set (from its packages.lock) and whose sources are
# the image's suites plus the security suite, timed for `apt-get update` (warm lists) plus
# `apt list --upgradable`. Also prints whether the two name the same packages.
#   benches/audit.sh [PROFILE|FILE] [HARDWARE]   (default: vm-base, qemu-x86_64; RUNS=N, default 5)
# The mirrors are the host's own apt sources; no host name is written here.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${1:-vm-base}
HW=${2:-qemu-x86_64}
RUNS=${RUNS:-5}
cargo build --release -q
ING=$PWD/target/release/ingot
WORK=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT

P=$PROFILE; [ -f "$P" ] || P=profiles/$PROFILE.toml
"$ING" build -q "$P" --hardware "hardware/$HW.toml" --out "$WORK/out" >/dev/null
DIR=$(echo "$WORK"/out/*)
"$ING" audit "$DIR" --json >"$WORK/audit.json"   # warm: indexes and the pending changelogs

# --- the same question to apt ----------------------------------------------------------------
ROOT=$WORK/apt
mkdir -p "$ROOT/etc/apt/sources.list.d" "$ROOT/etc/apt/apt.conf.d" "$ROOT/etc/apt/preferences.d" \
  "$ROOT/var/lib/dpkg" "$ROOT/var/lib/apt/lists/partial" "$ROOT/var/cache/apt/archives/partial"
# Suites, mirrors and the Debian architecture as the audit read them.
python3 - "$WORK/audit.json" "$ROOT/etc/apt/sources.list" "$DIR/packages.lock" "$ROOT/var/lib/dpkg/status" <<'EOF'
import json, sys, tomllib
a = json.load(open(sys.argv[1]))["audit"]
with open(sys.argv[2], "w") as f:
    for s in a["suites"]:
        f.write(f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {s['mirror']} {s['suite']} main\n")
lock = tomllib.load(open(sys.argv[3], "rb"))
with open(sys.argv[4], "w") as f:
    for p in lock["target"][0]["package"]:
        if p.get("role") != "image":
            continue
        f.write(f"Package: {p['name']}\nStatus: install ok installed\nVersion: {p['version']}\n"
                f"Architecture: {p['arch']}\nMaintainer: x\nDescription: x\n\n")
EOF
ARCH=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["audit"]["arch"])' "$WORK/audit.json")
APT=(-o "Dir=$ROOT" -o "Dir::State::status=$ROOT/var/lib/dpkg/status" -o "APT::Architecture=$ARCH"
     -o "APT::Architectures=$ARCH" -o Debug::NoLocking=1 -o APT::Sandbox::User=root -qq)
apt-get "${APT[@]}" update >/dev/null    # warm lists, as the audit's cache is warm

median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
now() { date +%s.%N; }
ours=() theirs=()
for _ in $(seq "$RUNS"); do
  t=$(now); "$ING" audit "$DIR" >/dev/null; ours+=("$(echo "$(now) - $t" | bc)")
  t=$(now); apt-get "${APT[@]}" update >/dev/null; apt "${APT[@]}" list --upgradable 2>/dev/null >"$WORK/apt.txt"
  theirs+=("$(echo "$(now) - $t" | bc)")
done
mo=$(printf '%s\n' "${ours[@]}" | median)
mt=$(printf '%s\n' "${theirs[@]}" | median)
printf 'ingot audit %s (%s packages):  median %.2f s over %d runs\n' "$(basename "$DIR")" \
  "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["audit"]["packages"])' "$WORK/audit.json")" "$mo" "$RUNS"
printf 'apt update + list --upgradable: median %.2f s (reference, same run)\n' "$mt"
printf 'ratio ingot/apt: %.2f\n' "$(echo "$mo / $mt" | bc -l)"
ours_names=$(python3 -c 'import json,sys; print(" ".join(sorted(f["package"] for f in json.load(open(sys.argv[1]))["audit"]["findings"] if f["role"]=="image")))' "$WORK/audit.json")
# The status file carries no dependency fields, so apt also lists same-version packages whose
# records differ from the archive's ("upgradable from" the version it offers): drop those.
apt_names=$(sed -E 's/\]$//' "$WORK/apt.txt" | awk '$NF != $2 {split($1, a, "/"); print a[1]}' | sort | tr '\n' ' ' | sed 's/ $//')
if [ "$ours_names" = "$apt_names" ]; then
  echo "same packages as apt: ${ours_names:-none}"
else
  echo "DIFFERENT from apt:"; echo "  ingot: $ours_names"; echo "  apt:   $apt_names"
fi

#!/usr/bin/env bash
# Registry speed for the issue notes (a benchmark, not a test): `ingot push`/`ingot pull` of one
# image directory against `oras push`/`oras pull` of the same files, each on its own fresh
# Debian docker-registry on loopback, measured in the same run; then a second push of the
# unchanged image (which must upload no blob).
#   benches/registry.sh [PROFILE] [HARDWARE]    (default: vm-base, qemu-x86_64)
#   RUNS=N: runs (default 4; even, so that each tool goes first as often)
# oras comes from Debian 13's package (its binary runs on Debian 12): fetched from the host's
# own mirror, its InRelease checked with gpgv against Debian's archive keyring, the Packages
# index and the .deb checked by SHA-256, unpacked under the cache. No host name is written here.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${1:-vm-base}
HW=${2:-qemu-x86_64}
RUNS=${RUNS:-4}
cargo build --release -q
ING=$PWD/target/release/ingot
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

# --- oras from Debian 13 -------------------------------------------------------------------
CACHE=${INGOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ingot}
ORAS=$CACHE/tools/oras/usr/bin/oras
if [ ! -x "$ORAS" ]; then
  mirror=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
    | grep -v -- '-security' | sed -E 's/^URIs:[[:space:]]*//; s/^deb (\[[^]]*\] )?//' \
    | awk '{print $1}' | grep -E '/debian/?$' | head -n1 || true)
  mirror=${mirror%/}
  arch=$(dpkg --print-architecture)
  curl -fsS "$mirror/dists/trixie/InRelease" -o "$WORK/InRelease"
  gpgv --keyring /usr/share/keyrings/debian-archive-keyring.gpg "$WORK/InRelease" 2>/dev/null \
    || { echo "trixie InRelease does not verify" >&2; exit 1; }
  want=$(awk -v f="main/binary-$arch/Packages.xz" '/^SHA256:/{s=1;next} /^[A-Za-z]/{s=0} s&&$3==f{print $1}' "$WORK/InRelease")
  curl -fsS "$mirror/dists/trixie/main/binary-$arch/Packages.xz" -o "$WORK/Packages.xz"
  echo "$want  $WORK/Packages.xz" | sha256sum -c --quiet
  xz -d "$WORK/Packages.xz"
  read -r file sum < <(awk '/^Package: oras$/{p=1} p&&/^Filename:/{f=$2} p&&/^SHA256:/{s=$2} p&&/^$/{print f, s; exit}' "$WORK/Packages")
  curl -fsS "$mirror/$file" -o "$WORK/oras.deb"
  echo "$sum  $WORK/oras.deb" | sha256sum -c --quiet
  mkdir -p "$CACHE/tools/oras"
  dpkg-deb -x "$WORK/oras.deb" "$CACHE/tools/oras"
fi
"$ORAS" version | head -1

# --- the image ----------------------------------------------------------------------------
$ING keygen --out "$WORK/k" >/dev/null
$ING build -q "profiles/$PROFILE.toml" --hardware "hardware/$HW.toml" --out "$WORK/out" --key "$WORK/k.key" >/dev/null
DIR=$(ls -d "$WORK/out/$PROFILE"-*)
VERSION=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$DIR/manifest.json")
# The same files ingot pushes: its layers (disk.raw travels as disk.raw.zst; when the build
# made none, ingot derives it at the build's level 9 and so does this script for oras).
if [ ! -f "$DIR/disk.raw.zst" ]; then
  zstd -q -9 -T2 "$DIR/disk.raw" -o "$WORK/disk.raw.zst"
  ln -s "$WORK/disk.raw.zst" "$DIR/.bench-disk.raw.zst"
fi
FILES=()
for f in manifest.json manifest.json.sig disk.raw.zst disk.qcow2 disk.vmdk disk.vhdx packages.lock sbom.spdx.json sbom.cdx.json provenance.intoto.jsonl update.bundle; do
  if [ -f "$DIR/$f" ]; then FILES+=("$f"); fi
done
if [ -L "$DIR/.bench-disk.raw.zst" ]; then FILES+=(.bench-disk.raw.zst); fi
bytes=$(cd "$DIR" && du -cbL "${FILES[@]}" | tail -1 | cut -f1)
echo "image $(basename "$DIR"): ${#FILES[@]} files, $((bytes >> 20)) MiB pushed"

# Not called through $(...): that subshell's PIDS would be lost, and its registry never killed.
registry() { # start a fresh registry; sets REG to its host:port
  local d port
  d=$(mktemp -d -p "$WORK")
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:%s\n' "$d/s" "$port" > "$d/c.yml"
  docker-registry serve "$d/c.yml" >/dev/null 2>&1 &
  PIDS+=($!); RUN_PIDS+=($!); RUN_DIRS+=("$d")
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
  REG="127.0.0.1:$port"
}
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

ip=(); op=(); il=(); ol=(); ow=(); second=""
# Each timed step starts after `sync`, so the previous step's writes (the registries and the
# pulls write hundreds of MiB) are not flushed on its clock; the two tools take turns going
# first, so neither always runs just after the other.
# Each also adds the CPU time its command took (user + system, the whole process tree; the
# registry's own is not counted) to $WORK/cpu-NAME: a tool that does more work shows it there
# whatever the wall time, and so does a step slowed by the system (fresh page-cache pages cost
# system time on some virtual machines). `times` is written to a file, not piped: a pipe would
# run it in a subshell of its own, which has no children yet.
cpu_of() { tail -n1 "$1" | sed -E 's/([0-9]+)m([0-9.]+)s/(\1*60+\2)/g; s/ /+/' | bc; }
timed() {
  sync
  times > "$WORK/times0"
  local s e; s=$(now); "$@" >/dev/null; e=$(now)
  times > "$WORK/times1"
  echo "$(cpu_of "$WORK/times1") - $(cpu_of "$WORK/times0")" | bc >> "$WORK/cpu-$1"
  echo "$e - $s" | bc
}
ingot_push() { $ING push -q "$DIR" "$A/bench/img:$VERSION" --key "$WORK/k.pub"; }
oras_push() { (cd "$DIR" && "$ORAS" push --plain-http "$B/bench/img:$VERSION" \
    --artifact-type application/vnd.ingot.image.v1 "${FILES[@]}"); }
ingot_pull() { $ING pull -q "$A/bench/img:$VERSION" "$WORK/pull-ingot" --key "$WORK/k.pub"; }
oras_pull() { "$ORAS" pull --plain-http "$B/bench/img:$VERSION" -o "$WORK/pull-oras"; }
# The same job as ingot pull, done with oras and standard tools: pull, rebuild disk.raw from
# disk.raw.zst (sparse), check the signature and every digest manifest.json lists (Python's
# hashlib, which uses the CPU's SHA instructions as Ingot does). A reference, not the target.
oras_whole() {
  oras_pull
  (cd "$WORK/pull-oras" && z=disk.raw.zst && if [ -e .bench-disk.raw.zst ]; then z=.bench-disk.raw.zst; fi \
    && zstd -q -d --sparse "$z" -o disk.raw && rm -f .bench-disk.raw.zst \
    && minisign -V -q -p "$WORK/k.pub" -m manifest.json -x manifest.json.sig \
    && python3 -c 'import hashlib, json, sys
for name, a in json.load(open("manifest.json"))["artifacts"].items():
    with open(name, "rb") as f:
        if hashlib.file_digest(f, "sha256").hexdigest() != a["sha256"]:
            sys.exit(name + ": digest differs")')
}
# Each run ends by stopping its two registries and deleting their storage and the pulls:
# left to pile up (over 2 GB a run), they slowed every later step, and the second pull of
# a run by up to a second whichever tool made it.
RUN_PIDS=(); RUN_DIRS=()
end_run() {
  kill "${RUN_PIDS[@]}" 2>/dev/null || true
  wait "${RUN_PIDS[@]}" 2>/dev/null || true
  rm -rf "${RUN_DIRS[@]}" "$WORK/pull-ingot" "$WORK/pull-oras"
  RUN_PIDS=(); RUN_DIRS=()
}
for run in $(seq 1 "$RUNS"); do
  registry; A=$REG; registry; B=$REG
  if [ $((run % 2)) -eq 1 ]; then
    ip+=("$(timed ingot_push)"); op+=("$(timed oras_push)")
    il+=("$(timed ingot_pull)"); ol+=("$(timed oras_pull)")
  else
    op+=("$(timed oras_push)"); ip+=("$(timed ingot_push)")
    ol+=("$(timed oras_pull)"); il+=("$(timed ingot_pull)")
  fi
  rm -rf "$WORK/pull-oras"; ow+=("$(timed oras_whole)")
  [ -n "$second" ] || second=$($ING push "$DIR" "$A/bench/img:$VERSION" --key "$WORK/k.pub" 2>&1 | grep 'blob(s) uploaded')
  end_run
done
mi=$(printf '%s\n' "${ip[@]}" | median); mo=$(printf '%s\n' "${op[@]}" | median)
li=$(printf '%s\n' "${il[@]}" | median); lo=$(printf '%s\n' "${ol[@]}" | median)
printf 'push (median of %d): ingot %.2f s, oras %.2f s, ratio ingot/oras %.2f  [ingot: %s | oras: %s]\n' \
  "$RUNS" "$mi" "$mo" "$(echo "$mi / $mo" | bc -l)" "${ip[*]}" "${op[*]}"
printf 'pull (median of %d): ingot %.2f s (verifies, rebuilds disk.raw), oras %.2f s, ratio %.2f  [ingot: %s | oras: %s]\n' \
  "$RUNS" "$li" "$lo" "$(echo "$li / $lo" | bc -l)" "${il[*]}" "${ol[*]}"
# Each run's two steps ran back to back, so the ratio within a run is steadier than the ratio
# of medians when the host's speed drifts between runs.
pairs() { local -n a=$1 b=$2; for i in "${!a[@]}"; do echo "${a[$i]} / ${b[$i]}" | bc -l; done | median; }
printf 'median of the per-run ratios ingot/oras: push %.2f, pull %.2f\n' "$(pairs ip op)" "$(pairs il ol)"
wo=$(printf '%s\n' "${ow[@]}" | median)
printf 'same job with oras (pull, zstd -d, minisign -V, every digest checked): %.2f s, ratio ingot pull/that %.2f  [%s]\n' \
  "$wo" "$(echo "$li / $wo" | bc -l)" "${ow[*]}"
cpu() { median < "$WORK/cpu-$1"; }
printf 'CPU time (user + system, median): push ingot %.2f s, oras %.2f s; pull ingot %.2f s, oras %.2f s; same job with oras %.2f s\n' \
  "$(cpu ingot_push)" "$(cpu oras_push)" "$(cpu ingot_pull)" "$(cpu oras_pull)" "$(cpu oras_whole)"
echo "second push of the unchanged image: $second"

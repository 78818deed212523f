#!/bin/busybox sh
# shellcheck shell=sh
# Ingot initramfs: load the hardware profile's modules, find the root partition by the
# PARTUUID on the kernel command line (reading GPT entries directly: no udev here), mount it and
# hand over to the image's init.
# The applets this script uses are linked at build time (INITRAMFS_APPLETS in boot/mod.rs):
# `busybox --install` here cost ~80 ms under TCG and left hundreds of links for switch_root to
# delete.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
read -r started _ < /proc/uptime

say() { echo "ingot-initramfs: $*" > /dev/console; }

root="" ; data="" ; init=/sbin/init ; wait=30 ; rootflags=rw ; slot="" ; watchdog=0
read -r cmdline < /proc/cmdline
for arg in $cmdline; do
  case "$arg" in
    root=PARTUUID=*) root="${arg#root=PARTUUID=}" ;;
    ingot.data=*) data="${arg#ingot.data=}" ;;
    ingot.slot=*) slot="${arg#ingot.slot=}" ;;
    ingot.watchdog=*) watchdog="${arg#ingot.watchdog=}" ;;
    init=*) init="${arg#init=}" ;;
    rootwait=*) wait="${arg#rootwait=}" ;;
    ro) rootflags=ro ;;
  esac
done
case "$watchdog" in ''|*[!0-9]*) watchdog=0 ;; esac

# A boot that cannot go on: a plain image powers off (the boot test sees it at once); an A/B
# slot reboots, so its boot counter runs down and the firmware falls back to the good slot.
fatal() {
  say "FATAL: $*"
  sleep 2
  if [ -n "$slot" ]; then reboot -f; else poweroff -f; fi
}

while read -r m; do
  [ -n "$m" ] || continue
  case "$m" in
    */softdog.ko*) [ "$watchdog" -gt 0 ] && insmod "$m" soft_margin="$watchdog" 2>/dev/null ;;
    *) insmod "$m" 2>/dev/null ;;
  esac
done < /etc/modules.order
# An A/B boot is watched from here on: opening the watchdog starts it, and closing it without
# the magic character leaves it running, so a boot that hangs anywhere before the updater's
# watchdog daemon takes over (in this script, the kernel or init) resets the machine.
if [ "$watchdog" -gt 0 ]; then
  if [ -c /dev/watchdog ] && echo armed > /dev/watchdog; then
    say "watchdog armed: ${watchdog}s"
  else
    say "no watchdog device: a hung boot will not reset by itself"
  fi
fi
[ -n "$root" ] || fatal "no root=PARTUUID=... on the kernel command line"

# GPT stores a GUID's first three fields little-endian.
gpt_bytes() {
  echo "$1" | tr 'A-F' 'a-f' | tr -d '-' \
    | sed 's/^\(..\)\(..\)\(..\)\(..\)\(..\)\(..\)\(..\)\(..\)/\4\3\2\1\6\5\8\7/'
}
want=$(gpt_bytes "$root")

# Shell built-ins wherever they do: every fork costs ~10 ms under TCG. A partition's sysfs
# directory sits inside its disk's, whose uevent names the disk's device node.
find_root() {
  for p in /sys/class/block/*; do
    [ -f "$p/partition" ] || continue
    read -r n < "$p/partition"
    disk=""
    while read -r l; do
      case "$l" in DEVNAME=*) disk="${l#DEVNAME=}" ;; esac
    done < "$p/../uevent"
    [ -n "$disk" ] || continue
    got=$(dd if="/dev/$disk" bs=16 skip=$((64 + (n - 1) * 8 + 1)) count=1 2>/dev/null | hexdump -v -e '16/1 "%02x"')
    if [ "$got" = "$want" ]; then echo "/dev/${p##*/}"; return 0; fi
  done
  return 1
}

i=0
dev=""
while [ $i -lt $((wait * 10)) ]; do
  dev=$(find_root) && break
  usleep 100000
  i=$((i + 1))
done
if [ -z "$dev" ]; then
  seen=""
  for b in /sys/class/block/*; do seen="$seen ${b##*/}"; done
  say "block devices seen:$seen"
  say "modules loaded: $(cut -d' ' -f1 /proc/modules | tr '\n' ' ')"
  fatal "root partition PARTUUID=$root not found after ${wait}s"
fi
# A read-only root (an A/B slot) is never written, not even by the kernel's own mount work:
# its bytes must stay those of the image it was installed from.
[ "$rootflags" = ro ] && blockdev --setro "$dev"
mount -t ext4 -o "$rootflags" "$dev" /newroot || fatal "cannot mount $dev (PARTUUID=$root) as ext4"
# switch_root fails on a missing init (and the kernel then panics): say which.
[ -x "/newroot$init" ] || [ -L "/newroot$init" ] || say "the root has no executable $init: this boot will fail"
# An A/B root is read-only: the data partition (which survives updates) holds the state, with
# /etc and /var as overlays whose upper layers live there.
if [ -n "$data" ]; then
  want=$(gpt_bytes "$data")
  if ddev=$(find_root) && mount -t ext4 -o rw,noatime "$ddev" /newroot/data; then
    for d in etc var; do
      o=/newroot/data/ingot/overlay/$d
      mkdir -p "$o/upper" "$o/work"
      mount -t overlay overlay -o "lowerdir=/newroot/$d,upperdir=$o/upper,workdir=$o/work" "/newroot/$d" \
        || say "cannot overlay /$d: it stays read-only"
    done
  else
    say "data partition PARTUUID=$data not mounted: /etc and /var stay read-only"
  fi
fi
# /tmp on a read-only root would be read-only too: systemd's sandboxing (PrivateDevices= makes
# its private /dev in a directory under /tmp) and every agent need it writable.
if [ "$rootflags" = ro ]; then
  mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /newroot/tmp || say "cannot mount a tmpfs on /tmp: it stays read-only"
fi
# kmod needs modules.dep.bin, which depmod makes at first boot: on a read-only root it writes it
# into a tmpfs overlay of the module tree (made again at every boot, so never stale).
if [ "$rootflags" = ro ] && [ -d /newroot/usr/lib/modules ]; then
  m=/newroot/run/ingot-modules
  if ! { mount -t tmpfs -o mode=0755 tmpfs /newroot/run && mkdir -p "$m/upper" "$m/work" \
    && mount -t overlay overlay -o "lowerdir=/newroot/usr/lib/modules,upperdir=$m/upper,workdir=$m/work" /newroot/usr/lib/modules; }; then
    say "cannot overlay /usr/lib/modules: modules.dep.bin cannot be made"
  fi
fi
# One line for the boot timeline (boot-test reads it): when this script started and ended.
read -r ended _ < /proc/uptime
say "starting $init initramfs-uptime=$started..$ended"
mount --move /dev /newroot/dev 2>/dev/null || umount /dev
umount /proc /sys
exec switch_root /newroot "$init"

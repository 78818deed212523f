#!/bin/sh
# Makes a bootable disk the way another tool would, with Debian's own tools and none of
# Ingot's writers: a GPT (sgdisk) holding one FAT partition (mkfs.vfat, mtools) with a Debian
# kernel and an initramfs (cpio) whose /init prints a banner and powers off (after an
# INGOT-READY line, which must not count for a foreign disk), booted by
# systemd-boot (UEFI) and, on a hybrid disk, also by SYSLINUX from its GPT MBR (BIOS).
#   make-disk.sh OUT ARCH KERNEL.deb BUSYBOX.deb SYSTEMD-BOOT.deb MODE
# ARCH is x86_64 or aarch64. MODE is `ok`, `panic` (no initramfs and a root that does not
# exist: the kernel panics), `empty` (an ESP with nothing to boot) or `hybrid` (x86_64: the
# `ok` disk that also boots under a BIOS, with Debian's syslinux installed by its own rootless
# installer and the ESP marked legacy-BIOS-bootable).
set -eu
out=$1 arch=$2 kdeb=$3 bdeb=$4 sdeb=$5 mode=$6
case "$arch" in
  x86_64) efi=x64 EFI=X64 console=ttyS0 ;;
  aarch64) efi=aa64 EFI=AA64 console=ttyAMA0 ;;
  *) echo "unknown arch $arch" >&2; exit 2 ;;
esac
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
dpkg-deb -x "$kdeb" "$w/k"
dpkg-deb -x "$bdeb" "$w/b"
dpkg-deb -x "$sdeb" "$w/s"
mkdir -p "$w/i/bin" "$w/i/proc"
cp "$w/b/bin/busybox" "$w/i/bin/busybox"
for a in sh mount echo poweroff uname sleep; do ln -s busybox "$w/i/bin/$a"; done
cat > "$w/i/init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc
echo "INGOT-READY image=decoy version=0 machine-id=00000000000000000000000000000000 uptime=1"
sleep 1
echo "FOREIGN-BOOT-OK kernel=$(uname -r)"
sleep 2
poweroff -f
INIT
chmod 0755 "$w/i/init"
(cd "$w/i" && find . | cpio -o -H newc --quiet | gzip -9n) > "$w/initrd"
truncate -s 64M "$w/esp.img"
# The partition starts at sector 2048: a BIOS boot sector finds its files from there.
mkfs.vfat -F 32 -h 2048 -n ESP "$w/esp.img" >/dev/null
if [ "$mode" = hybrid ]; then
  [ "$arch" = x86_64 ] || { echo "hybrid: x86_64 only" >&2; exit 2; }
  syslinux --install "$w/esp.img"
  mcopy -o -i "$w/esp.img" /usr/lib/syslinux/modules/bios/ldlinux.c32 ::/ldlinux.c32
  printf 'SERIAL 0 115200\nPROMPT 0\nTIMEOUT 0\nDEFAULT foreign\nLABEL foreign\n  LINUX /vmlinuz\n  INITRD /initrd\n  APPEND console=%s quiet panic=-1\n' "$console" > "$w/syslinux.cfg"
  mcopy -i "$w/esp.img" "$w/syslinux.cfg" ::/syslinux.cfg
fi
if [ "$mode" != empty ]; then
  mmd -i "$w/esp.img" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries
  mcopy -i "$w/esp.img" "$w/s/usr/lib/systemd/boot/efi/systemd-boot$efi.efi" "::/EFI/BOOT/BOOT$EFI.EFI"
  mcopy -i "$w/esp.img" "$w"/k/boot/vmlinuz-* ::/vmlinuz
  printf 'default foreign.conf\ntimeout 0\n' > "$w/loader.conf"
  mcopy -i "$w/esp.img" "$w/loader.conf" ::/loader/loader.conf
  if [ "$mode" = panic ]; then
    printf 'title foreign\nlinux /vmlinuz\noptions console=%s root=/dev/nonexistent panic=-1\n' "$console" > "$w/entry.conf"
  else
    mcopy -i "$w/esp.img" "$w/initrd" ::/initrd
    printf 'title foreign\nlinux /vmlinuz\ninitrd /initrd\noptions console=%s quiet panic=-1\n' "$console" > "$w/entry.conf"
  fi
  mcopy -i "$w/esp.img" "$w/entry.conf" ::/loader/entries/foreign.conf
fi
rm -f "$out"
truncate -s 80M "$out"
sgdisk -n 1:2048:+64M -t 1:ef00 -c 1:ESP "$out" >/dev/null
if [ "$mode" = hybrid ]; then
  # The ESP marked legacy-BIOS-bootable: SYSLINUX's GPT MBR starts that partition.
  sgdisk -A 1:set:2 "$out" >/dev/null
  dd if=/usr/lib/syslinux/mbr/gptmbr.bin of="$out" bs=440 count=1 conv=notrunc status=none
fi
dd if="$w/esp.img" of="$out" bs=1M seek=1 conv=notrunc status=none

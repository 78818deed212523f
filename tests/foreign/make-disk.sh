#!/bin/sh
# Makes a bootable UEFI disk the way another tool would, with Debian's own tools and none of
# Ingot's writers: a GPT (sgdisk) holding one FAT ESP (mkfs.vfat, mtools) with systemd-boot, a
# Debian kernel and an initramfs (cpio) whose /init prints a banner and powers off.
#   make-disk.sh OUT ARCH KERNEL.deb BUSYBOX.deb SYSTEMD-BOOT.deb MODE
# ARCH is x86_64 or aarch64. MODE is `ok`, `panic` (no initramfs and a root that does not
# exist: the kernel panics) or `empty` (an ESP with nothing to boot).
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
echo "FOREIGN-BOOT-OK kernel=$(uname -r)"
sleep 2
poweroff -f
INIT
chmod 0755 "$w/i/init"
(cd "$w/i" && find . | cpio -o -H newc --quiet | gzip -9n) > "$w/initrd"
truncate -s 64M "$w/esp.img"
mkfs.vfat -F 32 -n ESP "$w/esp.img" >/dev/null
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
dd if="$w/esp.img" of="$out" bs=1M seek=1 conv=notrunc status=none

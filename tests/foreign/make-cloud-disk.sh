#!/bin/sh
# Makes a cloud-init disk the way another tool would, with none of Ingot's code: a Debian
# system from mmdebstrap (Debian's kernel, initramfs-tools' initramfs, systemd, cloud-init,
# OpenSSH), its root filesystem made by mke2fs -d, an ESP made by mkfs.vfat and mtools with
# systemd-boot, both in a GPT made by sgdisk. The SSH host keys the packages made are removed:
# cloud-init makes the instance's own at first boot.
#   make-cloud-disk.sh OUT SOURCES
# SOURCES is a file of apt `deb` lines (the mirrors the test takes from the host).
set -eu
out=$1 sources=$2
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
mkdir "$w/root"
# The hooks run in mmdebstrap's shell, with the root directory as $1.
# shellcheck disable=SC2016
mmdebstrap --quiet --variant=apt --architectures=amd64 \
  --include=linux-image-cloud-amd64,systemd-sysv,udev,e2fsprogs,cloud-init,openssh-server,sudo,ifupdown,isc-dhcp-client,netbase,systemd-boot-efi \
  --customize-hook='echo "LABEL=cloudroot / ext4 defaults 0 1" > "$1/etc/fstab"' \
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
  --customize-hook='echo "uninitialized" > "$1/etc/machine-id"' \
  --customize-hook='printf "locale: C.UTF-8\n" > "$1/etc/cloud/cloud.cfg.d/90-locale.cfg"' \
  bookworm "$w/root" - < "$sources"
cp "$w"/root/boot/vmlinuz-* "$w/vmlinuz"
cp "$w"/root/boot/initrd.img-* "$w/initrd"
truncate -s 96M "$w/esp.img"
mkfs.vfat -F 32 -n ESP "$w/esp.img" >/dev/null
mmd -i "$w/esp.img" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries
mcopy -i "$w/esp.img" "$w/root/usr/lib/systemd/boot/efi/systemd-bootx64.efi" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$w/esp.img" "$w/vmlinuz" ::/vmlinuz
mcopy -i "$w/esp.img" "$w/initrd" ::/initrd
printf 'default cloud.conf\ntimeout 0\n' > "$w/loader.conf"
mcopy -i "$w/esp.img" "$w/loader.conf" ::/loader/loader.conf
printf 'title cloud\nlinux /vmlinuz\ninitrd /initrd\noptions root=LABEL=cloudroot ro console=ttyS0\n' > "$w/entry.conf"
mcopy -i "$w/esp.img" "$w/entry.conf" ::/loader/entries/cloud.conf
rm -f "$out"
truncate -s 1800M "$out"
sgdisk -n 1:2048:+96M -t 1:ef00 -c 1:ESP -n 2:198656:0 -t 2:8304 -c 2:root "$out" >/dev/null
# The root filesystem fills its partition, as an image builder leaves it for cloud-init's
# growpart and resizefs to find nothing to do.
end=$(sgdisk -i 2 "$out" | sed -n 's/^Last sector: \([0-9]*\).*/\1/p')
mke2fs -q -t ext4 -L cloudroot -d "$w/root" "$w/root.img" "$(( (end - 198656 + 1) / 2 ))k" >/dev/null
dd if="$w/esp.img" of="$out" bs=1M seek=1 conv=notrunc status=none
dd if="$w/root.img" of="$out" bs=512 seek=198656 conv=notrunc,sparse status=none

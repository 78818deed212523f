//! Filesystem writers: ext4 for the root filesystem, FAT for the EFI system partition.

pub mod ext4;
pub mod fat;

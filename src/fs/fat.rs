//! FAT writer for the EFI system partition, through the `fatfs` crate.

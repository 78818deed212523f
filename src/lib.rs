//! Ingot bakes golden disk images from Debian packages: rootless, reproducible, signed and
//! boot-tested in QEMU. The modules follow the build from top to bottom:
//! config → packages → tree → assemble (system) and boot (kernel, initramfs, boot loader) →
//! sysprep → fs → disk → trust → qemu, with `build` running the pipeline and `cli` on top.
//! `image_dir` is the typed image directory and `bundle` the update bundle format in it.
//! After the build, reading the image directory only: `boottest`, `ota`, `registry`, `audit`, `report`.

pub mod assemble;
pub mod audit;
pub mod base;
pub mod boot;
pub mod boottest;
pub mod build;
pub mod bundle;
pub mod cli;
pub mod config;
pub mod disk;
pub mod fs;
pub mod fuzzing;
pub mod image_dir;
pub mod interrupt;
pub mod ota;
pub mod packages;
pub mod progress;
pub mod qemu;
pub mod registry;
pub mod report;
pub mod sysprep;
pub mod tree;
pub mod trust;

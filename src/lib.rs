//! Ingot bakes golden disk images from Debian packages: rootless, reproducible, signed and
//! boot-tested in QEMU. The modules follow the build from top to bottom.

pub mod config;
pub mod fs;
pub mod packages;
pub mod tree;

//! Over-the-air updates, after the build: the update bundle format (written by the build,
//! read by `inspect`, `verify` and `sign`), delta bundles against an earlier version and `ota-test`, which proves update, rollback,
//! rejection and power loss in QEMU. The device side is `device/ingot-update`, installed by
//! `assemble::ota`.

pub mod bundle;
pub mod delta;
pub mod harness;

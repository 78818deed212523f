//! Over-the-air updates, after the build: the update bundle format (written by the build,
//! read by `inspect`, `verify` and `sign`) and `ota-test`, which proves update, rollback,
//! rejection and power loss in QEMU. The device side is `device/ingot-update`, installed by
//! `assemble::ota`.

pub mod bundle;
pub mod harness;

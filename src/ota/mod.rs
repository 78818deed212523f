//! Over-the-air updates, after the build: delta bundles against an earlier version and
//! `ota-test`, which proves update, rollback, rejection and power loss in QEMU. The bundle
//! format itself is `crate::bundle` (written by the build, read by `inspect`, `verify` and the
//! image directory's checks). The device side is `device/ingot-update`, installed by
//! `assemble::ota`.

pub mod delta;
pub mod harness;

//! The ground floor: small pieces every stage may use and that use no stage. Image identity
//! (names, derived GUIDs, epoch and date formatting), file helpers (atomic writes, one hashing
//! reader, scratch directories), an ordered parallel map and Debian version ordering.

pub mod debversion;
pub mod fsx;
pub mod identity;
pub mod parallel;

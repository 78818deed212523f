//! The ground floor: small pieces every stage may use and that use no stage. Image identity
//! (names, derived GUIDs, epoch and date formatting), file helpers (atomic writes, one hashing
//! reader, scratch directories), a reader that skips a sparse file's holes, an ordered parallel map, host tools run with errors that
//! name their package, Debian version ordering, and the error for input that is wrong before
//! any work starts.

pub mod debversion;
pub mod fsx;
pub mod identity;
pub mod parallel;
pub mod sparse;
pub mod tool;

/// Input that is wrong before any work starts (a flag, a reference that does not parse, a tag
/// that is not a version, a file that is not there): exit status 2, like a bad profile.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

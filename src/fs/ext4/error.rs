//! Why a filesystem could not be written.

#[allow(unused_imports)]
use super::*;

/// Why a filesystem could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Ext4Error {
    /// The tree does not fit the fixed size.
    #[error("the tree needs {needed} bytes ({} MiB) of ext4 but the partition has {available} bytes ({} MiB)", needed.div_ceil(1 << 20), available >> 20)]
    TooSmall {
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// Extended attributes that do not fit the inode.
    #[error("`/{path}`: extended attributes need {needed} bytes but only {room} fit in the inode")]
    XattrTooLarge {
        /// Path.
        path: String,
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        room: usize,
    },
    /// A hard link to a path that is not a regular file in the tree.
    #[error("hard link `/{path}` points at `/{target}`, which is not a regular file in the tree")]
    BrokenHardLink {
        /// Link path.
        path: String,
        /// Target.
        target: String,
    },
    /// A name longer than 255 bytes.
    #[error("`/{0}`: file name longer than 255 bytes")]
    NameTooLong(String),
    /// A regular file's content changed size while being written.
    #[error("`/{path}`: content is shorter than the {len} bytes recorded")]
    ShortContent {
        /// Path.
        path: String,
        /// Expected length.
        len: u64,
    },
    /// Writing failed.
    #[error("writing ext4: {0}")]
    Io(#[from] io::Error),
}

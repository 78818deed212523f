//! Write-once ext4 writer: lays out a fresh filesystem for a file tree in one pass.
//!
//! Layout (flex_bg style): superblock and group descriptors at the start of group 0 (backups in
//! groups 0, 1 and powers of 3, 5, 7), then every group's block bitmap, inode bitmap and inode
//! table, then the journal, then directory and file data in inode order. Inode numbers are
//! assigned in path order, so the same tree always gives the same bytes. Features: extents,
//! filetype, dir_index (directories are written linear), sparse_super, large_file, huge_file,
//! dir_nlink, extra_isize, flex_bg, 64bit, metadata_csum (crc32c) and a journal.
//!
//! One module per concern: `nodes` (the tree as inodes), `plan` (layout and allocation),
//! `inode` (inode encoding), `xattr`, `write` (the bytes), `sink` (where they go), `layout` (the
//! on-disk structures: superblock, group descriptors, extents, directory blocks, journal).

mod error;
mod inode;
pub mod layout;
mod nodes;
mod plan;
mod sink;
mod write;
mod xattr;

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::tree::{Content, Kind, Tree};
use layout::*;

pub use error::Ext4Error;
pub use nodes::Params;
pub use plan::{plan, Plan};
pub use sink::{FileAt, WriteAt};

use nodes::{collect_nodes, Data, Node};
use sink::Coalesce;
use xattr::*;

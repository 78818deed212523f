//! Distribution through an OCI registry (image-spec and distribution-spec 1.1): `push` and
//! `pull` of image directories, signed evidence attached as referrers, channels with `promote`,
//! `revoke` and `history`, and `retention`.
//!
//! Everything here reads the typed image directory; nothing reaches back into the build.

pub mod artifact;
pub mod auth;
pub mod client;
pub mod evidence;
pub mod promote;
pub mod pull;
pub mod push;
pub mod reference;
pub mod retention;
pub mod status;
pub mod types;
mod unpack;

pub use client::{Client, Options};
pub use reference::Reference;

use anyhow::Result;

pub use crate::base::BadInput;

/// Blobs sent or fetched at once (the registry's per-request work overlaps; oras also uses 3).
pub const PARALLEL: usize = 3;

/// Run `f` over `items` on [`PARALLEL`] threads; results in item order, the first error wins.
pub fn parallel<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    crate::base::parallel::map(items, PARALLEL, f)
}

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
pub mod types;

pub use client::{Client, Options};
pub use reference::Reference;

/// Input that is wrong before any registry is asked (a reference that does not parse, a tag
/// that is not a version): exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

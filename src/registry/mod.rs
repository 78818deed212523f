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

pub use client::{Client, Options};
pub use reference::Reference;

use anyhow::Result;

/// Input that is wrong before any registry is asked (a reference that does not parse, a tag
/// that is not a version): exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// Blobs sent or fetched at once (the registry's per-request work overlaps; oras also uses 3).
pub const PARALLEL: usize = 3;

/// Run `f` over `items` on [`PARALLEL`] threads; results in item order, the first error wins.
pub fn parallel<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<Result<R>>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|sc| {
        for _ in 0..PARALLEL.min(items.len()) {
            sc.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                let failed = r.is_err();
                if let Ok(mut s) = slots[i].lock() {
                    *s = Some(r);
                }
                if failed {
                    // Let the other threads finish what they hold, then stop taking work.
                    next.store(items.len(), std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    // Items are handed out in order and every started one finishes (a panic in a thread
    // propagates out of the scope), so an empty slot comes only after a failed item, whose
    // error is returned first.
    let mut out = Vec::new();
    for s in slots {
        match s.into_inner().ok().flatten() {
            Some(r) => out.push(r?),
            None => anyhow::bail!("a transfer stopped without a result"),
        }
    }
    Ok(out)
}

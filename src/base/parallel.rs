//! Work spread over a few threads, results kept in order.

use anyhow::Result;

/// Run `f` over `items` on `threads` threads; results in item order, the first error wins
/// (the other threads finish what they hold and take no more).
pub fn map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<Result<R>>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|sc| {
        for _ in 0..threads.max(1).min(items.len()) {
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
            None => anyhow::bail!("a worker stopped without a result"),
        }
    }
    Ok(out)
}

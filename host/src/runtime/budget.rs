//! The host-wide budget of plugin linear memory.
//!
//! Each call's memory is capped on its own (`Limits::memory_bytes`), but calls run side by side:
//! without a shared bound, the plugins' memory is the number of calls in flight times the cap,
//! gigabytes with the shipped settings once a few tenants' plugins grow to their cap at the same
//! moment. Every call therefore takes its linear memory out of one budget as it grows, and gives
//! it back when its store is dropped.
//!
//! Only a call's first memory, at instantiation, waits for the budget: a call that holds nothing
//! yet blocks no one while it waits. Growth of a running call that does not fit is refused at
//! once, since two calls each holding part of the budget and waiting for the rest would wait for
//! each other until their wall-clock backstops (waiting uses no CPU time, so only the backstop
//! would end it).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

/// The unit of the budget: one WebAssembly page.
const PAGE_BYTES: u64 = 64 << 10;

/// The pages all calls may hold at once, and the most they have held.
pub(crate) struct Budget {
    pages: Semaphore,
    total_pages: usize,
    peak_pages: AtomicUsize,
}

impl Budget {
    pub(crate) fn new(bytes: u64) -> Arc<Self> {
        let total_pages = usize::try_from(bytes / PAGE_BYTES).unwrap_or(usize::MAX).min(Semaphore::MAX_PERMITS);
        Arc::new(Self { pages: Semaphore::new(total_pages), total_pages, peak_pages: AtomicUsize::new(0) })
    }

    /// Bytes of linear memory that calls hold now.
    pub(crate) fn in_use_bytes(&self) -> u64 {
        self.total_pages.saturating_sub(self.pages.available_permits()) as u64 * PAGE_BYTES
    }

    /// The most bytes calls have held at once since the runtime started.
    pub(crate) fn peak_bytes(&self) -> u64 {
        self.peak_pages.load(Ordering::Relaxed) as u64 * PAGE_BYTES
    }

    /// The size of the budget in bytes.
    pub(crate) fn total_bytes(&self) -> u64 {
        self.total_pages as u64 * PAGE_BYTES
    }

    fn note_peak(&self) {
        let in_use = self.total_pages.saturating_sub(self.pages.available_permits());
        self.peak_pages.fetch_max(in_use, Ordering::Relaxed);
    }
}

/// The part of the budget one call holds; returned when dropped with the call's store.
pub(crate) struct Share {
    budget: Arc<Budget>,
    pages: usize,
    /// Set while the call waits for other calls to return memory, so that a call whose wall-clock
    /// backstop passes meanwhile is reported as starved rather than as slow.
    pub(crate) waiting: bool,
}

impl Share {
    pub(crate) fn new(budget: Arc<Budget>) -> Self {
        Self { budget, pages: 0, waiting: false }
    }

    /// Holds enough of the budget for `bytes` of linear memory. With `wait`, waits for other
    /// calls to give memory back; without, takes it only if it is free now. Returns whether the
    /// share now covers `bytes`.
    pub(crate) async fn grow_to(&mut self, bytes: usize, wait: bool) -> bool {
        let wanted = (bytes as u64).div_ceil(PAGE_BYTES) as usize;
        let Some(more) = wanted.checked_sub(self.pages).filter(|more| *more > 0) else {
            return true;
        };
        let Ok(more_u32) = u32::try_from(more) else { return false };
        if wanted > self.budget.total_pages {
            return false;
        }
        let permit = match self.budget.pages.try_acquire_many(more_u32) {
            Ok(permit) => permit,
            Err(_) if !wait => return false,
            Err(_) => {
                self.waiting = true;
                // The semaphore is never closed, so acquiring fails only if that invariant breaks.
                let permit = self.budget.pages.acquire_many(more_u32).await;
                self.waiting = false;
                match permit {
                    Ok(permit) => permit,
                    Err(_) => return false,
                }
            }
        };
        // The pages stay held past the permit's scope, until `Drop` gives them back.
        permit.forget();
        self.pages += more;
        self.budget.note_peak();
        true
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.budget.pages.add_permits(self.pages);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shares_take_pages_and_give_them_back_when_dropped() {
        let budget = Budget::new(4 * PAGE_BYTES);
        let mut a = Share::new(budget.clone());
        assert!(a.grow_to(1, true).await);
        assert!(a.grow_to(2 * PAGE_BYTES as usize, false).await);
        assert_eq!(budget.in_use_bytes(), 2 * PAGE_BYTES);
        // Shrinking is not a thing in wasm; asking for less holds what is held.
        assert!(a.grow_to(PAGE_BYTES as usize, false).await);
        assert_eq!(budget.in_use_bytes(), 2 * PAGE_BYTES);
        assert!(!a.grow_to(5 * PAGE_BYTES as usize, true).await, "more than the whole budget is refused at once");
        drop(a);
        assert_eq!((budget.in_use_bytes(), budget.peak_bytes()), (0, 2 * PAGE_BYTES));
    }

    #[tokio::test]
    async fn a_share_that_does_not_fit_waits_for_another_to_be_dropped() {
        let budget = Budget::new(4 * PAGE_BYTES);
        let mut a = Share::new(budget.clone());
        assert!(a.grow_to(3 * PAGE_BYTES as usize, true).await);
        let mut b = Share::new(budget.clone());
        assert!(!b.grow_to(2 * PAGE_BYTES as usize, false).await, "without waiting, what is not free is refused");
        let waiting = tokio::spawn(async move {
            let grown = b.grow_to(2 * PAGE_BYTES as usize, true).await;
            (grown, b)
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "b waits while a holds three of the four pages");
        drop(a);
        let (grown, b) = waiting.await.unwrap();
        assert!(grown);
        assert_eq!(budget.in_use_bytes(), 2 * PAGE_BYTES);
        drop(b);
        assert_eq!((budget.in_use_bytes(), budget.peak_bytes()), (0, 3 * PAGE_BYTES));
    }
}

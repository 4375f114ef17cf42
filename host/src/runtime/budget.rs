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

    /// `bytes` rounded down to whole pages: the size a budget of `bytes` has.
    pub(crate) fn whole_pages(bytes: u64) -> u64 {
        bytes / PAGE_BYTES * PAGE_BYTES
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

/// Which bound refused or held up a call's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    /// The host-wide budget, which every call shares.
    Host,
    /// The share of the budget the call's owner (the run pipeline: its tenant) may hold.
    Owner,
}

/// The part of the budget one call holds; returned when dropped with the call's store. A call
/// with an owner holds the same pages in its owner's share as in the host budget, so that one
/// owner's calls together never hold more than the share, whatever the host has free.
pub(crate) struct Share {
    host: Arc<Budget>,
    owner: Option<Arc<Budget>>,
    pages: usize,
    /// Set while the call waits for other calls to return memory, so that a call whose wall-clock
    /// backstop passes meanwhile is reported as starved rather than as slow.
    pub(crate) waiting: Option<Bound>,
}

impl Share {
    pub(crate) fn new(host: Arc<Budget>, owner: Option<Arc<Budget>>) -> Self {
        Self { host, owner, pages: 0, waiting: None }
    }

    /// Holds enough of the budget (and of the owner's share) for `bytes` of linear memory. With
    /// `wait`, waits for other calls to give memory back; without, takes it only if it is free
    /// now. Returns the bound that refused the memory, if one did.
    pub(crate) async fn grow_to(&mut self, bytes: usize, wait: bool) -> Result<(), Bound> {
        let wanted = (bytes as u64).div_ceil(PAGE_BYTES) as usize;
        let Some(more) = wanted.checked_sub(self.pages).filter(|more| *more > 0) else {
            return Ok(());
        };
        // The owner's share first: a call waiting for its own owner's other calls must not hold
        // host pages meanwhile, which other owners' calls could use.
        let owner = match &self.owner {
            Some(owner) => Some(Self::take(owner, wanted, more, wait, &mut self.waiting, Bound::Owner).await?),
            None => None,
        };
        let host = Self::take(&self.host, wanted, more, wait, &mut self.waiting, Bound::Host).await?;
        // The pages stay held past the permits' scope, until `Drop` gives them back.
        host.forget();
        if let Some(owner) = owner {
            owner.forget();
        }
        self.pages += more;
        self.host.note_peak();
        if let Some(owner) = &self.owner {
            owner.note_peak();
        }
        Ok(())
    }

    async fn take<'a>(
        budget: &'a Budget,
        wanted: usize,
        more: usize,
        wait: bool,
        waiting: &mut Option<Bound>,
        bound: Bound,
    ) -> Result<tokio::sync::SemaphorePermit<'a>, Bound> {
        let Ok(more_u32) = u32::try_from(more) else { return Err(bound) };
        if wanted > budget.total_pages {
            return Err(bound);
        }
        match budget.pages.try_acquire_many(more_u32) {
            Ok(permit) => Ok(permit),
            Err(_) if !wait => Err(bound),
            Err(_) => {
                *waiting = Some(bound);
                // The semaphore is never closed, so acquiring fails only if that invariant breaks.
                let permit = budget.pages.acquire_many(more_u32).await.map_err(|_| bound);
                *waiting = None;
                permit
            }
        }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.host.pages.add_permits(self.pages);
        if let Some(owner) = &self.owner {
            owner.pages.add_permits(self.pages);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shares_take_pages_and_give_them_back_when_dropped() {
        let budget = Budget::new(4 * PAGE_BYTES);
        let mut a = Share::new(budget.clone(), None);
        assert!(a.grow_to(1, true).await.is_ok());
        assert!(a.grow_to(2 * PAGE_BYTES as usize, false).await.is_ok());
        assert_eq!(budget.in_use_bytes(), 2 * PAGE_BYTES);
        // Shrinking is not a thing in wasm; asking for less holds what is held.
        assert!(a.grow_to(PAGE_BYTES as usize, false).await.is_ok());
        assert_eq!(budget.in_use_bytes(), 2 * PAGE_BYTES);
        assert!(
            a.grow_to(5 * PAGE_BYTES as usize, true).await.is_err(),
            "more than the whole budget is refused at once"
        );
        drop(a);
        assert_eq!((budget.in_use_bytes(), budget.peak_bytes()), (0, 2 * PAGE_BYTES));
    }

    #[tokio::test]
    async fn a_share_that_does_not_fit_waits_for_another_to_be_dropped() {
        let budget = Budget::new(4 * PAGE_BYTES);
        let mut a = Share::new(budget.clone(), None);
        assert!(a.grow_to(3 * PAGE_BYTES as usize, true).await.is_ok());
        let mut b = Share::new(budget.clone(), None);
        assert!(
            b.grow_to(2 * PAGE_BYTES as usize, false).await.is_err(),
            "without waiting, what is not free is refused"
        );
        let waiting = tokio::spawn(async move {
            let grown = b.grow_to(2 * PAGE_BYTES as usize, true).await.is_ok();
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

    #[tokio::test]
    async fn an_owners_calls_hold_at_most_its_share_and_leave_the_rest_to_others() {
        let host = Budget::new(8 * PAGE_BYTES);
        let owner = Budget::new(3 * PAGE_BYTES);
        let mut a = Share::new(host.clone(), Some(owner.clone()));
        assert!(a.grow_to(2 * PAGE_BYTES as usize, true).await.is_ok());
        let mut b = Share::new(host.clone(), Some(owner.clone()));
        assert_eq!(b.grow_to(2 * PAGE_BYTES as usize, false).await, Err(Bound::Owner), "the share is the bound");
        assert_eq!(host.in_use_bytes(), 2 * PAGE_BYTES, "a refused call holds nothing of the host budget");
        // Another owner's call still finds the host's free pages.
        let mut other = Share::new(host.clone(), Some(Budget::new(8 * PAGE_BYTES)));
        assert!(other.grow_to(6 * PAGE_BYTES as usize, false).await.is_ok());
        assert_eq!(b.grow_to(PAGE_BYTES as usize, false).await, Err(Bound::Host), "the host budget is full");
        assert_eq!(owner.in_use_bytes(), 2 * PAGE_BYTES, "pages the host refused go back to the share");
        drop((a, b, other));
        assert_eq!((host.in_use_bytes(), owner.in_use_bytes(), owner.peak_bytes()), (0, 0, 2 * PAGE_BYTES));
    }
}

//! Fencing for hosts that share a store by leases (`cluster`): the lease a run's writes are
//! conditioned on.
//!
//! A run, and the drainer's delivery of a project, execute inside [`fenced`] with the lease of the
//! project's partition as it held it when the work began. The shared store reads it back
//! ([`current`]) when a write of that work is handed over, and conditions the write's transaction
//! on the lease still naming this host at that epoch: a host that stalled past its lease, or lost
//! the partition and took it back since, cannot enqueue, settle or commit a state for a project
//! another host may have run meanwhile. Work outside a fence (the API's writes, a host without
//! a cluster) is not conditioned.

use std::future::Future;

/// The lease a piece of work runs under: which partition, which host, and the epoch the lease had
/// when the work began (it changes only when ownership changes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub partition: u32,
    pub owner: String,
    pub epoch: u64,
}

tokio::task_local! {
    static FENCE: Fence;
}

/// Runs `work` with its writes conditioned on `fence` (none without one).
pub async fn fenced<F: Future>(fence: Option<Fence>, work: F) -> F::Output {
    match fence {
        Some(fence) => FENCE.scope(fence, work).await,
        None => work.await,
    }
}

/// The fence of the work the caller is part of, if any.
pub(crate) fn current() -> Option<Fence> {
    FENCE.try_with(Clone::clone).ok()
}

//! Per-project jitter: a fixed phase shift that spreads projects on the same schedule over a window.
//!
//! Without it every project on `rate(5 minutes)` (or on `cron(0 * * * ? *)`) would fire in the same
//! millisecond, and every tenant's API and the daemon itself would see a burst followed by silence.
//! Each project instead fires `offset` after each of its nominal times, where `offset` is derived from
//! a hash of its key. Because the offset is the same for every firing of a project, the time between
//! two of its runs is exactly the schedule's interval; only the phase moves.
//!
//! The hash is SHA-256, not `std`'s `RandomState`, so that the offset is the same in every process and
//! on every version: a restart does not shift every project's phase and make some of them fire twice
//! or skip a beat.

use jiff::SignedDuration;
use sha2::{Digest, Sha256};

use super::ProjectKey;
use crate::calendar::Schedule;

/// The offset, in `[0, limit)`, that `key` adds to each of its nominal firing times, where `limit` is
/// the smaller of `window_ms` and the schedule's shortest interval.
///
/// Capping at the shortest interval keeps every jittered firing before the next nominal one, so a
/// project's firings never change order and `rate(1 second)` still fires once a second. A schedule
/// that fires at most once has no interval and gets the whole window.
pub(crate) fn offset(key: &ProjectKey, window_ms: u64, schedule: &Schedule) -> SignedDuration {
    let interval_ms = schedule.min_interval().map(|interval| u64::try_from(interval.as_millis()).unwrap_or(u64::MAX));
    let limit = interval_ms.map_or(window_ms, |interval_ms| interval_ms.min(window_ms));
    if limit == 0 {
        return SignedDuration::ZERO;
    }
    SignedDuration::from_millis(i64::try_from(stable_hash(key) % limit).unwrap_or(0))
}

/// A hash of the key that never changes: the first 8 bytes of SHA-256 over the tenant and project
/// names, each preceded by its length so that ("ab", "c") and ("a", "bc") differ.
fn stable_hash(key: &ProjectKey) -> u64 {
    let mut hasher = Sha256::new();
    for part in [&*key.tenant, &*key.project] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

//! The CPU time one plugin call has used, which is what its deadline counts.
//!
//! A call is a future that the plugin threads poll. Epoch yields slice it with the other calls on
//! the same thread, and between polls it may wait (for memory, inside a WASI sleep) or move to
//! another thread, while other processes may hold the core. Its CPU time is therefore neither its
//! wall-clock time nor its thread's CPU time, but the sum, over its polls, of the CPU time the
//! polling thread spent in each: [`Metered`] measures around every poll and adds into a
//! [`CpuMeter`] that the call's epoch callback reads.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

/// The CPU time the calling thread has used since it started, in nanoseconds.
///
/// If the clock cannot be read (no supported platform fails this call), every reading is 0: the
/// CPU deadline then never passes, and the call's wall-clock backstop still ends it.
fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through the pointer, which points to a live,
    // aligned local that outlives the call; CLOCK_THREAD_CPUTIME_ID reads the calling thread's
    // own clock and touches nothing else.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if result != 0 {
        return 0;
    }
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    seconds.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// Marks that no poll is in progress. A thread's CPU clock never reads this: it would take
/// centuries of CPU time.
const NO_POLL: u64 = u64::MAX;

/// The CPU time of one call, shared by the future that polls it and the epoch callback that
/// checks its deadline. Atomics only because the callback must be `Send + Sync`: both sides run on
/// the thread polling the call, one after the other.
#[derive(Debug)]
pub(crate) struct CpuMeter {
    /// The CPU time of the polls that have ended, in nanoseconds.
    ended_ns: AtomicU64,
    /// The polling thread's CPU clock when the poll in progress began, or [`NO_POLL`].
    poll_began_ns: AtomicU64,
}

impl CpuMeter {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self { ended_ns: AtomicU64::new(0), poll_began_ns: AtomicU64::new(NO_POLL) })
    }

    /// The call's CPU time so far: the polls that have ended, plus the one in progress when read
    /// from inside it, as the epoch callback does. Read from another thread during a poll, the
    /// part in progress would be measured against the wrong thread's clock; nothing does that.
    pub(crate) fn spent(&self) -> Duration {
        let ended = self.ended_ns.load(Ordering::Relaxed);
        let began = self.poll_began_ns.load(Ordering::Relaxed);
        let current = if began == NO_POLL { 0 } else { thread_cpu_ns().saturating_sub(began) };
        Duration::from_nanos(ended.saturating_add(current))
    }

    fn begin_poll(&self) {
        self.poll_began_ns.store(thread_cpu_ns(), Ordering::Relaxed);
    }

    fn end_poll(&self) {
        let began = self.poll_began_ns.swap(NO_POLL, Ordering::Relaxed);
        if began != NO_POLL {
            self.ended_ns.fetch_add(thread_cpu_ns().saturating_sub(began), Ordering::Relaxed);
        }
    }
}

/// A future whose every poll is added to a [`CpuMeter`]. The inner future is `Unpin` (pin it with
/// `std::pin::pin!` first), so that no unsafe pin projection is needed.
pub(crate) struct Metered<F> {
    inner: F,
    meter: Arc<CpuMeter>,
}

impl<F: Future + Unpin> Metered<F> {
    pub(crate) fn new(inner: F, meter: Arc<CpuMeter>) -> Self {
        Self { inner, meter }
    }
}

impl<F: Future + Unpin> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.meter.begin_poll();
        // The poll is counted even if the inner future panics, so that the meter never keeps a
        // poll in progress that has ended.
        let _end = EndPoll(&this.meter);
        Pin::new(&mut this.inner).poll(cx)
    }
}

/// Ends the meter's poll in progress when dropped.
struct EndPoll<'a>(&'a CpuMeter);

impl Drop for EndPoll<'_> {
    fn drop(&mut self) {
        self.0.end_poll();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// Spins on the calling thread until it has used `cpu` more CPU time.
    fn spin(cpu: Duration) {
        let until = thread_cpu_ns() + cpu.as_nanos() as u64;
        while thread_cpu_ns() < until {
            std::hint::spin_loop();
        }
    }

    /// A future that spins for `cpu` in each of `polls` polls, yielding in between.
    struct Spinner {
        cpu: Duration,
        polls: u32,
    }

    impl Future for Spinner {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            spin(self.cpu);
            self.polls -= 1;
            if self.polls == 0 {
                return Poll::Ready(());
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_future_spinning_across_polls_accumulates_the_cpu_time_of_every_poll() {
        let meter = CpuMeter::new();
        let started = Instant::now();
        Metered::new(Spinner { cpu: Duration::from_millis(20), polls: 5 }, meter.clone()).await;
        let spent = meter.spent();
        assert!(spent >= Duration::from_millis(100), "five polls of 20 ms each counted as {spent:?}");
        assert!(spent <= started.elapsed(), "{spent:?} of CPU time in {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_future_that_sleeps_accumulates_almost_no_cpu_time() {
        let meter = CpuMeter::new();
        Metered::new(Box::pin(tokio::time::sleep(Duration::from_millis(200))), meter.clone()).await;
        let spent = meter.spent();
        assert!(spent < Duration::from_millis(20), "a 200 ms sleep counted as {spent:?} of CPU time");
    }

    #[tokio::test]
    async fn the_poll_in_progress_counts_when_read_from_inside_it() {
        let meter = CpuMeter::new();
        let inside = meter.clone();
        let measured = Box::pin(async move {
            spin(Duration::from_millis(30));
            inside.spent()
        });
        let seen = Metered::new(measured, meter.clone()).await;
        assert!(seen >= Duration::from_millis(30), "the epoch callback would see {seen:?}");
        assert!(meter.spent() >= seen, "the ended poll counts {:?}, less than {seen:?}", meter.spent());
    }

    #[test]
    fn cpu_time_between_polls_is_not_counted() {
        let meter = CpuMeter::new();
        meter.begin_poll();
        meter.end_poll();
        spin(Duration::from_millis(30));
        let spent = meter.spent();
        assert!(spent < Duration::from_millis(5), "work outside any poll counted as {spent:?}");
    }
}

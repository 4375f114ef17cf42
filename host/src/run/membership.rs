//! The data plane as a member of a cluster (`cluster`): rounds that keep this host's leases,
//! the hand-over of the partitions it gains (their waiting records first, then their projects on
//! the schedule, with one catch-up run each, as after a restart) and loses (their projects leave
//! the schedule at once), and the change feed through which the other hosts' APIs reach the
//! projects this host runs.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Control, Inner};
use crate::cluster::Cluster;
use crate::store::fenced;

/// How long a host waits after taking partitions, beyond a round, before it reads their
/// projects' history to schedule them. A previous owner that lost a lease to a steal notices at
/// its next round and starts no run after that; its last runs reach the history up to a second
/// after they end (the shared store holds history that long to batch it). A catch-up run decided
/// from a history without them would run a scheduled time again.
const HISTORY_SETTLE: Duration = Duration::from_millis(1_500);

/// How often a host reads the change feed.
const FEED_EVERY: Duration = Duration::from_secs(1);

/// How far back each read of the feed looks: changes are keyed by their publisher's clock, so a
/// host reads a little of the past again, and skips the changes it applied already.
const FEED_OVERLAP_MS: i64 = 10_000;

impl Inner {
    /// Runs projects as a member of `cluster` until `shutdown`; then gives up the leases.
    pub(super) async fn run_clustered(
        self: Arc<Self>,
        cluster: Cluster,
        control: Control,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let members = tokio::spawn(self.clone().keep_leases(cluster.clone(), control.clone()));
        let feed = tokio::spawn(self.clone().follow_changes(control));
        let drainer = tokio::spawn(self.clone().drain_forever());
        self.scheduler.run(self.clone(), shutdown).await;
        members.abort();
        feed.abort();
        drainer.abort();
        // Runs have finished: the leases can go at once, so that the others need not wait for
        // them to expire.
        cluster.leave().await;
        Ok(())
    }

    /// A round every third of the lease period, each followed by its hand-overs.
    async fn keep_leases(self: Arc<Self>, cluster: Cluster, control: Control) {
        let mut last = (Instant::now(), self.started_runs.load(Ordering::Relaxed));
        let mut next = tokio::time::Instant::now();
        loop {
            match cluster.round().await {
                Ok(moves) => {
                    if !moves.lost.is_empty() {
                        tracing::info!(partitions = ?moves.lost, "lost leases; their projects stop here");
                        self.scheduler.retain(|key| cluster.owns(&key.tenant, &key.project));
                    }
                    if !moves.gained.is_empty() {
                        // Beside the rounds, which must go on renewing every lease meanwhile.
                        let (inner, cluster, control) = (self.clone(), cluster.clone(), control.clone());
                        let gained = moves.gained.iter().copied().collect();
                        tokio::spawn(async move { inner.take_over(&cluster, &control, gained).await });
                    }
                }
                Err(e) => {
                    tracing::warn!("cannot keep this host's leases: {e}");
                    // Leases that ran out while the store was unreachable stop their runs.
                    self.scheduler.retain(|key| cluster.owns(&key.tenant, &key.project));
                }
            }
            let runs = self.started_runs.load(Ordering::Relaxed);
            let elapsed = last.0.elapsed().as_secs_f64().max(0.001);
            cluster.report(self.scheduler.stats().scheduled as u64, (runs - last.1) as f64 / elapsed);
            last = (Instant::now(), runs);
            // Rounds keep their cadence however long one took (a slow store, a hand-over), so
            // that renewals are not spaced out past the leases' validity.
            next += cluster.round_period();
            next = next.max(tokio::time::Instant::now());
            tokio::time::sleep_until(next).await;
        }
    }

    /// Takes over partitions this host just gained: delivers what their projects have waiting,
    /// oldest first, then schedules the projects from their committed state.
    async fn take_over(&self, cluster: &Cluster, control: &Control, gained: BTreeSet<u32>) {
        let started = Instant::now();
        let ours = |tenant: &str, project: &str| gained.contains(&cluster.partition_of(tenant, project));
        match self.store.outbox_projects().await {
            Ok(projects) => {
                for (tenant, project) in projects.into_iter().filter(|(t, p)| ours(t, p)) {
                    let fence = cluster.fence(&tenant, &project);
                    if fence.is_none() {
                        continue;
                    }
                    let delivered = fenced(fence, Box::pin(self.deliver_project(&tenant, &project, None))).await;
                    if let Err(failure) = delivered {
                        tracing::warn!(%project, "records waiting since the hand-over: {}", failure.message);
                    }
                }
            }
            Err(e) => tracing::warn!("cannot read the outbox at a hand-over: {e}"),
        }
        let settle = cluster.round_period() + HISTORY_SETTLE;
        tokio::time::sleep(settle.saturating_sub(started.elapsed())).await;
        // A partition lost again meanwhile stays off the schedule.
        let wanted = |project: &crate::store::Project| {
            ours(&project.tenant_id, &project.id) && cluster.owns(&project.tenant_id, &project.id)
        };
        match control.load_all(wanted).await {
            Ok(loaded) => {
                let ms = started.elapsed().as_millis() as u64;
                cluster.counters().last_handover_ms.store(ms, Ordering::Relaxed);
                tracing::info!(partitions = gained.len(), projects = loaded.len(), ms, "took over partitions");
            }
            Err(e) => tracing::error!("cannot load the projects of partitions this host took: {e}"),
        }
    }

    /// Reads the change feed every second and applies what concerns this host.
    async fn follow_changes(self: Arc<Self>, control: Control) {
        let mut since = jiff::Timestamp::now().as_millisecond();
        let mut applied: HashMap<String, i64> = HashMap::new();
        loop {
            tokio::time::sleep(FEED_EVERY).await;
            let changes = match self.store.changes_since(since - FEED_OVERLAP_MS).await {
                Ok(changes) => changes,
                Err(e) => {
                    tracing::warn!("cannot read the change feed: {e}");
                    continue;
                }
            };
            for change in changes {
                if applied.insert(change.id.clone(), change.at_ms).is_none() {
                    control.apply(&change).await;
                }
                since = since.max(change.at_ms);
            }
            applied.retain(|_, at| *at >= since - 2 * FEED_OVERLAP_MS);
        }
    }
}

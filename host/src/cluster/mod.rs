//! Hosts that share one store share its projects by leases (issue 19), the way the Kinesis
//! Client Library shares a stream's shards.
//!
//! - **Partitions.** A project belongs to one of `partitions` partitions, by a stable hash of its
//!   tenant and id ([`partition_of`]); every host of a cluster computes the same.
//! - **Leases.** Each partition has a lease in the shared table: its owner, an epoch that changes
//!   only when ownership changes, and a heartbeat its owner raises at every round. A round comes
//!   every third of `lease_ms`: the host writes its own record (which the others watch to know who
//!   is alive), reads every lease and host, renews its own leases, and takes leases that are free
//!   or whose heartbeat it has seen unchanged for a whole lease period. No clocks are compared
//!   between hosts: each measures, on its own clock, how long it has seen a heartbeat stand still.
//! - **Balance.** Each host aims for ceil(partitions / live hosts). With nothing free or expired
//!   to take, a host short of its share steals at most `max_steals_per_round` leases a round from
//!   the live host that holds the most; the loser notices at its next renewal.
//! - **Validity.** A host counts its leases as held only until a lease period (less a margin)
//!   after the start of its last round in which every renewal was answered: another host cannot
//!   take them sooner, since it must see their heartbeat stand still that long. A host that
//!   stalls past that (a GC pause, SIGSTOP, a network partition) stops starting runs as soon as
//!   it runs again, and whatever it was writing is refused by the store's fencing
//!   (`store/fence.rs`): every outbox entry, delivery and state commit of a run is conditioned on
//!   the lease still naming the host at the epoch the run began under.
//!
//! `cluster` decides which partitions this host holds; `run` acts on it (what to schedule, which
//! runs to fence). It knows nothing of HTTP, wasm or Kinesis.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::store::{Fence, HostRecord, Lease, Store, StoreError, random_hex};

/// How hosts of a shared store share its projects; the `[cluster]` settings of `sluice serve`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Whether this host shares the projects of the shared store with the other hosts that have
    /// it on, by leases. Needs `[store] backend = "dynamodb"`. Off, a host of a shared store runs
    /// every project itself (only one host may then run a scheduler).
    pub enabled: bool,
    /// Partitions the projects are spread over. Every host of a cluster must use the same
    /// number; it bounds how finely the work can be shared (at most one host per partition).
    pub partitions: u32,
    /// How long a lease lasts without renewal, in ms. A host renews its leases every third of it;
    /// a lost host's projects run again elsewhere after about one to two lease periods.
    pub lease_ms: u64,
    /// The most leases this host steals from a live host per round while it holds less than
    /// its share, so that a joining host takes its share gradually.
    pub max_steals_per_round: u32,
    /// This host's id in the cluster. Default: `host-` and a random suffix, new at every start,
    /// so that a restarted host is a new member and never mistaken for its former self.
    pub host_id: Option<String>,
    /// The URL at which this host's API answers, as `GET /v1/cluster` lists it. Default:
    /// `http://` and the address the host listens on.
    pub api_url: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self { enabled: false, partitions: 256, lease_ms: 4_000, max_steals_per_round: 2, host_id: None, api_url: None }
    }
}

/// The partition of a project: FNV-1a of `tenant/project`, the same on every host and build.
pub fn partition_of(tenant: &str, project: &str, partitions: u32) -> u32 {
    let hash = format!("{tenant}/{project}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    (hash % u64::from(partitions.max(1))) as u32
}

/// What a round changed in the leases this host holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Moves {
    pub gained: Vec<u32>,
    pub lost: Vec<u32>,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ClusterCounters {
    /// Leases taken (free, expired or stolen).
    pub taken: AtomicU64,
    /// Leases lost: renewal refused, or not renewed in time.
    pub lost: AtomicU64,
    /// Runs whose lease was lost while they ran: nothing of them was committed.
    pub fenced_runs: AtomicU64,
    /// How long the last hand-over took, from taking a partition to scheduling its projects, in ms.
    pub last_handover_ms: AtomicU64,
}

/// This host's membership of the cluster. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClusterConfig,
    host_id: String,
    api_url: String,
    store: Store,
    state: Mutex<State>,
    ready: AtomicBool,
    counters: ClusterCounters,
}

#[derive(Default)]
struct State {
    /// The leases this host holds, as it last renewed them.
    owned: BTreeMap<u32, Lease>,
    /// Until when they count as held (see the module's doc).
    valid_until: Option<Instant>,
    /// Other hosts' leases as last read, and since when they have stood still.
    seen: HashMap<u32, (Lease, Instant)>,
    /// Hosts' heartbeats as last read, and since when they have stood still.
    hosts_seen: HashMap<String, (u64, Instant)>,
    heartbeat: u64,
    /// What this host reports of itself at its next round.
    projects: u64,
    polls_per_s: f64,
}

impl Cluster {
    /// A member of the cluster over `store`, answering at `api_url` unless the settings name one.
    pub fn new(config: ClusterConfig, store: Store, listen_url: String) -> Self {
        let host_id = config.host_id.clone().unwrap_or_else(|| format!("host-{}", random_hex(6)));
        let api_url = config.api_url.clone().unwrap_or(listen_url);
        Self {
            inner: Arc::new(Inner {
                config,
                host_id,
                api_url,
                store,
                state: Mutex::default(),
                ready: AtomicBool::new(false),
                counters: ClusterCounters::default(),
            }),
        }
    }

    pub fn host_id(&self) -> &str {
        &self.inner.host_id
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    pub fn counters(&self) -> &ClusterCounters {
        &self.inner.counters
    }

    /// How long between rounds: a third of the lease period.
    pub fn round_period(&self) -> Duration {
        Duration::from_millis((self.inner.config.lease_ms / 3).max(50))
    }

    /// Whether the host has taken its share of the leases, or found none to take.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Relaxed)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The partition of a project.
    pub fn partition_of(&self, tenant: &str, project: &str) -> u32 {
        partition_of(tenant, project, self.inner.config.partitions)
    }

    /// The fence a run of the project starts under, if this host holds its partition now.
    pub fn fence(&self, tenant: &str, project: &str) -> Option<Fence> {
        let partition = self.partition_of(tenant, project);
        let state = self.state();
        if state.valid_until.is_none_or(|until| Instant::now() >= until) {
            return None;
        }
        state.owned.get(&partition).map(|lease| Fence {
            partition,
            owner: self.inner.host_id.clone(),
            epoch: lease.epoch,
        })
    }

    /// Whether `fence` still holds: the host has kept the lease, at that epoch, in time.
    pub fn holds(&self, fence: &Fence) -> bool {
        let state = self.state();
        state.valid_until.is_some_and(|until| Instant::now() < until)
            && state.owned.get(&fence.partition).is_some_and(|lease| lease.epoch == fence.epoch)
    }

    /// Whether this host holds the project's partition now.
    pub fn owns(&self, tenant: &str, project: &str) -> bool {
        self.fence(tenant, project).is_some()
    }

    /// The partitions this host holds.
    pub fn owned(&self) -> BTreeSet<u32> {
        self.state().owned.keys().copied().collect()
    }

    /// What the host reports of itself at its next round.
    pub fn report(&self, projects: u64, polls_per_s: f64) {
        let mut state = self.state();
        state.projects = projects;
        state.polls_per_s = polls_per_s;
    }

    /// Which hosts this host counts as alive (itself included).
    pub fn alive(&self, hosts: &[HostRecord]) -> BTreeSet<String> {
        self.alive_in(&self.state(), hosts, Instant::now())
    }

    /// The hosts alive by this host's observation in `state`: itself, and those whose heartbeat
    /// it has seen move within a lease period (or has not watched yet, as a host serving only
    /// the API has not).
    fn alive_in(&self, state: &State, hosts: &[HostRecord], now: Instant) -> BTreeSet<String> {
        let period = Duration::from_millis(self.inner.config.lease_ms);
        hosts
            .iter()
            .filter(|host| state.hosts_seen.get(&host.id).is_none_or(|(_, since)| now.duration_since(*since) < period))
            .map(|host| host.id.clone())
            .chain(std::iter::once(self.inner.host_id.clone()))
            .collect()
    }

    /// One round: writes this host's record, renews its leases, and takes its share.
    pub async fn round(&self) -> Result<Moves, StoreError> {
        let started = Instant::now();
        let store = &self.inner.store;
        let config = &self.inner.config;
        let record = {
            let mut state = self.state();
            state.heartbeat += 1;
            HostRecord {
                id: self.inner.host_id.clone(),
                api_url: self.inner.api_url.clone(),
                heartbeat: state.heartbeat,
                projects: state.projects,
                polls_per_s: state.polls_per_s,
                leases: state.owned.len() as u64,
            }
        };
        let mut moves = Moves::default();
        let written = store.put_host(&record).await;
        let read = match written {
            Ok(()) => match store.leases(config.partitions).await {
                Ok(leases) => store.hosts().await.map(|hosts| (leases, hosts)),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let (leases, hosts) = match read {
            Ok(read) => read,
            Err(e) => {
                self.expire_if_due(&mut moves);
                return Err(e);
            }
        };

        // Renew what this host holds, all at once; whatever the table says otherwise is lost.
        let owned: Vec<Lease> = self.state().owned.values().cloned().collect();
        let mut renewals = tokio::task::JoinSet::new();
        for (i, lease) in owned.iter().enumerate() {
            let current = leases.iter().find(|l| l.partition == lease.partition);
            let still_ours = current.is_some_and(|c| c.owner == self.inner.host_id && c.epoch == lease.epoch);
            let (store, lease) = (store.clone(), lease.clone());
            renewals.spawn(async move { (i, if still_ours { store.renew_lease(&lease).await } else { Ok(false) }) });
        }
        let mut renewed: Vec<Result<bool, StoreError>> = owned.iter().map(|_| Ok(false)).collect();
        while let Some(joined) = renewals.join_next().await {
            if let Ok((i, result)) = joined {
                renewed[i] = result;
            }
        }
        let mut renewed_all = true;
        for (lease, kept) in owned.into_iter().zip(renewed) {
            let kept = match kept {
                Ok(kept) => kept,
                Err(e) => {
                    tracing::warn!(partition = lease.partition, "cannot renew a lease: {e}");
                    renewed_all = false;
                    continue;
                }
            };
            let mut state = self.state();
            if kept {
                if let Some(held) = state.owned.get_mut(&lease.partition) {
                    held.heartbeat += 1;
                }
            } else {
                state.owned.remove(&lease.partition);
                moves.lost.push(lease.partition);
            }
        }
        {
            let mut state = self.state();
            if renewed_all {
                let margin = Duration::from_millis(config.lease_ms / 6);
                state.valid_until = Some(started + Duration::from_millis(config.lease_ms).saturating_sub(margin));
            }
        }
        self.expire_if_due(&mut moves);

        // What is alive and what may be taken, by this host's own observation.
        let now = Instant::now();
        let period = Duration::from_millis(config.lease_ms);
        let (takeable, by_owner, alive) = {
            let mut state = self.state();
            for host in &hosts {
                let entry = state.hosts_seen.entry(host.id.clone()).or_insert((host.heartbeat, now));
                if entry.0 != host.heartbeat {
                    *entry = (host.heartbeat, now);
                }
            }
            let alive = self.alive_in(&state, &hosts, now);
            let mut takeable = Vec::new();
            let mut by_owner: BTreeMap<String, Vec<Lease>> = BTreeMap::new();
            for lease in &leases {
                if lease.owner == self.inner.host_id {
                    continue;
                }
                let entry = state.seen.entry(lease.partition).or_insert((lease.clone(), now));
                if entry.0 != *lease {
                    *entry = (lease.clone(), now);
                }
                let stood_still = now.duration_since(entry.1) >= period;
                if lease.owner.is_empty() || stood_still {
                    takeable.push(lease.clone());
                } else if alive.contains(&lease.owner) {
                    by_owner.entry(lease.owner.clone()).or_default().push(lease.clone());
                }
            }
            (takeable, by_owner, alive)
        };

        let target = config.partitions.div_ceil(alive.len().max(1) as u32) as usize;
        let mut held = self.state().owned.len();
        // Free and expired leases first, starting at a place of this host's own, so that hosts
        // taking at once mostly ask for different leases.
        let start = partition_of(&self.inner.host_id, "", config.partitions);
        let mut takeable = takeable;
        takeable.sort_by_key(|l| (l.partition + config.partitions - start) % config.partitions);
        for lease in &takeable {
            if held >= target {
                break;
            }
            if self.take(lease, &mut moves).await {
                held += 1;
            }
        }
        // Then steal from the most loaded live host, a few at a time.
        if held < target && takeable.is_empty() {
            let richest = by_owner.iter().max_by_key(|(owner, leases)| (leases.len(), (*owner).clone()));
            if let Some((_, leases)) = richest.filter(|(_, leases)| leases.len() > target) {
                let spare = leases.len() - target;
                let wanted = (target - held).min(spare).min(config.max_steals_per_round as usize);
                for lease in leases.iter().rev().take(wanted) {
                    if self.take(lease, &mut moves).await {
                        held += 1;
                    }
                }
            }
        }
        let short = held < target && takeable.iter().any(|l| !moves.gained.contains(&l.partition));
        if !short {
            self.inner.ready.store(true, Ordering::Relaxed);
        }
        Ok(moves)
    }

    /// Takes a lease as seen; whether it was taken.
    async fn take(&self, seen: &Lease, moves: &mut Moves) -> bool {
        match self.inner.store.take_lease(seen, &self.inner.host_id).await {
            Ok(Some(lease)) => {
                let partition = lease.partition;
                self.state().owned.insert(partition, lease);
                moves.gained.push(partition);
                self.inner.counters.taken.fetch_add(1, Ordering::Relaxed);
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(partition = seen.partition, "cannot take a lease: {e}");
                false
            }
        }
    }

    /// Drops every lease once they no longer count as held: the host could not renew them in
    /// time, so another may have taken them.
    fn expire_if_due(&self, moves: &mut Moves) {
        let mut state = self.state();
        if state.valid_until.is_some_and(|until| Instant::now() >= until) && !state.owned.is_empty() {
            tracing::warn!(leases = state.owned.len(), "leases not renewed in time; dropping them");
            let lost: Vec<u32> = state.owned.keys().copied().collect();
            state.owned.clear();
            moves.lost.extend(lost);
        }
        drop(state);
        self.inner.counters.lost.fetch_add(moves.lost.len() as u64, Ordering::Relaxed);
    }

    /// Gives up every lease at once (at shutdown, once runs finished), so that the other hosts
    /// take them without waiting for them to expire, and removes the host's record.
    pub async fn leave(&self) {
        let owned: Vec<Lease> = std::mem::take(&mut self.state().owned).into_values().collect();
        for lease in &owned {
            if let Err(e) = self.inner.store.release_lease(lease).await {
                tracing::warn!(partition = lease.partition, "cannot release a lease: {e}");
            }
        }
        if let Err(e) = self.inner.store.remove_host(&self.inner.host_id).await {
            tracing::warn!("cannot remove this host's record: {e}");
        }
        tracing::info!(leases = owned.len(), "left the cluster");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        assert_eq!(partition_of("t", "p", 256), partition_of("t", "p", 256));
        let mut counts = vec![0u32; 16];
        for i in 0..16_000 {
            counts[partition_of("tenant", &format!("p{i}"), 16) as usize] += 1;
        }
        assert!(counts.iter().all(|&n| (800..1200).contains(&n)), "{counts:?}");
    }
}

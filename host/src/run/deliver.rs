//! Delivering outbox entries: a project's entries go to its stream oldest first, each entry's
//! state is committed only once Kinesis accepted all of its records, and a drainer retries what
//! runs could not deliver (a Kinesis outage, a role that lost its permission). Entries of
//! different projects on the same stream and session share `PutRecords` calls when they are
//! delivered at the same time (`aws::Aws::put_records_shared`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Inner;
use super::failure::{Failure, FailureKind};
use super::pipeline::Tally;
use crate::arn::StreamArn;
use crate::aws::{AwsError, AwsErrorKind, Delivered, MAX_CALL_BYTES, MAX_CALL_RECORDS, Session};
use crate::store::rfc3339_ms;
use crate::store::{OutboxEntry, OutboxKey, Project, Quotas, Stage};

/// How often the drainer logs a project that stays undeliverable for the same reason.
const DRAIN_LOG_EVERY: Duration = Duration::from_secs(60);

/// Projects the drainer delivers at once.
const DRAIN_CONCURRENCY: usize = 32;

/// What one delivery pass sent, and what it parked.
#[derive(Debug, Default, Clone)]
pub(super) struct Totals {
    pub records: u64,
    pub bytes: u64,
    pub parked: Vec<Parked>,
}

/// An entry Kinesis refused for good, now parked.
#[derive(Debug, Clone)]
pub(super) struct Parked {
    pub run_id: String,
    /// Which run's records, and what Kinesis said.
    pub message: String,
}

/// One lock per project with undelivered records, so that a run and the drainer never deliver
/// the same entries at once, and entries go out in order. A project's lock lives only while
/// someone holds or waits for it.
#[derive(Default)]
pub(super) struct DeliveryLocks(Mutex<HashMap<(String, String), DeliveryLock>>);

/// Held while a project's outbox entries are being delivered.
type DeliveryLock = Arc<tokio::sync::Mutex<()>>;

impl DeliveryLocks {
    /// The project's lock, the same for every caller until nobody holds or waits for it.
    fn get(&self, tenant: &str, project: &str) -> DeliveryLock {
        let mut locks = self.0.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry((tenant.to_string(), project.to_string())).or_default().clone()
    }

    /// Forgets the project's lock if nobody holds or waits for it; the caller has dropped its
    /// handle first.
    fn release(&self, tenant: &str, project: &str) {
        let mut locks = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let key = (tenant.to_string(), project.to_string());
        // A count of one is the map's alone. Two is a waiter, which must keep the lock every later
        // caller gets, or two deliveries of one project would run at once.
        if locks.get(&key).is_some_and(|lock| Arc::strong_count(lock) <= 1) {
            locks.remove(&key);
        }
    }
}

impl Inner {
    /// Delivers every entry a project has waiting, oldest first, stopping at the first entry
    /// Kinesis does not fully accept (later entries must not commit their state before it).
    ///
    /// An entry refused for a reason no retry can fix (Kinesis' InvalidArgument and the like) is
    /// parked instead, so that it does not block the project's later entries; the tenant sees it
    /// in `GET /v1/projects/{id}/outbox` and decides. A failure of an entry of another run than
    /// `current_run` names that run, so nobody chases the current plugin for an old problem.
    pub(super) async fn deliver_project(
        &self,
        tenant: &str,
        project_id: &str,
        current_run: Option<&str>,
    ) -> Result<Totals, Failure> {
        self.holding_delivery_lock(tenant, project_id, self.deliver_locked(tenant, project_id, current_run)).await
    }

    /// Delivers a run's records and commits its state.
    ///
    /// A project with nothing waiting (`nothing_waiting`, when the run knows it already, else
    /// the outbox says) sends them straight to Kinesis and then commits the run's
    /// state: a run that delivers at once writes no outbox entry, so its records never touch the
    /// store. Otherwise, or when Kinesis does not take them, the records go in the outbox, behind
    /// the project's older entries, and are delivered from there. Nothing is lost either way: the
    /// state moves only once the records are in Kinesis, so a run killed before that is fetched
    /// again from the same state. Everything happens under one hold of the project's delivery
    /// lock, so the drainer cannot deliver or park the run's entry behind its back.
    pub(super) async fn deliver_run(
        &self,
        project: &Project,
        session: &Session,
        quotas: &Quotas,
        mut entry: OutboxEntry,
        nothing_waiting: bool,
        tally: &mut Tally,
    ) -> Result<(), Failure> {
        let (tenant, project_id) = (&project.tenant_id, &project.id);
        let run_id = entry.run_id.clone();
        let totals = self
            .holding_delivery_lock(tenant, project_id, async {
                let nothing_waiting =
                    nothing_waiting || self.store.outbox_len_of(tenant, project_id).await.map_err(Failure::host)? == 0;
                if nothing_waiting {
                    self.check_lease()?;
                    let records = std::mem::take(&mut entry.records);
                    let stream = &project.target.stream_arn;
                    let put = self.aws.put_records_shared(session, stream, records);
                    let (records, result) = tally.time(Stage::Deliver, put).await;
                    entry.records = records;
                    match result {
                        Ok(delivered) => {
                            if let Some(state) = &entry.state {
                                let commit = self.store.commit_state(tenant, project_id, state);
                                tally.time(Stage::Deliver, commit).await.map_err(Failure::host)?;
                            }
                            self.metrics.delivered(delivered.records, delivered.bytes);
                            let (records, bytes) = (delivered.records, delivered.bytes);
                            return Ok(Totals { records, bytes, parked: Vec::new() });
                        }
                        // Refused for good: stored and parked at once, as from the outbox, so
                        // that the tenant decides.
                        Err(error) if error.kind == AwsErrorKind::Invalid => {
                            let key = self.store_entry(project, quotas, entry.clone(), tally).await?;
                            let parked = self.park_entry(&key, &entry, &error).await?;
                            return Ok(Totals { parked: vec![parked], ..Totals::default() });
                        }
                        Err(error) => {
                            self.store_entry(project, quotas, entry, tally).await?;
                            return Err(Failure::new(Stage::Deliver, error.message).with_kind(error.kind));
                        }
                    }
                }
                self.store_entry(project, quotas, entry, tally).await?;
                tally.time(Stage::Deliver, self.deliver_locked(tenant, project_id, Some(&run_id))).await
            })
            .await?;
        tally.bytes_delivered += totals.bytes;
        for parked in &totals.parked {
            if parked.run_id == run_id {
                return Err(Failure::tenant(
                    Stage::Deliver,
                    format!(
                        "{}; nothing is lost: retry them with POST /v1/projects/{}/outbox/{}/retry or discard them \
                         with DELETE /v1/projects/{}/outbox/{}",
                        parked.message, project_id, parked.run_id, project_id, parked.run_id
                    ),
                ));
            }
            tally.log.host("warn", &parked.message);
        }
        Ok(())
    }

    /// Fails the work this belongs to if it runs under a lease this host no longer holds: a host
    /// that stalled past its lease sends nothing more to Kinesis for the partition's projects,
    /// whose new owner runs them now. (Its writes would be refused anyway; this spares the
    /// stream the records.)
    fn check_lease(&self) -> Result<(), Failure> {
        match (&self.cluster, crate::store::current_fence()) {
            (Some(cluster), Some(fence)) if !cluster.holds(&fence) => Err(Failure::host(format!(
                "this host lost the lease of partition {} while the work went on; the partition's new owner \
                 runs the project",
                fence.partition
            ))
            .with_kind(FailureKind::Fenced)),
            _ => Ok(()),
        }
    }

    /// Writes a run's records and pending state to the outbox, within the tenant's quota.
    async fn store_entry(
        &self,
        project: &Project,
        quotas: &Quotas,
        entry: OutboxEntry,
        tally: &mut Tally,
    ) -> Result<OutboxKey, Failure> {
        let adding = entry.payload_bytes() + entry.state.as_ref().map_or(0, |s| s.len() as u64);
        self.check_outbox_bytes(project, quotas, adding).await?;
        tally.time(Stage::Outbox, self.store.enqueue(entry)).await.map_err(Failure::host)
    }

    /// Parks an entry Kinesis refused for good, saying whose records they are and why.
    async fn park_entry(&self, key: &OutboxKey, entry: &OutboxEntry, error: &AwsError) -> Result<Parked, Failure> {
        let from = rfc3339_ms(jiff::Timestamp::from_millisecond(entry.scheduled_at_ms).unwrap_or_default());
        let message = format!(
            "kinesis refused the records of run {} from {from} for good, so they are parked: {error}",
            entry.run_id
        );
        let now = rfc3339_ms(jiff::Timestamp::now());
        self.store.park(key, entry, &error.message, &now).await.map_err(Failure::host)?;
        self.metrics.parked();
        tracing::warn!(project = %entry.project_id, run = %entry.run_id, "{message}");
        Ok(Parked { run_id: entry.run_id.clone(), message })
    }

    /// Runs `work` while holding the project's delivery lock. A run enqueues its entry and
    /// delivers it under one hold: were the lock taken only after the entry was written, the
    /// drainer could deliver or park the entry in between, and the run would report success for
    /// records that were parked.
    pub(super) async fn holding_delivery_lock<T>(
        &self,
        tenant: &str,
        project_id: &str,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let lock = self.delivery_locks.get(tenant, project_id);
        let result = {
            let _held = lock.lock().await;
            work.await
        };
        drop(lock);
        self.delivery_locks.release(tenant, project_id);
        result
    }

    /// [`Self::deliver_project`] for a caller that holds the project's delivery lock.
    pub(super) async fn deliver_locked(
        &self,
        tenant: &str,
        project_id: &str,
        current_run: Option<&str>,
    ) -> Result<Totals, Failure> {
        let mut totals = Totals::default();
        // Keys first, each entry read when its turn comes: delivery stops at the first entry
        // Kinesis does not take, and a stuck project's backlog may be many large entries.
        let keys = self.store.outbox_keys_of(tenant, project_id).await.map_err(Failure::host)?;
        if keys.is_empty() {
            return Ok(totals);
        }
        let Some(project) = self.store.project(tenant, project_id).await.map_err(Failure::host)? else {
            // The project was deleted after its run wrote the entries: nobody wants them now.
            tracing::info!(project = %project_id, "dropping undelivered records of a deleted project");
            self.store.delete_state_of(tenant, project_id).await.map_err(Failure::host)?;
            return Ok(totals);
        };
        let session = self.assume(&project).await.map_err(|mut f| {
            f.stage = Stage::Deliver;
            f
        })?;
        let mut keys = keys.into_iter();
        let mut next: Option<(OutboxKey, OutboxEntry)> = None;
        loop {
            // The oldest entries whose records fit in one call together: a backlog goes out in
            // full calls, and each entry is still committed, or not, in its turn.
            let mut group: Vec<(OutboxKey, OutboxEntry)> = next.take().into_iter().collect();
            let (mut records, mut bytes) = group.first().map_or((0, 0), |(_, e)| (e.records.len(), e.payload_bytes()));
            for key in keys.by_ref() {
                let Some(entry) = self.store.outbox_entry(&key).await.map_err(Failure::host)? else { continue };
                let (more, more_bytes) = (entry.records.len(), entry.payload_bytes());
                if !group.is_empty()
                    && (records + more > MAX_CALL_RECORDS || bytes + more_bytes > MAX_CALL_BYTES as u64)
                {
                    next = Some((key, entry));
                    break;
                }
                (records, bytes) = (records + more, bytes + more_bytes);
                group.push((key, entry));
            }
            if group.is_empty() {
                return Ok(totals);
            }
            self.check_lease()?;
            let results = self.put_group(&session, &project.target.stream_arn, &mut group).await;
            for ((key, entry), result) in group.into_iter().zip(results) {
                let error = match result {
                    Ok(delivered) => {
                        self.store.complete_delivery(&key, &entry).await.map_err(Failure::host)?;
                        self.metrics.delivered(delivered.records, delivered.bytes);
                        totals.records += delivered.records;
                        totals.bytes += delivered.bytes;
                        continue;
                    }
                    Err(error) => error,
                };
                if error.kind == AwsErrorKind::Invalid {
                    totals.parked.push(self.park_entry(&key, &entry, &error).await?);
                    continue;
                }
                let from = rfc3339_ms(jiff::Timestamp::from_millisecond(entry.scheduled_at_ms).unwrap_or_default());
                let which = format!("records of run {} from {from}", entry.run_id);
                // Later entries of the group are not committed before this one, even if Kinesis
                // took their records: they go again, which at-least-once allows.
                let message = match current_run {
                    Some(run) if run == entry.run_id => error.message,
                    _ if error.kind == AwsErrorKind::Transient => {
                        format!("the {which} could not be delivered: {error}")
                    }
                    _ => format!("the {which} are refused: {error}"),
                };
                return Err(Failure::new(Stage::Deliver, message).with_kind(error.kind));
            }
        }
    }

    /// Puts the records of every entry of `group` at once, so that they share calls with each
    /// other and with other projects' deliveries on the same stream and session; the records go
    /// back into their entries, and the results come in the group's order.
    async fn put_group(
        &self,
        session: &Session,
        stream_arn: &StreamArn,
        group: &mut [(OutboxKey, OutboxEntry)],
    ) -> Vec<Result<Delivered, AwsError>> {
        if let [(_, entry)] = group {
            let records = std::mem::take(&mut entry.records);
            let (records, result) = self.aws.put_records_shared(session, stream_arn, records).await;
            entry.records = records;
            return vec![result];
        }
        let mut puts = tokio::task::JoinSet::new();
        for (i, (_, entry)) in group.iter_mut().enumerate() {
            let (aws, session, stream_arn) = (self.aws.clone(), session.clone(), stream_arn.clone());
            let records = std::mem::take(&mut entry.records);
            puts.spawn(async move { (i, aws.put_records_shared(&session, &stream_arn, records).await) });
        }
        let mut results: Vec<Option<Result<Delivered, AwsError>>> = group.iter().map(|_| None).collect();
        while let Some(joined) = puts.join_next().await {
            if let Ok((i, (records, result))) = joined {
                group[i].1.records = records;
                results[i] = Some(result);
            }
        }
        // A put that panicked gave nothing back; its entry stays waiting, and its records on disk.
        let lost = || Err(AwsError::new(AwsErrorKind::Transient, "the delivery task failed; retry later"));
        results.into_iter().map(|result| result.unwrap_or_else(lost)).collect()
    }

    /// One pass over every project with records waiting, [`DRAIN_CONCURRENCY`] projects at a time,
    /// so that after an outage the backlogs of projects on one stream and session share their
    /// `PutRecords` calls, and one slow project does not hold up the rest.
    pub(super) async fn drain_outbox(self: &Arc<Self>) {
        let projects = match self.store.outbox_projects().await {
            Ok(projects) => projects,
            Err(e) => {
                tracing::error!("cannot read the outbox: {e}");
                return;
            }
        };
        let mut deliveries = tokio::task::JoinSet::new();
        for (tenant, project) in projects {
            // In a cluster, only the projects this host holds, each under its lease.
            let fence = match &self.cluster {
                Some(cluster) => match cluster.fence(&tenant, &project) {
                    Some(fence) => Some(fence),
                    None => continue,
                },
                None => None,
            };
            if deliveries.len() >= DRAIN_CONCURRENCY {
                deliveries.join_next().await;
            }
            let inner = Arc::clone(self);
            deliveries.spawn(async move {
                let delivery = Box::pin(inner.deliver_project(&tenant, &project, None));
                let result = crate::store::fenced(fence, delivery).await;
                inner.log_drain(tenant, project, result.err());
            });
        }
        while deliveries.join_next().await.is_some() {}
    }

    /// Logs a project the drainer could not deliver: at once when the kind of failure is new,
    /// then at most once a minute while it stays the same (messages differ by request ids, so
    /// the kind is what is compared); and once when it is delivered again.
    fn log_drain(&self, tenant: String, project: String, failure: Option<Failure>) {
        let mut logged = self.drain_logged.lock().unwrap_or_else(|e| e.into_inner());
        let key = (tenant, project);
        let Some(failure) = failure else {
            if logged.remove(&key).is_some() {
                tracing::info!(project = %key.1, "records delivered after waiting for Kinesis");
            }
            return;
        };
        let now = std::time::Instant::now();
        let kind = format!("{:?}", failure.kind);
        let due = logged.get(&key).is_none_or(|(last, at)| *last != kind || now.duration_since(*at) >= DRAIN_LOG_EVERY);
        if due {
            tracing::warn!(project = %key.1, "records still waiting for Kinesis: {}", failure.message);
            logged.insert(key, (kind, now));
        }
    }

    /// Retries undelivered records every `outbox_retry_ms`, so that a project whose next run is
    /// far away (or paused) still gets its records out once Kinesis is back.
    pub(super) async fn drain_forever(self: Arc<Self>) {
        let period = Duration::from_millis(self.config.outbox_retry_ms.max(100));
        loop {
            tokio::time::sleep(period).await;
            self.drain_outbox().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A waiter's lock outlives its holder: whoever comes next must wait for the waiter, not get a
    /// fresh lock and deliver beside it.
    #[tokio::test]
    async fn a_lock_someone_waits_for_stays_the_one_later_callers_get() {
        let locks = DeliveryLocks::default();
        let holder = locks.get("t", "p");
        let held = holder.clone().lock_owned().await;
        let waiter = locks.get("t", "p");
        drop(held);
        drop(holder);
        locks.release("t", "p");
        let later = locks.get("t", "p");
        assert!(Arc::ptr_eq(&waiter, &later), "a later caller got a lock of its own while one waited");
        drop((waiter, later));
        locks.release("t", "p");
        assert!(locks.0.lock().unwrap().is_empty(), "a lock nobody holds is forgotten");
    }
}

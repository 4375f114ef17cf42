//! One run of one project, stage by stage.
//!
//! Every stage is timed into the run's `stage_ms`, and the first failure ends the run with its
//! stage and a message for the tenant. Secret values never reach a message: the source module
//! strips URLs from its errors and the key is only ever passed to it, never formatted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::Inner;
use super::failure::{Failure, FailureKind};
use super::log::RunLog;
use crate::aws::{AwsErrorKind, RoleRef, Session};
use crate::records::{OutputCheck, Record, RunLimits};
use crate::runtime::{CallError, Plugin, Poll, Request, Response};
use crate::scheduler::{Outcome, Tick};
use crate::source::{FetchRequest, Fetched, KeyPlacement, SourceKey};
use crate::store::{
    OutboxEntry, Project, Quotas, Run, RunError, RunOutcome, Stage, Trigger, Trust, random_hex, rfc3339_ms,
};

/// What a run produced, for its history record.
#[derive(Default)]
pub(super) struct Tally {
    pub run_id: String,
    pub stage_ms: BTreeMap<Stage, f64>,
    pub http_status: Option<u16>,
    pub pages: u32,
    pub records: u64,
    pub bytes_fetched: u64,
    pub bytes_delivered: u64,
    pub plugin_time: Duration,
    /// The API keys the run read, to be redacted from whatever it reports (see `redact.rs`).
    pub keys: Vec<String>,
    /// The plugin's log lines and the host's notes.
    pub log: RunLog,
    /// Whether the page cap cut the run short.
    pub page_cap_reached: bool,
}

impl Tally {
    /// Times one stage, adding to what earlier pages spent in it.
    pub(super) async fn time<T>(&mut self, stage: Stage, work: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let result = work.await;
        *self.stage_ms.entry(stage).or_default() += started.elapsed().as_secs_f64() * 1000.0;
        result
    }
}

fn outcome_label(outcome: RunOutcome) -> &'static str {
    match outcome {
        RunOutcome::Succeeded => "succeeded",
        RunOutcome::Failed => "failed",
        RunOutcome::Skipped => "skipped",
    }
}

impl Inner {
    pub(super) async fn run_tick(&self, tick: Tick) -> Outcome {
        let started_at = self.scheduler.clock().now();
        if tick.trigger != Trigger::Manual {
            self.metrics.schedule_lag(started_at.duration_since(tick.due_at).try_into().unwrap_or_default());
        }
        // In a cluster, a run starts only under its partition's lease, and everything it writes
        // is conditioned on that lease (`store/fence.rs`).
        let fence = match &self.cluster {
            Some(cluster) => match cluster.fence(&tick.key.tenant, &tick.key.project) {
                Some(fence) => Some(fence),
                // Not this host's (any more): the next round takes it off the schedule.
                None => return Outcome::default(),
            },
            None => None,
        };
        let Ok(Some(project)) = self.store.project(&tick.key.tenant, &tick.key.project).await else {
            // Deleted since the tick was queued; the API has already removed it from the scheduler.
            return Outcome::default();
        };
        self.started_runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(
            project = %project.id,
            scheduled_at = %tick.scheduled_at,
            trigger = ?tick.trigger,
            fence = ?fence.as_ref().map(|f| (&f.owner, f.partition, f.epoch)),
            "run starts"
        );
        let mut tally = Tally { run_id: format!("run_{}", random_hex(8)), ..Tally::default() };
        // Boxed: a run's future is large, and the fence's scope would otherwise hold it on the
        // worker's stack.
        let executed = crate::store::fenced(fence.clone(), Box::pin(self.execute(&project, &tick, &mut tally))).await;
        let refused = matches!(&executed, Err(failure) if failure.kind == FailureKind::Fenced);
        if let (Some(cluster), Some(fence)) = (&self.cluster, &fence)
            && (refused || !cluster.holds(fence))
        {
            // The lease was lost while the run went on: nothing it wrote was committed, and the
            // partition's new owner runs the project; its history and status are the owner's.
            cluster.counters().fenced_runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(project = %project.id, partition = fence.partition, "a run lost its lease while it ran");
            return Outcome::default();
        }
        let result = executed.map_err(|failure| failure.redacted(&tally.keys));
        let finished_at = self.scheduler.clock().now();
        let (outcome, error) = match &result {
            Ok(()) => (RunOutcome::Succeeded, None),
            Err(failure) => {
                (RunOutcome::Failed, Some(RunError { stage: failure.stage, message: failure.message.clone() }))
            }
        };
        let (logs, logs_dropped) = std::mem::take(&mut tally.log).finish(&tally.keys);
        let run = Run {
            id: tally.run_id.clone(),
            project_id: project.id.clone(),
            trigger: tick.trigger,
            scheduled_at: rfc3339_ms(tick.scheduled_at),
            started_at: rfc3339_ms(started_at),
            finished_at: rfc3339_ms(finished_at),
            outcome,
            plugin_id: Some(project.plugin_id.clone()),
            http_status: tally.http_status,
            pages: tally.pages,
            records: tally.records,
            bytes_fetched: tally.bytes_fetched,
            bytes_delivered: tally.bytes_delivered,
            stage_ms: tally.stage_ms.clone(),
            error,
            page_cap_reached: tally.page_cap_reached,
            logs,
            logs_dropped,
        };
        for (stage, ms) in &tally.stage_ms {
            self.metrics.stage(stage.as_str(), Duration::from_secs_f64(ms / 1000.0));
        }
        self.metrics.plugin_time(tally.plugin_time);
        self.metrics.run(run.trigger.as_str(), outcome_label(run.outcome));
        // The status first, so that whoever sees the run in the history also sees its effect.
        let outcome = self.settle_status(&project, result.as_ref().err(), finished_at).await;
        // The history goes into the committer's next batch without the run waiting for it, so
        // that the run's permits are free while the disk syncs.
        let plugin_ms = tally.plugin_time.as_secs_f64() * 1000.0;
        self.store.record_run_later(&project.tenant_id, run, plugin_ms);
        outcome
    }

    /// Records a tick that found the previous run still going. Every skip is counted in the metrics,
    /// but only the first of a streak goes into the run history: a daemon that has fallen behind
    /// skips thousands of ticks a second, and a store write for each would deepen the overload
    /// that caused them.
    pub(super) fn record_skipped(&self, tick: Tick, streak: u32) {
        self.metrics.run(tick.trigger.as_str(), "skipped");
        if streak > 1 {
            return;
        }
        // A host that stalled past its lease finds its last run still going when it wakes: the
        // project's history is its new owner's to write.
        if self.cluster.as_ref().is_some_and(|cluster| !cluster.owns(&tick.key.tenant, &tick.key.project)) {
            return;
        }
        let now = rfc3339_ms(self.scheduler.clock().now());
        let run = Run {
            id: format!("run_{}", random_hex(8)),
            project_id: tick.key.project.to_string(),
            trigger: tick.trigger,
            scheduled_at: rfc3339_ms(tick.scheduled_at),
            started_at: now.clone(),
            finished_at: now,
            outcome: RunOutcome::Skipped,
            plugin_id: None,
            http_status: None,
            pages: 0,
            records: 0,
            bytes_fetched: 0,
            bytes_delivered: 0,
            stage_ms: BTreeMap::new(),
            error: Some(RunError {
                stage: Stage::Schedule,
                message: "the previous run was still going, so this tick was skipped, and so are the \
                              ticks after it until that run ends (the metric `sluice_runs_total` with \
                              outcome \"skipped\" counts them all); when runs take longer than the \
                              schedule's interval, ticks are skipped: lengthen the interval or make runs \
                              shorter"
                    .into(),
            }),
            page_cap_reached: false,
            logs: Vec::new(),
            logs_dropped: 0,
        };
        self.store.record_run_later(&tick.key.tenant, run, 0.0);
    }

    async fn execute(&self, project: &Project, tick: &Tick, tally: &mut Tally) -> Result<(), Failure> {
        let tenant = &project.tenant_id;
        let quotas = self
            .store
            .tenant(tenant)
            .await
            .map_err(Failure::host)?
            .map(|t| t.quotas())
            .ok_or_else(|| Failure::host("the project's tenant is gone"))?;
        let backlog = self.store.outbox_len_of(tenant, &project.id).await.map_err(Failure::host)?;
        // Whether the project has nothing waiting for Kinesis once older records went out: the
        // run then starts from the committed state and may deliver its own records at once,
        // without reading the outbox again. Nothing else adds to a project's outbox while it runs
        // but a tenant retrying a parked entry, whose records carry no state and so may go out
        // after this run's.
        let mut nothing_waiting = backlog == 0;
        if backlog > 0 {
            // Older records go first; if Kinesis still refuses them, new runs may still fetch
            // until the backlog reaches its cap.
            let delivered = tally.time(Stage::Deliver, self.deliver_project(tenant, &project.id, None)).await;
            match delivered {
                Ok(totals) => {
                    nothing_waiting = true;
                    tally.bytes_delivered += totals.bytes;
                    for parked in &totals.parked {
                        tally.log.host("warn", &parked.message);
                    }
                }
                Err(failure) if backlog >= self.config.max_outbox_entries_per_project => {
                    return Err(Failure::new(
                        Stage::Deliver,
                        format!(
                            "records of {backlog} earlier runs are still waiting for Kinesis, so this run did not \
                             fetch: {}",
                            failure.message
                        ),
                    )
                    .with_kind(failure.kind));
                }
                Err(failure) => tally.log.host("warn", &failure.message),
            }
        }
        self.check_outbox_bytes(project, &quotas, 0).await?;

        let session = tally.time(Stage::AssumeRole, self.assume(project)).await?;
        self.confirm_trust(project).await;
        let mut api_key = match &project.source.api_key {
            Some(_) => Some(tally.time(Stage::Secret, self.read_secret(&session, project, false)).await?),
            None => None,
        };
        tally.keys.extend(api_key.clone());
        let plugin = tally.time(Stage::LoadPlugin, self.plugin(&project.plugin_id)).await?;

        let origin = project.source.url.url();
        let mut state = if nothing_waiting {
            self.store.committed_state(tenant, &project.id).await
        } else {
            self.store.next_state(tenant, &project.id).await
        }
        .map_err(Failure::host)?;
        let settings: Vec<(String, String)> =
            project.plugin_settings.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let poll = |state: &Option<Vec<u8>>| Poll {
            project_id: project.id.clone(),
            tenant_id: tenant.clone(),
            scheduled_at_ms: tick.scheduled_at.as_millisecond().max(0) as u64,
            state: state.clone(),
            settings: settings.clone(),
        };
        let base = Request {
            method: project.source.method.clone(),
            url: project.source.url.as_str().to_string(),
            headers: project.source.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            body: None,
        };
        let limits = self.runtime.default_limits().clone();
        // The tenant's calls hold at most its share of the plugin memory budget.
        let runtime = self.runtime.sharing(tenant, quotas.max_plugin_memory_bytes);
        let mut check = OutputCheck::new(RunLimits {
            max_state_bytes: quotas.max_state_bytes,
            max_records: self.config.max_run_records,
            max_bytes: self.config.max_run_bytes,
        });
        let mut request = Some(base);
        let mut records = Vec::new();
        let mut new_state = None;
        while let Some(next) = request.take() {
            tally.pages += 1;
            // `prepare` shapes every page's request, as the contract says, seeing the newest state.
            let report = tally.time(Stage::Prepare, runtime.prepare(&plugin, &limits, &poll(&state), &next)).await;
            tally.plugin_time += report.duration;
            tally.log.plugin(&report.logs);
            let current = report.result.map_err(|e| plugin_failure(Stage::Prepare, e))?;
            let fetched = self.fetch_page(project, &session, origin, &current, &mut api_key, tally).await?;
            let response = Response { status: fetched.status, headers: fetched.headers, body: fetched.body };
            let report =
                tally.time(Stage::Transform, runtime.transform(&plugin, &limits, &poll(&state), &response)).await;
            tally.plugin_time += report.duration;
            tally.log.plugin(&report.logs);
            let output = report.result.map_err(|e| plugin_failure(Stage::Transform, e))?;
            // Checked here, before anything is stored: a record Kinesis refuses must fail this run,
            // not become an outbox entry that no retry can deliver.
            let problems = check.output(&output, MAX_PROBLEMS);
            if !problems.is_empty() {
                return Err(Failure::tenant(
                    Stage::Transform,
                    format!(
                        "the plugin's output cannot be delivered, so nothing of this run was stored and the state \
                         did not advance: {}",
                        problems.join("; ")
                    ),
                ));
            }
            records.extend(output.records.into_iter().map(|r| Record {
                data: r.data,
                partition_key: r.partition_key,
                explicit_hash_key: r.explicit_hash_key,
            }));
            if output.state.is_some() {
                state = output.state.clone();
                new_state = output.state;
            }
            if tally.pages < project.max_pages {
                request = output.next;
            } else if output.next.is_some() {
                tally.page_cap_reached = true;
                tally.log.host(
                    "info",
                    &format!(
                        "the page cap of {} pages was reached while the plugin asked for another page, which this \
                         run did not fetch; the next run starts again from the source URL, with the state this run \
                         commits, so keep your place in the state to page on",
                        project.max_pages
                    ),
                );
            }
        }
        tally.records = records.len() as u64;

        if records.is_empty() {
            if let Some(state) = &new_state {
                self.store.commit_state(tenant, &project.id, state).await.map_err(Failure::host)?;
            }
            return Ok(());
        }
        let entry = OutboxEntry {
            tenant_id: tenant.clone(),
            project_id: project.id.clone(),
            run_id: tally.run_id.clone(),
            scheduled_at_ms: tick.scheduled_at.as_millisecond(),
            state: new_state,
            records,
        };
        self.deliver_run(project, &session, &quotas, entry, nothing_waiting, tally).await
    }

    /// Fails the run when the tenant's undelivered records, with `adding` more, would exceed its
    /// `max_outbox_bytes` quota: one tenant must not fill the disk every tenant shares.
    pub(super) async fn check_outbox_bytes(
        &self,
        project: &Project,
        quotas: &Quotas,
        adding: u64,
    ) -> Result<(), Failure> {
        let waiting = self.store.disk_usage(&project.tenant_id).await.map_err(Failure::host)?.undelivered_bytes();
        // Before fetching (`adding` 0), a full quota stops the run; an entry stops it if it would
        // take the tenant over the quota.
        let over = if adding == 0 {
            waiting >= quotas.max_outbox_bytes
        } else {
            waiting.saturating_add(adding) > quotas.max_outbox_bytes
        };
        if !over {
            return Ok(());
        }
        let (stage, what) = if adding == 0 {
            (Stage::Deliver, "so this run did not fetch".to_string())
        } else {
            (Stage::Outbox, format!("so this run's {adding} bytes were not stored and the state did not advance"))
        };
        Err(Failure::tenant(
            stage,
            format!(
                "the tenant's records waiting for Kinesis, parked ones included, take {waiting} bytes, and its \
                 max_outbox_bytes quota is {}, {what}; fix what keeps them from being delivered, or retry or \
                 discard parked ones (GET /v1/projects/{}/outbox)",
                quotas.max_outbox_bytes, project.id
            ),
        ))
    }

    pub(super) async fn assume(&self, project: &Project) -> Result<Session, Failure> {
        // Projects that share the tenant's external id share a session too: the credentials are
        // cached per (role, external id), and the session is named for the tenant.
        let session_name = match project.trust {
            Trust::Tenant => crate::aws::tenant_session_name(&project.tenant_id),
            Trust::Project => crate::aws::session_name(&project.tenant_id, &project.id),
        };
        let role = RoleRef {
            role_arn: &project.target.role_arn,
            external_id: &project.onboarding.external_id,
            session_name: &session_name,
        };
        self.aws.assume(role).await.map_err(|e| {
            let message = if e.kind == AwsErrorKind::AccessDenied {
                let whose = match project.trust {
                    Trust::Tenant => "your tenant's, as ExternalId",
                    Trust::Project => "this project's, in ProjectExternalIds",
                };
                format!(
                    "{e}; update your tenant stack so that role {} trusts {} with external id {} ({whose})",
                    project.target.role_arn, project.onboarding.platform_principal_arn, project.onboarding.external_id
                )
            } else {
                e.to_string()
            };
            Failure::new(Stage::AssumeRole, message).with_kind(e.kind)
        })
    }

    async fn read_secret(&self, session: &Session, project: &Project, fresh: bool) -> Result<String, Failure> {
        let Some(key) = &project.source.api_key else { return Ok(String::new()) };
        if fresh {
            self.aws.forget_secret(session, &key.secret_arn);
        }
        self.aws
            .secret(session, &key.secret_arn, key.json_field.as_deref())
            .await
            .map_err(|e| Failure::new(Stage::Secret, e.to_string()).with_kind(e.kind))
    }

    /// The plugin for an id, compiling it (from the on-disk cache, usually) on first use.
    async fn plugin(&self, id: &str) -> Result<Plugin, Failure> {
        let bytes = async { self.store.plugin_bytes(id).await.map_err(Failure::host) };
        self.runtime.get_or_load(id, bytes).await?.ok_or_else(|| {
            Failure::tenant(
                Stage::LoadPlugin,
                format!("plugin {id} no longer exists; upload it again and PATCH the project"),
            )
        })
    }

    /// Fetches one page, re-reading the API key once if the source refuses it (the tenant may
    /// have rotated the secret since it was cached).
    async fn fetch_page(
        &self,
        project: &Project,
        session: &Session,
        origin: &url::Url,
        request: &Request,
        api_key: &mut Option<String>,
        tally: &mut Tally,
    ) -> Result<Fetched, Failure> {
        let mut reread = false;
        loop {
            let fetched =
                tally.time(Stage::Fetch, self.fetch_once(project, origin, request, api_key.as_deref())).await?;
            tally.http_status = Some(fetched.status);
            tally.bytes_fetched += fetched.body.len() as u64;
            let refused = matches!(fetched.status, 401 | 403);
            if refused && api_key.is_some() && !reread {
                reread = true;
                *api_key = Some(tally.time(Stage::Secret, self.read_secret(session, project, true)).await?);
                tally.keys.extend(api_key.clone());
                continue;
            }
            if refused && let Some(key) = &project.source.api_key {
                return Err(Failure::tenant(
                    Stage::Fetch,
                    format!(
                        "the source answered {} to the API key from secret {}, also after reading the secret again; \
                         store a valid key in the secret",
                        fetched.status, key.secret_arn
                    ),
                ));
            }
            if fetched.status == 429 || fetched.status >= 500 {
                let mut failure = Failure::new(
                    Stage::Fetch,
                    format!("the source answered {}; the run is retried on schedule", fetched.status),
                );
                failure.retry_after = fetched.retry_after;
                return Err(failure);
            }
            return Ok(fetched);
        }
    }

    async fn fetch_once(
        &self,
        project: &Project,
        origin: &url::Url,
        request: &Request,
        key: Option<&str>,
    ) -> Result<Fetched, Failure> {
        let api_key = match (&project.source.api_key, key) {
            (Some(source), Some(value)) => Some(SourceKey {
                value,
                placement: match (&source.header, &source.query_param) {
                    (_, Some(param)) => KeyPlacement::Query { param, prefix: &source.prefix },
                    (Some(name), None) => KeyPlacement::Header { name, prefix: &source.prefix },
                    (None, None) => KeyPlacement::Header { name: "x-api-key", prefix: &source.prefix },
                },
            }),
            _ => None,
        };
        let fetch = FetchRequest {
            method: &request.method,
            url: &request.url,
            origin,
            headers: &request.headers,
            body: request.body.as_deref(),
            api_key,
        };
        self.fetcher.fetch(fetch).await.map_err(|e| {
            let transient = e.is_transient();
            let failure = Failure::new(Stage::Fetch, e.to_string());
            if transient { failure } else { failure.with_kind(FailureKind::Tenant) }
        })
    }
}

/// Problems listed in one failure message; the rest are counted.
const MAX_PROBLEMS: usize = 5;

/// A plugin's error, as the tenant should read it.
fn plugin_failure(stage: Stage, error: CallError) -> Failure {
    match error {
        CallError::Rejected(message) => Failure::tenant(stage, format!("the plugin rejected the response: {message}")),
        CallError::Retry(message) => Failure::new(stage, format!("the plugin asked to retry later: {message}")),
        // Other tenants' calls held the host's memory: nothing for this tenant to fix.
        starved @ CallError::MemoryBudget { .. } => Failure::new(stage, format!("the plugin could not run: {starved}")),
        // The tenant's own calls held its share: its fleet, its fix.
        short @ CallError::MemoryShare { .. } => Failure::tenant(stage, format!("the plugin could not run: {short}")),
        other => Failure::tenant(stage, format!("the plugin failed: {other}")),
    }
}

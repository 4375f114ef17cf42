//! What the API calls when projects and tenants change, so that changes take effect at once.
//!
//! In a cluster, the host that serves the API call may not run the project: every change is
//! also published to the store's change feed, which the host holding the project's partition
//! reads every second and applies ([`Control::apply`]); this host applies it itself only to the
//! projects it holds.

use jiff::Timestamp;

use crate::cluster::Cluster;
use crate::scheduler::{Entry, ProjectKey, RunNowError, Scheduler};
use crate::store::{Change, Project, ProjectStatus, Store, Tenant, TenantStatus, random_hex};

/// The API's handle on the scheduler. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    scheduler: Scheduler,
    store: Store,
    cluster: Option<Cluster>,
    /// Whether this process runs the scheduler; a cluster's API-only host does not.
    scheduling: bool,
}

fn key(tenant: &str, project: &str) -> ProjectKey {
    ProjectKey { tenant: tenant.into(), project: project.into() }
}

impl Control {
    /// A handle on `scheduler` for projects in `store`. The daemon gets it from
    /// `DataPlane::control`; an API served with its own scheduler (tests) builds one here.
    pub fn new(scheduler: Scheduler, store: Store) -> Self {
        Self { scheduler, store, cluster: None, scheduling: true }
    }

    /// The same, for a member of `cluster`.
    pub fn clustered(scheduler: Scheduler, store: Store, cluster: Option<Cluster>) -> Self {
        Self { scheduler, store, cluster, scheduling: true }
    }

    /// The same, for a process that serves the API only: it runs nothing itself, and hands every
    /// change to the hosts that run the projects.
    pub fn api_only(self) -> Self {
        Self { scheduling: false, ..self }
    }

    /// This host's membership of a cluster, if any.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    /// Whether the data plane is ready: its scheduler runs, and in a cluster the host has taken
    /// its share of the leases or found none to take. Always, in a process that serves the API
    /// only.
    pub fn data_plane_ready(&self) -> bool {
        !self.scheduling || (self.scheduler_alive() && self.cluster.as_ref().is_none_or(Cluster::is_ready))
    }

    /// Whether this host runs the project: always without a cluster.
    fn runs_here(&self, tenant: &str, project: &str) -> bool {
        self.scheduling && self.cluster.as_ref().is_none_or(|cluster| cluster.owns(tenant, project))
    }

    /// Publishes a change for the host that runs the project (in a cluster; nothing otherwise).
    async fn publish(&self, tenant: &str, project: Option<&str>, run_now_at: Option<Timestamp>) {
        if self.cluster.is_none() {
            return;
        }
        let change = Change {
            id: random_hex(8),
            at_ms: Timestamp::now().as_millisecond(),
            tenant: tenant.to_string(),
            project: project.map(str::to_string),
            run_now_at_ms: run_now_at.map(|at| at.as_millisecond()),
        };
        // Boxed: the SDK's request future is large, and the API handlers awaiting this one are
        // deep already.
        if let Err(e) = Box::pin(self.store.publish_change(&change)).await {
            tracing::warn!(%tenant, "cannot publish a change to the other hosts; they see it at their next hand-over: {e}");
        }
    }

    /// Applies a change another host published, if this host runs what it names.
    pub(crate) async fn apply(&self, change: &Change) {
        let tenant = &change.tenant;
        let Some(project_id) = &change.project else {
            match self.store.tenant(tenant).await {
                Ok(Some(tenant)) => self.tenant_changed_here(&tenant).await,
                Ok(None) => self.scheduler.remove_tenant(tenant),
                Err(e) => tracing::warn!(%tenant, "cannot read a changed tenant: {e}"),
            }
            return;
        };
        if !self.runs_here(tenant, project_id) {
            return;
        }
        let key = key(tenant, project_id);
        if let Some(at_ms) = change.run_now_at_ms {
            let at = Timestamp::from_millisecond(at_ms).unwrap_or_else(|_| Timestamp::now());
            if let Err(e) = self.scheduler.run_now_at(&key, at) {
                tracing::info!(project = %project_id, "a manual run asked for through another host did not start: {e}");
            }
            return;
        }
        match self.store.project(tenant, project_id).await {
            Ok(Some(project)) => self.project_changed_here(&project).await,
            Ok(None) => self.scheduler.remove(&key),
            Err(e) => tracing::warn!(project = %project_id, "cannot read a changed project: {e}"),
        }
    }

    /// The scheduler entry for a stored project. Its schedule and time zone were parsed when it
    /// was read: a project that loads is one the scheduler can run.
    async fn entry(&self, project: &Project) -> Entry {
        let anchor = project.created_at.parse::<Timestamp>().unwrap_or(Timestamp::UNIX_EPOCH);
        // The newest run's nominal time tells whether a firing was missed while the daemon was down.
        let last_scheduled_at = self
            .store
            .runs(&project.tenant_id, &project.id, 1)
            .await
            .ok()
            .and_then(|runs| runs.into_iter().next())
            .and_then(|run| run.scheduled_at.parse::<Timestamp>().ok());
        Entry {
            schedule: project.schedule.clone(),
            timezone: project.timezone.zone().clone(),
            anchor,
            last_scheduled_at,
            paused: project.status == ProjectStatus::Paused,
            not_before: project.backoff_until.as_deref().and_then(|t| t.parse().ok()),
        }
    }

    /// Registers a new or changed project (schedule, timezone, pause and resume).
    pub async fn project_changed(&self, project: &Project) {
        self.publish(&project.tenant_id, Some(&project.id), None).await;
        self.project_changed_here(project).await;
    }

    async fn project_changed_here(&self, project: &Project) {
        if !self.runs_here(&project.tenant_id, &project.id) {
            self.scheduler.remove(&key(&project.tenant_id, &project.id));
            return;
        }
        let disabled = self
            .store
            .tenant(&project.tenant_id)
            .await
            .ok()
            .flatten()
            .is_none_or(|tenant| tenant.status == TenantStatus::Disabled);
        if disabled {
            self.scheduler.remove(&key(&project.tenant_id, &project.id));
        } else {
            self.scheduler.upsert(key(&project.tenant_id, &project.id), self.entry(project).await);
        }
    }

    /// Stops a deleted project.
    pub async fn project_removed(&self, tenant: &str, project: &str) {
        self.scheduler.remove(&key(tenant, project));
        self.publish(tenant, Some(project), None).await;
    }

    /// Stops a disabled or deleted tenant's projects, or starts an enabled tenant's again.
    pub async fn tenant_changed(&self, tenant: &Tenant) {
        self.publish(&tenant.id, None, None).await;
        self.tenant_changed_here(tenant).await;
    }

    async fn tenant_changed_here(&self, tenant: &Tenant) {
        if tenant.status != TenantStatus::Active {
            self.scheduler.remove_tenant(&tenant.id);
            return;
        }
        // Projects the scheduler knows stay registered (an upsert of a known project owes it no
        // catch-up run: the history a catch-up is decided from may lag the last run by a second).
        for project in self.store.projects(&tenant.id).await.unwrap_or_default() {
            self.project_changed_here(&project).await;
        }
    }

    /// Stops a deleted tenant's projects.
    pub async fn tenant_removed(&self, tenant: &str) {
        self.scheduler.remove_tenant(tenant);
        self.publish(tenant, None, None).await;
    }

    /// Runs a project now, outside its schedule. Returns the run's nominal time. In a cluster,
    /// a project another host runs is handed to that host through the change feed: it starts
    /// there within about a second, unless a run of it is still going.
    pub async fn run_now(&self, project: &Project) -> Result<Timestamp, RunNowError> {
        let key = key(&project.tenant_id, &project.id);
        if self.runs_here(&project.tenant_id, &project.id) {
            return self.scheduler.run_now(&key);
        }
        let at = self.scheduler.clock().now().round(jiff::Unit::Millisecond).unwrap_or_else(|_| Timestamp::now());
        self.publish(&project.tenant_id, Some(&project.id), Some(at)).await;
        Ok(at)
    }

    /// Whether the scheduler's driver is running.
    pub fn scheduler_alive(&self) -> bool {
        self.scheduler.stats().driver_alive
    }

    /// How far behind the scheduler is (see `scheduler::SchedulerLoad`).
    pub fn scheduler_load(&self) -> crate::scheduler::SchedulerLoad {
        self.scheduler.load()
    }

    /// Registers every active tenant's projects that `wanted` accepts (at start-up: all of
    /// them; in a cluster, those of partitions this host just took), and returns them.
    pub(super) async fn load_all(&self, wanted: impl Fn(&Project) -> bool) -> crate::store::Result<Vec<Project>> {
        let mut loaded = Vec::new();
        for tenant in self.store.tenants().await? {
            if tenant.status == TenantStatus::Active {
                // The tenant is known active: one read per project (its newest run), not two.
                for project in self.store.projects(&tenant.id).await? {
                    if wanted(&project) {
                        self.scheduler.upsert(key(&tenant.id, &project.id), self.entry(&project).await);
                        loaded.push(project);
                    }
                }
            }
        }
        Ok(loaded)
    }
}

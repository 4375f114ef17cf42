//! What the API calls when projects and tenants change, so that changes take effect at once.

use jiff::Timestamp;

use crate::scheduler::{Entry, ProjectKey, RunNowError, Scheduler};
use crate::store::{Project, ProjectStatus, Store, Tenant, TenantStatus};

/// The API's handle on the scheduler. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    scheduler: Scheduler,
    store: Store,
}

fn key(tenant: &str, project: &str) -> ProjectKey {
    ProjectKey { tenant: tenant.into(), project: project.into() }
}

impl Control {
    /// A handle on `scheduler` for projects in `store`. The daemon gets it from
    /// `DataPlane::control`; an API served with its own scheduler (tests) builds one here.
    pub fn new(scheduler: Scheduler, store: Store) -> Self {
        Self { scheduler, store }
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
    pub fn project_removed(&self, tenant: &str, project: &str) {
        self.scheduler.remove(&key(tenant, project));
    }

    /// Stops a disabled or deleted tenant's projects, or starts an enabled tenant's again.
    pub async fn tenant_changed(&self, tenant: &Tenant) {
        self.scheduler.remove_tenant(&tenant.id);
        if tenant.status == TenantStatus::Active {
            for project in self.store.projects(&tenant.id).await.unwrap_or_default() {
                self.project_changed(&project).await;
            }
        }
    }

    /// Stops a deleted tenant's projects.
    pub fn tenant_removed(&self, tenant: &str) {
        self.scheduler.remove_tenant(tenant);
    }

    /// Runs a project now, outside its schedule. Returns the run's nominal time.
    pub fn run_now(&self, project: &Project) -> Result<Timestamp, RunNowError> {
        self.scheduler.run_now(&key(&project.tenant_id, &project.id))
    }

    /// Whether the scheduler's driver is running.
    pub fn scheduler_alive(&self) -> bool {
        self.scheduler.stats().driver_alive
    }

    /// How far behind the scheduler is (see `scheduler::SchedulerLoad`).
    pub fn scheduler_load(&self) -> crate::scheduler::SchedulerLoad {
        self.scheduler.load()
    }

    /// Registers every active tenant's projects, at start-up.
    pub(super) async fn load_all(&self) -> crate::store::Result<()> {
        for tenant in self.store.tenants().await? {
            if tenant.status == TenantStatus::Active {
                // The tenant is known active: one read per project (its newest run), not two.
                for project in self.store.projects(&tenant.id).await? {
                    self.scheduler.upsert(key(&tenant.id, &project.id), self.entry(&project).await);
                }
            }
        }
        Ok(())
    }
}

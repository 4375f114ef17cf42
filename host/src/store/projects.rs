//! Projects, keyed by tenant so that one tenant's scan never sees another's.

use sled::Transactional;

use super::model::Project;
use super::{Result, SledStore, add_count, decode, decode_entry, encode};

/// What [`SledStore::create_project`] did.
#[derive(Debug)]
pub enum CreateProject {
    Created(Box<Project>),
    /// The tenant already has its maximum number of projects.
    QuotaExceeded,
}

fn record_key(tenant: &str, id: &str) -> String {
    format!("{tenant}/{id}")
}

fn count_key(tenant: &str) -> String {
    format!("{tenant}/projects")
}

impl SledStore {
    /// Stores a new project unless the tenant is at `max_projects`.
    pub async fn create_project(&self, project: Project, max_projects: u32) -> Result<CreateProject> {
        let guard = self.quota_lock.lock().await;
        let counter = count_key(&project.tenant_id);
        if self.count(&counter)? >= u64::from(max_projects) {
            return Ok(CreateProject::QuotaExceeded);
        }
        let key = record_key(&project.tenant_id, &project.id);
        let value = encode(&project)?;
        (&self.projects, &self.counts).transaction(|(projects, counts)| {
            projects.insert(key.as_bytes(), value.as_slice())?;
            add_count(counts, &counter, 1)
        })?;
        // The lock guards the count, which the transaction has settled; flushing outside it lets
        // concurrent creates share one disk sync instead of queueing one each.
        drop(guard);
        self.flush().await?;
        Ok(CreateProject::Created(Box::new(project)))
    }

    /// One of a tenant's projects.
    pub async fn project(&self, tenant: &str, id: &str) -> Result<Option<Project>> {
        let key = record_key(tenant, id);
        self.projects.get(&key)?.map(|raw| decode(&key, &raw)).transpose()
    }

    /// A tenant's projects, in id order.
    pub async fn projects(&self, tenant: &str) -> Result<Vec<Project>> {
        self.projects.scan_prefix(format!("{tenant}/")).map(decode_entry).collect()
    }

    /// Changes a stored project in place, atomically with respect to other updates of the same
    /// project, and returns the result; `None` if it no longer exists. `change` may run more
    /// than once when updates race, so it must not have side effects.
    pub async fn update_project(
        &self,
        tenant: &str,
        id: &str,
        change: impl Fn(&mut Project),
    ) -> Result<Option<Project>> {
        let key = record_key(tenant, id);
        let mut updated = None;
        let mut failure = None;
        self.projects.fetch_and_update(&key, |old| {
            let old = old?;
            match decode::<Project>(&key, old) {
                Ok(mut project) => {
                    change(&mut project);
                    let bytes = encode(&project).ok();
                    updated = Some(project);
                    bytes.or_else(|| Some(old.to_vec()))
                }
                Err(e) => {
                    failure = Some(e);
                    Some(old.to_vec())
                }
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        if updated.is_some() {
            self.flush().await?;
        }
        Ok(updated)
    }

    /// Removes a project with its run history, state and undelivered records. Returns whether it
    /// existed.
    pub async fn delete_project(&self, tenant: &str, id: &str) -> Result<bool> {
        let key = record_key(tenant, id);
        let counter = count_key(tenant);
        let existed = (&self.projects, &self.counts).transaction(|(projects, counts)| {
            let existed = projects.remove(key.as_bytes())?.is_some();
            if existed {
                add_count(counts, &counter, -1)?;
            }
            Ok(existed)
        })?;
        self.delete_runs_of(tenant, id)?;
        self.delete_state_of(tenant, id).await?;
        self.flush().await?;
        Ok(existed)
    }

    /// The first of a tenant's projects that uses a plugin, if any.
    pub async fn project_using_plugin(&self, tenant: &str, plugin_id: &str) -> Result<Option<String>> {
        Ok(self.projects(tenant).await?.into_iter().find(|p| p.plugin_id == plugin_id).map(|p| p.id))
    }

    /// Removes all of a tenant's projects (when the tenant is deleted).
    pub(crate) async fn delete_projects_of(&self, tenant: &str) -> Result<()> {
        for project in self.projects(tenant).await? {
            self.delete_project(tenant, &project.id).await?;
        }
        Ok(())
    }
}

/// A valid active project record, for the store's tests.
#[cfg(test)]
pub(crate) fn test_project(tenant: &str, id: &str, plugin: &str) -> Project {
    serde_json::from_value(serde_json::json!({
        "id": id, "tenant_id": tenant, "name": "p", "schedule": "rate(1 hour)", "timezone": "UTC",
        "source": {"url": "https://api.example.com/"}, "plugin_id": plugin, "plugin_settings": {},
        "target": {"stream_arn": "arn:aws:kinesis:eu-central-1:111111111111:stream/s",
                   "role_arn": "arn:aws:iam::111111111111:role/r"},
        "max_pages": 10, "status": "active", "status_message": "",
        "onboarding": {"platform_principal_arn": "arn:aws:iam::1:role/x", "external_id": "e"},
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
    }))
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::Record;
    use crate::store::OutboxEntry;

    #[tokio::test]
    async fn deleting_a_project_removes_its_state_and_undelivered_records_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        for id in ["prj_1", "prj_2"] {
            store.create_project(test_project("ten_a", id, "sha256:00"), 10).await.unwrap();
            store.commit_state("ten_a", id, b"cursor").await.unwrap();
            let records = vec![Record { data: b"x".to_vec(), partition_key: "k".into(), explicit_hash_key: None }];
            let entry = OutboxEntry {
                tenant_id: "ten_a".into(),
                project_id: id.into(),
                run_id: "run_1".into(),
                scheduled_at_ms: 0,
                state: Some(b"next".to_vec()),
                records,
            };
            store.enqueue(entry.clone()).await.unwrap();
        }
        let updated = store.update_project("ten_a", "prj_1", |p| p.consecutive_failures = 4).await.unwrap();
        assert_eq!(updated.unwrap().consecutive_failures, 4);

        assert!(store.delete_project("ten_a", "prj_1").await.unwrap());
        assert_eq!(store.committed_state("ten_a", "prj_1").await.unwrap(), None);
        assert_eq!(store.outbox_len_of("ten_a", "prj_1").await, 0);
        assert!(store.update_project("ten_a", "prj_1", |_| {}).await.unwrap().is_none(), "gone stays gone");
        assert_eq!(store.committed_state("ten_a", "prj_2").await.unwrap().as_deref(), Some(&b"cursor"[..]));
        assert_eq!(store.outbox_len_of("ten_a", "prj_2").await, 1);
    }
}

//! Projects, plugins and their components in DynamoDB and S3, with the tenant's quota counts
//! kept in the same transactions.

use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};

use super::super::keys::random_hex;
use super::super::model::{PluginMeta, Project};
use super::super::{CreatePlugin, CreateProject, DeletePlugin, StoreError};
use super::tenants::contended;
use super::{
    DynamoStore, cancelled_conditions, counts_key, doc, doc_of, holders_key, local, n, number_of, plugin_key,
    project_key, remote, s, string_of, tenant_pk,
};

/// How often a write is tried when other writers keep changing what it depends on.
const ATTEMPTS: usize = 20;

/// The S3 key of a component's bytes in one generation.
fn object_key(id: &str, generation: &str) -> String {
    format!("components/{}/{generation}", id.trim_start_matches("sha256:"))
}

fn build<T>(built: Result<T, aws_sdk_dynamodb::error::BuildError>) -> Result<T, StoreError> {
    built.map_err(|e| local("TransactWriteItems", e))
}

impl DynamoStore {
    /// Raises (or, with a negative `delta`, lowers) one of the tenant's counts; a raise is
    /// conditional on the count staying within `max`.
    fn count_update(&self, tenant: &str, count: &str, delta: i64, max: Option<u32>) -> Result<Update, StoreError> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(counts_key(tenant)))
            .update_expression(format!("ADD {count} :delta"))
            .expression_attribute_values(":delta", n(delta));
        if let Some(max) = max {
            update = update
                .condition_expression(format!("attribute_not_exists({count}) OR {count} < :max"))
                .expression_attribute_values(":max", n(max));
        }
        build(update.build())
    }

    pub(super) fn project_put(&self, project: &Project, version: i64) -> Result<Put, StoreError> {
        let mut item = project_key(&project.tenant_id, &project.id);
        item.insert("doc".into(), doc(project)?);
        item.insert("v".into(), n(version));
        build(Put::builder().table_name(&self.table).set_item(Some(item)).build())
    }

    /// Stores a new project unless the tenant is at `max_projects`.
    pub async fn create_project(&self, project: Project, max_projects: u32) -> Result<CreateProject, StoreError> {
        let mut put = self.project_put(&project, 1)?;
        put.condition_expression = Some("attribute_not_exists(pk)".into());
        let written = self
            .db
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .update(self.count_update(&project.tenant_id, "projects", 1, Some(max_projects))?)
                    .build(),
            )
            .transact_items(TransactWriteItem::builder().put(put).build())
            .send()
            .await;
        match written {
            Ok(_) => Ok(CreateProject::Created(Box::new(project))),
            Err(e) if cancelled_conditions(&e).is_some_and(|failed| failed.first() == Some(&true)) => {
                Ok(CreateProject::QuotaExceeded)
            }
            Err(e) => Err(remote("TransactWriteItems", e)),
        }
    }

    /// One of a tenant's projects.
    pub async fn project(&self, tenant: &str, id: &str) -> Result<Option<Project>, StoreError> {
        self.get(project_key(tenant, id)).await?.map(|item| doc_of(&item)).transpose()
    }

    /// A tenant's projects, in id order.
    pub async fn projects(&self, tenant: &str) -> Result<Vec<Project>, StoreError> {
        self.query(&tenant_pk(tenant), "project#").await?.iter().map(doc_of).collect()
    }

    /// Changes a stored project and returns the result; `None` if it no longer exists. An
    /// update that another writer overtook reads the project again and retries, so `change` may
    /// run more than once and must not have side effects.
    pub async fn update_project(
        &self,
        tenant: &str,
        id: &str,
        change: impl Fn(&mut Project),
    ) -> Result<Option<Project>, StoreError> {
        self.update_versioned(project_key(tenant, id), "project", id, change).await
    }

    /// Removes a project and gives its place in the quota back. Returns whether it existed.
    pub async fn delete_project(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let delete = build(
            Delete::builder()
                .table_name(&self.table)
                .set_key(Some(project_key(tenant, id)))
                .condition_expression("attribute_exists(pk)")
                .build(),
        )?;
        let written = self
            .db
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete).build())
            .transact_items(
                TransactWriteItem::builder().update(self.count_update(tenant, "projects", -1, None)?).build(),
            )
            .send()
            .await;
        let existed = match written {
            Ok(_) => true,
            Err(e) if cancelled_conditions(&e).is_some_and(|failed| failed.first() == Some(&true)) => false,
            Err(e) => return Err(remote("TransactWriteItems", e)),
        };
        // Also when the project was gone already: a delete cut short on another host left its
        // state, records or history behind.
        self.delete_state_of(tenant, id).await?;
        self.delete_runs_of(tenant, id).await?;
        Ok(existed)
    }

    /// The first of a tenant's projects that uses a plugin, if any.
    pub async fn project_using_plugin(&self, tenant: &str, plugin_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.projects(tenant).await?.into_iter().find(|p| p.plugin_id == plugin_id).map(|p| p.id))
    }

    /// Stores a plugin for a tenant unless it already has it or is at `max_plugins`; the bytes go
    /// to S3 once, however many tenants hold them.
    pub async fn create_plugin(
        &self,
        tenant: &str,
        meta: PluginMeta,
        bytes: &[u8],
        max_plugins: u32,
    ) -> Result<CreatePlugin, StoreError> {
        for _ in 0..ATTEMPTS {
            if let Some(existing) = self.plugin(tenant, &meta.id).await? {
                return Ok(CreatePlugin::Exists(existing));
            }
            // Join the component's current generation, or start one with an object of its own.
            let (holders, uploaded) = match self.get(holders_key(&meta.id)).await? {
                Some(item) => {
                    let generation = string_of(&item, "generation")?.to_string();
                    let update = Update::builder()
                        .table_name(&self.table)
                        .set_key(Some(holders_key(&meta.id)))
                        .update_expression("ADD holders :one")
                        .condition_expression("generation = :generation")
                        .expression_attribute_values(":one", n(1))
                        .expression_attribute_values(":generation", s(&generation));
                    (TransactWriteItem::builder().update(build(update.build())?).build(), None)
                }
                None => {
                    let generation = random_hex(8);
                    self.put_object(&object_key(&meta.id, &generation), bytes).await?;
                    let mut item = holders_key(&meta.id);
                    item.insert("holders".into(), n(1));
                    item.insert("generation".into(), s(&generation));
                    let put = Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(item))
                        .condition_expression("attribute_not_exists(pk)");
                    (TransactWriteItem::builder().put(build(put.build())?).build(), Some(generation))
                }
            };
            let mut record = plugin_key(tenant, &meta.id);
            record.insert("doc".into(), doc(&meta)?);
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(record))
                .condition_expression("attribute_not_exists(pk)");
            let written = self
                .db
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(build(put.build())?).build())
                .transact_items(
                    TransactWriteItem::builder()
                        .update(self.count_update(tenant, "plugins", 1, Some(max_plugins))?)
                        .build(),
                )
                .transact_items(holders)
                .send()
                .await;
            let failed = match written {
                Ok(_) => return Ok(CreatePlugin::Created(meta)),
                Err(e) => match cancelled_conditions(&e) {
                    Some(failed) => failed,
                    None => return Err(remote("TransactWriteItems", e)),
                },
            };
            if let Some(generation) = uploaded {
                // Nobody names this generation: another upload started the component first.
                self.delete_object(&object_key(&meta.id, &generation)).await?;
            }
            // The plugin appeared meanwhile (the next pass says so), or the component's holders
            // changed (the next pass joins them again); else the quota is full.
            if failed.first() != Some(&true) && failed.get(1) == Some(&true) {
                return Ok(CreatePlugin::QuotaExceeded);
            }
        }
        Err(contended("plugin", &meta.id))
    }

    /// One of a tenant's plugins.
    pub async fn plugin(&self, tenant: &str, id: &str) -> Result<Option<PluginMeta>, StoreError> {
        self.get(plugin_key(tenant, id)).await?.map(|item| doc_of(&item)).transpose()
    }

    /// A tenant's plugins, in id order.
    pub async fn plugins(&self, tenant: &str) -> Result<Vec<PluginMeta>, StoreError> {
        self.query(&tenant_pk(tenant), "plugin#").await?.iter().map(doc_of).collect()
    }

    /// A plugin's component bytes, if any tenant still holds it.
    pub async fn plugin_bytes(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(item) = self.get(holders_key(id)).await? else { return Ok(None) };
        if number_of(&item, "holders")? <= 0 {
            return Ok(None);
        }
        let object = object_key(id, string_of(&item, "generation")?);
        let output =
            self.s3.get_object().bucket(&self.bucket).key(&object).send().await.map_err(|e| remote("GetObject", e))?;
        let bytes = output.body.collect().await.map_err(|e| local("GetObject", e))?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }

    /// Removes one of a tenant's plugins unless a project of the tenant uses it.
    pub async fn delete_plugin(&self, tenant: &str, id: &str) -> Result<DeletePlugin, StoreError> {
        if let Some(project) = self.project_using_plugin(tenant, id).await? {
            return Ok(DeletePlugin::InUse(project));
        }
        self.remove_plugin(tenant, id).await
    }

    pub(super) async fn remove_plugin(&self, tenant: &str, id: &str) -> Result<DeletePlugin, StoreError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(plugin_key(tenant, id)))
            .condition_expression("attribute_exists(pk)");
        let release = Update::builder()
            .table_name(&self.table)
            .set_key(Some(holders_key(id)))
            .update_expression("ADD holders :minus")
            .expression_attribute_values(":minus", n(-1));
        let written = self
            .db
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(build(delete.build())?).build())
            .transact_items(
                TransactWriteItem::builder().update(self.count_update(tenant, "plugins", -1, None)?).build(),
            )
            .transact_items(TransactWriteItem::builder().update(build(release.build())?).build())
            .send()
            .await;
        match written {
            Ok(_) => {}
            Err(e) if cancelled_conditions(&e).is_some_and(|failed| failed.first() == Some(&true)) => {
                return Ok(DeletePlugin::Absent);
            }
            Err(e) => return Err(remote("TransactWriteItems", e)),
        }
        self.collect_component(id).await?;
        Ok(DeletePlugin::Deleted)
    }

    /// Deletes a component nobody holds: first the item that names its generation (only while it
    /// still has no holder), then the object, which no reader can reach any more.
    async fn collect_component(&self, id: &str) -> Result<(), StoreError> {
        let Some(item) = self.get(holders_key(id)).await? else { return Ok(()) };
        if number_of(&item, "holders")? > 0 {
            return Ok(());
        }
        let generation = string_of(&item, "generation")?.to_string();
        let deleted = self
            .db
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(holders_key(id)))
            .condition_expression("holders <= :zero AND generation = :generation")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":generation", s(&generation))
            .send()
            .await;
        match deleted {
            Ok(_) => self.delete_object(&object_key(id, &generation)).await,
            // A new holder came first: the component stays.
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(remote("DeleteItem", e)),
        }
    }

    /// Stores a component's bytes in one generation (for imports).
    pub(super) async fn put_component_object(
        &self,
        id: &str,
        generation: &str,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.put_object(&object_key(id, generation), bytes).await
    }

    /// Deletes a component's bytes in one generation (for imports).
    pub(super) async fn delete_component_object(&self, id: &str, generation: &str) -> Result<(), StoreError> {
        self.delete_object(&object_key(id, generation)).await
    }

    async fn put_object(&self, object: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let body = aws_sdk_s3::primitives::ByteStream::from(bytes.to_vec());
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(object)
            .body(body)
            .send()
            .await
            .map_err(|e| remote("PutObject", e))?;
        Ok(())
    }

    async fn delete_object(&self, object: &str) -> Result<(), StoreError> {
        self.s3.delete_object().bucket(&self.bucket).key(object).send().await.map_err(|e| remote("DeleteObject", e))?;
        Ok(())
    }
}

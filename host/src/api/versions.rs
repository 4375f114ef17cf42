//! Versions of a plugin by name: every upload under a name is a version, the newest is the one
//! uploaded last, and projects that name a plugin (`"plugin": NAME`) follow its newest version.

use super::AppState;
use super::error::ApiError;
use crate::store::{PluginMeta, Tenant};

/// When a plugin was uploaded, as an instant: the stored RFC 3339 text does not sort as a string,
/// since it drops trailing zeros of the fraction.
pub(super) fn created(plugin: &PluginMeta) -> jiff::Timestamp {
    plugin.created_at.parse().unwrap_or_default()
}

/// The newest version of the tenant's plugin `name`, if it has one.
pub(super) async fn newest(state: &AppState, tenant: &str, name: &str) -> Result<Option<PluginMeta>, ApiError> {
    let plugins = state.store.plugins(tenant).await?;
    Ok(plugins.into_iter().filter(|plugin| plugin.name == name).max_by_key(created))
}

/// Moves the tenant's projects that follow the name `name` onto its newest version; returns how
/// many moved. Run after every upload under the name, the repeated ones too, so that an upload
/// answered with an error after its plugin was stored is completed by sending it again.
pub(super) async fn follow(state: &AppState, tenant: &Tenant, name: &str) -> Result<usize, ApiError> {
    let Some(newest) = newest(state, &tenant.id, name).await? else { return Ok(0) };
    let mut moved = 0;
    for project in state.store.projects(&tenant.id).await? {
        if project.plugin.as_deref() != Some(name) || project.plugin_id == newest.id {
            continue;
        }
        let saved = super::projects::save(state, tenant, &project.id, |project| {
            // The project may have been pinned or pointed elsewhere meanwhile.
            if project.plugin.as_deref() == Some(name) {
                project.plugin_id = newest.id.clone();
            }
        })
        .await;
        match saved {
            Ok(_) => moved += 1,
            // Deleted meanwhile: nothing to move.
            Err(ApiError::NotFound(_)) => {}
            Err(error) => return Err(error),
        }
    }
    if moved > 0 {
        tracing::info!(tenant = %tenant.id, plugin = %newest.id, name, moved, "projects follow a new version");
    }
    Ok(moved)
}

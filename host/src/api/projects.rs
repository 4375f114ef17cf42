//! Tenant routes for projects: create, list, show, change, delete, pause and resume.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::extract::{Json, Query};
use super::project_input::{ProjectInput, ProjectPatch};
use crate::store::{
    CreateProject, Onboarding, Project, ProjectStatus, RUNS_KEPT, Run, Tenant, Usage, now_rfc3339, random_hex,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/projects", post(create).get(list))
        .route("/v1/projects/{id}", get(show).patch(update).delete(remove))
        .route("/v1/projects/{id}/pause", post(pause))
        .route("/v1/projects/{id}/resume", post(resume))
        .route("/v1/projects/{id}/runs", get(runs))
        .route("/v1/usage", get(usage))
}

#[derive(Debug, Serialize)]
struct ProjectList {
    projects: Vec<Project>,
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no project with id {id}; list your projects with GET /v1/projects"))
}

const PENDING_MESSAGE: &str = "waiting for the first successful AssumeRole: update your tenant stack with \
     onboarding.platform_principal_arn and onboarding.external_id so that the role trusts this project";

fn input_of(project: &Project) -> ProjectInput {
    ProjectInput {
        name: project.name.clone(),
        schedule: project.schedule.clone(),
        timezone: project.timezone.clone(),
        source: project.source.clone(),
        plugin_id: project.plugin_id.clone(),
        plugin_settings: project.plugin_settings.clone(),
        target: project.target.clone(),
        max_pages: project.max_pages,
    }
}

fn validate(state: &AppState, tenant: &Tenant, input: ProjectInput) -> Result<ProjectInput, ApiError> {
    let store = &state.store;
    input.validate(&tenant.quotas(), |plugin| store.plugin(&tenant.id, plugin).ok().flatten().is_some())
}

async fn create(
    Caller(tenant): Caller,
    State(state): State<AppState>,
    Json(input): Json<ProjectInput>,
) -> Result<(StatusCode, axum::Json<Project>), ApiError> {
    let input = validate(&state, &tenant, input)?;
    let now = now_rfc3339();
    let project = Project {
        id: format!("prj_{}", random_hex(8)),
        tenant_id: tenant.id.clone(),
        name: input.name.trim().to_string(),
        schedule: input.schedule,
        timezone: input.timezone,
        source: input.source,
        plugin_id: input.plugin_id,
        plugin_settings: input.plugin_settings,
        target: input.target,
        max_pages: input.max_pages,
        status: ProjectStatus::Pending,
        status_message: PENDING_MESSAGE.into(),
        onboarding: Onboarding {
            platform_principal_arn: state.platform_principal_arn.to_string(),
            external_id: random_hex(16),
        },
        created_at: now.clone(),
        updated_at: now,
    };
    match state.store.create_project(project, tenant.quotas().max_projects).await? {
        CreateProject::Created(project) => Ok((StatusCode::CREATED, axum::Json(*project))),
        CreateProject::QuotaExceeded => Err(ApiError::Forbidden {
            code: "quota_exceeded",
            message: format!(
                "this tenant already has its max_projects quota of {} projects; delete one or ask the operator to raise the quota",
                tenant.quotas().max_projects
            ),
        }),
    }
}

async fn list(Caller(tenant): Caller, State(state): State<AppState>) -> Result<axum::Json<ProjectList>, ApiError> {
    Ok(axum::Json(ProjectList { projects: state.store.projects(&tenant.id)? }))
}

fn find(state: &AppState, tenant: &Tenant, id: &str) -> Result<Project, ApiError> {
    state.store.project(&tenant.id, id)?.ok_or_else(|| not_found(id))
}

async fn show(
    Caller(tenant): Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Project>, ApiError> {
    Ok(axum::Json(find(&state, &tenant, &id)?))
}

async fn save(state: &AppState, mut project: Project) -> Result<axum::Json<Project>, ApiError> {
    project.updated_at = now_rfc3339();
    if !state.store.put_project(&project).await? {
        return Err(not_found(&project.id));
    }
    Ok(axum::Json(project))
}

async fn update(
    Caller(tenant): Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(patch): Json<ProjectPatch>,
) -> Result<axum::Json<Project>, ApiError> {
    let mut project = find(&state, &tenant, &id)?;
    let input = validate(&state, &tenant, patch.apply(input_of(&project)))?;
    // A different role has not trusted this project yet: onboarding starts over.
    if input.target.role_arn != project.target.role_arn && project.status != ProjectStatus::Paused {
        project.status = ProjectStatus::Pending;
        project.status_message = PENDING_MESSAGE.into();
    }
    project.name = input.name.trim().to_string();
    project.schedule = input.schedule;
    project.timezone = input.timezone;
    project.source = input.source;
    project.plugin_id = input.plugin_id;
    project.plugin_settings = input.plugin_settings;
    project.target = input.target;
    project.max_pages = input.max_pages;
    save(&state, project).await
}

async fn remove(
    Caller(tenant): Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_project(&tenant.id, &id).await? { Ok(StatusCode::NO_CONTENT) } else { Err(not_found(&id)) }
}

async fn pause(
    Caller(tenant): Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Project>, ApiError> {
    let mut project = find(&state, &tenant, &id)?;
    project.status = ProjectStatus::Paused;
    project.status_message = "paused by the tenant; POST /v1/projects/{id}/resume to run it again".replace("{id}", &id);
    save(&state, project).await
}

async fn resume(
    Caller(tenant): Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Project>, ApiError> {
    let mut project = find(&state, &tenant, &id)?;
    if project.status == ProjectStatus::Paused {
        // The role may have changed while paused; the next successful AssumeRole confirms it.
        project.status = ProjectStatus::Pending;
        project.status_message = PENDING_MESSAGE.into();
    }
    save(&state, project).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    /// How many runs to return, newest first (default 20, at most 100).
    limit: Option<usize>,
}

#[derive(Debug, Serialize)]
struct RunList {
    runs: Vec<Run>,
}

/// `GET /v1/projects/{id}/runs?limit=N`: the project's most recent runs, newest first.
async fn runs(
    Caller(tenant): Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<RunsQuery>,
) -> Result<axum::Json<RunList>, ApiError> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=RUNS_KEPT).contains(&limit) {
        return Err(ApiError::invalid(format!("`limit` must be between 1 and {RUNS_KEPT}")));
    }
    find(&state, &tenant, &id)?;
    Ok(axum::Json(RunList { runs: state.store.runs(&tenant.id, &id, limit)? }))
}

/// `GET /v1/usage`: the calling tenant's counters.
async fn usage(Caller(tenant): Caller, State(state): State<AppState>) -> Result<axum::Json<Usage>, ApiError> {
    Ok(axum::Json(state.store.usage(&tenant.id)?))
}

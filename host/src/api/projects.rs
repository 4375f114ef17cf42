//! Tenant routes for projects: create, list, show, change, delete, pause, resume and run now; run
//! history and the tenant's usage.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::{Json, Path, Query};
use super::openapi::{INTERNAL, TOO_LARGE, TenantErrors, UNAUTHORIZED};
use super::project_input::{ProjectInput, ProjectPatch};
use crate::scheduler::RunNowError;
use crate::store::{
    CreateProject, Onboarding, Project, ProjectStatus, RUNS_KEPT, Run, Tenant, Trust, Usage, now_rfc3339, random_hex,
    rfc3339_ms,
};

/// Each `routes!` call holds the handlers of one path: `OpenApiRouter` registers every handler of
/// a call on every path in it.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show, update, remove))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(run_now))
        .routes(routes!(runs))
        .routes(routes!(usage))
}

/// 400 on the routes that take a project body.
const BAD_PROJECT: &str = "The body is not a JSON object sent as `application/json`, does not fit this route, or a \
     field is invalid: the message names the field and how to fix it (`invalid_request`)";
/// 403 on the routes that take a project body.
const PROJECT_FORBIDDEN: &str = "The operator token was sent to a tenant route (`forbidden`), the tenant is disabled \
     (`tenant_disabled`), or the project exceeds a quota: `max_projects` on creation, `min_interval_seconds` \
     for the schedule (`quota_exceeded`)";
/// 404 on the routes of one project.
pub(super) const NO_PROJECT: &str =
    "The tenant has no project with this id (`not_found`); another tenant's project is not found either";

/// The tenant's projects.
#[derive(Debug, Serialize, ToSchema)]
struct ProjectList {
    projects: Vec<Project>,
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no project with id {id}; list your projects with GET /v1/projects"))
}

/// What a pending project waits for, by the external id it carries.
fn pending_message(trust: Trust) -> String {
    match trust {
        Trust::Tenant => "waiting for the first successful AssumeRole: deploy your tenant stack with \
             PlatformPrincipalArn = onboarding.platform_principal_arn and ExternalId = onboarding.external_id \
             (your tenant's, also in GET /v1/me) so that the role trusts all your projects"
            .into(),
        Trust::Project => "waiting for the first successful AssumeRole: add onboarding.external_id to your tenant \
             stack's ProjectExternalIds (with PlatformPrincipalArn = onboarding.platform_principal_arn) so that \
             the role trusts this project"
            .into(),
    }
}

fn input_of(project: &Project) -> ProjectInput {
    ProjectInput {
        name: project.name.clone(),
        schedule: project.schedule.clone(),
        timezone: project.timezone.clone(),
        source: project.source.clone(),
        // A project that follows a name keeps following it through a patch of other fields.
        plugin_id: project.plugin.is_none().then(|| project.plugin_id.clone()),
        plugin: project.plugin.clone(),
        plugin_settings: project.plugin_settings.clone(),
        target: project.target.clone(),
        max_pages: project.max_pages,
        trust: project.trust,
    }
}

/// The external id a project with `trust` gets: the tenant's, or a new one of its own.
fn external_id(tenant: &Tenant, trust: Trust) -> String {
    match trust {
        Trust::Tenant => tenant.external_id.clone(),
        Trust::Project => random_hex(16),
    }
}

/// Validates the input, and resolves its plugin to the id runs use: the pinned `plugin_id`, or
/// the newest version of the name `plugin`.
async fn validate(state: &AppState, tenant: &Tenant, input: ProjectInput) -> Result<(ProjectInput, String), ApiError> {
    let plugin_id = match (&input.plugin_id, &input.plugin) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "give `plugin` (a name: the project follows its newest version) or `plugin_id` (one version, \
                 pinned), not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "give the project a plugin: `plugin` with the name of one of your plugins (the project follows \
                 its newest version), or `plugin_id` with the id of one version",
            ));
        }
        (Some(id), None) => {
            if state.store.plugin(&tenant.id, id).await?.is_none() {
                return Err(ApiError::invalid(format!(
                    "`plugin_id`: no plugin with id {id}; upload it with POST /v1/plugins and use the id it returns"
                )));
            }
            id.clone()
        }
        (None, Some(name)) => {
            super::versions::newest(state, &tenant.id, name).await?.map(|p| p.id).ok_or_else(|| {
                ApiError::invalid(format!(
                    "`plugin`: no plugin named {name:?}; upload one with POST /v1/plugins?name=NAME, or list your \
                 plugins' names with GET /v1/plugins"
                ))
            })?
        }
    };
    Ok((input.validate(&tenant.quotas())?, plugin_id))
}

/// Create a project
///
/// Validates every field, then stores the project as `pending`: it runs once the tenant's role
/// trusts the platform principal with the project's external id, both shown in `onboarding`.
/// Tenant key only.
#[utoipa::path(
    post,
    path = "/v1/projects",
    operation_id = "create_project",
    tag = "projects",
    security(("tenant_key" = [])),
    request_body = ProjectInput,
    responses(
        (status = 201, description = "The project, `pending` until its role is trusted", body = Project),
        (status = 400, description = BAD_PROJECT, body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = PROJECT_FORBIDDEN, body = ErrorBody),
        (status = 413, description = TOO_LARGE, body = ErrorBody),
        (status = 500, description = INTERNAL, body = ErrorBody),
    )
)]
async fn create(
    Caller(tenant): Caller,
    State(state): State<AppState>,
    Json(input): Json<ProjectInput>,
) -> Result<(StatusCode, axum::Json<Project>), ApiError> {
    let (input, plugin_id) = validate(&state, &tenant, input).await?;
    let now = now_rfc3339();
    let project = Project {
        id: format!("prj_{}", random_hex(8)),
        tenant_id: tenant.id.clone(),
        name: input.name.trim().to_string(),
        schedule: input.schedule,
        timezone: input.timezone,
        source: input.source,
        plugin_id,
        plugin: input.plugin,
        plugin_settings: input.plugin_settings,
        target: input.target,
        max_pages: input.max_pages,
        trust: input.trust,
        status: ProjectStatus::Pending,
        status_message: pending_message(input.trust),
        consecutive_failures: 0,
        backoff_until: None,
        onboarding: Onboarding {
            platform_principal_arn: state.platform_principal_arn.to_string(),
            external_id: external_id(&tenant, input.trust),
        },
        created_at: now.clone(),
        updated_at: now,
    };
    match state.store.create_project(project, tenant.quotas().max_projects).await? {
        CreateProject::Created(project) => {
            if let Some(control) = &state.control {
                control.project_changed(&project).await;
            }
            Ok((StatusCode::CREATED, axum::Json(*project)))
        }
        CreateProject::QuotaExceeded => Err(ApiError::quota_exceeded(format!(
            "this tenant already has its max_projects quota of {} projects; delete one or ask the operator to raise the quota",
            tenant.quotas().max_projects
        ))),
    }
}

/// List projects
///
/// The calling tenant's projects. Tenant key only.
#[utoipa::path(
    get,
    path = "/v1/projects",
    operation_id = "list_projects",
    tag = "projects",
    security(("tenant_key" = [])),
    responses(
        (status = 200, description = "The tenant's projects", body = ProjectList),
        TenantErrors,
    )
)]
async fn list(Caller(tenant): Caller, State(state): State<AppState>) -> Result<axum::Json<ProjectList>, ApiError> {
    Ok(axum::Json(ProjectList { projects: state.store.projects(&tenant.id).await? }))
}

/// The caller's project `id`, or the 404 every project route answers.
pub(super) async fn find(state: &AppState, tenant: &Tenant, id: &str) -> Result<Project, ApiError> {
    state.store.project(&tenant.id, id).await?.ok_or_else(|| not_found(id))
}

/// Show a project
///
/// One of the calling tenant's projects. Tenant key only.
#[utoipa::path(
    get,
    path = "/v1/projects/{id}",
    operation_id = "show_project",
    tag = "projects",
    security(("tenant_key" = [])),
    params(("id" = String, Path, description = "The project id, `prj_` and 16 hex digits")),
    responses(
        (status = 200, description = "The project", body = Project),
        (status = 404, description = NO_PROJECT, body = ErrorBody),
        TenantErrors,
    )
)]
async fn show(
    Caller(tenant): Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Project>, ApiError> {
    Ok(axum::Json(find(&state, &tenant, &id).await?))
}

/// Applies a change to the stored project atomically, so that what the data plane wrote in the
/// meantime (its status, failure count and backoff) is kept rather than overwritten by an older
/// copy.
pub(super) async fn save(
    state: &AppState,
    tenant: &Tenant,
    id: &str,
    change: impl Fn(&mut Project),
) -> Result<axum::Json<Project>, ApiError> {
    let now = now_rfc3339();
    let project = state
        .store
        .update_project(&tenant.id, id, |project| {
            change(project);
            project.updated_at = now.clone();
        })
        .await?
        .ok_or_else(|| not_found(id))?;
    if let Some(control) = &state.control {
        control.project_changed(&project).await;
    }
    Ok(axum::Json(project))
}

/// Change a project
///
/// Changes the fields present in the body and validates the result as a whole. A new
/// `target.role_arn` puts an unpaused project back to `pending` until the new role is trusted.
/// Tenant key only.
#[utoipa::path(
    patch,
    path = "/v1/projects/{id}",
    operation_id = "update_project",
    tag = "projects",
    security(("tenant_key" = [])),
    params(("id" = String, Path, description = "The project id, `prj_` and 16 hex digits")),
    request_body = ProjectPatch,
    responses(
        (status = 200, description = "The changed project", body = Project),
        (status = 400, description = BAD_PROJECT, body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = PROJECT_FORBIDDEN, body = ErrorBody),
        (status = 404, description = NO_PROJECT, body = ErrorBody),
        (status = 413, description = TOO_LARGE, body = ErrorBody),
        (status = 500, description = INTERNAL, body = ErrorBody),
    )
)]
async fn update(
    Caller(tenant): Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(patch): Json<ProjectPatch>,
) -> Result<axum::Json<Project>, ApiError> {
    let project = find(&state, &tenant, &id).await?;
    let (input, plugin_id) = validate(&state, &tenant, patch.apply(input_of(&project))).await?;
    // Drawn once, outside the change, which the store may apply more than once.
    let new_external_id = (input.trust != project.trust).then(|| external_id(&tenant, input.trust));
    save(&state, &tenant, &id, |project| {
        // A different role, or another external id, is not trusted yet: onboarding starts over.
        let onboarding_changed = input.target.role_arn != project.target.role_arn || new_external_id.is_some();
        if onboarding_changed && project.status != ProjectStatus::Paused {
            project.status = ProjectStatus::Pending;
            project.status_message = pending_message(input.trust);
        }
        if let Some(external_id) = &new_external_id {
            project.onboarding.external_id = external_id.clone();
            project.trust = input.trust;
        }
        project.name = input.name.trim().to_string();
        project.schedule = input.schedule.clone();
        project.timezone = input.timezone.clone();
        project.source = input.source.clone();
        project.plugin_id = plugin_id.clone();
        project.plugin = input.plugin.clone();
        project.plugin_settings = input.plugin_settings.clone();
        project.target = input.target.clone();
        project.max_pages = input.max_pages;
    })
    .await
}

/// Delete a project
///
/// Deletes one of the calling tenant's projects and its run history. Tenant key only.
#[utoipa::path(
    delete,
    path = "/v1/projects/{id}",
    operation_id = "delete_project",
    tag = "projects",
    security(("tenant_key" = [])),
    params(("id" = String, Path, description = "The project id, `prj_` and 16 hex digits")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = NO_PROJECT, body = ErrorBody),
        TenantErrors,
    )
)]
async fn remove(
    Caller(tenant): Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    // Stop the schedule first so that no new run starts for a project that is going away.
    if let Some(control) = &state.control {
        control.project_removed(&tenant.id, &id).await;
    }
    if state.store.delete_project(&tenant.id, &id).await? { Ok(StatusCode::NO_CONTENT) } else { Err(not_found(&id)) }
}

/// Pause a project
///
/// The project stops running on schedule until it is resumed. Tenant key only.
#[utoipa::path(
    post,
    path = "/v1/projects/{id}/pause",
    operation_id = "pause_project",
    tag = "projects",
    security(("tenant_key" = [])),
    params(("id" = String, Path, description = "The project id, `prj_` and 16 hex digits")),
    responses(
        (status = 200, description = "The project, now `paused`", body = Project),
        (status = 404, description = NO_PROJECT, body = ErrorBody),
        TenantErrors,
    )
)]
async fn pause(
    Caller(tenant): Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Project>, ApiError> {
    let message = "paused by the tenant; POST /v1/projects/{id}/resume to run it again".replace("{id}", &id);
    save(&state, &tenant, &id, |project| {
        project.status = ProjectStatus::Paused;
        project.status_message = message.clone();
    })
    .await
}

/// Resume a project
///
/// A paused project goes back to `pending` until its next successful AssumeRole confirms the role
/// still trusts it; any other project is unchanged. Tenant key only.
#[utoipa::path(
    post,
    path = "/v1/projects/{id}/resume",
    operation_id = "resume_project",
    tag = "projects",
    security(("tenant_key" = [])),
    params(("id" = String, Path, description = "The project id, `prj_` and 16 hex digits")),
    responses(
        (status = 200, description = "The project", body = Project),
        (status = 404, description = NO_PROJECT, body = ErrorBody),
        TenantErrors,
    )
)]
async fn resume(
    Caller(tenant): Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Project>, ApiError> {
    save(&state, &tenant, &id, |project| {
        if project.status == ProjectStatus::Paused {
            // The role may have changed while paused; the next successful AssumeRole confirms it.
            project.status = ProjectStatus::Pending;
            project.status_message = pending_message(project.trust);
        }
    })
    .await
}

/// The answer to a manual run.
#[derive(Debug, Serialize, ToSchema)]
struct RunStarted {
    /// The run's nominal time (RFC 3339), as its `scheduled_at` in the run history.
    scheduled_at: String,
    /// Where the run appears once it has finished.
    runs_url: String,
}

/// Run a project now
///
/// Starts a run outside the schedule, also for a paused project; the schedule is unchanged.
/// Answers at once: the run's result appears in `GET /v1/projects/{id}/runs` with trigger
/// `manual`. Tenant key only.
#[utoipa::path(
    post,
    path = "/v1/projects/{id}/run",
    operation_id = "run_project",
    tag = "projects",
    security(("tenant_key" = [])),
    params(("id" = String, Path, description = "The project id, `prj_` and 16 hex digits")),
    responses(
        (status = 202, description = "The run has started", body = RunStarted),
        (status = 404, description = NO_PROJECT, body = ErrorBody),
        (status = 409, description = "A run of this project is still going (`conflict`)", body = ErrorBody),
        (
            status = 503,
            description = "This process runs no scheduler, or it is shutting down (`unavailable`)",
            body = ErrorBody
        ),
        TenantErrors,
    )
)]
async fn run_now(
    Caller(tenant): Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, axum::Json<RunStarted>), ApiError> {
    let project = find(&state, &tenant, &id).await?;
    let control = state.control.as_ref().ok_or_else(|| {
        ApiError::Unavailable("this process runs no scheduler; send the request to a sluice serve".into())
    })?;
    match control.run_now(&project).await {
        Ok(at) => Ok((
            StatusCode::ACCEPTED,
            axum::Json(RunStarted { scheduled_at: rfc3339_ms(at), runs_url: format!("/v1/projects/{id}/runs") }),
        )),
        Err(RunNowError::AlreadyRunning) => Err(ApiError::Conflict(format!(
            "a run of project {id} is still going; wait for it to appear in GET /v1/projects/{id}/runs"
        ))),
        Err(e) => Err(ApiError::Unavailable(format!("cannot run project {id} now: {e}; try again shortly"))),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct RunsQuery {
    /// How many runs to return, newest first (default 20, at most 100).
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<usize>,
}

/// A project's runs, newest first.
#[derive(Debug, Serialize, ToSchema)]
struct RunList {
    runs: Vec<Run>,
}

/// List a project's runs
///
/// The project's most recent runs, newest first; the last 100 are kept. Tenant key only.
#[utoipa::path(
    get,
    path = "/v1/projects/{id}/runs",
    operation_id = "list_runs",
    tag = "projects",
    security(("tenant_key" = [])),
    params(("id" = String, Path, description = "The project id, `prj_` and 16 hex digits"), RunsQuery),
    responses(
        (status = 200, description = "The runs, newest first", body = RunList),
        (
            status = 400,
            description = "`limit` is not between 1 and 100, or the query string has an unknown or malformed \
                parameter (`invalid_request`)",
            body = ErrorBody
        ),
        (status = 404, description = NO_PROJECT, body = ErrorBody),
        TenantErrors,
    )
)]
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
    find(&state, &tenant, &id).await?;
    Ok(axum::Json(RunList { runs: state.store.runs(&tenant.id, &id, limit).await? }))
}

/// The calling tenant's usage
///
/// The tenant's counters since it was created (runs, failures, bytes and records), and the bytes
/// it keeps in the store now (state, outbox, parked entries, run history). Tenant key only.
#[utoipa::path(
    get,
    path = "/v1/usage",
    operation_id = "show_usage",
    tag = "projects",
    security(("tenant_key" = [])),
    responses(
        (status = 200, description = "The tenant's counters and disk use", body = Usage),
        TenantErrors,
    )
)]
async fn usage(Caller(tenant): Caller, State(state): State<AppState>) -> Result<axum::Json<Usage>, ApiError> {
    let mut usage = state.store.usage(&tenant.id).await?;
    usage.plugin_memory_bytes = state.runtime.owner_memory_in_use_bytes(&tenant.id);
    Ok(axum::Json(usage))
}

//! Operator route: the cluster as this host sees it (`GET /v1/cluster`).

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::Operator;
use super::error::ApiError;
use super::openapi::OperatorErrors;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show))
}

/// The body of `GET /v1/cluster`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterBody {
    /// Whether this host shares the store's projects with other hosts by leases (`[cluster]
    /// enabled`); the rest is empty when not.
    enabled: bool,
    /// The host that answered.
    this_host: Option<String>,
    /// Partitions the projects are spread over.
    partitions: u32,
    /// How long a lease lasts without renewal, in ms.
    lease_ms: u64,
    /// Every host that has a record in the store, as it last described itself.
    hosts: Vec<HostBody>,
    /// Every partition's lease.
    leases: Vec<LeaseBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HostBody {
    id: String,
    /// Where its API answers.
    api_url: String,
    /// Whether the answering host has seen its heartbeat move within a lease period.
    alive: bool,
    /// Leases it holds, as the leases say.
    leases: u64,
    /// Projects it schedules, as it last reported.
    projects: u64,
    /// Runs it started per second, as it last reported.
    polls_per_s: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LeaseBody {
    partition: u32,
    /// The host that holds it; empty when nobody does.
    owner: String,
    /// Changes whenever the lease changes hands.
    epoch: u64,
}

/// Show the cluster
///
/// The hosts sharing this store's projects, their leases, projects and polls per second, as the
/// answering host sees them. Operator only.
#[utoipa::path(
    get,
    path = "/v1/cluster",
    operation_id = "show_cluster",
    tag = "cluster",
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The cluster", body = ClusterBody),
        OperatorErrors,
    )
)]
async fn show(_: Operator, State(state): State<AppState>) -> Result<axum::Json<ClusterBody>, ApiError> {
    let Some(cluster) = state.control.as_ref().and_then(|control| control.cluster()) else {
        return Ok(axum::Json(ClusterBody {
            enabled: false,
            this_host: None,
            partitions: 0,
            lease_ms: 0,
            hosts: Vec::new(),
            leases: Vec::new(),
        }));
    };
    let config = cluster.config();
    let leases = state.store.leases(config.partitions).await?;
    let records = state.store.hosts().await?;
    let alive = cluster.alive(&records);
    let hosts = records
        .into_iter()
        .map(|host| HostBody {
            alive: alive.contains(&host.id),
            leases: leases.iter().filter(|lease| lease.owner == host.id).count() as u64,
            id: host.id,
            api_url: host.api_url,
            projects: host.projects,
            polls_per_s: host.polls_per_s,
        })
        .collect();
    Ok(axum::Json(ClusterBody {
        enabled: true,
        this_host: Some(cluster.host_id().to_string()),
        partitions: config.partitions,
        lease_ms: config.lease_ms,
        hosts,
        leases: leases
            .into_iter()
            .map(|lease| LeaseBody { partition: lease.partition, owner: lease.owner, epoch: lease.epoch })
            .collect(),
    }))
}

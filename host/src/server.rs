//! `sluice serve`: open the store, bind, serve the API and run the data plane until `shutdown`
//! resolves, then let in-flight requests and runs finish within the grace period and flush the
//! store.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;

use crate::api::{self, AppState};
use crate::aws::Aws;
use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::run::{Control, DataPlane, Parts, RunConfig};
use crate::runtime::Runtime;
use crate::scheduler::{Clock, Scheduler};
use crate::source::Fetcher;
use crate::store::{BackendKind, Store, StoreError};

/// What the daemon is built from, besides its configuration file.
pub struct Components<'a> {
    /// This host's membership of a cluster (`[cluster] enabled`), if any.
    pub cluster: Option<crate::cluster::Cluster>,
    pub store: Store,
    pub runtime: Runtime,
    pub aws: Aws,
    pub fetcher: Fetcher,
    pub scheduler: Scheduler,
    pub run: RunConfig,
    pub limits: api::BodyLimits,
    pub admin_token: &'a str,
    pub platform_principal_arn: &'a str,
}

/// Wires the API and the data plane together, as the daemon runs them: one store, one runtime
/// (with its compiled plugins), one set of metrics, and the API telling the data plane's scheduler
/// about every change. Nothing runs until the caller serves the API and runs the data plane; the
/// benchmarks assemble the same way.
pub fn assemble(parts: Components<'_>) -> (AppState, DataPlane) {
    let metrics = Arc::<Metrics>::default();
    let data_plane = DataPlane::new(Parts {
        cluster: parts.cluster,
        store: parts.store.clone(),
        runtime: parts.runtime.clone(),
        aws: parts.aws,
        fetcher: parts.fetcher,
        metrics: metrics.clone(),
        scheduler: parts.scheduler,
        config: parts.run,
    });
    let state = AppState::new(
        parts.store,
        parts.runtime,
        metrics,
        parts.admin_token,
        parts.limits,
        parts.platform_principal_arn,
    )
    .with_control(data_plane.control());
    (state, data_plane)
}

/// Runs the daemon until `shutdown` resolves. Calls `on_bound` with the address actually bound
/// (useful with port 0).
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create the data directory {}", config.data_dir.display()))?;
    let store = open_store(&config).await?;
    tracing::info!(backend = store.backend_name(), "store open");
    let token = config.admin_token.as_deref().context("SLUICE_ADMIN_TOKEN is not set")?;
    let mut runtime_config = config.runtime.clone();
    runtime_config.cache_dir.get_or_insert_with(|| config.data_dir.join("compiled"));
    let runtime = Runtime::new(runtime_config).context("cannot start the component runtime")?;
    let limits = api::BodyLimits {
        max_json_bytes: config.max_json_bytes as usize,
        max_plugin_bytes: config.max_plugin_bytes as usize,
    };
    let principal = match &config.platform_principal_arn {
        Some(arn) => arn.clone(),
        None => crate::aws::platform_principal().await.context("cannot determine the platform principal")?,
    };
    tracing::info!(%principal, "platform principal");

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let bound = listener.local_addr()?;
    let cluster = config
        .cluster
        .enabled
        .then(|| crate::cluster::Cluster::new(config.cluster.clone(), store.clone(), format!("http://{bound}")));
    if let Some(cluster) = &cluster {
        tracing::info!(host = cluster.host_id(), partitions = config.cluster.partitions, "cluster member");
    }

    let mut source = config.source.clone();
    source.allow_private |= config.allow_private_sources;
    let (state, data_plane) = assemble(Components {
        cluster,
        store: store.clone(),
        runtime,
        aws: Aws::from_env(config.aws.clone()).await,
        fetcher: Fetcher::new(source).context("cannot build the HTTP client for sources")?,
        scheduler: Scheduler::new(config.scheduler.clone(), Clock::system()),
        run: config.run.clone(),
        limits,
        admin_token: token,
        platform_principal_arn: &principal,
    });
    // A host with its scheduler off serves the API alone: it tells no scheduler about changes and
    // runs nothing (see `[scheduler] enabled`). In a cluster it still publishes the changes it
    // serves to the hosts that run the projects, and holds no leases.
    let scheduling = config.scheduler.enabled;
    let state = match (scheduling, config.cluster.enabled) {
        (true, _) => state,
        (false, true) => state.map_control(Control::api_only),
        (false, false) => state.without_control(),
    };
    let ready = state.readiness();
    let app = api::app(state);
    on_bound(bound);

    // One shutdown signal, watched by the HTTP server and the data plane alike.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        ready.store(false, Ordering::Relaxed);
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let plane_stop = stopped(stop_rx.clone());
    let mut plane = tokio::spawn(async move {
        if scheduling {
            data_plane.run(plane_stop).await
        } else {
            plane_stop.await;
            Ok(())
        }
    });

    let grace = config.shutdown_grace();
    let server = axum::serve(listener, app).with_graceful_shutdown(stopped(stop_rx.clone()));
    let mut server = std::pin::pin!(server.into_future());
    let grace_over = async {
        stopped(stop_rx.clone()).await;
        tokio::time::sleep(grace).await;
    };
    // The data plane stops firing as soon as shutdown begins, while the server may still be
    // answering requests: wait for both, each bounded by the grace period.
    let mut plane_done = false;
    tokio::select! {
        result = &mut server => result.context("the HTTP server failed")?,
        result = &mut plane => {
            result.context("the data plane panicked")?.context("the data plane failed")?;
            anyhow::ensure!(*stop_rx.borrow(), "the data plane stopped before shutdown");
            plane_done = true;
            match tokio::time::timeout(grace, &mut server).await {
                Ok(result) => result.context("the HTTP server failed")?,
                Err(_) => tracing::warn!("in-flight requests did not finish within {grace:?}; stopping anyway"),
            }
        }
        _ = grace_over => {
            tracing::warn!("in-flight requests did not finish within {grace:?}; stopping anyway");
        }
    }
    if !plane_done {
        match tokio::time::timeout(grace, &mut plane).await {
            Ok(result) => result.context("the data plane panicked")?.context("the data plane failed")?,
            Err(_) => tracing::warn!("runs in progress did not finish within {grace:?}; stopping anyway"),
        }
    }
    store.flush().await.context("flushing the database at shutdown")?;
    Ok(())
}

/// Opens the store the configuration names. A shared store that cannot be used (a missing table,
/// another region, no permission) is a bad setting, reported as a [`ConfigError`] naming it.
async fn open_store(config: &Config) -> anyhow::Result<Store> {
    match config.store.backend {
        BackendKind::Sled => Store::open(&config.database_dir())
            .with_context(|| format!("cannot open the database in {}", config.data_dir.display())),
        BackendKind::Dynamodb => Store::connect_dynamo(&config.store.dynamo_settings(), config.store.create_table)
            .await
            .map_err(|e| match e {
                StoreError::Setting { setting, message } => anyhow::Error::new(ConfigError { setting, message }),
                e => anyhow::Error::new(e).context("cannot open the shared store"),
            }),
    }
}

//! `sluice serve`: open the store, bind, serve the API and run the data plane until `shutdown`
//! resolves, then let in-flight requests and runs finish within the grace period and flush the
//! store.

use std::future::Future;
use std::sync::atomic::Ordering;

use anyhow::Context;

use crate::api::{self, AppState};
use crate::aws::Aws;
use crate::config::Config;
use crate::run::{DataPlane, Parts};
use crate::runtime::Runtime;
use crate::scheduler::{Clock, Scheduler};
use crate::source::Fetcher;
use crate::store::Store;

/// Runs the daemon until `shutdown` resolves. Calls `on_bound` with the address actually bound
/// (useful with port 0).
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create the data directory {}", config.data_dir.display()))?;
    let store = Store::open(&config.data_dir.join("db"))
        .with_context(|| format!("cannot open the database in {}", config.data_dir.display()))?;
    let token = config.admin_token.as_deref().context("SLUICE_ADMIN_TOKEN is not set")?;
    let mut runtime_config = config.runtime.clone();
    runtime_config.cache_dir.get_or_insert_with(|| config.data_dir.join("compiled"));
    let runtime = Runtime::new(runtime_config).context("cannot start the component runtime")?;
    let limits = api::Limits {
        max_json_bytes: config.max_json_bytes as usize,
        max_plugin_bytes: config.max_plugin_bytes as usize,
    };
    let principal = match &config.platform_principal_arn {
        Some(arn) => arn.clone(),
        None => crate::aws::platform_principal().await.context("cannot determine the platform principal")?,
    };
    tracing::info!(%principal, "platform principal");

    let mut source = config.source.clone();
    source.allow_private |= config.allow_private_sources;
    let state = AppState::new(store.clone(), runtime.clone(), token, limits, &principal);
    let data_plane = DataPlane::new(Parts {
        store: store.clone(),
        runtime,
        plugins: state.plugins(),
        aws: Aws::from_env(config.aws.clone()).await,
        fetcher: Fetcher::new(source).context("cannot build the HTTP client for sources")?,
        metrics: state.metrics(),
        scheduler: Scheduler::new(config.scheduler.clone(), Clock::system()),
        config: config.run.clone(),
    });
    let state = state.with_control(data_plane.control());
    let ready = state.readiness();
    let app = api::app(state);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    on_bound(listener.local_addr()?);

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
    let mut plane = tokio::spawn(data_plane.run(stopped(stop_rx.clone())));

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

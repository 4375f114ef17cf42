//! `sluice serve`: open the store, bind, serve the API until `shutdown` resolves, then let
//! in-flight requests finish within the grace period and flush the store.

use std::future::Future;
use std::sync::atomic::Ordering;

use anyhow::Context;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::runtime::Runtime;
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
    let state = AppState::new(store.clone(), runtime, token, limits, &principal);
    let ready = state.readiness();
    let app = api::app(state);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    on_bound(listener.local_addr()?);

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let grace = config.shutdown_grace();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        ready.store(false, Ordering::Relaxed);
        let _ = stop_tx.send(());
    });
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        result = &mut server => result.context("the HTTP server failed")?,
        _ = async { let _ = stop_rx.await; tokio::time::sleep(grace).await } => {
            tracing::warn!("in-flight requests did not finish within {grace:?}; stopping anyway");
        }
    }
    store.flush().await.context("flushing the database at shutdown")?;
    Ok(())
}

//! `sluice serve`: load the configuration, run the daemon, stop on SIGTERM or ctrl-c.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{EXIT_CONFIG, EXIT_SOFTWARE};
use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A TOML configuration file; `SLUICE_*` environment variables override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

pub async fn run(args: Args) -> ExitCode {
    let config = match Config::load(args.config.as_deref(), |name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: bad setting {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let on_bound = |addr| {
        // Printed on stdout so that scripts and tests can wait for it.
        println!("sluice listening on http://{addr}");
        tracing::info!(%addr, "listening");
    };
    match crate::server::run(config, shutdown_signal(), on_bound).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_SOFTWARE)
        }
    }
}

/// Resolves on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

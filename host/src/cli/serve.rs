//! `sluice serve`: load the configuration, run the daemon, stop on SIGTERM or ctrl-c.

use std::path::PathBuf;
use std::process::ExitCode;

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::{EXIT_CONFIG, EXIT_SOFTWARE};
use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A TOML configuration file; `SLUICE_*` environment variables override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

pub async fn run(args: Args) -> ExitCode {
    // The handlers are installed before anything else happens, so that a SIGTERM at any moment
    // after start, even before the address is printed, ends in a graceful shutdown instead of
    // the signal's default action (which kills the process).
    let shutdown = match ShutdownSignals::install() {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("error: cannot install the SIGTERM and SIGINT handlers: {error}");
            return ExitCode::from(EXIT_SOFTWARE);
        }
    };
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
    match crate::server::run(config, shutdown.recv(), on_bound).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.downcast_ref::<crate::config::ConfigError>().is_some() => {
            eprintln!("error: bad setting {error}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_SOFTWARE)
        }
    }
}

/// SIGTERM and SIGINT (ctrl-c), listened for from the moment this is created: a signal that
/// arrives before [`ShutdownSignals::recv`] is first polled is kept, not lost.
struct ShutdownSignals {
    term: Signal,
    interrupt: Signal,
}

impl ShutdownSignals {
    fn install() -> std::io::Result<Self> {
        Ok(Self { term: signal(SignalKind::terminate())?, interrupt: signal(SignalKind::interrupt())? })
    }

    /// Resolves on the first SIGTERM or SIGINT.
    async fn recv(mut self) {
        tokio::select! { _ = self.term.recv() => {}, _ = self.interrupt.recv() => {} }
        tracing::info!("shutting down");
    }
}

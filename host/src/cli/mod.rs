//! The `sluice` command line.
//!
//! Exit codes: 0 on success, 1 when a plugin call failed, 2 for a usage error, 64 for a bad
//! setting (nothing is bound), 65 when an input file or plugin is unusable, 70 for an internal
//! failure, 73 when `plugin new` would overwrite an existing directory.

mod plugin_new;
mod plugin_test;
mod serve;
mod store;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Sluice: poll HTTP APIs, transform responses with WebAssembly plugins, deliver to Kinesis.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: the HTTP API, the scheduler and the data plane.
    Serve(serve::Args),
    /// Work with plugins locally.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Back up, restore or move the daemon's store (with the daemon stopped).
    #[command(subcommand)]
    Store(StoreCommand),
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Write everything the store holds as JSON lines: tenants, plugins, projects, states,
    /// undelivered records, run history and usage.
    Export(store::ExportArgs),
    /// Fill an empty store from an export, checking every item first.
    Import(store::ImportArgs),
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Run a plugin on a response exactly as the daemon would, and print what it returns.
    Test(plugin_test::Args),
    /// Create a plugin project (Rust or Python) with its build command, a sample response and
    /// a test; its README has the whole loop.
    New(plugin_new::Args),
}

/// Exit code for a bad setting, as in sysexits.h (`EX_USAGE`).
pub const EXIT_CONFIG: u8 = 64;
/// Exit code for unusable input (a missing file, an invalid component), as in sysexits.h.
pub const EXIT_DATA_ERROR: u8 = 65;
/// Exit code for a failure of the host itself.
pub const EXIT_SOFTWARE: u8 = 70;
/// Exit code for an output that cannot be created, as in sysexits.h (`EX_CANTCREAT`).
pub const EXIT_CANT_CREATE: u8 = 73;

/// Parses the arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_SOFTWARE);
        }
    };
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve::run(args)),
        Command::Plugin(PluginCommand::Test(args)) => runtime.block_on(plugin_test::run(args)),
        Command::Plugin(PluginCommand::New(args)) => plugin_new::run(args),
        Command::Store(StoreCommand::Export(args)) => runtime.block_on(store::export(args)),
        Command::Store(StoreCommand::Import(args)) => runtime.block_on(store::import(args)),
    }
}

/// Crates that log whole requests and responses at trace level: signed requests with session
/// tokens, Secrets Manager answers with secret values, sources' answers with API keys. They are
/// held at debug whatever `SLUICE_LOG` asks for, so that no log level prints a secret. Targets
/// match by prefix, so `hyper` covers `hyper::proto::h1` as well.
pub const WIRE_LOGGERS: [&str; 13] = [
    "aws_config",
    "aws_credential_types",
    "aws_runtime",
    "aws_sigv4",
    "aws_smithy_http",
    "aws_smithy_http_client",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "h2",
    "hyper",
    "hyper_util",
    "reqwest",
    "rustls",
];

fn init_tracing() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let requested = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second filter, not a directive added to the first: a directive would replace the
    // operator's level for these crates, turning `SLUICE_LOG=warn` into debug for them. Both
    // filters must let an event through, so the cap only ever lowers a level.
    let wire_cap = WIRE_LOGGERS.iter().fold(Targets::new().with_default(LevelFilter::TRACE), |cap, target| {
        cap.with_target(*target, LevelFilter::DEBUG)
    });
    let _ = tracing_subscriber::registry()
        .with(requested)
        .with(wire_cap)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .try_init();
}

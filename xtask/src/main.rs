//! Project automation, run as `cargo xtask <command>`:
//!
//! - `plugins`: build every plugin in `plugins/` for wasm32-wasip2.
//! - `test`: install what is missing, build the plugins, check formatting and lints, run every
//!   test. This is what CI runs.
//! - `bench`: build the plugins and run the benchmarks in release mode.
//!
//! Each step prints what it runs; a failing step stops the command with its exit code.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("plugins") => build_plugins(),
        Some("test") => test(),
        Some("bench") => bench(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <plugins | test | bench [filter]>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace root").to_path_buf()
}

fn plugins_dir() -> PathBuf {
    root().join("plugins")
}

/// Where the built plugin components land; tests and benchmarks read them from here.
fn plugin_artifacts() -> PathBuf {
    plugins_dir().join("target/wasm32-wasip2/release")
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn run(mut cmd: Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd.status().with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).output().map(|o| o.status.success()).unwrap_or(false)
}

/// Installs the wasm32-wasip2 target where it is missing.
fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).output();
    if let Ok(out) = installed
        && String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == "wasm32-wasip2")
    {
        return Ok(());
    }
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "add", "wasm32-wasip2"]);
    run(cmd).context("installing the wasm32-wasip2 target failed; install rustup, or add the target by hand")
}

/// Installs the Python tools the tests use where they are missing: moto's server as the local
/// AWS, and the OpenAPI validator.
fn ensure_python_tools() -> Result<()> {
    let wanted = [("moto_server", "moto[server]")];
    for (probe, package) in wanted {
        if which(probe).is_some() {
            continue;
        }
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "pip", "install", "--quiet", package]);
        run(cmd).with_context(|| format!("installing {package} with pip failed; install Python 3 with pip"))?;
    }
    Ok(())
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
}

fn build_plugins() -> Result<()> {
    ensure_wasm_target()?;
    let mut cmd = cargo();
    cmd.current_dir(plugins_dir()).args(["build", "--release", "--target", "wasm32-wasip2"]);
    run(cmd).context("building the plugins failed")?;
    eprintln!("xtask: plugins are in {}", plugin_artifacts().display());
    Ok(())
}

fn test() -> Result<()> {
    ensure_python_tools()?;
    build_plugins()?;

    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run(fmt).context("formatting differs; run `cargo fmt --all`")?;
    let mut fmt_plugins = cargo();
    fmt_plugins.current_dir(plugins_dir()).args(["fmt", "--all", "--check"]);
    run(fmt_plugins).context("plugin formatting differs; run `cargo fmt --all` in plugins/")?;

    let mut clippy = cargo();
    clippy.args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]);
    run(clippy)?;
    let mut clippy_plugins = cargo();
    clippy_plugins.current_dir(plugins_dir()).args([
        "clippy",
        "--release",
        "--target",
        "wasm32-wasip2",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy_plugins)?;

    let mut test = cargo();
    test.args(["test", "--workspace"]).env("SLUICE_PLUGINS_DIR", plugin_artifacts());
    run(test)
}

fn bench(filter: &[String]) -> Result<()> {
    build_plugins()?;
    let mut cmd = cargo();
    cmd.args(["bench", "-p", "sluice-host", "--bench", "runtime", "--"])
        .args(filter)
        .env("SLUICE_PLUGINS_DIR", plugin_artifacts());
    run(cmd)
}

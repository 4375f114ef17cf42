//! Project automation, run as `cargo xtask <command>`:
//!
//! - `plugins`: build every plugin in `plugins/` for wasm32-wasip2, the Python examples in
//!   `plugins/python/` with the pinned componentize-py (installed from PyPI where missing).
//! - `test`: install what is missing (moto and the Python tools; Chromium and chromedriver),
//!   build the plugins, check formatting and lints, run every test. This is what CI runs.
//! - `demo`: install what is missing, build the plugins and the daemon, and run the whole flow on
//!   a local AWS emulator, printing records as they arrive in Kinesis.
//! - `bench`: build the plugins and run the benchmarks in release mode (`runtime`, `api`,
//!   `dataplane`; all three without an argument; `python` is the part of `runtime` that compares
//!   the Rust and Python examples, run only when named). `hostile` runs the "under load" bench (noisy
//!   neighbours, the memory budget, control plane under load), which only runs when named. Flags
//!   after `--` go to the one of `dataplane` and `hostile` that is named, e.g.
//!   `cargo xtask bench hostile -- --sides budget`; `-- --help` lists them.
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
        Some("demo") => demo(),
        Some("bench") => bench(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <plugins | test | demo | bench [runtime | api | dataplane | hostile | passthrough | json-split | python] [-- <flags of dataplane or hostile; see -- --help>]>"
            );
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
    // `cargo run` hands xtask the variables of its own package. Build scripts that watch one of
    // them (ring's watches CARGO_MANIFEST_DIR) would see a change between a build started here
    // and one started from a shell, and rebuild the TLS and AWS crates each time.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_") || name.starts_with("CARGO_MANIFEST_") || name == "CARGO_CRATE_NAME" {
            cmd.env_remove(name.as_ref());
        }
    }
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

/// The schemathesis release the hostile-input test (`tests/e2e/schemathesis.rs`) was written
/// against: its command line and report format change between releases, so it is pinned.
const SCHEMATHESIS_VERSION: &str = "4.32.5";

/// Installs the Python tools the tests use where they are missing: moto's server as the local
/// AWS, the OpenAPI validators (`openapi-spec-validator` brings `openapi-schema-validator`,
/// which the conformance test imports too), cfn-lint for the tenant stack's template, and
/// schemathesis, which fuzzes the API from its OpenAPI document.
fn ensure_python_tools() -> Result<()> {
    let moto = which("moto_server").is_some();
    let cfn_lint = which("cfn-lint").is_some();
    let schemathesis = Command::new("schemathesis").arg("--version").output().is_ok_and(|out| {
        String::from_utf8_lossy(&out.stdout).trim_end().ends_with(&format!("version {SCHEMATHESIS_VERSION}"))
    });
    let schemathesis_package = format!("schemathesis=={SCHEMATHESIS_VERSION}");
    let openapi = Command::new("python3")
        .args(["-c", "import openapi_spec_validator, openapi_schema_validator"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    let tools = [
        (moto, "moto[server]"),
        (openapi, "openapi-spec-validator"),
        (cfn_lint, "cfn-lint"),
        (schemathesis, schemathesis_package.as_str()),
    ];
    for (present, package) in tools {
        if present {
            continue;
        }
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "pip", "install", "--quiet", package]);
        run(cmd).with_context(|| format!("installing {package} with pip failed; install Python 3 with pip"))?;
    }
    Ok(())
}

/// Installs Debian's Chromium and its WebDriver server where missing: the console's tests
/// (`tests/e2e/console.rs`) drive a real headless browser through `/usr/bin/chromedriver`.
fn ensure_browser() -> Result<()> {
    let present = |path: &str| Path::new(path).is_file();
    if present("/usr/bin/chromium") && present("/usr/bin/chromedriver") {
        return Ok(());
    }
    // apt-get needs root; from another user it goes through sudo.
    let root =
        Command::new("id").arg("-u").output().is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    let apt_get = |args: &[&str]| {
        let mut cmd = if root { Command::new("apt-get") } else { Command::new("sudo") };
        if !root {
            cmd.arg("apt-get");
        }
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    let install = ["install", "-y", "--no-install-recommends", "chromium", "chromium-driver"];
    // A fresh machine may have no package lists yet: read them, then try once more.
    if run(apt_get(&install)).is_ok() {
        return Ok(());
    }
    run(apt_get(&["update"]))
        .and_then(|()| run(apt_get(&install)))
        .context("installing chromium and chromium-driver with apt-get failed; install them by hand (Debian or Ubuntu)")
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join(program)).find(|path| path.is_file())
}

fn build_plugins() -> Result<()> {
    ensure_wasm_target()?;
    let mut cmd = cargo();
    // An explicit target directory: a `CARGO_TARGET_DIR` in the environment would otherwise move
    // the components away from where the tests and benchmarks look for them.
    let target_dir = plugins_dir().join("target");
    cmd.current_dir(plugins_dir())
        .args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"])
        .arg(target_dir);
    run(cmd).context("building the plugins failed")?;
    build_python_plugins()?;
    eprintln!("xtask: plugins are in {}", plugin_artifacts().display());
    Ok(())
}

/// The componentize-py release the Python SDK and examples are built and tested with. Its
/// generated bindings (module names, how errors are raised) change between releases, so it is
/// pinned, and `sluice plugin new --lang python` tells authors to install this one.
const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// The Python examples in `plugins/python/`, each built from its `app.py` with the SDK beside it
/// into `py_<name>.wasm`, next to the Rust components, where tests and benchmarks find them.
const PYTHON_PLUGINS: [&str; 3] = ["passthrough", "json-split", "incremental"];

/// Installs the pinned componentize-py where it is missing or another version is installed.
fn ensure_componentize_py() -> Result<()> {
    let installed = Command::new("componentize-py").arg("--version").output().is_ok_and(|out| {
        String::from_utf8_lossy(&out.stdout).trim_end() == format!("componentize-py {COMPONENTIZE_PY_VERSION}")
    });
    if installed {
        return Ok(());
    }
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "pip", "install", "--quiet", &format!("componentize-py=={COMPONENTIZE_PY_VERSION}")]);
    run(cmd).context("installing componentize-py with pip failed; install Python 3 with pip")
}

/// Builds the Python examples. componentize-py takes some seconds a component, so one whose
/// sources (its own and the SDK's) and WIT are older than the built file is not built again.
fn build_python_plugins() -> Result<()> {
    ensure_componentize_py()?;
    let python = plugins_dir().join("python");
    let sdk = python.join("sdk");
    std::fs::create_dir_all(plugin_artifacts())?;
    for name in PYTHON_PLUGINS {
        let dir = python.join(name);
        let out = plugin_artifacts().join(format!("py_{}.wasm", name.replace('-', "_")));
        let sources = [dir.join("app.py"), sdk.join("sluice_plugin.py"), root().join("wit/sluice.wit")];
        if is_newer_than_all(&out, &sources) {
            continue;
        }
        let mut cmd = Command::new("componentize-py");
        cmd.current_dir(root())
            .args(["--quiet", "-d", "wit", "-w", "transformer", "componentize", "app", "-p"])
            .arg(&dir)
            .arg("-p")
            .arg(&sdk)
            .arg("-o")
            .arg(&out);
        run(cmd).with_context(|| format!("building the Python plugin {name} failed"))?;
    }
    Ok(())
}

/// Whether `target` exists and was modified after every one of `sources`.
fn is_newer_than_all(target: &Path, sources: &[PathBuf]) -> bool {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let Some(built) = modified(target) else { return false };
    sources.iter().all(|source| modified(source).is_some_and(|changed| changed < built))
}

/// Runs the Python plugins' native unit tests (plain `unittest`, the SDK on the path), counting
/// them as `cargo test` counts its own.
fn python_plugin_tests() -> Result<(u64, u64)> {
    let python = plugins_dir().join("python");
    let (mut passed, mut failed) = (0, 0);
    for name in PYTHON_PLUGINS {
        let dir = python.join(name);
        if !dir.join("test_app.py").is_file() {
            continue;
        }
        let mut cmd = Command::new("python3");
        cmd.current_dir(&dir).args(["-m", "unittest", "-v"]).env("PYTHONPATH", python.join("sdk"));
        eprintln!("xtask: running {cmd:?}");
        let out = cmd.output().with_context(|| format!("could not start {cmd:?}"))?;
        let report = String::from_utf8_lossy(&out.stderr);
        eprint!("{report}");
        passed += report.lines().filter(|l| l.ends_with("... ok")).count() as u64;
        failed += report.lines().filter(|l| l.ends_with("... FAIL") || l.ends_with("... ERROR")).count() as u64;
        if !out.status.success() {
            bail!("the unit tests of the Python plugin {name} failed");
        }
    }
    Ok((passed, failed))
}

fn test() -> Result<()> {
    ensure_python_tools()?;
    ensure_browser()?;
    build_plugins()?;

    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run(fmt).context("formatting differs; run `cargo fmt --all`")?;
    let mut fmt_plugins = cargo();
    // Without `--all`: that would follow the path dependency into the host workspace again.
    fmt_plugins.current_dir(plugins_dir()).args(["fmt", "--check"]);
    run(fmt_plugins).context("plugin formatting differs; run `cargo fmt` in plugins/")?;

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
    // The template tenants deploy: cfn-lint exits non-zero on any error or warning it reports.
    let mut cfn_lint = Command::new("cfn-lint");
    cfn_lint.current_dir(root()).arg("tenant-stack/template.yaml");
    run(cfn_lint).context("tenant-stack/template.yaml does not pass cfn-lint; see its findings above")?;

    // The plugins' own unit tests run natively, on the host's target.
    let mut plugin_tests = cargo();
    plugin_tests.current_dir(plugins_dir()).args(["test", "--target", &host_target()?]);
    let (plugins_passed, plugins_failed) = run_counting_tests(plugin_tests)?;
    let (python_passed, python_failed) = python_plugin_tests()?;
    let (plugins_passed, plugins_failed) = (plugins_passed + python_passed, plugins_failed + python_failed);

    // The end-to-end tests start the real `sluice` binary, which `cargo test` does not build for
    // another package's tests.
    let mut build = cargo();
    build.args(["build", "-p", "sluice-host", "--bin", "sluice"]);
    run(build)?;
    let mut test = cargo();
    test.args(["test", "--workspace"]).env("SLUICE_PLUGINS_DIR", plugin_artifacts());
    let (passed, failed) = run_counting_tests(test)?;
    // The end-to-end tests that exercise persistence (the outbox, kill -9 and the crash loop,
    // delivery and history through the real daemon; the API, tenant isolation and authorization in
    // process) again, on the shared store: DynamoDB and S3 on moto. The store-level tests of that
    // backend (`dynamo_store`, `shared_store`) run in the first pass.
    let mut shared = cargo();
    shared
        .args(["test", "-p", "sluice-tests", "--test", "e2e", "--", "faults::", "dataplane::", "crash_loop::"])
        .args(["api::", "authz::", "projects_api::", "plugins_api::", "bad_output::"])
        .env("SLUICE_PLUGINS_DIR", plugin_artifacts())
        .env("SLUICE_TEST_STORE", "dynamodb");
    let (shared_passed, shared_failed) = run_counting_tests(shared)?;
    let (passed, failed) = (passed + plugins_passed + shared_passed, failed + plugins_failed + shared_failed);
    // One closing line for the whole run: cargo's own last line only covers its last test binary.
    println!("summary: {passed} passed, {failed} failed");
    Ok(())
}

/// Runs the demo: installs what is missing, builds the plugins and the daemon, then runs the
/// `demo` binary of `sluice-tests` (`tests/demo/main.rs`), which starts moto, a sample API and
/// the daemon, plays operator and tenant, and exits non-zero unless the records arrived.
fn demo() -> Result<()> {
    ensure_moto()?;
    build_plugins()?;
    // `cargo run` builds only the demo, not another package's binary, so the daemon it starts is
    // built first, next to it. One invocation for both resolves dependency features once, as the
    // demo's own build does: building the daemon alone would compile shared dependencies twice.
    let mut build = cargo();
    build.args(["build", "-p", "sluice-host", "--bin", "sluice", "-p", "sluice-tests", "--bin", "demo"]);
    run(build).context("building the daemon and the demo failed")?;
    let mut demo = cargo();
    demo.args(["run", "-p", "sluice-tests", "--bin", "demo"]).env("SLUICE_PLUGINS_DIR", plugin_artifacts());
    run(demo).context("the demo did not complete; the line starting with `demo:` above says what to do")
}

/// Installs moto's server where it is missing: the demo needs only that of the Python tools the
/// tests use.
fn ensure_moto() -> Result<()> {
    if which("moto_server").is_some() {
        return Ok(());
    }
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "pip", "install", "--quiet", "moto[server]"]);
    run(cmd).context("installing moto[server] with pip failed; install Python 3 with pip")
}

/// Runs `cargo test`, echoing its output, and adds up the `test result:` lines of every binary.
fn run_counting_tests(mut cmd: Command) -> Result<(u64, u64)> {
    use std::io::{BufRead, BufReader};
    eprintln!("xtask: running {cmd:?}");
    let mut child =
        cmd.stdout(std::process::Stdio::piped()).spawn().with_context(|| format!("could not start {cmd:?}"))?;
    let (mut passed, mut failed) = (0, 0);
    let stdout = child.stdout.take().context("cargo test has no stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            passed += count_before(rest, " passed");
            failed += count_before(rest, " failed");
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok((passed, failed))
}

/// In `ok. 25 passed; 0 failed; …`, the number before `label`.
fn count_before(text: &str, label: &str) -> u64 {
    text.split(';')
        .find_map(|part| part.trim().trim_start_matches("ok. ").trim_start_matches("FAILED. ").strip_suffix(label))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The target triple of the machine we run on, for building plugin tests natively.
fn host_target() -> Result<String> {
    let out = Command::new("rustc").arg("-vV").output().context("running rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
        .context("rustc -vV printed no host line")
}

/// Runs the benchmarks: `runtime` (narrowed by `passthrough` or `json-split`; `python`, Rust
/// against Python per call, runs only when named), `api` and
/// `dataplane`. With no argument, all of them. `hostile` is the bench of the noisy-neighbour,
/// memory-budget and control-plane-under-load scenarios, which are long and so not part of the
/// default run. Arguments after `--` are flags of the `dataplane` or `hostile` bench, whichever
/// is named alone.
fn bench(args: &[String]) -> Result<()> {
    // `cargo xtask bench [NAME...] [-- FLAG...]`: the flags go to the one bench they are for.
    let (filter, flags) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &args[args.len()..]),
    };
    const OTHERS: [&str; 3] = ["api", "dataplane", "hostile"];
    let named = |name: &str| filter.iter().any(|f| f == name);
    let run_api = filter.is_empty() || named("api");
    let run_dataplane = filter.is_empty() || named("dataplane");
    let run_hostile = named("hostile");
    let run_runtime = filter.is_empty() || filter.iter().any(|f| !OTHERS.contains(&f.as_str()));
    if !flags.is_empty() && (run_runtime || run_api || run_dataplane == run_hostile) {
        bail!("flags after `--` are for one bench: name `dataplane` or `hostile` alone");
    }
    build_plugins()?;
    if run_dataplane {
        // The dataplane bench's shared-store side runs on moto's DynamoDB and S3.
        ensure_moto()?;
    }
    let runtime_filter: Vec<&String> =
        filter.iter().filter(|f| !OTHERS.contains(&f.as_str()) && *f != "runtime").collect();
    let flags: Vec<&String> = flags.iter().collect();
    let benches = [
        ("runtime", run_runtime, runtime_filter),
        ("api", run_api, vec![]),
        ("dataplane", run_dataplane, flags.clone()),
        ("hostile", run_hostile, flags),
    ];
    for (name, wanted, args) in benches {
        if !wanted {
            continue;
        }
        let mut cmd = cargo();
        cmd.args(["bench", "-p", "sluice-host", "--bench", name, "--"])
            .args(args)
            .env("SLUICE_PLUGINS_DIR", plugin_artifacts());
        run(cmd)?;
    }
    Ok(())
}

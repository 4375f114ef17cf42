//! `sluice plugin new`: a scaffolded plugin of each language builds with the command its README
//! gives, passes its own unit tests, and passes `sluice plugin test` on its sample response.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use sluice_tests::{root, sluice_bin};

fn check(what: &str, out: Output) -> Output {
    assert!(
        out.status.success(),
        "{what} failed with {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn plugin_new(name: &str, lang: &str, dir: &Path) -> Output {
    Command::new(sluice_bin()).args(["plugin", "new", name, "--lang", lang, "--dir"]).arg(dir).output().unwrap()
}

/// Runs `sluice plugin test` on the sample response and returns its JSON report, after checking
/// that the records are the sample's two elements keyed by their ids and that the log says so.
fn plugin_test_sample(project: &Path, wasm: &str) -> Value {
    let out = Command::new(sluice_bin())
        .current_dir(project)
        .args(["plugin", "test", wasm, "--response", "sample-response.json", "--json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&check("sluice plugin test", out).stdout).unwrap();
    let keys: Vec<&str> = report["transform"]["ok"]["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["partition_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["berlin-1", "berlin-2"], "{report}");
    let record: Value =
        serde_json::from_str(report["transform"]["ok"]["records"][0]["data"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(record["temperature"], 21.5);
    assert!(report["transform"]["logs"].to_string().contains("2 records"), "{report}");
    assert_eq!(report["checks"]["ok"], true);
    report
}

#[test]
fn a_python_scaffold_builds_and_passes_its_tests() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("weather-py");
    let out = check("sluice plugin new", plugin_new("weather-py", "python", &project));
    assert!(String::from_utf8_lossy(&out.stdout).contains("componentize-py -d wit -w transformer"));
    for file in ["app.py", "test_app.py", "sluice_plugin.py", "wit/sluice.wit", "sample-response.json", "README.md"] {
        assert!(project.join(file).is_file(), "{file} is missing");
    }

    let out = Command::new("python3").current_dir(&project).args(["-m", "unittest"]).output().unwrap();
    assert!(String::from_utf8_lossy(&check("python3 -m unittest", out).stderr).contains("Ran 2 tests"));
    let build = ["-d", "wit", "-w", "transformer", "componentize", "app", "-o", "weather-py.wasm"];
    check("componentize-py", Command::new("componentize-py").current_dir(&project).args(build).output().unwrap());
    plugin_test_sample(&project, "weather-py.wasm");

    // A second scaffold into the same place changes nothing and says why.
    std::fs::write(project.join("app.py"), "# mine\n").unwrap();
    let out = plugin_new("weather-py", "python", &project);
    assert_eq!(out.status.code(), Some(73));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: ") && stderr.contains("already exists and is left as it is"), "{stderr}");
    assert_eq!(std::fs::read_to_string(project.join("app.py")).unwrap(), "# mine\n");
}

#[test]
fn a_rust_scaffold_builds_and_passes_its_tests() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("weather-rs");
    check("sluice plugin new", plugin_new("weather-rs", "rust", &project));
    assert!(project.join("sluice-plugin/src/lib.rs").is_file() && project.join("wit/sluice.wit").is_file());

    // The plugins' own target directory: the SDK's dependencies are built there already, with
    // the same release profile, so the scaffold compiles little more than itself.
    let target = root().join("plugins/target");
    let cargo = || {
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(&project).env("CARGO_TARGET_DIR", &target);
        // The variables cargo sets for this test: build scripts that watch one of them would
        // see a change from the plugins' own builds and build again.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_") || name.starts_with("CARGO_MANIFEST_") || name == "CARGO_CRATE_NAME" {
                cmd.env_remove(name.as_ref());
            }
        }
        cmd
    };
    let build = cargo().args(["build", "--release", "--target", "wasm32-wasip2"]).output().unwrap();
    check("cargo build", build);
    let wasm = target.join("wasm32-wasip2/release/weather_rs.wasm");
    plugin_test_sample(&project, wasm.to_str().unwrap());

    // Natively, on the host's target: the SDK's log falls back to stderr there.
    let tests = cargo().arg("test").output().unwrap();
    let stdout = String::from_utf8_lossy(&check("cargo test", tests).stdout).into_owned();
    assert!(stdout.contains("test result: ok. 2 passed"), "{stdout}");

    let out = plugin_new("weather-rs", "rust", &project);
    assert_eq!(out.status.code(), Some(73));
}

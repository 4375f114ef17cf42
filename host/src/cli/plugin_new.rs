//! `sluice plugin new`: scaffolds a plugin project from the templates in `host/templates/`,
//! embedded in the binary so that it works anywhere the binary does.
//!
//! Each project brings the SDK and the WIT contract of this daemon's version with it, so it
//! builds outside a Sluice checkout against exactly the contract the daemon runs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{EXIT_CANT_CREATE, EXIT_DATA_ERROR};

/// The componentize-py release the Python SDK is tested with (`cargo xtask plugins` pins the
/// same one); the Python template's README tells authors to install it.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, with the `sluice-plugin` SDK; built with cargo for wasm32-wasip2.
    Rust,
    /// Python, with the `sluice_plugin` module; built with componentize-py.
    Python,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The plugin's name: lowercase letters, digits and dashes, such as `weather-split`.
    #[arg(value_parser = parse_name)]
    name: String,
    /// The language to write the plugin in.
    #[arg(long, value_enum)]
    lang: Lang,
    /// The directory to create (default: `./NAME`); it must not exist yet.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

fn parse_name(name: &str) -> Result<String, String> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(name.to_string())
    } else {
        Err("use 1 to 64 lowercase letters, digits and dashes, starting with a letter, such as `weather-split`".into())
    }
}

const WIT: &str = include_str!("../../../wit/sluice.wit");
const GITIGNORE: &str = include_str!("../../templates/gitignore");
const SAMPLE: &str = include_str!("../../templates/sample-response.json");

/// The files of a Rust project: the template's own, and the SDK's sources as they are.
const RUST: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../templates/rust/Cargo.toml")),
    ("README.md", include_str!("../../templates/rust/README.md")),
    ("src/lib.rs", include_str!("../../templates/rust/src/lib.rs")),
    ("sluice-plugin/Cargo.toml", include_str!("../../templates/rust/sdk-Cargo.toml")),
    ("sluice-plugin/src/lib.rs", include_str!("../../../plugin-sdk/src/lib.rs")),
    ("sluice-plugin/src/json.rs", include_str!("../../../plugin-sdk/src/json.rs")),
    ("sluice-plugin/src/log.rs", include_str!("../../../plugin-sdk/src/log.rs")),
    ("sluice-plugin/src/panic.rs", include_str!("../../../plugin-sdk/src/panic.rs")),
    ("sluice-plugin/src/query.rs", include_str!("../../../plugin-sdk/src/query.rs")),
    ("sluice-plugin/src/request.rs", include_str!("../../../plugin-sdk/src/request.rs")),
    ("sluice-plugin/src/types.rs", include_str!("../../../plugin-sdk/src/types.rs")),
];

const PYTHON: &[(&str, &str)] = &[
    ("app.py", include_str!("../../templates/python/app.py")),
    ("test_app.py", include_str!("../../templates/python/test_app.py")),
    ("README.md", include_str!("../../templates/python/README.md")),
    ("sluice_plugin.py", include_str!("../../../plugins/python/sdk/sluice_plugin.py")),
];

/// The project's files with the placeholders filled in: `{{name}}`, `{{crate_name}}` (the
/// name as Rust spells a crate, which is also the built component's file name),
/// `{{sdk_path}}` and `{{componentize_py}}`.
fn files(name: &str, lang: Lang) -> Vec<(&'static str, String)> {
    let template = match lang {
        Lang::Rust => RUST,
        Lang::Python => PYTHON,
    };
    let common = [("wit/sluice.wit", WIT), (".gitignore", GITIGNORE), ("sample-response.json", SAMPLE)];
    template
        .iter()
        .chain(common.iter())
        .map(|(path, text)| {
            // The SDK's own sources are copied as they are: they hold no placeholders, and
            // `{{` may well appear in Rust code.
            let filled = if path.starts_with("sluice-plugin/src/") || path.starts_with("wit/") {
                text.to_string()
            } else {
                text.replace("{{name}}", name)
                    .replace("{{crate_name}}", &name.replace('-', "_"))
                    .replace("{{sdk_path}}", "sluice-plugin")
                    .replace("{{componentize_py}}", COMPONENTIZE_PY_VERSION)
            };
            (*path, filled)
        })
        .collect()
}

pub fn run(args: Args) -> ExitCode {
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() {
        eprintln!(
            "error: {} already exists and is left as it is; choose another name, or another place with --dir",
            dir.display()
        );
        return ExitCode::from(EXIT_CANT_CREATE);
    }
    if let Err(error) = write(&dir, &files(&args.name, args.lang)) {
        eprintln!("error: cannot create the project in {}: {error}", dir.display());
        return ExitCode::from(EXIT_DATA_ERROR);
    }
    let (build, wasm) = match args.lang {
        Lang::Rust => (
            "cargo build --release --target wasm32-wasip2".to_string(),
            format!("target/wasm32-wasip2/release/{}.wasm", args.name.replace('-', "_")),
        ),
        Lang::Python => (
            format!("componentize-py -d wit -w transformer componentize app -o {}.wasm", args.name),
            format!("{}.wasm", args.name),
        ),
    };
    println!("created {}: a {} plugin; its README.md has the whole loop", dir.display(), lang_name(args.lang));
    println!("  cd {}", dir.display());
    println!("  {build}");
    println!("  sluice plugin test {wasm} --response sample-response.json");
    ExitCode::SUCCESS
}

fn lang_name(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "Rust",
        Lang::Python => "Python",
    }
}

/// Creates `dir` (which must not exist: `create_dir` fails rather than write into a directory
/// that appeared since the check) and writes the files into it.
fn write(dir: &Path, files: &[(&str, String)]) -> std::io::Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::create_dir(dir)?;
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercase_words_joined_by_dashes() {
        assert_eq!(parse_name("weather-split2"), Ok("weather-split2".into()));
        for bad in ["", "Weather", "2fast", "a_b", "a b", "../x", &"a".repeat(65)] {
            assert!(parse_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn placeholders_are_filled_except_in_the_sdk_sources() {
        for lang in [Lang::Rust, Lang::Python] {
            for (path, text) in files("my-plugin", lang) {
                let copied = path.starts_with("sluice-plugin/src/") || path.starts_with("wit/");
                assert!(copied || !text.contains("{{"), "{path} keeps a placeholder");
            }
        }
        let rust = files("my-plugin", Lang::Rust);
        let readme = &rust.iter().find(|(path, _)| *path == "README.md").unwrap().1;
        assert!(readme.contains("target/wasm32-wasip2/release/my_plugin.wasm"), "{readme}");
    }
}

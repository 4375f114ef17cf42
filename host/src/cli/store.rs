//! `sluice store export` and `sluice store import`: the whole store as JSON lines (the format is
//! described in `store/export.rs`), for backups, for moving a host's data elsewhere, and for moving
//! it from the embedded store into the shared one. Both work on a stopped store: the one `sluice
//! serve` would use with the same configuration file and `SLUICE_*` variables.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{EXIT_CONFIG, EXIT_DATA_ERROR, EXIT_SOFTWARE};
use crate::config::Config;
use crate::store::{BackendKind, PortError, SledStore, Store, StoreError};

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The daemon's TOML configuration file; the store its `[store]` settings name (the sled
    /// store in `data_dir` by default) is the one exported.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where to write the export; standard output when left out or `-`. A file is written under
    /// a temporary name and renamed when complete.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The daemon's TOML configuration file; the store its `[store]` settings name (the sled
    /// store in `data_dir` by default) is the one filled, which must hold no data yet. With
    /// `backend = "dynamodb"` this moves a single host's data into the shared store.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The export to read; `-` for standard input.
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
}

/// A failure, with the exit code it ends the command with.
struct Failed(u8, String);

impl Failed {
    fn exit(self) -> ExitCode {
        eprintln!("error: {}", self.1);
        ExitCode::from(self.0)
    }
}

/// The store the configuration names, and where it is, for messages.
struct Opened {
    store: Store,
    place: String,
}

/// Reads the configuration as `sluice serve` would, without what only `serve` needs.
fn config(path: Option<&Path>) -> Result<Config, Failed> {
    let config = Config::read(path, |name| std::env::var(name).ok())
        .map_err(|e| Failed(EXIT_CONFIG, format!("bad setting {e}")))?;
    if config.data_dir.as_os_str().is_empty() {
        return Err(Failed(EXIT_CONFIG, "bad setting data_dir: empty; name the daemon's data directory".into()));
    }
    Ok(config)
}

/// Opens the store the configuration names: the sled store in `data_dir` (saying what to do when
/// a running daemon holds it, and refusing to create one where an export expects one), or the
/// shared store on DynamoDB and S3.
async fn open(config: &Config, must_exist: bool) -> Result<Opened, Failed> {
    if config.store.backend == BackendKind::Dynamodb {
        let settings = config.store.dynamo_settings();
        let place = format!("table {} and bucket {}", settings.table, settings.bucket);
        let store =
            Store::connect_dynamo(&settings, config.store.create_table && !must_exist).await.map_err(|e| match e {
                StoreError::Setting { setting, message } => {
                    Failed(EXIT_CONFIG, format!("bad setting {setting}: {message}"))
                }
                e => Failed(EXIT_SOFTWARE, format!("cannot open the shared store: {e}")),
            })?;
        return Ok(Opened { store, place });
    }
    let (dir, database) = (&config.data_dir, config.database_dir());
    // sled would create an empty store where there is none, and export nothing without a word.
    if must_exist && !database.join("conf").is_file() {
        return Err(Failed(
            EXIT_CONFIG,
            format!(
                "data_dir {} holds no Sluice store; set data_dir to the directory `sluice serve` uses",
                dir.display()
            ),
        ));
    }
    if let Err(e) = std::fs::create_dir_all(dir) {
        return Err(Failed(EXIT_CONFIG, format!("data_dir {}: cannot create it: {e}", dir.display())));
    }
    let store = SledStore::open(&database).map_err(|e| match e {
        e if e.is_in_use() => Failed(
            EXIT_CONFIG,
            format!(
                "data_dir {} is in use by another process; stop the `sluice serve` that uses it first, since exports \
                 and imports work on a stopped store",
                dir.display()
            ),
        ),
        StoreError::ImportUnfinished | StoreError::Schema { .. } => {
            Failed(EXIT_CONFIG, format!("data_dir {}: {e}", dir.display()))
        }
        e => Failed(EXIT_SOFTWARE, format!("cannot open the store in {}: {e}", dir.display())),
    })?;
    Ok(Opened { store: store.into(), place: format!("data_dir {}", dir.display()) })
}

pub async fn export(args: ExportArgs) -> ExitCode {
    match try_export(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failed) => failed.exit(),
    }
}

async fn try_export(args: &ExportArgs) -> Result<(), Failed> {
    let Opened { store, place } = open(&config(args.config.as_deref())?, true).await?;
    let failed = |e: PortError| match e {
        PortError::Write(_) => Failed(EXIT_DATA_ERROR, e.to_string()),
        e => Failed(EXIT_SOFTWARE, e.to_string()),
    };
    let (summary, to) = match args.out.as_deref().filter(|out| *out != Path::new("-")) {
        None => (
            store.export(&mut BufWriter::new(std::io::stdout().lock())).await.map_err(failed)?,
            "standard output".into(),
        ),
        Some(out) => {
            let partial = out.with_extension("partial");
            let cannot =
                |e: std::io::Error| Failed(EXIT_DATA_ERROR, format!("cannot write {}: {e}", partial.display()));
            let mut file = BufWriter::new(File::create(&partial).map_err(cannot)?);
            let summary = store.export(&mut file).await.map_err(failed)?;
            let file = file.into_inner().map_err(|e| cannot(e.into_error()))?;
            file.sync_all().map_err(cannot)?;
            std::fs::rename(&partial, out).map_err(|e| {
                Failed(EXIT_DATA_ERROR, format!("cannot rename {} to {}: {e}", partial.display(), out.display()))
            })?;
            (summary, out.display().to_string())
        }
    };
    eprintln!("exported the store in {place} to {to}: {summary}");
    Ok(())
}

pub async fn import(args: ImportArgs) -> ExitCode {
    match try_import(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failed) => failed.exit(),
    }
}

async fn try_import(args: &ImportArgs) -> Result<(), Failed> {
    let config = config(args.config.as_deref())?;
    let input: Box<dyn std::io::BufRead> = if args.from == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin().lock()))
    } else {
        let file = File::open(&args.from)
            .map_err(|e| Failed(EXIT_DATA_ERROR, format!("cannot read {}: {e}", args.from.display())))?;
        Box::new(BufReader::new(file))
    };
    let Opened { store, place } = open(&config, false).await?;
    let summary = store.import(input).await.map_err(|e| match e {
        PortError::NotEmpty(what) => Failed(
            EXIT_CONFIG,
            format!("{place} already holds {what}; import into an empty store, since an import never mixes two stores"),
        ),
        e @ (PortError::Data { .. } | PortError::Incomplete(_) | PortError::Read(_)) => Failed(
            EXIT_DATA_ERROR,
            format!("{e}; nothing was imported that the daemon will use: empty {place} before importing again"),
        ),
        e => Failed(EXIT_SOFTWARE, e.to_string()),
    })?;
    drop(store);
    eprintln!("imported into {place}: {summary}");
    Ok(())
}

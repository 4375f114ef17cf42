//! Export and import: the whole store as JSON lines, one item per line, for backups, for moving
//! a host to another machine, and as the way into another storage backend.
//!
//! The format is the store's logical content, not sled's layout: tenants (with their key hashes),
//! plugins and their component bytes, projects, committed states, outbox and parked entries, run
//! history and usage counters. Derived data (quota counts, blob reference counts, the key index,
//! disk figures) is rebuilt on import. The first line is a header with the format version and the
//! last an `end` line with the number of items, so a cut-off file is refused instead of imported
//! in part. Binary values (states, records, components) are base64.
//!
//! An export reads a stopped store (sled's lock keeps a running daemon's directory closed), so it
//! is a consistent snapshot. Importing, with its checks, is `import.rs`.

use std::collections::BTreeMap;
use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use super::StoreError;
use super::model::{PluginMeta, Project, Tenant};
use super::outbox::OutboxEntry;
use super::runs::{Counters, Run};
use crate::records::Record;

/// The version of the format this build writes and reads.
pub const EXPORT_FORMAT: u32 = 1;

/// The `meta` key that marks a directory whose import has not finished.
pub(super) const IMPORT_UNFINISHED: &str = "import_unfinished";

/// One line of an export.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum Item {
    Header { format: u32, exported_at: String, sluice_version: String },
    Tenant { tenant: Tenant },
    Plugin { tenant_id: String, plugin: PluginMeta },
    Blob { id: String, bytes_base64: String },
    Project { project: Box<Project> },
    State { tenant_id: String, project_id: String, state_base64: String },
    Outbox { entry: Entry },
    Parked { entry: Entry, error: String, parked_at: String },
    Run { tenant_id: String, run: Box<Run> },
    Usage { tenant_id: String, counters: Counters },
    End { items: u64 },
}

/// An outbox entry with its binary fields in base64.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Entry {
    tenant_id: String,
    project_id: String,
    run_id: String,
    scheduled_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state_base64: Option<String>,
    records: Vec<EntryRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryRecord {
    data_base64: String,
    partition_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    explicit_hash_key: Option<String>,
}

impl Entry {
    pub(super) fn from_entry(entry: &OutboxEntry) -> Self {
        Self {
            tenant_id: entry.tenant_id.clone(),
            project_id: entry.project_id.clone(),
            run_id: entry.run_id.clone(),
            scheduled_at_ms: entry.scheduled_at_ms,
            state_base64: entry.state.as_ref().map(|s| BASE64.encode(s)),
            records: entry
                .records
                .iter()
                .map(|r| EntryRecord {
                    data_base64: BASE64.encode(&r.data),
                    partition_key: r.partition_key.clone(),
                    explicit_hash_key: r.explicit_hash_key.clone(),
                })
                .collect(),
        }
    }

    pub(super) fn into_entry(self) -> Result<OutboxEntry, String> {
        let state = self.state_base64.map(|s| unbase64(&s, "state_base64")).transpose()?;
        let records = self
            .records
            .into_iter()
            .map(|r| {
                Ok(Record {
                    data: unbase64(&r.data_base64, "data_base64")?,
                    partition_key: r.partition_key,
                    explicit_hash_key: r.explicit_hash_key,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(OutboxEntry {
            tenant_id: self.tenant_id,
            project_id: self.project_id,
            run_id: self.run_id,
            scheduled_at_ms: self.scheduled_at_ms,
            state,
            records,
        })
    }
}

pub(super) fn unbase64(text: &str, field: &str) -> Result<Vec<u8>, String> {
    BASE64.decode(text).map_err(|e| format!("{field} is not base64: {e}"))
}

/// What went wrong in an export or an import.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the export: {0}")]
    Write(std::io::Error),
    #[error("cannot read the export: {0}")]
    Read(std::io::Error),
    /// The export itself is unusable; `line` counts from 1.
    #[error("line {line} of the export: {message}")]
    Data { line: u64, message: String },
    /// The export as a whole is unusable (cut off, or missing what its items refer to).
    #[error("the export is unusable: {0}")]
    Incomplete(String),
    /// The target of an import already holds data.
    #[error("the store already holds data ({0}); import into an empty data directory")]
    NotEmpty(String),
}

/// How many items of each kind an export or import moved, for its report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortSummary {
    pub counts: BTreeMap<&'static str, u64>,
    /// Records in outbox and parked entries.
    pub records: u64,
}

impl PortSummary {
    pub(super) fn add(&mut self, item: &Item) {
        let kind = match item {
            Item::Header { .. } | Item::End { .. } => return,
            Item::Tenant { .. } => "tenants",
            Item::Plugin { .. } => "plugins",
            Item::Blob { .. } => "components",
            Item::Project { .. } => "projects",
            Item::State { .. } => "states",
            Item::Outbox { entry } => {
                self.records += entry.records.len() as u64;
                "outbox entries"
            }
            Item::Parked { entry, .. } => {
                self.records += entry.records.len() as u64;
                "parked entries"
            }
            Item::Run { .. } => "runs",
            Item::Usage { .. } => "usage counters",
        };
        *self.counts.entry(kind).or_default() += 1;
    }

    pub(super) fn items(&self) -> u64 {
        self.counts.values().sum()
    }
}

impl std::fmt::Display for PortSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.counts.iter().map(|(kind, n)| format!("{n} {kind}")).collect();
        let parts = if parts.is_empty() { "nothing".to_string() } else { parts.join(", ") };
        write!(f, "{parts} ({} records waiting for Kinesis)", self.records)
    }
}

pub(super) fn write_item(out: &mut impl Write, item: &Item, summary: &mut PortSummary) -> Result<(), PortError> {
    serde_json::to_writer(&mut *out, item).map_err(|e| PortError::Write(e.into()))?;
    out.write_all(b"\n").map_err(PortError::Write)?;
    summary.add(item);
    Ok(())
}

/// Writes the export's first line.
pub(super) fn write_header(out: &mut impl Write, summary: &mut PortSummary) -> Result<(), PortError> {
    let header = Item::Header {
        format: EXPORT_FORMAT,
        exported_at: super::now_rfc3339(),
        sluice_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    write_item(out, &header, summary)
}

/// Writes the export's last line, which counts the items before it.
pub(super) fn write_end(out: &mut impl Write, summary: &mut PortSummary) -> Result<(), PortError> {
    let end = Item::End { items: summary.items() };
    write_item(out, &end, summary)?;
    out.flush().map_err(PortError::Write)
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::store::Store;
    use crate::store::projects::test_project as project;
    use crate::store::{CreatePlugin, DeletePlugin, RunOutcome, Tier, Trigger};

    fn entry(tenant: &str, project: &str, run: &str, state: &[u8], records: usize) -> OutboxEntry {
        OutboxEntry {
            tenant_id: tenant.into(),
            project_id: project.into(),
            run_id: run.into(),
            scheduled_at_ms: 1_700_000_000_000,
            state: Some(state.to_vec()),
            records: (0..records)
                .map(|i| Record {
                    // Binary data, and a large record, to cross sled's pieces (see `chunks.rs`).
                    data: if i == 0 { vec![0xff; 20_000] } else { vec![i as u8, 0, 0xfe] },
                    partition_key: format!("pk-{i}"),
                    explicit_hash_key: (i % 2 == 1).then(|| i.to_string()),
                })
                .collect(),
        }
    }

    fn run(project: &str, n: u64) -> Run {
        serde_json::from_value(serde_json::json!({
            "id": format!("run_{n:016x}"), "project_id": project, "trigger": "schedule",
            "scheduled_at": format!("2026-12-07T10:00:{n:02}Z"), "started_at": format!("2026-12-07T10:00:{n:02}Z"),
            "finished_at": format!("2026-12-07T10:00:{n:02}Z"), "outcome": "succeeded", "http_status": 200,
            "pages": 1, "records": 2, "bytes_fetched": 10, "bytes_delivered": 5, "stage_ms": {"fetch": 1.5},
            "error": null
        }))
        .unwrap()
    }

    /// A component's id as the API computes it.
    fn plugin(bytes: &[u8]) -> PluginMeta {
        PluginMeta {
            id: format!("sha256:{}", hex::encode(Sha256::digest(bytes))),
            name: "passthrough".into(),
            size_bytes: bytes.len() as u64,
            created_at: "2026-12-07T10:00:00Z".into(),
        }
    }

    /// A store with a bit of everything: two tenants sharing a component, a waiting and a parked
    /// entry, a committed state, history and usage.
    async fn filled(dir: &std::path::Path) -> (Store, Vec<(Tenant, String)>) {
        let store = Store::open(dir).unwrap();
        let component = vec![7u8; 50_000];
        let mut tenants = Vec::new();
        for name in ["acme", "globex"] {
            let (tenant, key) = store.create_tenant(name, Tier::Standard).await.unwrap();
            let created = store.create_plugin(&tenant.id, plugin(&component), &component, 5).await.unwrap();
            assert!(matches!(created, CreatePlugin::Created(_)));
            tenants.push((tenant, key.expose().to_string()));
        }
        let acme = tenants[0].0.id.clone();
        let id = plugin(&component).id;
        for p in ["prj_1", "prj_2"] {
            store.create_project(project(&acme, p, &id), 2).await.unwrap();
        }
        store.commit_state(&acme, "prj_1", b"cursor=0").await.unwrap();
        let parked = store.enqueue(entry(&acme, "prj_1", "run_1", b"cursor=1", 3)).await.unwrap();
        store.enqueue(entry(&acme, "prj_1", "run_2", b"cursor=2", 2)).await.unwrap();
        store
            .park(&parked, &entry(&acme, "prj_1", "run_1", b"cursor=1", 3), "refused", "2026-12-07T10:00:00Z")
            .await
            .unwrap();
        for n in 0..3 {
            store.record_run(&acme, &run("prj_1", n), 2.5).await.unwrap();
        }
        (store, tenants)
    }

    #[tokio::test]
    async fn an_import_holds_what_the_export_held_and_rebuilds_what_is_derived() {
        let from = tempfile::tempdir().unwrap();
        let (store, tenants) = filled(from.path()).await;
        let mut export = Vec::new();
        let summary = store.export(&mut export).await.unwrap();
        assert_eq!(summary.counts["tenants"], 2);
        assert_eq!(summary.counts["components"], 1, "a component two tenants hold is exported once");
        assert_eq!((summary.counts["outbox entries"], summary.counts["parked entries"], summary.records), (1, 1, 5));

        let to = tempfile::tempdir().unwrap();
        let copy = Store::open(to.path()).unwrap();
        let imported = copy.import(&export[..]).await.unwrap();
        assert_eq!(imported, summary);

        let acme = &tenants[0].0.id;
        for (tenant, key) in &tenants {
            assert_eq!(copy.tenant_for_key(key).await.unwrap().as_ref(), Some(tenant), "keys keep working");
            assert_eq!(copy.plugins(&tenant.id).await.unwrap(), store.plugins(&tenant.id).await.unwrap());
            assert_eq!(copy.projects(&tenant.id).await.unwrap(), store.projects(&tenant.id).await.unwrap());
            assert_eq!(
                copy.usage(&tenant.id).await.unwrap(),
                store.usage(&tenant.id).await.unwrap(),
                "usage and disk figures"
            );
        }
        let strip = |entries: Vec<(crate::store::OutboxKey, OutboxEntry)>| -> Vec<OutboxEntry> {
            entries.into_iter().map(|(_, e)| e).collect()
        };
        assert_eq!(
            strip(copy.outbox_of(acme, "prj_1").await.unwrap()),
            strip(store.outbox_of(acme, "prj_1").await.unwrap())
        );
        assert_eq!(copy.parked_of(acme, "prj_1").await.unwrap(), store.parked_of(acme, "prj_1").await.unwrap());
        assert_eq!(copy.committed_state(acme, "prj_1").await.unwrap().as_deref(), Some(&b"cursor=1"[..]));
        assert_eq!(copy.next_state(acme, "prj_1").await.unwrap().as_deref(), Some(&b"cursor=2"[..]));
        assert_eq!(copy.runs(acme, "prj_1", 10).await.unwrap(), store.runs(acme, "prj_1", 10).await.unwrap());
        let id = plugin(&[7u8; 50_000]).id;
        assert_eq!(copy.plugin_bytes(&id).await.unwrap(), store.plugin_bytes(&id).await.unwrap());

        // The quota count came along: acme has two projects of two.
        let third = copy.create_project(project(acme, "prj_3", &id), 2).await.unwrap();
        assert!(matches!(third, crate::store::CreateProject::QuotaExceeded));
        // So did the reference count: the component stays until its last holder deletes it.
        for tenant in [&tenants[1].0.id] {
            assert_eq!(copy.delete_plugin(tenant, &id).await.unwrap(), DeletePlugin::Deleted);
        }
        assert!(copy.plugin_bytes(&id).await.unwrap().is_some(), "acme still holds the component");

        // A new entry goes after the imported one, and the run history goes on from the import.
        let key = copy.enqueue(entry(acme, "prj_1", "run_3", b"cursor=3", 1)).await.unwrap();
        let waiting = copy.outbox_of(acme, "prj_1").await.unwrap();
        assert_eq!(waiting.iter().map(|(_, e)| e.run_id.as_str()).collect::<Vec<_>>(), ["run_2", "run_3"]);
        assert_eq!(waiting[1].0, key);
        let mut later = run("prj_1", 9);
        later.outcome = RunOutcome::Failed;
        later.trigger = Trigger::Manual;
        copy.record_run(acme, &later, 0.0).await.unwrap();
        assert_eq!(copy.runs(acme, "prj_1", 1).await.unwrap()[0].id, later.id);
        assert_eq!(copy.usage(acme).await.unwrap().runs_failed, 1);
    }

    #[tokio::test]
    async fn a_cut_off_or_altered_export_is_refused_and_leaves_a_store_that_will_not_open() {
        let from = tempfile::tempdir().unwrap();
        let (store, _) = filled(from.path()).await;
        let mut export = Vec::new();
        store.export(&mut export).await.unwrap();
        let text = String::from_utf8(export).unwrap();
        let lines: Vec<&str> = text.lines().collect();

        let cut = lines[..lines.len() - 1].join("\n");
        let altered = text.replacen("\"kind\":\"blob\",\"id\":\"sha256:", "\"kind\":\"blob\",\"id\":\"sha256:0", 1);
        let reordered = [&lines[..1], &lines[3..], &lines[1..3]].concat().join("\n");
        let newer = text.replacen("\"format\":1", "\"format\":2", 1);
        let cases = [
            (cut.as_str(), "cut off"),
            (altered.as_str(), "does not match its bytes"),
            (reordered.as_str(), "is not in the export before"),
            (newer.as_str(), "format 2"),
            ("{\"kind\":\"end\",\"items\":0}", "first line must be the export's header"),
            ("{\"name\":\"x\"}", "not an export item"),
        ];
        for (input, expected) in cases {
            let to = tempfile::tempdir().unwrap();
            let copy = Store::open(to.path()).unwrap();
            let error = copy.import(input.as_bytes()).await.unwrap_err().to_string();
            assert!(error.contains(expected), "expected {expected:?} in: {error}");
            drop(copy);
            let error = match crate::store::reopen_result(to.path()) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("a store whose import failed opened"),
            };
            assert!(error.contains("import that did not finish"), "{error}");
        }

        // An import never mixes into a store that has data of its own.
        let error = store.import(text.as_bytes()).await.unwrap_err();
        assert!(matches!(error, PortError::NotEmpty(_)), "{error}");
    }
}

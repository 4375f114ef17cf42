//! The fleet a Sluice side runs: its tenants, their plugins and projects, and the daemon's parts
//! wired as `sluice serve` wires them (`server.rs`), optionally with the API on loopback and the
//! projects created through it (`tenant_client.rs`).

use super::*;

use sluice::api;
use sluice::runtime::Plugin;
use sluice::store::{CommitOptions, Tenant};

// Declared here rather than at the crate root so that the `hostile` bench, which takes this file
// with `#[path]`, gets it too.
#[path = "tenant_client.rs"]
pub mod tenant_client;

/// The operator token of the API a Sluice side serves.
pub const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";

/// One tenant of the fleet, with what a client of the API needs to act as it.
pub struct Member {
    pub tenant: Tenant,
    pub token: String,
    pub plugin_id: String,
    pub projects: Vec<ProjectKey>,
}

/// The mode the noisy project with index `i` runs: the hostile fixture's behaviours in `modes`,
/// in turn.
pub fn noisy_mode(modes: &[String], i: usize) -> &str {
    &modes[i % modes.len()]
}

/// The plugin settings of the noisy project with index `i`. `big-output` returns `output_mb`
/// records of 1 MiB: 100 MiB of them outgrow the 64 MiB memory cap before they reach the 16 MiB
/// output cap, so a value under about 60 is what exercises the latter. `memory-hog` holds `hog_mb`
/// MiB until its deadline.
fn noisy_settings(settings: &SluiceSettings, i: usize) -> BTreeMap<String, String> {
    let mode = noisy_mode(&settings.noisy_modes, i);
    let mut plugin_settings = BTreeMap::from([("mode".to_string(), mode.to_string())]);
    match mode {
        "big-output" => {
            plugin_settings.insert("output_mb".into(), settings.output_mb.to_string());
        }
        "memory-hog" => {
            plugin_settings.insert("hog_mb".into(), settings.hog_mb.to_string());
        }
        _ => {}
    }
    plugin_settings
}

pub struct Fleet {
    /// The store's directory (removed when the fleet is dropped); other files of the side go here.
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub members: Vec<Member>,
    /// The noisy tenants, created up front; their projects are created by [`Fleet::add_noisy`].
    pub noisy: Vec<Member>,
    /// For the plugin memory gauges.
    pub runtime: Runtime,
    pub plane: DataPlane,
    pub control: sluice::run::Control,
    pub scheduler: Scheduler,
    pub aws: Aws,
    pub metrics: Arc<Metrics>,
    pub config: SchedulerConfig,
    /// Where the API listens, if it is served.
    pub api: Option<std::net::SocketAddr>,
    /// Seconds it took to create the well-behaved projects, and whether through the API.
    pub created_s: f64,
    pub created_via_api: bool,
    source_url: String,
}

/// The stream of a tenant's `j`-th project: the one bench stream when `streams` is `None`, else
/// the tenant's `j mod s`-th of `s` streams. The peer accepts any stream.
pub fn stream_arn(streams: Option<usize>, tenant: usize, j: usize) -> String {
    match streams {
        None => STREAM_ARN.into(),
        Some(s) => format!("arn:aws:kinesis:eu-central-1:123456789012:stream/t{tenant}-s{}", j % s.max(1)),
    }
}

/// A project as the API would create it (`api/projects.rs`): pending, and with `trust`'s external
/// id, the tenant's for [`Trust::Tenant`] or a new one of its own for [`Trust::Project`].
pub fn project(tenant: &Tenant, plugin_id: &str, source_url: &str, n: usize, trust: Trust) -> Project {
    let now = now_rfc3339();
    let external_id = match trust {
        Trust::Tenant => tenant.external_id.clone(),
        Trust::Project => random_hex(16),
    };
    Project {
        id: format!("prj_{}", random_hex(8)),
        tenant_id: tenant.id.clone(),
        name: format!("project-{n}"),
        schedule: "rate(1 second)".parse().unwrap(),
        timezone: sluice::calendar::Timezone::utc(),
        source: Source {
            url: sluice::source::SourceUrl::parse(source_url).unwrap(),
            method: "GET".into(),
            headers: BTreeMap::new(),
            api_key: None,
        },
        plugin_id: plugin_id.into(),
        plugin: None,
        plugin_settings: BTreeMap::new(),
        target: Target {
            stream_arn: sluice::arn::StreamArn::parse(STREAM_ARN).unwrap(),
            role_arn: sluice::arn::RoleArn::parse(ROLE_ARN).unwrap(),
        },
        max_pages: 10,
        trust,
        status: ProjectStatus::Pending,
        status_message: "waiting for the first successful AssumeRole".into(),
        consecutive_failures: 0,
        backoff_until: None,
        onboarding: Onboarding { platform_principal_arn: "arn:aws:iam::111111111111:role/sluice".into(), external_id },
        created_at: now.clone(),
        updated_at: now,
    }
}

/// Creates projects the way the API does (one transaction and a flush each), 64 at a time (one on
/// the shared store), and
/// tells the scheduler about each if `control` is given.
pub async fn create_projects(store: &Store, projects: Vec<Project>, control: Option<&sluice::run::Control>) {
    // moto, under the shared store, applies one transaction at a time (see `shared.rs`).
    let at_once = if store.backend_name() == "dynamodb" { 1 } else { 64 };
    let mut tasks = tokio::task::JoinSet::new();
    for project in projects {
        let (store, control) = (store.clone(), control.cloned());
        tasks.spawn(async move {
            let CreateProject::Created(project) = store.create_project(project, u32::MAX).await.unwrap() else {
                panic!("the project was refused");
            };
            if let Some(control) = control {
                control.project_changed(&project).await;
            }
        });
        if tasks.len() >= at_once {
            tasks.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
}

/// Loads a fixture component and stores it as `tenant`'s plugin.
async fn add_plugin(store: &Store, runtime: &Runtime, tenant: &Tenant, name: &str) -> Plugin {
    let wasm = std::fs::read(plugin_path(name)).expect("build the plugins first: cargo xtask plugins");
    let plugin = runtime.load(&wasm).unwrap();
    let meta = PluginMeta {
        id: plugin.id().to_string(),
        name: name.into(),
        size_bytes: wasm.len() as u64,
        created_at: now_rfc3339(),
    };
    let created = store.create_plugin(&tenant.id, meta, &wasm, 10).await.unwrap();
    assert!(matches!(created, CreatePlugin::Created(_)));
    plugin
}

async fn add_tenant(store: &Store, name: &str, need: usize) -> (Tenant, String) {
    let (tenant, key) = store.create_tenant(name, Tier::Premium).await.unwrap();
    assert!(tenant.quotas().max_projects as usize >= need && tenant.quotas().min_interval_seconds <= 1);
    (tenant, key.expose().to_string())
}

impl Fleet {
    /// The store, the tenants with their well-behaved projects, the noisy tenants (without their
    /// projects yet), and the data plane and API wired as `server::run` wires them, with the
    /// shipped runtime (but for `settings.memory_budget_bytes`) and run settings. Nothing runs
    /// until the caller spawns `plane.run`.
    pub async fn build(settings: &SluiceSettings) -> Self {
        let source_url = format!("http://{}/items", peer_addr());
        let dir = tempfile::tempdir().unwrap();
        let commit = CommitOptions {
            max_batch: settings.commit_max_batch.unwrap_or(CommitOptions::default().max_batch),
            stall_before_sync: Duration::from_millis(settings.stall_before_sync_ms),
            ..CommitOptions::default()
        };
        let store = match &settings.shared_store {
            None => Store::open_with(&dir.path().join("db"), commit).unwrap(),
            Some(_) => {
                let name = format!("sluice-bench-{}", random_hex(6));
                let shared = sluice::store::dynamo::DynamoSettings { table: name.clone(), bucket: name };
                Store::connect_dynamo(&shared, true).await.unwrap()
            }
        };
        let shipped = RuntimeConfig::default();
        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: Some(dir.path().join("compiled")),
            memory_budget_bytes: settings.memory_budget_bytes.unwrap_or(shipped.memory_budget_bytes),
            ..shipped
        })
        .unwrap();
        let defaults = sluice::config::Config::default();
        let limits = api::BodyLimits {
            max_json_bytes: defaults.max_json_bytes as usize,
            max_plugin_bytes: defaults.max_plugin_bytes as usize,
        };

        let per_tenant_projects = settings.n.div_ceil(settings.tenants);
        let mut members = Vec::with_capacity(settings.tenants);
        for t in 0..settings.tenants {
            let (tenant, token) = add_tenant(&store, &format!("bench-{t}"), per_tenant_projects).await;
            let plugin = add_plugin(&store, &runtime, &tenant, "passthrough").await;
            // Compiled once in this process, as the API would have left it after the upload.
            runtime.keep(plugin.clone());
            members.push(Member { tenant, token, plugin_id: plugin.id().to_string(), projects: Vec::new() });
        }
        let mut noisy = Vec::new();
        for t in 0..if settings.noisy > 0 { settings.noisy_tenants } else { 0 } {
            let (tenant, token) = add_tenant(&store, &format!("noisy-{t}"), settings.noisy).await;
            let plugin = add_plugin(&store, &runtime, &tenant, "hostile").await;
            runtime.keep(plugin.clone());
            noisy.push(Member { tenant, token, plugin_id: plugin.id().to_string(), projects: Vec::new() });
        }

        // Project i belongs to tenant i mod T, so every tenant's projects spread over the run.
        let created_at = Instant::now();
        if !settings.create_via_api {
            let mut projects = Vec::with_capacity(settings.n);
            for i in 0..settings.n {
                let t = i % settings.tenants;
                let member = &mut members[t];
                let mut project = project(&member.tenant, &member.plugin_id, &source_url, i, settings.trust);
                if let Some(schedule) = &settings.schedule {
                    project.schedule = schedule.parse().expect("a schedule the API takes");
                }
                if settings.stagger_s > 0 {
                    let back = (settings.stagger_s * 1000 * i as u64 / settings.n as u64) as i64;
                    let created = Timestamp::now() - jiff::SignedDuration::from_millis(back);
                    project.created_at = created.to_string();
                }
                let stream = stream_arn(settings.streams_per_tenant, t, i / settings.tenants);
                project.target.stream_arn = sluice::arn::StreamArn::parse(&stream).unwrap();
                member.projects.push(ProjectKey::new(project.tenant_id.as_str(), project.id.as_str()));
                projects.push(project);
            }
            create_projects(&store, projects, None).await;
        }

        let config = SchedulerConfig {
            max_concurrent_runs: settings.concurrency,
            max_concurrent_runs_per_tenant: settings.per_tenant,
            ..SchedulerConfig::default()
        };
        let scheduler = Scheduler::new(config.clone(), Clock::system());
        let aws = Aws::from_env(AwsConfig { put_coalesce: settings.put_coalesce, ..AwsConfig::default() }).await;
        let fetcher = Fetcher::new(SourceConfig { allow_private: true, ..SourceConfig::default() }).unwrap();
        let (state, plane) = sluice::server::assemble(sluice::server::Components {
            cluster: None,
            store: store.clone(),
            runtime: runtime.clone(),
            aws: aws.clone(),
            fetcher,
            scheduler: scheduler.clone(),
            run: RunConfig::default(),
            limits,
            admin_token: ADMIN_TOKEN,
            platform_principal_arn: "arn:aws:iam::111111111111:role/sluice",
        });
        let metrics = state.metrics();
        let control = plane.control();
        // A load generator, or a tenant creating projects, needs something to talk to.
        let api = if settings.api || settings.api_rate > 0.0 || settings.api_read_rate > 0.0 || settings.create_via_api
        {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, api::app(state)).await.unwrap() });
            eprintln!("  API on http://{addr}");
            Some(addr)
        } else {
            None
        };
        if settings.create_via_api {
            // The scheduler learns of each project from the API, as in the daemon; the data plane
            // registers every stored project again when it starts, which changes nothing.
            let base = format!("http://{}", api.expect("the API is served"));
            tenant_client::create_projects(&base, &mut members, settings, &source_url).await;
        }
        let created_s = created_at.elapsed().as_secs_f64();
        eprintln!(
            "  {} projects of {} tenants created {} in {created_s:.1} s ({:.0} per second)",
            settings.n,
            settings.tenants,
            if settings.create_via_api { "with POST /v1/projects" } else { "in the store" },
            settings.n as f64 / created_s
        );
        Self {
            dir,
            store,
            members,
            noisy,
            runtime,
            plane,
            control,
            scheduler,
            aws,
            metrics,
            config,
            api,
            created_s,
            created_via_api: settings.create_via_api,
            source_url,
        }
    }

    /// Every well-behaved project.
    pub fn well_keys(&self) -> Vec<ProjectKey> {
        self.members.iter().flat_map(|m| m.projects.iter().cloned()).collect()
    }

    /// Creates `settings.noisy` noisy projects, cycling through its modes and, project i,
    /// belonging to noisy tenant i mod T, and registers them with the scheduler as the API does
    /// for a new project. Returns their keys, in index order.
    pub async fn add_noisy(&mut self, settings: &SluiceSettings) -> Vec<ProjectKey> {
        if self.noisy.is_empty() {
            return Vec::new();
        }
        let tenants = self.noisy.len();
        let projects: Vec<Project> = (0..settings.noisy)
            .map(|i| {
                let member = &self.noisy[i % tenants];
                let mut project = project(&member.tenant, &member.plugin_id, &self.source_url, i, settings.trust);
                project.name = format!("noisy-{}-{i}", noisy_mode(&settings.noisy_modes, i));
                project.plugin_settings = noisy_settings(settings, i);
                project
            })
            .collect();
        let keys: Vec<ProjectKey> =
            projects.iter().map(|p| ProjectKey::new(p.tenant_id.as_str(), p.id.as_str())).collect();
        for (i, key) in keys.iter().enumerate() {
            self.noisy[i % tenants].projects.push(key.clone());
        }
        create_projects(&self.store, projects, Some(&self.control)).await;
        keys
    }
}

//! The handoff from an orchestrator to the child processes it starts, shared by the `dataplane`
//! and `hostile` bench binaries. Internal: both ends are this code, built into the same binary, so
//! its shape can change with it. The orchestrator serializes a [`Child`] (the role to play and
//! every setting of that role) as JSON into the one environment variable `SLUICE_BENCH_CHILD`;
//! the binary started with it plays that role instead of parsing flags. The SDK's own `AWS_*`
//! variables, which point it at the peer, are set beside it.

use super::*;

/// The environment variable that carries a child's [`Child`], as JSON.
const CHILD_VAR: &str = "SLUICE_BENCH_CHILD";

/// What a child process is told: its role and that role's settings.
#[derive(Clone, Serialize, Deserialize)]
pub struct Child {
    /// The peer the child measures against; `None` for the peer itself and for children that do
    /// not talk to it.
    pub peer: Option<PeerRef>,
    pub role: Role,
}

/// Where the peer listens, and its pid (its CPU and file descriptors are reported apart).
#[derive(Clone, Serialize, Deserialize)]
pub struct PeerRef {
    /// `127.0.0.1:port`.
    pub addr: String,
    pub pid: u32,
}

// A role is built once per child and travels as JSON: its size in memory does not matter, and
// boxing the Sluice side's settings would only make every scenario harder to write.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Serialize, Deserialize)]
pub enum Role {
    /// The source, STS and Kinesis (`peer.rs`).
    Peer,
    /// The whole pipeline over a fleet of projects (`sluice_side.rs`).
    Sluice(SluiceSettings),
    /// The bare GET + PutRecords loop (`bare.rs`, `dataplane` only).
    Bare(BareSettings),
    /// The store's calls of a run alone (`probes.rs`, `dataplane` only).
    Store(ProbeSettings),
    /// Per-session Kinesis clients (`probes.rs`, `dataplane` only).
    Clients(ProbeSettings),
    /// The API load generator, started by a Sluice child (`apiload.rs`, `hostile` only), with the
    /// file its plan is in (a plan names every project, too long for an environment variable).
    Apiload { plan: PathBuf },
}

/// What the Sluice side builds and measures. The defaults are one tenant's 1,000 well-behaved
/// projects with trust of their own on one stream, created in the store directly, caps of 64, the
/// shipped committer and delivery, no noisy projects and no API.
#[derive(Clone, Serialize, Deserialize)]
pub struct SluiceSettings {
    /// The scenario's kind, for its table: `fleet`, `trust`, `throughput`, `overload`, `stall`,
    /// `noisy`, `budget` or `control`.
    pub kind: String,
    /// The variant of the kind, for its table and the names of its files (`perf`, lags); empty
    /// when the kind has one.
    pub variant: String,
    /// Well-behaved (passthrough) projects, spread evenly over `tenants`.
    pub n: usize,
    pub tenants: usize,
    /// Whose external id every project's role trusts, as the API sets it: the tenant's (so the
    /// tenant's projects share one assumed-role session) or one of the project's own (a session
    /// each).
    pub trust: Trust,
    /// Projects running the hostile fixture, added when the window starts, spread over
    /// `noisy_tenants` more tenants.
    pub noisy: usize,
    pub noisy_tenants: usize,
    /// The hostile fixture's behaviours the noisy projects cycle through. `big-output` returns
    /// `output_mb` records of 1 MiB; `memory-hog` holds `hog_mb` MiB until its deadline.
    pub noisy_modes: Vec<String>,
    pub output_mb: u32,
    pub hog_mb: u32,
    /// The runtime's host-wide plugin memory budget; the shipped one when `None`.
    pub memory_budget_bytes: Option<u64>,
    /// Projects per tenant stream: `None` puts every project on the one bench stream, `Some(s)`
    /// gives each tenant `s` streams of its own (`stream/t{t}-s{s}`), its projects dealt out to
    /// them in turn.
    pub streams_per_tenant: Option<usize>,
    /// Create the well-behaved projects as their tenant would, with `POST /v1/projects` and the
    /// tenant's key (the API is served), instead of writing them to the store directly.
    pub create_via_api: bool,
    /// The most commits the store's committer puts in one batch (`CommitOptions::max_batch`;
    /// 1 syncs every commit on its own); the shipped value when `None`.
    pub commit_max_batch: Option<usize>,
    /// A pause before every sync of the committer, in ms (`CommitOptions::stall_before_sync`):
    /// a disk on which every sync is that much slower.
    pub stall_before_sync_ms: u64,
    /// Stop the committer thread once for this many ms, a third of the way into the window: one
    /// disk stall. 0 for none.
    pub stall_once_ms: u64,
    /// Whether deliveries to one stream with one session at the same time share `PutRecords`
    /// calls (`AwsConfig::put_coalesce`, on by default).
    pub put_coalesce: bool,
    /// Keep the store on DynamoDB and S3 at this endpoint (moto's server, `shared.rs`) instead of
    /// sled in a temp dir: a fresh table and bucket of the side's own.
    pub shared_store: Option<String>,
    /// Every project's schedule instead of `rate(1 second)`.
    pub schedule: Option<String>,
    /// Spread the projects' creation times evenly over this many seconds before now, so that a
    /// long period's firings spread over it instead of coming together once a period; 0: all now.
    pub stagger_s: u64,
    pub concurrency: usize,
    pub per_tenant: usize,
    /// Serve the API on loopback.
    pub api: bool,
    /// Requests per second from a separate load-generator process; 0 for none.
    pub api_rate: f64,
    /// Tenants' API reads per second (`GET /v1/projects/{id}` and `.../runs`, open-loop) from a
    /// thread of this process with a runtime of its own; 0 for none.
    pub api_read_rate: f64,
    pub warmup: Duration,
    pub window: Duration,
    /// Record a `perf` profile of the window into this directory.
    pub perf: Option<PathBuf>,
    /// Write the window's runs as "ms into the window, lag ms" lines to files named from this
    /// prefix.
    pub lags: Option<String>,
}

impl Default for SluiceSettings {
    fn default() -> Self {
        Self {
            kind: "fleet".into(),
            variant: String::new(),
            n: 1000,
            tenants: 1,
            trust: Trust::Project,
            noisy: 0,
            noisy_tenants: 1,
            noisy_modes: ["busy-loop", "memory-bomb", "big-output"].map(String::from).to_vec(),
            output_mb: 100,
            hog_mb: 48,
            memory_budget_bytes: None,
            streams_per_tenant: None,
            create_via_api: false,
            commit_max_batch: None,
            stall_before_sync_ms: 0,
            stall_once_ms: 0,
            put_coalesce: true,
            shared_store: None,
            schedule: None,
            stagger_s: 0,
            concurrency: 64,
            per_tenant: 64,
            api: false,
            api_rate: 0.0,
            api_read_rate: 0.0,
            warmup: Duration::from_secs(5),
            window: Duration::from_secs(20),
            perf: None,
            lags: None,
        }
    }
}

/// The bare loop's settings.
#[derive(Clone, Serialize, Deserialize)]
pub struct BareSettings {
    pub concurrency: usize,
    /// 0: closed loop, as fast as it goes; otherwise polls per second, paced.
    pub rate: u64,
    pub warmup: Duration,
    pub window: Duration,
    pub perf: Option<PathBuf>,
}

/// A probe's settings: `n` projects or clients, `concurrency` at a time (the `clients` probe has
/// no window).
#[derive(Clone, Serialize, Deserialize)]
pub struct ProbeSettings {
    pub n: usize,
    pub concurrency: usize,
    pub warmup: Duration,
    pub window: Duration,
}

/// The peer of this child, from its [`Child`].
static PEER: std::sync::OnceLock<PeerRef> = std::sync::OnceLock::new();

/// Where the peer listens (`127.0.0.1:port`).
pub fn peer_addr() -> &'static str {
    &PEER.get().expect("this child was given no peer").addr
}

/// The peer's pid, if this child was given a peer.
pub fn peer_pid() -> Option<u32> {
    PEER.get().map(|peer| peer.pid)
}

/// Plays a role both benches have: the peer or the Sluice side. Each bench's `main` plays its own.
pub fn play_shared(role: Role) {
    match role {
        Role::Peer => crate::peer::peer(),
        Role::Sluice(settings) => crate::measure::run_side(crate::sluice_side::sluice_side(settings)),
        Role::Bare(_) | Role::Store(_) | Role::Clients(_) | Role::Apiload { .. } => {
            unreachable!("a role of the other bench")
        }
    }
}

impl Child {
    /// This process's handoff, if an orchestrator started it as a child.
    pub fn from_env() -> Option<Self> {
        let json = std::env::var(CHILD_VAR).ok()?;
        Some(serde_json::from_str(&json).unwrap_or_else(|e| panic!("{CHILD_VAR} is not a child's settings: {e}")))
    }

    /// Keeps the peer for [`peer_addr`] and [`peer_pid`], and returns the role to play.
    pub fn enter(self) -> Role {
        if let Some(peer) = self.peer {
            let _ = PEER.set(peer);
        }
        self.role
    }

    /// A command that starts this binary as this child, with the SDK pointed at the peer.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env(CHILD_VAR, serde_json::to_string(self).unwrap());
        if let Some(peer) = &self.peer {
            cmd.env("AWS_ENDPOINT_URL", format!("http://{}", peer.addr))
                .env("AWS_REGION", "eu-central-1")
                .env("AWS_ACCESS_KEY_ID", "bench")
                .env("AWS_SECRET_ACCESS_KEY", "bench")
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .env("AWS_CONFIG_FILE", "/nonexistent/sluice-bench")
                .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/sluice-bench");
        }
        // The shared store's services go to moto, the rest to the peer.
        if let Role::Sluice(SluiceSettings { shared_store: Some(endpoint), .. }) = &self.role {
            cmd.env("AWS_ENDPOINT_URL_DYNAMODB", endpoint).env("AWS_ENDPOINT_URL_S3", endpoint);
        }
        cmd
    }
}

//! Process accounting from /proc, the measured window and the child-process plumbing.

use super::*;

/// User + system CPU seconds of a process (`self` or a pid).
pub fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name is in parentheses and may contain spaces; fields count from after it.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / TICKS_PER_SECOND
}

/// A size field of this process's `/proc/self/status` (`VmRSS`, `VmHWM`), in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// Resident set size of this process, in bytes.
pub fn rss_bytes() -> u64 {
    status_bytes("VmRSS")
}

/// The peak resident set size of this process since it started or since [`reset_peak_rss`].
pub fn peak_rss_bytes() -> u64 {
    status_bytes("VmHWM")
}

/// Resets `VmHWM` to the current RSS (Linux's `clear_refs` value 5), so that the peak read at the
/// end of a window is the window's own and not the warm-up's. Returns whether the kernel took it.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The pid of another process the bench started beside the measured one (the API load
/// generator), whose CPU is neither the measured process's nor "other processes'"; 0 when none.
pub static HELPER_PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Open file descriptors of a process (sockets, mostly).
pub fn open_fds(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

/// (busy, total, iowait) jiffies of the whole machine. Time waiting for the disk counts as idle
/// in `busy`; it is the third value, to spot windows where disk writes stalled.
pub fn machine_jiffies() -> (f64, f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let values: Vec<f64> =
        stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let total: f64 = values.iter().take(8).sum();
    let iowait = values.get(4).copied().unwrap_or(0.0);
    let idle = values.get(3).copied().unwrap_or(0.0) + iowait;
    (total - idle, total, iowait)
}

/// (write requests, sectors written) summed over the machine's whole disks (not partitions).
pub fn disk_writes() -> (f64, f64) {
    let stats = std::fs::read_to_string("/proc/diskstats").unwrap_or_default();
    let mut total = (0.0, 0.0);
    for line in stats.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(name) = fields.get(2) else { continue };
        let whole = (name.starts_with("vd") || name.starts_with("sd") || name.starts_with("xvd"))
            && !name.ends_with(|c: char| c.is_ascii_digit())
            || name.starts_with("nvme") && !name.contains('p');
        if whole {
            let field = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            total.0 += field(7);
            total.1 += field(9);
        }
    }
    total
}

/// (voluntary, involuntary) context switches of every thread of this process so far, the exited
/// ones included (`getrusage(RUSAGE_SELF)`; `/proc/self/status` counts the main thread's only).
pub fn context_switches() -> (f64, f64) {
    // SAFETY: `getrusage` only writes the struct it is given, which is plain data.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable `rusage`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return (0.0, 0.0);
    }
    (usage.ru_nvcsw as f64, usage.ru_nivcsw as f64)
}

/// CPU of this process, the peer and the machine, the disks' writes and this process's context
/// switches, at one moment.
#[derive(Clone, Copy)]
pub struct Sample {
    at: Instant,
    own: f64,
    peer: f64,
    helper: f64,
    machine: (f64, f64, f64),
    disk: (f64, f64),
    switches: (f64, f64),
}

impl Sample {
    pub fn now() -> Self {
        let peer = peer_pid().map_or(0.0, |pid| cpu_seconds(&pid.to_string()));
        let helper = match HELPER_PID.load(Ordering::Relaxed) {
            0 => 0.0,
            pid => cpu_seconds(&pid.to_string()),
        };
        let (own, machine, disk) = (cpu_seconds("self"), machine_jiffies(), disk_writes());
        Self { at: Instant::now(), own, peer, helper, machine, disk, switches: context_switches() }
    }

    /// (this process's cores, other processes' cores) from `earlier` to this sample. Other
    /// processes are the machine's busy time less this process, the peer and the helper.
    pub fn cores_since(&self, earlier: &Sample) -> (f64, f64) {
        let wall = self.at.duration_since(earlier.at).as_secs_f64().max(1e-9);
        let own = self.own - earlier.own;
        let busy = (self.machine.0 - earlier.machine.0) / TICKS_PER_SECOND;
        let others = busy - own - (self.peer - earlier.peer) - (self.helper - earlier.helper);
        (own / wall, others.max(0.0) / wall)
    }

    /// Cores' worth of time the machine sat idle waiting for the disk, from `earlier` to this
    /// sample.
    pub fn iowait_since(&self, earlier: &Sample) -> f64 {
        let wall = self.at.duration_since(earlier.at).as_secs_f64().max(1e-9);
        (self.machine.2 - earlier.machine.2) / TICKS_PER_SECOND / wall
    }
}

/// What every measured window reports, whichever side ran it.
pub fn window_report(start: Sample, end: Sample, polls: u64) -> Value {
    let wall = end.at.duration_since(start.at).as_secs_f64();
    let per_poll = |seconds: f64| if polls == 0 { 0.0 } else { seconds * 1e6 / polls as f64 };
    let count_per_poll = |count: f64| if polls == 0 { 0.0 } else { count / polls as f64 };
    let (busy, total) = (end.machine.0 - start.machine.0, end.machine.1 - start.machine.1);
    json!({
        "window_s": wall,
        "polls": polls,
        "polls_per_s": polls as f64 / wall,
        "cpu_us_per_poll": per_poll(end.own - start.own),
        "cpu_cores": (end.own - start.own) / wall,
        "peer_cpu_us_per_poll": per_poll(end.peer - start.peer),
        "machine_busy": if total > 0.0 { busy / total } else { 0.0 },
        // Other processes on this shared machine (builds, tests): a window where this is not
        // near zero was measured on a busy machine.
        "helper_cores": (end.helper - start.helper) / wall,
        "others_cores": end.cores_since(&start).1,
        // Whole-machine disk writes (sectors are 512 bytes), per poll.
        "disk_writes_per_poll": if polls == 0 { 0.0 } else { (end.disk.0 - start.disk.0) / polls as f64 },
        "disk_kib_per_poll": if polls == 0 { 0.0 } else { (end.disk.1 - start.disk.1) / 2.0 / polls as f64 },
        // This process's context switches (every thread), voluntary (it waited) and involuntary
        // (it was preempted), per poll.
        "voluntary_switches_per_poll": count_per_poll(end.switches.0 - start.switches.0),
        "involuntary_switches_per_poll": count_per_poll(end.switches.1 - start.switches.1),
    })
}

/// Runs one side in a fresh runtime and prints its result for the orchestrator.
pub fn run_side(side: impl Future<Output = Value>) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let result = runtime.block_on(side);
    println!("RESULT {result}");
    std::io::stdout().flush().unwrap();
    // Exit without tearing down thousands of idle connections and sled's caches: not measured.
    std::process::exit(0);
}

pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// How long the handler of `SIGUSR2` sleeps, in ms (see [`stall_thread`]).
static STALL_MS: AtomicU64 = AtomicU64::new(0);

extern "C" fn sleep_in_handler(_: libc::c_int) {
    let ms = STALL_MS.load(Ordering::Relaxed);
    let pause =
        libc::timespec { tv_sec: (ms / 1000) as libc::time_t, tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long };
    // SAFETY: `nanosleep` is async-signal-safe and reads only `pause`.
    unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
}

/// Stops this process's thread named `name` for `ms` milliseconds, as a stalled disk would stop a
/// thread waiting in `fdatasync`: a `SIGUSR2` sent to that thread alone, whose handler sleeps (a
/// thread inside a system call takes it when the call returns). The bench's own handler; nothing
/// else in the process uses `SIGUSR2`. Returns whether the thread was found and signalled.
pub fn stall_thread(name: &str, ms: u64) -> bool {
    let tid = std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten().find_map(|task| {
        let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
        (comm.trim_end() == name).then(|| task.file_name().to_str()?.parse::<libc::pid_t>().ok())?
    });
    let Some(tid) = tid else { return false };
    STALL_MS.store(ms, Ordering::Relaxed);
    // SAFETY: the handler is async-signal-safe (above); the struct is fully initialized before
    // `sigaction` reads it, and `tgkill` names a thread of this process.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = sleep_in_handler as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGUSR2, &action, std::ptr::null_mut()) != 0 {
            return false;
        }
        libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, libc::SIGUSR2) == 0
    }
}

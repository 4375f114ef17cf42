//! The real `sluice serve`, started as a user would, with its output captured and checked for
//! secrets.

use std::sync::{Arc, Mutex};

use crate::http::{http_call, http_exchange_within};
use crate::{ADMIN_TOKEN, PLATFORM_PRINCIPAL, assert_no_secrets, sluice_bin};

/// A running `sluice serve`, killed when dropped.
///
/// Its stdout and stderr (its log, at `SLUICE_LOG=info,sluice=debug` unless a test sets another
/// level) are captured and echoed as the test's own output, which the harness shows when the test
/// fails. When dropped, it checks that no registered secret (see [`register_secret`]) is in the
/// log or, while the daemon still runs, in `/metrics`.
pub struct Daemon {
    pub child: std::process::Child,
    pub addr: std::net::SocketAddr,
    log: Arc<Mutex<String>>,
    /// One message per output stream once it reaches its end.
    drained: std::sync::mpsc::Receiver<()>,
}

/// The daemon's log level in tests: its own debug messages (an AWS error's full context, among
/// others) are the ones most likely to carry what must not leak, and it says little at info.
const TEST_LOG: &str = "info,sluice=debug";

/// Copies one output stream of a child process into `log`, line by line, and hands each line to
/// `on_line` (for the address the child prints). With `echo`, each line also goes to the test's
/// output behind that name.
pub(crate) fn capture(
    stream: impl std::io::Read + Send + 'static,
    log: Arc<Mutex<String>>,
    echo: Option<&'static str>,
    drained: std::sync::mpsc::Sender<()>,
    mut on_line: impl FnMut(&str) + Send + 'static,
) {
    use std::io::BufRead;
    // Spawned threads inherit the test's output capture, so the echo shows only on failure.
    std::thread::spawn(move || {
        let mut reader = std::io::BufReader::new(stream);
        let mut raw = Vec::new();
        while reader.read_until(b'\n', &mut raw).is_ok_and(|n| n > 0) {
            let line = String::from_utf8_lossy(&raw).into_owned();
            if let Some(name) = echo {
                eprint!("[{name}] {line}");
            }
            on_line(line.trim_end());
            log.lock().unwrap_or_else(|e| e.into_inner()).push_str(&line);
            raw.clear();
        }
        let _ = drained.send(());
    });
}

impl Daemon {
    /// Starts `sluice serve` on an ephemeral loopback port with the given data directory and
    /// waits (at most 30 s) until it prints its address.
    pub fn start(data_dir: &std::path::Path) -> Self {
        Self::start_with(data_dir, &[("SLUICE_PLATFORM_PRINCIPAL_ARN", PLATFORM_PRINCIPAL.to_string())])
    }

    /// Like [`Daemon::start`], with extra environment variables.
    pub fn start_with(data_dir: &std::path::Path, env: &[(&str, String)]) -> Self {
        Self::start_configured(data_dir, env, "")
    }

    /// Like [`Daemon::start_with`], with a TOML configuration file holding `config` (none when
    /// empty), kept in the data directory.
    pub fn start_configured(data_dir: &std::path::Path, env: &[(&str, String)], config: &str) -> Self {
        let mut command = std::process::Command::new(sluice_bin());
        command.arg("serve");
        if !config.is_empty() {
            let path = data_dir.join("sluice-test.toml");
            std::fs::create_dir_all(data_dir).unwrap();
            std::fs::write(&path, config).unwrap();
            command.arg("--config").arg(path);
        }
        let mut child = command
            .env("SLUICE_LISTEN", "127.0.0.1:0")
            .env("SLUICE_DATA_DIR", data_dir)
            .env("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("SLUICE_LOG", TEST_LOG)
            // Plain text: colour codes in the log would only get in the way of reading it.
            .env("NO_COLOR", "1")
            .env_remove("SLUICE_PLATFORM_PRINCIPAL_ARN")
            // Unless a test points it at moto, AWS goes to a closed loopback port: a test must
            // never reach the real AWS, and a project that runs fails fast instead.
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("AWS_REGION", "eu-central-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("sluice starts");
        let log = Arc::new(Mutex::new(String::new()));
        let (drained_tx, drained) = std::sync::mpsc::channel();
        let (tx, rx) = std::sync::mpsc::channel();
        capture(child.stdout.take().unwrap(), log.clone(), Some("sluice"), drained_tx.clone(), move |line| {
            if let Some(addr) = line.strip_prefix("sluice listening on http://") {
                let _ = tx.send(addr.parse::<std::net::SocketAddr>().unwrap());
            }
        });
        capture(child.stderr.take().unwrap(), log.clone(), Some("sluice"), drained_tx, |_| {});
        let addr = match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("sluice did not print its address within 30 s; its output:\n{}", log.lock().unwrap());
            }
        };
        Self { child, addr, log, drained }
    }

    /// The daemon's peak resident memory so far (`VmHWM` in `/proc/<pid>/status`), in MiB.
    pub fn peak_rss_mib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("the daemon's /proc status");
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status");
        kib / 1024
    }

    /// The daemon's threads now: each one's name (as the kernel keeps it, at most 15 bytes) and
    /// nice value.
    pub fn threads(&self) -> Vec<(String, i32)> {
        let tasks = format!("/proc/{}/task", self.child.id());
        let mut threads = Vec::new();
        for task in std::fs::read_dir(&tasks).expect("the daemon's /proc tasks").flatten() {
            // A thread may end between the listing and the read.
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
            let Some((name, rest)) = stat.split_once(" (").and_then(|(_, rest)| rest.rsplit_once(") ")) else {
                continue;
            };
            // After the name: state (field 3) and so on; nice is field 19.
            let nice = rest.split_whitespace().nth(16).and_then(|n| n.parse().ok()).expect("a nice value in stat");
            threads.push((name.to_string(), nice));
        }
        threads
    }

    /// Everything the daemon has printed so far, stdout and stderr.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sends one HTTP/1.1 request and returns the status and JSON body (`null` when empty).
    pub fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, serde_json::Value) {
        http_call(self.addr, method, path, token, body)
    }

    /// Sends SIGTERM and waits (at most 15 s) for the process to exit; returns its exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(15), "sluice did not stop after SIGTERM");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// `kill -9`: no shutdown code runs.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Everything is gathered, and the process is gone, before anything can panic.
        let running = matches!(self.child.try_wait(), Ok(None));
        let timeout = std::time::Duration::from_secs(5);
        let metrics = running.then(|| http_exchange_within(self.addr, "GET", "/metrics", None, "", b"", timeout).ok());
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Both streams end with the process; waiting for them makes the log complete.
        let complete = (0..2).all(|_| self.drained.recv_timeout(timeout).is_ok());
        if std::thread::panicking() {
            return;
        }
        if let Some(Some((_, text))) = metrics {
            assert_no_secrets("the daemon's /metrics", &text);
        }
        assert_no_secrets("the daemon's log", &self.log());
        assert!(complete, "the daemon's output did not end within {timeout:?} of its exit");
    }
}

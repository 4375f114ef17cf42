//! moto's server, the local AWS for tests.

use std::sync::{Arc, Mutex};

use crate::daemon::capture;

/// moto's server on a free loopback port, the local AWS for tests; stopped when dropped.
pub struct Moto {
    child: std::process::Child,
    /// moto's output (one line per request, and any traceback), printed when a test fails.
    log: Arc<Mutex<String>>,
    /// `http://127.0.0.1:<port>`, for `AWS_ENDPOINT_URL`.
    pub endpoint: String,
}

impl Moto {
    /// Starts `moto_server` on a port of its own choosing and waits (at most 60 s) until it
    /// listens.
    ///
    /// moto binds port 0 and names the port once it listens. Picking a free port first and
    /// handing it to moto left a second of Python start-up in which another test could be handed
    /// the same port: one moto then failed to bind and exited, its test went on against the other
    /// test's moto, and lost it mid-test when that test ended.
    pub fn start() -> Self {
        let mut child = std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("moto_server runs; `cargo xtask test` installs it with pip install 'moto[server]'");
        let log = Arc::new(Mutex::new(String::new()));
        // Nobody waits for moto's output to end: the log is read only when something went wrong.
        let (drained, _) = std::sync::mpsc::channel();
        let (tx, rx) = std::sync::mpsc::channel();
        capture(child.stdout.take().unwrap(), log.clone(), None, drained.clone(), |_| {});
        // The sender goes with this stream's thread, so the wait below ends when moto exits.
        capture(child.stderr.take().unwrap(), log.clone(), None, drained, move |line| {
            if let Some(port) = line.split("Running on http://127.0.0.1:").nth(1) {
                let _ = tx.send(port.parse::<u16>().expect("moto prints its port"));
            }
        });
        let port = match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(port) => port,
            Err(error) => {
                let _ = child.kill();
                let status = child.wait().map_or("exit status unknown".to_string(), |status| status.to_string());
                let log = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
                panic!("moto_server did not say where it listens ({error}; {status}); its output:\n{log}");
            }
        };
        Self { child, log, endpoint: format!("http://127.0.0.1:{port}") }
    }

    /// The environment that points the AWS SDK at this server with dummy credentials.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", "eu-central-1".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }
}

impl Drop for Moto {
    /// Stops moto. When the test is failing, or moto had already stopped by itself, the end of
    /// its log goes to the test's output: a test that saw AWS misbehave then shows whether moto
    /// did.
    fn drop(&mut self) {
        let exited = self.child.try_wait().ok().flatten();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() || exited.is_some() {
            let log = self.log.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            let status = exited.map_or("was running".to_string(), |status| format!("had exited ({status})"));
            eprintln!("moto at {} {status}; the end of its log:\n{tail}", self.endpoint);
        }
    }
}

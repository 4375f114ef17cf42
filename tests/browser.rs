//! Headless Chromium for the console's tests, driven over the WebDriver protocol: JSON over plain
//! HTTP to Debian's `/usr/bin/chromedriver` on loopback, with the same small HTTP client the
//! tests talk to the daemon with. Every wait is bounded in time, and every answer the browser
//! gives (page text, URLs, screenshots) is checked for registered secrets like an API response.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http::http_exchange_within;
use crate::secret_registry::observe_response;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// Starting a browser on a busy machine takes seconds; one command should not.
const SESSION_TIMEOUT: Duration = Duration::from_secs(90);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// One chromedriver with one headless Chromium session in a fresh profile; both end when
/// dropped.
pub struct Browser {
    driver: std::process::Child,
    addr: SocketAddr,
    session: String,
    /// The fresh `--user-data-dir`, removed when the browser is dropped.
    profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free loopback port, waits (at most 30 s) until it is ready, and
    /// opens a session with a 1280×900 window. The flags keep Chromium from reaching for the
    /// network (updates, sync, QUIC), which on a closed network makes it hang.
    pub fn start() -> Self {
        assert!(
            std::path::Path::new(CHROMEDRIVER).is_file() && std::path::Path::new(CHROMIUM).is_file(),
            "the console's tests need Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver \
             (cargo xtask test installs them)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = std::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Self { driver, addr, session: String::new(), profile };
        let started = Instant::now();
        loop {
            let ready = browser.exchange("GET", "/status", None, Duration::from_secs(2));
            if ready.is_ok_and(|(status, body)| status == 200 && body["value"]["ready"] == true) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "chromedriver was not ready within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ]
        .map(String::from)
        .into_iter()
        .chain([format!("--user-data-dir={}", browser.profile.path().display())])
        .collect::<Vec<_>>();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let (status, body) = browser
            .exchange("POST", "/session", Some(&capabilities), SESSION_TIMEOUT)
            .unwrap_or_else(|e| panic!("chromedriver did not open a session: {e}"));
        assert_eq!(status, 200, "a new browser session: {body}");
        browser.session = body["value"]["sessionId"].as_str().expect("a session id").to_string();
        browser
    }

    fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<(u16, Value), String> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let content_type = if body.is_empty() { "" } else { "application/json" };
        let (status, text) =
            http_exchange_within(self.addr, method, path, None, content_type, body.as_bytes(), timeout)?;
        observe_response(path, body.as_bytes(), &format!("the browser's answer to {method} {path}"), &text);
        let json = serde_json::from_str(&text).map_err(|e| format!("chromedriver answered no JSON ({e}): {text}"))?;
        Ok((status, json))
    }

    /// One command of this session; `Err` with WebDriver's error when it failed (a missing or
    /// stale element, say), which the waits below retry.
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let path = format!("/session/{}{path}", self.session);
        let (status, answer) = self.exchange(method, &path, body.as_ref(), COMMAND_TIMEOUT)?;
        if status != 200 {
            return Err(format!("{method} {path}: {status} {}", answer["value"]));
        }
        Ok(answer["value"].clone())
    }

    pub fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({"url": url}))).unwrap();
    }

    pub fn url(&self) -> String {
        self.command("GET", "/url", None).unwrap().as_str().unwrap().to_string()
    }

    fn element(&self, css: &str) -> Result<String, String> {
        let found = self.command("POST", "/element", Some(json!({"using": "css selector", "value": css})))?;
        Ok(found[ELEMENT].as_str().ok_or("no element reference")?.to_string())
    }

    /// The rendered text of the first element `css` matches (empty when it is hidden), or `None`
    /// when nothing matches.
    pub fn text(&self, css: &str) -> Option<String> {
        let element = self.element(css).ok()?;
        let text = self.command("GET", &format!("/element/{element}/text"), None).ok()?;
        Some(text.as_str().unwrap_or_default().to_string())
    }

    /// Waits (at most `timeout`) until the element `css` matches shows text containing `wanted`;
    /// returns its text. The console re-renders as it polls, so a vanished element is retried.
    pub fn wait_text(&self, css: &str, wanted: &str, timeout: Duration) -> String {
        let started = Instant::now();
        let mut last = None;
        loop {
            if let Some(text) = self.text(css) {
                if text.contains(wanted) {
                    return text;
                }
                last = Some(text);
            }
            assert!(
                started.elapsed() < timeout,
                "after {timeout:?}, {css} shows {last:?}, not {wanted:?}; the page says:\n{}",
                self.text("body").unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Clicks the element `css` matches, retrying (at most 10 s) while it is missing or
    /// re-rendered.
    pub fn click(&self, css: &str) {
        self.retry(css, |element| self.command("POST", &format!("/element/{element}/click"), Some(json!({}))));
    }

    /// Types `text` into the element `css` matches.
    pub fn type_into(&self, css: &str, text: &str) {
        self.retry(css, |element| {
            self.command("POST", &format!("/element/{element}/value"), Some(json!({"text": text})))
        });
    }

    fn retry(&self, css: &str, action: impl Fn(&str) -> Result<Value, String>) {
        let started = Instant::now();
        loop {
            let error = match self.element(css).and_then(|element| action(&element)) {
                Ok(_) => return,
                Err(e) => e,
            };
            assert!(started.elapsed() < Duration::from_secs(10), "could not act on {css} within 10 s: {error}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs `script` in the page (WebDriver's own channel, not the page's) and returns its value.
    pub fn execute(&self, script: &str) -> Value {
        self.command("POST", "/execute/sync", Some(json!({"script": script, "args": []}))).unwrap()
    }

    /// Resizes the window, as a phone's or a laptop's.
    pub fn resize(&self, width: u32, height: u32) {
        self.command("POST", "/window/rect", Some(json!({"width": width, "height": height}))).unwrap();
    }

    /// Saves a PNG of the viewport at `path`.
    pub fn screenshot(&self, path: &std::path::Path) {
        let encoded = self.command("GET", "/screenshot", None).unwrap();
        let png = decode_base64(encoded.as_str().expect("a base64 screenshot"));
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = self.exchange("DELETE", &path, None, Duration::from_secs(10));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64 (with padding), as WebDriver sends screenshots; the test crate takes no
/// dependency for this one use.
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {:?}", c as char),
    };
    let digits: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, d)| n | (u32::from(*d) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_decodes_every_padding() {
        assert_eq!(super::decode_base64("TWFu"), b"Man");
        assert_eq!(super::decode_base64("TWE="), b"Ma");
        assert_eq!(super::decode_base64("TQ=="), b"M");
    }
}

//! A minimal HTTP/1.1 client for talking to a daemon in tests.

use crate::secret_registry::observe_response;

/// A minimal HTTP/1.1 client over a loopback TCP connection (`Connection: close`), enough for
/// JSON APIs in tests.
pub fn http_call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let body = body.unwrap_or("");
    let content_type = if body.is_empty() { "" } else { "application/json" };
    http_call_raw(addr, method, path, token, content_type, body.as_bytes())
}

/// Like [`http_call`], with any body and content type (none when empty).
pub fn http_call_raw(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> (u16, serde_json::Value) {
    let (status, rest) = http_exchange(addr, method, path, token, content_type, body);
    let json = if rest.trim().is_empty() { serde_json::Value::Null } else { serde_json::from_str(&rest).unwrap() };
    (status, json)
}

/// A `GET` without credentials whose body is text (such as `/metrics`).
pub fn http_text(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    http_exchange(addr, "GET", path, None, "", b"")
}

/// One HTTP/1.1 exchange; returns the status and the body as text, which must hold no registered
/// secret beyond a key the response issues.
fn http_exchange(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let timeout = std::time::Duration::from_secs(30);
    let (status, text) = http_exchange_within(addr, method, path, token, content_type, body, timeout)
        .unwrap_or_else(|e| panic!("{method} {path} on the daemon at {addr}: {e}"));
    observe_response(path, body, &format!("the response to {method} {path}"), &text);
    (status, text)
}

/// Like [`http_exchange`] with a read timeout and without the check, failing with a message.
pub(crate) fn http_exchange_within(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &[u8],
    timeout: std::time::Duration,
) -> Result<(u16, String), String> {
    use std::io::Write;
    let fail = |e: std::io::Error| e.to_string();
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(fail)?;
    stream.set_read_timeout(Some(timeout)).map_err(fail)?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("authorization: Bearer {token}\r\n"));
    }
    if !content_type.is_empty() {
        request.push_str(&format!("content-type: {content_type}\r\n"));
    }
    request.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    stream.write_all(request.as_bytes()).map_err(fail)?;
    stream.write_all(body).map_err(fail)?;
    let response = read_response(&mut stream).map_err(fail)?;
    let text = String::from_utf8_lossy(&response);
    let (head, rest) = text.split_once("\r\n\r\n").ok_or("an incomplete HTTP response")?;
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or("no status code")?;
    // Responses from axum here are small and sent with content-length, not chunked.
    Ok((status, rest.to_string()))
}

/// Reads one response: up to its `content-length` once the head has arrived, or to the end of the
/// stream. Some servers (chromedriver) answer `Connection: close` but leave closing to the client.
fn read_response(stream: &mut std::net::TcpStream) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut response = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(response);
        }
        response.extend_from_slice(&chunk[..n]);
        let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&response[..end]);
        let length = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
        });
        if length.is_some_and(|length| response.len() >= end + 4 + length) {
            return Ok(response);
        }
    }
}

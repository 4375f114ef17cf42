//! A fault-injecting HTTP/1.1 reverse proxy in front of moto, for the failures moto cannot make:
//! throttling, access denied, server errors, partial PutRecords failures and an unreachable
//! service. Use [`FaultProxy::endpoint`] as `AWS_ENDPOINT_URL`.
//!
//! It runs on its own threads with blocking sockets, so it serves in-process tests (whatever
//! their async runtime) and the real `sluice` binary in a child process alike. moto does not
//! verify SigV4 signatures, so rewriting `Host` on the way is harmless.
//!
//! Operations are named the way the SDK sends them: the `X-Amz-Target` header for JSON
//! protocols (`Kinesis_20131202.PutRecords`, `secretsmanager.GetSecretValue`) and the `Action`
//! form field for query protocols (`AssumeRole`). Faults are protocol-correct, so the SDK parses
//! them exactly as it would parse AWS's own.
//!
//! moto lets anyone assume any role. [`FaultProxy::enforce_trust`] makes the proxy check each
//! AssumeRole against the role's trust policy as moto stores it, so that a role which does not
//! trust the platform principal with the request's external id is denied, as in AWS.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

mod iam;

pub use iam::one_or_many;
use iam::{policy_document, role_account_and_name, trust_policy, trusted, upstream_iam};

/// A failure to answer an operation with instead of (or on top of) moto's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Throttling: `ProvisionedThroughputExceededException` for Kinesis, `ThrottlingException`
    /// for other JSON services, `Throttling` for STS; HTTP 400.
    Throttle,
    /// `AccessDeniedException` (JSON, 400) or `AccessDenied` (STS, 403).
    AccessDenied,
    /// An internal error with HTTP 500.
    ServerError,
    /// A refusal no retry can fix: `InvalidArgumentException` (JSON, 400), what Kinesis answers
    /// for a request whose records break its rules, or `ValidationError` for STS.
    InvalidArgument,
    /// Forwarded to moto, then the PutRecords answer is rewritten so that every other entry
    /// (the 1st, 3rd, …) is marked failed with `ProvisionedThroughputExceededException` and
    /// `FailedRecordCount` matches. moto did store those entries: a retry duplicates them, as a
    /// real partial failure would not, which lets tests see exactly which entries were retried.
    PartialFailure,
    /// Forwarded to moto after this long, as a slow call would be: calls made meanwhile queue up
    /// behind it in the caller.
    Slow(std::time::Duration),
}

/// The proxy; stops accepting and closes its connections when dropped.
pub struct FaultProxy {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    addr: SocketAddr,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    upstream: Option<SocketAddr>,
    faults: Mutex<HashMap<String, VecDeque<Fault>>>,
    down: Mutex<Vec<String>>,
    counts: Mutex<HashMap<String, u64>>,
    /// Of those, the calls that were not refused for an outage (`set_down`).
    let_through: Mutex<HashMap<String, u64>>,
    connections: Mutex<Vec<TcpStream>>,
    stopped: AtomicBool,
    request_ids: AtomicU64,
    /// The principal AssumeRole calls through the proxy act as, once trust is enforced.
    trusted_caller: Mutex<Option<String>>,
    /// Whether requests go to moto one at a time (see [`FaultProxy::one_at_a_time`]), and the
    /// lock that makes them.
    serialized: AtomicBool,
    serial: Mutex<()>,
}

impl FaultProxy {
    /// Starts the proxy on an ephemeral loopback port, forwarding to `upstream`
    /// (`http://host:port`, e.g. [`crate::Moto::endpoint`]).
    pub fn start(upstream: &str) -> Self {
        let host = upstream.trim_start_matches("http://").trim_end_matches('/');
        let upstream = host.to_socket_addrs().ok().and_then(|mut a| a.next());
        let upstream = upstream.unwrap_or_else(|| panic!("the upstream {host} is not host:port"));
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds a loopback port");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State { upstream: Some(upstream), ..State::default() });
        let accepting = state.clone();
        std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if accepting.stopped.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    if let Ok(clone) = stream.try_clone() {
                        accepting.connections.lock().unwrap().push(clone);
                    }
                    let state = accepting.clone();
                    std::thread::spawn(move || serve(&state, stream));
                }
            })
            .unwrap();
        Self { endpoint: format!("http://{addr}"), addr, state }
    }

    /// Forwards one request at a time, as DynamoDB applies each request atomically. moto applies
    /// a `TransactWriteItems` whose condition fails by restoring a copy of the whole table taken
    /// before it, which undoes what other requests wrote meanwhile; one request at a time keeps
    /// that from happening, and leaves the interleaving of requests, which concurrency tests are
    /// about, as it is.
    pub fn one_at_a_time(&self) {
        self.state.serialized.store(true, Ordering::SeqCst);
    }

    /// The next `times` calls of `operation` get `fault` (after any faults already queued).
    pub fn inject(&self, operation: &str, fault: Fault, times: u32) {
        let mut faults = self.state.faults.lock().unwrap();
        faults.entry(operation.to_string()).or_default().extend(std::iter::repeat_n(fault, times as usize));
    }

    /// While down, requests for operations starting with `operation_prefix` (e.g.
    /// `Kinesis_20131202.`) get their connection closed without an answer.
    pub fn set_down(&self, operation_prefix: &str, down: bool) {
        let mut prefixes = self.state.down.lock().unwrap();
        prefixes.retain(|p| p != operation_prefix);
        if down {
            prefixes.push(operation_prefix.to_string());
        }
    }

    /// How many requests for `operation` the proxy has seen, faulted or not.
    pub fn count(&self, operation: &str) -> u64 {
        self.state.counts.lock().unwrap().get(operation).copied().unwrap_or(0)
    }

    /// How many calls of `operation` the proxy let through: not refused for an outage, so that a
    /// count taken as an outage ends leaves out the retries it refused meanwhile.
    pub fn let_through(&self, operation: &str) -> u64 {
        self.state.let_through.lock().unwrap().get(operation).copied().unwrap_or(0)
    }

    /// How many calls of each operation whose name starts with `prefix` the proxy has seen.
    pub fn counts_of(&self, prefix: &str) -> std::collections::BTreeMap<String, u64> {
        let counts = self.state.counts.lock().unwrap();
        counts.iter().filter(|(operation, _)| operation.starts_with(prefix)).map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// From now on, AssumeRole through the proxy acts as `caller` (the daemon's platform
    /// principal) and is denied with STS's `AccessDenied` unless the role's trust policy, read
    /// from moto, has an `Allow` statement for `sts:AssumeRole` whose `Principal.AWS` names
    /// `caller` (or the root of its account) and whose conditions are all `StringEquals` on
    /// `sts:ExternalId` matching the request's external id (or which has no condition). Deny
    /// statements and other condition operators are not modelled: a policy using them denies.
    pub fn enforce_trust(&self, caller: &str) {
        *self.state.trusted_caller.lock().unwrap() = Some(caller.to_string());
    }

    /// The trust policy of the role `role_arn` as moto stores it; `None` when there is no such
    /// role.
    pub fn trust_policy(&self, role_arn: &str) -> Option<serde_json::Value> {
        trust_policy(&self.state, role_arn)
    }

    /// The inline permission policy `policy_name` of the role `role_arn` as moto stores it;
    /// `None` when there is no such role or policy.
    pub fn role_policy(&self, role_arn: &str, policy_name: &str) -> Option<serde_json::Value> {
        let (account, name) = role_account_and_name(role_arn);
        let params = [("Action", "GetRolePolicy"), ("RoleName", name), ("PolicyName", policy_name)];
        policy_document(&upstream_iam(&self.state, account, &params)?, "PolicyDocument")
    }

    /// Replaces the trust policy of the role `role_arn` on moto (IAM UpdateAssumeRolePolicy), for
    /// setting up what moto's CloudFormation leaves undone.
    pub fn set_trust_policy(&self, role_arn: &str, policy: &serde_json::Value) {
        let (account, name) = role_account_and_name(role_arn);
        let document = policy.to_string();
        let params = [("Action", "UpdateAssumeRolePolicy"), ("RoleName", name), ("PolicyDocument", &document)];
        let response = upstream_iam(&self.state, account, &params).expect("moto answers IAM");
        let body = String::from_utf8_lossy(&response.body);
        assert!(response.start.contains(" 200 "), "UpdateAssumeRolePolicy on {role_arn}: {} {body}", response.start);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
        for connection in self.state.connections.lock().unwrap().drain(..) {
            let _ = connection.shutdown(Shutdown::Both);
        }
    }
}

/// A parsed HTTP/1.1 message (request or response).
struct Message {
    /// The request line or status line.
    start: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Serves one client connection, request after request (the SDK keeps connections alive).
fn serve(state: &State, stream: TcpStream) {
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    while let Some(request) = read_message(&mut reader, Some(&mut writer)) {
        let operation = operation(&request);
        *state.counts.lock().unwrap().entry(operation.clone()).or_default() += 1;
        if state.down.lock().unwrap().iter().any(|prefix| operation.starts_with(prefix.as_str())) {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
        *state.let_through.lock().unwrap().entry(operation.clone()).or_default() += 1;
        let fault = state.faults.lock().unwrap().get_mut(&operation).and_then(VecDeque::pop_front);
        let response = match fault {
            None if operation == "AssumeRole" && !trusted(state, &request) => {
                Some(fault_response(Fault::AccessDenied, &operation, state))
            }
            None => forward(state, &request),
            Some(Fault::PartialFailure) => forward(state, &request).map(fail_every_other_entry),
            Some(Fault::Slow(delay)) => {
                std::thread::sleep(delay);
                forward(state, &request)
            }
            Some(fault) => Some(fault_response(fault, &operation, state)),
        };
        let Some(response) = response else {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        };
        if write_message(&mut writer, &response).is_err() {
            return;
        }
        if request.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close")) {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// The operation a request calls: `X-Amz-Target`, else the query protocol's `Action` (in the
/// form body or the query string), else the method and path.
fn operation(request: &Message) -> String {
    if let Some(target) = request.header("x-amz-target") {
        return target.to_string();
    }
    let query = request.start.split_whitespace().nth(1).and_then(|t| t.split_once('?')).map(|(_, q)| q);
    let body = std::str::from_utf8(&request.body).unwrap_or("");
    for form in [body, query.unwrap_or("")] {
        if let Some(action) = form.split('&').find_map(|pair| pair.strip_prefix("Action=")) {
            return action.to_string();
        }
    }
    request.start.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// Sends the request to moto on a fresh connection and reads the whole answer; `None` when moto
/// cannot be reached or answers garbage (the client then sees a closed connection). The reason
/// goes to the test's output, since the test then sees AWS fail in a way it did not ask for.
fn forward(state: &State, request: &Message) -> Option<Message> {
    let _serial =
        state.serialized.load(Ordering::SeqCst).then(|| state.serial.lock().unwrap_or_else(|e| e.into_inner()));
    try_forward(state, request)
        .map_err(|error| eprintln!("fault proxy: moto failed {}: {error}", operation(request)))
        .ok()
}

/// [`forward`], with the reason when moto gave no usable answer.
fn try_forward(state: &State, request: &Message) -> Result<Message, String> {
    let upstream = state.upstream.ok_or("no upstream")?;
    let mut stream = TcpStream::connect(upstream).map_err(|e| format!("connect: {e}"))?;
    let mut head = format!("{}\r\nhost: {upstream}\r\nconnection: close\r\n", request.start);
    for (name, value) in &request.headers {
        if !is_hop_by_hop(name) && !name.eq_ignore_ascii_case("host") {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", request.body.len()));
    stream.write_all(head.as_bytes()).map_err(|e| format!("send: {e}"))?;
    stream.write_all(&request.body).map_err(|e| format!("send: {e}"))?;
    read_message(&mut BufReader::new(stream), None).ok_or_else(|| "no answer, or a broken one".to_string())
}

/// Rewrites a successful PutRecords answer so that entries 0, 2, 4, … failed.
fn fail_every_other_entry(mut response: Message) -> Message {
    let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(&response.body) else { return response };
    let Some(entries) = json.get_mut("Records").and_then(|r| r.as_array_mut()) else { return response };
    for entry in entries.iter_mut().step_by(2) {
        let shard = entry.get("ShardId").and_then(|s| s.as_str()).unwrap_or("shardId-000000000000").to_string();
        *entry = serde_json::json!({
            "ErrorCode": "ProvisionedThroughputExceededException",
            "ErrorMessage": format!("Rate exceeded for shard {shard} (injected by the fault proxy)"),
        });
    }
    let failed = entries.iter().filter(|e| e.get("ErrorCode").is_some()).count();
    json["FailedRecordCount"] = failed.into();
    response.body = serde_json::to_vec(&json).unwrap();
    response
}

/// The answer AWS gives for `fault` in the operation's protocol: JSON protocols use HTTP 400 (500
/// for server errors), a `{"__type", "message"}` body and `x-amzn-ErrorType`; the query protocol
/// (STS) uses an XML `ErrorResponse` with 400 for throttling and 403 for access denied.
fn fault_response(fault: Fault, operation: &str, state: &State) -> Message {
    let request_id = format!("fault-proxy-{:08}", state.request_ids.fetch_add(1, Ordering::Relaxed));
    let json = operation.contains('.');
    let (status, code, message) = match (fault, json) {
        (Fault::Throttle, true) if operation.starts_with("Kinesis_") => {
            (400, "ProvisionedThroughputExceededException", "Rate exceeded for stream (injected by the fault proxy)")
        }
        (Fault::Throttle, true) => (400, "ThrottlingException", "Rate exceeded (injected by the fault proxy)"),
        (Fault::Throttle, false) => (400, "Throttling", "Rate exceeded (injected by the fault proxy)"),
        (Fault::AccessDenied, true) => (
            400,
            "AccessDeniedException",
            "User is not authorized to perform this action (injected by the fault proxy)",
        ),
        (Fault::AccessDenied, false) => (
            403,
            "AccessDenied",
            "User is not authorized to perform: sts:AssumeRole on this resource (injected by the fault proxy)",
        ),
        (Fault::InvalidArgument, true) => (
            400,
            "InvalidArgumentException",
            "1 validation error detected: Value at 'records.1.member.partitionKey' failed to satisfy constraint \
             (injected by the fault proxy)",
        ),
        (Fault::InvalidArgument, false) => (400, "ValidationError", "Invalid request (injected by the fault proxy)"),
        (Fault::ServerError | Fault::PartialFailure | Fault::Slow(_), _) => {
            (500, "InternalFailure", "We encountered an internal error (injected by the fault proxy)")
        }
    };
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        _ => "Internal Server Error",
    };
    let mut headers = vec![("x-amzn-RequestId".to_string(), request_id.clone())];
    let body = if json {
        headers.push(("content-type".into(), "application/x-amz-json-1.1".into()));
        headers.push(("x-amzn-ErrorType".into(), code.into()));
        serde_json::json!({"__type": code, "message": message}).to_string()
    } else {
        headers.push(("content-type".into(), "text/xml".into()));
        let kind = if status >= 500 { "Receiver" } else { "Sender" };
        format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>{kind}</Type>\
             <Code>{code}</Code><Message>{message}</Message></Error><RequestId>{request_id}</RequestId>\
             </ErrorResponse>"
        )
    };
    Message { start: format!("HTTP/1.1 {status} {reason}"), headers, body: body.into_bytes() }
}

fn is_hop_by_hop(name: &str) -> bool {
    ["connection", "keep-alive", "transfer-encoding", "content-length", "expect", "te", "trailer", "upgrade"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}

/// Reads one message with its body (by `content-length`, chunked, or for a response without
/// either, to the end of the stream). `continue_to` answers `Expect: 100-continue` on requests.
/// `None` at the end of the stream or on anything malformed.
fn read_message(reader: &mut impl BufRead, continue_to: Option<&mut TcpStream>) -> Option<Message> {
    let mut start = String::new();
    while start.trim().is_empty() {
        start.clear();
        if reader.read_line(&mut start).ok()? == 0 {
            return None;
        }
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let mut message = Message { start: start.trim_end().to_string(), headers, body: Vec::new() };
    if let Some(stream) = continue_to
        && message.header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").ok()?;
    }
    let is_response = message.start.starts_with("HTTP/");
    if message.header("transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            message.body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = message.header("content-length") {
        message.body = vec![0; length.parse().ok()?];
        reader.read_exact(&mut message.body).ok()?;
    } else if is_response {
        reader.read_to_end(&mut message.body).ok()?;
    }
    Some(message)
}

fn write_message(stream: &mut TcpStream, message: &Message) -> std::io::Result<()> {
    let mut head = format!("{}\r\n", message.start);
    for (name, value) in &message.headers {
        if !is_hop_by_hop(name) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", message.body.len()));
    stream.write_all(head.as_bytes())?;
    stream.write_all(&message.body)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// An upstream that answers its only connection with `answer` (or closes it without one,
    /// given nothing), after reading the whole request.
    fn upstream(answer: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            read_message(&mut BufReader::new(stream.try_clone().unwrap()), None).expect("a whole request");
            (&stream).write_all(answer).unwrap();
        });
        endpoint
    }

    /// Sends one request through the proxy and reads to the end (the proxy is asked to close).
    fn call(proxy: &FaultProxy) -> String {
        let mut client = TcpStream::connect(proxy.addr).unwrap();
        let request = "POST / HTTP/1.1\r\nhost: x\r\nx-amz-target: secretsmanager.GetSecretValue\r\n\
                       connection: close\r\ncontent-length: 2\r\n\r\n{}";
        client.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = client.read_to_string(&mut answer);
        answer
    }

    #[test]
    fn an_answer_is_passed_on_and_a_missing_or_cut_off_one_closes_the_connection() {
        let proxy = FaultProxy::start(&upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"));
        let answer = call(&proxy);
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.ends_with("\r\n\r\nok"), "{answer:?}");
        for broken in [&b""[..], b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nok"] {
            let proxy = FaultProxy::start(&upstream(broken));
            assert_eq!(call(&proxy), "");
            assert_eq!(proxy.count("secretsmanager.GetSecretValue"), 1);
        }
    }
}

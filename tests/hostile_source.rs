//! A hostile source API on a loopback address of the test's choosing, with one route per way a
//! source can misbehave, for showing that the daemon bounds each one.
//!
//! It speaks HTTP/1.1 by hand over raw sockets, because the point is to break the rules a
//! well-behaved server library enforces: bodies that never end, lengths that lie, connections
//! reset in the middle. Each connection carries one request and is closed after it. Routes:
//!
//! - `/ok`: a small JSON body, `{"temperature": 21.5}`, the one polite answer.
//! - `/trickle`: promises 64 bytes and sends one per second.
//! - `/endless`: a chunked body that never ends.
//! - `/gib`: 1 GiB of zeros with its `Content-Length` declared.
//! - `/gib-undeclared`: 1 GiB of zeros delimited only by closing the connection.
//! - `/bomb`: [`gzip_zeros`] of just over 1 GiB: about 1 MiB on the wire.
//! - `/redirect/<absolute url>`: a 302 to that URL.
//! - `/loop`: a 302 to itself.
//! - `/reset`: promises 100,000 bytes, sends 1,000, then resets the connection.
//!
//! A TLS ClientHello on any connection is answered in plain HTTP, as an HTTP-only server does, so
//! an `https://` URL on this server is a failed TLS handshake. Writers stop when the client
//! hangs up, and every loop is bounded in bytes and in time.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// One gibibyte.
pub const GIB: u64 = 1 << 30;

/// The longest any one connection is served, whatever the client does.
const MAX_CONNECTION_TIME: Duration = Duration::from_secs(60);

/// The size of each write of a large body.
const CHUNK: usize = 64 * 1024;

/// The `/bomb` body, built once per test process: 1 GiB of zeros (and a few bytes) in about
/// 1,000,000 bytes, which is less than the 1 MiB cap the end-to-end test sets, so that it is the
/// decoded size the daemon has to catch.
pub static BOMB: LazyLock<Vec<u8>> = LazyLock::new(|| gzip_zeros(GIB + 255));

/// The running server; it stops with the test process.
#[derive(Clone)]
pub struct HostileSource {
    /// The address it listens on.
    pub addr: SocketAddr,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl HostileSource {
    /// Starts the server on `ip` and a free port, on its own thread and runtime, so that it serves
    /// blocking tests too. On Linux every 127/8 address is loopback, so `ip` may be 127.0.0.2.
    pub fn start(ip: Ipv4Addr) -> Self {
        let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let counted = Arc::clone(&hits);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        // Out of file descriptors, most likely: wait rather than spin.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let hits = Arc::clone(&counted);
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(MAX_CONNECTION_TIME, serve(stream, hits)).await;
                    });
                }
            });
        });
        Self { addr, hits }
    }

    /// `http://<addr><path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// How many requests reached `route` (a path without its query, `/redirect` for every
    /// redirect, or `tls` for ClientHellos).
    pub fn hits(&self, route: &str) -> usize {
        self.hits.lock().unwrap_or_else(|e| e.into_inner()).get(route).copied().unwrap_or(0)
    }
}

/// Serves one connection: reads the request head, then misbehaves as its path says.
async fn serve(mut stream: TcpStream, hits: Arc<Mutex<HashMap<String, usize>>>) -> std::io::Result<()> {
    let Some(head) = read_head(&mut stream).await? else {
        count(&hits, "tls");
        // What an HTTP-only server answers to a ClientHello, which the client cannot parse as TLS.
        stream.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await?;
        return stream.shutdown().await;
    };
    let target = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let path = target.split('?').next().unwrap_or("/");
    let route = if path.starts_with("/redirect/") { "/redirect" } else { path };
    count(&hits, route);
    match route {
        "/ok" => {
            let body = r#"{"temperature": 21.5}"#;
            let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{}", framing(body.len() as u64));
            stream.write_all(format!("{head}{body}").as_bytes()).await?;
        }
        "/trickle" => {
            stream.write_all(format!("HTTP/1.1 200 OK\r\n{}", framing(64)).as_bytes()).await?;
            for _ in 0..64 {
                stream.write_all(b"x").await?;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        "/endless" => {
            stream.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n").await?;
            let chunk = [format!("{CHUNK:x}\r\n").into_bytes(), vec![b'x'; CHUNK], b"\r\n".to_vec()].concat();
            let started = Instant::now();
            // Up to 1 TiB or the connection time limit: endless for any client that honours a cap.
            for _ in 0..(1u64 << 40) / CHUNK as u64 {
                if started.elapsed() > MAX_CONNECTION_TIME {
                    break;
                }
                stream.write_all(&chunk).await?;
            }
        }
        "/gib" => {
            stream.write_all(format!("HTTP/1.1 200 OK\r\n{}", framing(GIB)).as_bytes()).await?;
            write_zeros(&mut stream, GIB).await?;
        }
        "/gib-undeclared" => {
            stream.write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n").await?;
            write_zeros(&mut stream, GIB).await?;
        }
        "/bomb" => {
            let head = format!("HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\n{}", framing(BOMB.len() as u64));
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&BOMB).await?;
        }
        "/redirect" => found(&mut stream, &target["/redirect/".len()..]).await?,
        "/loop" => found(&mut stream, "/loop").await?,
        "/reset" => {
            stream.write_all(format!("HTTP/1.1 200 OK\r\n{}", framing(100_000)).as_bytes()).await?;
            stream.write_all(&[b'a'; 1000]).await?;
            // The client must have the head and part of the body before the reset, so that it is
            // a broken body rather than a failed connection.
            tokio::time::sleep(Duration::from_millis(200)).await;
            // A zero linger turns the close into a TCP RST.
            stream.set_zero_linger()?;
            return Ok(());
        }
        _ => stream.write_all(format!("HTTP/1.1 404 Not Found\r\n{}", framing(0)).as_bytes()).await?,
    }
    stream.shutdown().await
}

fn count(hits: &Mutex<HashMap<String, usize>>, route: &str) {
    *hits.lock().unwrap_or_else(|e| e.into_inner()).entry(route.to_owned()).or_default() += 1;
}

/// The end of a response head for a body of `length` bytes.
fn framing(length: u64) -> String {
    format!("content-length: {length}\r\nconnection: close\r\n\r\n")
}

/// Answers a 302 to `location`.
async fn found(stream: &mut TcpStream, location: &str) -> std::io::Result<()> {
    let head = format!("HTTP/1.1 302 Found\r\nlocation: {location}\r\n{}", framing(0));
    stream.write_all(head.as_bytes()).await
}

/// Writes `length` zero bytes, stopping with an error as soon as the client hangs up.
async fn write_zeros(stream: &mut TcpStream, length: u64) -> std::io::Result<()> {
    let zeros = [0u8; CHUNK];
    let mut left = length;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        stream.write_all(&zeros[..n]).await?;
        left -= n as u64;
    }
    Ok(())
}

/// Reads up to the end of the request head (16 KiB at most). `None` when the client opened with
/// a TLS handshake record (type 22) instead of a request line.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while head.len() < 16 * 1024 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.first() == Some(&0x16) {
            return Ok(None);
        }
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    Ok(Some(String::from_utf8_lossy(&head).into_owned()))
}

/// A gzip member whose content is `length` zero bytes, about 1,000 times smaller than that: the
/// densest deflate can be (a 258-byte copy per two bits).
///
/// It is written by hand because nothing in this crate compresses. One dynamic-Huffman block
/// gives the symbols it uses the shortest codes: `length 258` one bit, the one distance (1) one
/// bit, the literal zero and the end of block two bits each. After the literal, every copy
/// repeats the byte before it, so the body is that literal, `n` two-bit copies (all zero bits)
/// and a tail of literals. The trailer holds the real CRC-32 and size, so the member is valid.
pub fn gzip_zeros(length: u64) -> Vec<u8> {
    assert!(length > 0, "an empty bomb is not worth building");
    let copies = (length - 1) / 258;
    let tail = (length - 1) % 258;
    let mut bits = BitWriter::default();
    bits.value(1, 1); // the final block
    bits.value(2, 2); // dynamic Huffman codes
    bits.value(29, 5); // 286 literal/length codes (0..=285)
    bits.value(1, 5); // 2 distance codes, both one bit long, a complete code
    bits.value(14, 4); // 18 code-length code lengths, in the format's order
    // Code-length codes: 18 (a run of zeros) one bit, 1 and 2 two bits each; the rest unused.
    // The order is 16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1.
    for length in [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2] {
        bits.value(length, 3);
    }
    // Canonical codes from those lengths: 18 is `0`, 1 is `10`, 2 is `11`.
    let zeros = |bits: &mut BitWriter, run: u64| {
        bits.code(0b0, 1);
        bits.value(run - 11, 7);
    };
    bits.code(0b11, 2); // literal 0: length 2
    zeros(&mut bits, 138); // literals 1..=138: unused
    zeros(&mut bits, 117); // literals 139..=255: unused
    bits.code(0b11, 2); // end of block (256): length 2
    zeros(&mut bits, 28); // lengths 257..=284: unused
    bits.code(0b10, 2); // length 258 (285): length 1
    bits.code(0b10, 2); // distance code 0 (distance 1): length 1
    bits.code(0b10, 2); // distance code 1: length 1
    // Literal/length codes: 285 is `0`, literal 0 is `10`, end of block is `11`; distance 0 is `0`.
    bits.code(0b10, 2);
    bits.zeros(2 * copies);
    for _ in 0..tail {
        bits.code(0b10, 2);
    }
    bits.code(0b11, 2);

    let mut member = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    member.extend_from_slice(&bits.finish());
    member.extend_from_slice(&crc32_of_zeros(length).to_le_bytes());
    member.extend_from_slice(&(length as u32).to_le_bytes());
    member
}

/// Deflate's bit order: values least significant bit first, Huffman codes most significant first.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte, 0 when it is full (or there is none).
    used: u8,
}

impl BitWriter {
    fn bit(&mut self, bit: bool) {
        if self.used == 0 {
            self.bytes.push(0);
        }
        if bit {
            *self.bytes.last_mut().unwrap() |= 1 << self.used;
        }
        self.used = (self.used + 1) % 8;
    }

    fn value(&mut self, value: u64, width: u32) {
        (0..width).for_each(|i| self.bit(value >> i & 1 == 1));
    }

    fn code(&mut self, code: u64, width: u32) {
        (0..width).rev().for_each(|i| self.bit(code >> i & 1 == 1));
    }

    /// `count` zero bits, a byte at a time once aligned, so that a gibibyte's worth is quick.
    fn zeros(&mut self, mut count: u64) {
        while count > 0 && self.used != 0 {
            self.bit(false);
            count -= 1;
        }
        self.bytes.resize(self.bytes.len() + (count / 8) as usize, 0);
        (0..count % 8).for_each(|_| self.bit(false));
    }

    fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// The CRC-32 (IEEE, as gzip uses it) of `length` zero bytes, in time logarithmic in `length`.
///
/// Feeding a zero bit to the CRC register is a linear map over GF(2), a 32×32 bit matrix (kept
/// as the images of the 32 one-bit vectors); squaring it repeatedly gives the map for 2, 4, 8…
/// bits, as zlib's `crc32_combine` does.
pub fn crc32_of_zeros(length: u64) -> u32 {
    fn apply(matrix: &[u32; 32], vector: u32) -> u32 {
        (0..32).filter(|i| vector >> i & 1 == 1).fold(0, |sum, i| sum ^ matrix[i])
    }
    let mut step = [0u32; 32];
    step[0] = 0xEDB8_8320;
    for (i, image) in step.iter_mut().enumerate().skip(1) {
        *image = 1 << (i - 1);
    }
    let mut register = !0u32;
    let mut bits = length * 8;
    while bits > 0 {
        if bits & 1 == 1 {
            register = apply(&step, register);
        }
        step = step.map(|image| apply(&step, image));
        bits >>= 1;
    }
    !register
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_zeros_matches_known_values() {
        assert_eq!(crc32_of_zeros(0), 0);
        assert_eq!(crc32_of_zeros(1), 0xD202_EF8D);
        assert_eq!(crc32_of_zeros(4), 0x2144_DF1C);
    }

    /// The system's gzip checks the bomb's codes, CRC and size while decoding it.
    #[test]
    fn gzip_zeros_is_a_valid_member_of_zeros() {
        for length in [1, 2, 258, 259, 300, 1_000_003] {
            let mut child = std::process::Command::new("gzip")
                .arg("-dc")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("gzip is installed");
            let member = gzip_zeros(length);
            let mut stdin = child.stdin.take().unwrap();
            let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &member).unwrap());
            let out = child.wait_with_output().unwrap();
            writer.join().unwrap();
            assert!(out.status.success(), "{length}: {}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(out.stdout.len() as u64, length);
            assert!(out.stdout.iter().all(|b| *b == 0), "{length}");
        }
        let bomb = gzip_zeros(GIB);
        assert!(bomb.len() < 1_100_000, "{} bytes", bomb.len());
    }
}

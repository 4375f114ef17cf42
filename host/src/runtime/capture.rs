//! Bounded capture of a plugin's stdout and stderr.
//!
//! wasmtime-wasi's `MemoryOutputPipe` fails writes past its capacity, which turns a chatty
//! `println!` into a plugin trap. A plugin that prints too much should lose the excess, not its
//! run, so this pipe keeps the first bytes up to its cap and silently counts the rest.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// What one stream captured: the kept bytes and how many were discarded.
#[derive(Debug, Default)]
struct Buffer {
    kept: Vec<u8>,
    discarded: u64,
}

/// A stdout/stderr sink that keeps at most `cap` bytes. Clones share one buffer.
#[derive(Debug, Clone)]
pub(crate) struct Capture {
    cap: usize,
    buffer: Arc<Mutex<Buffer>>,
}

impl Capture {
    pub(crate) fn new(cap: usize) -> Self {
        Self { cap, buffer: Arc::default() }
    }

    fn push(&self, bytes: &[u8]) {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let room = self.cap.saturating_sub(buffer.kept.len());
        let keep = bytes.len().min(room);
        buffer.kept.extend_from_slice(&bytes[..keep]);
        buffer.discarded += (bytes.len() - keep) as u64;
    }

    /// The captured text (lossily decoded) and the number of bytes that did not fit.
    pub(crate) fn take(&self) -> (String, u64) {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let kept = std::mem::take(&mut buffer.kept);
        (String::from_utf8_lossy(&kept).into_owned(), buffer.discarded)
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

/// Writes always succeed at once, so a guest never waits on its own output.
const PERMIT_BYTES: usize = 64 << 10;

#[wasmtime_wasi::async_trait]
impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(PERMIT_BYTES)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_bytes_and_counts_the_rest() {
        let capture = Capture::new(5);
        capture.push(b"hello");
        capture.push(b" world");
        assert_eq!(capture.take(), ("hello".to_string(), 6));
    }
}

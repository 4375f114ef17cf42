//! Why a fetch produced no response, and how reqwest's errors become those reasons without
//! carrying the URL (which may hold the tenant's API key) along.

use std::error::Error as StdError;
use std::io;
use std::net::IpAddr;

/// Why a fetch produced no response. An HTTP error status is not one of these: it comes back as
/// a [`Fetched`](super::Fetched) for the run pipeline to judge.
///
/// Messages name only a URL's scheme, host and port, never its path or query, so the API key
/// cannot appear in them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The request is not something the fetcher can send: a bad URL, method or header.
    #[error("invalid source request: {0}")]
    InvalidRequest(String),
    /// The request, or a redirect, would leave the project's configured origin.
    #[error(
        "refused to fetch from {target}: a project's requests and redirects must stay on its source origin {origin}; \
         change the project's source url if the API moved"
    )]
    OffOrigin {
        /// The scheme, host and port that were asked for.
        target: String,
        /// The scheme, host and port of the project's source URL.
        origin: String,
    },
    /// The egress guard refused an address (the egress-guard invariant).
    #[error(
        "refused to connect to {}: {range} addresses are blocked; an operator can allow the network in the \
         source setting allowed_private_networks, or every private network with SLUICE_ALLOW_PRIVATE_SOURCES=true",
        destination(host, *address)
    )]
    Refused {
        /// The host name or IP literal that was asked for.
        host: String,
        /// The address that was refused.
        address: IpAddr,
        /// Which blocked range the address is in.
        range: &'static str,
    },
    /// The source did not answer in time.
    #[error(
        "the source timed out: the fetch took longer than the {limit_ms} ms {setting} limit; check that the API \
         is up and answers promptly, or ask the operator to raise {setting} if it is slow"
    )]
    Timeout {
        /// The limit that was exceeded, in milliseconds.
        limit_ms: u64,
        /// The setting that holds the limit: `timeout_ms` or `connect_timeout_ms`.
        setting: &'static str,
    },
    /// The response body, counted after decompression, exceeded the cap.
    #[error(
        "the response body is larger than the limit of {limit_bytes} bytes (counted after decompression); \
         request smaller pages from the API"
    )]
    TooLarge {
        /// The body cap in bytes.
        limit_bytes: u64,
    },
    /// The source redirected more times than allowed.
    #[error("the source redirected more than {limit} times; point the project's source url at the final location")]
    TooManyRedirects {
        /// The most redirects one fetch follows.
        limit: u32,
    },
    /// No connection could be made, or it failed before a response arrived.
    #[error("could not reach {origin}: {reason}; check the source url and that the API is up")]
    Connect {
        /// The scheme, host and port of the source.
        origin: String,
        /// What failed, with URLs removed.
        reason: String,
    },
    /// The TLS handshake with an `https://` source failed: the server spoke something other than
    /// TLS, closed or reset the connection, or presented a certificate that is not trusted.
    #[error(
        "the TLS handshake with {origin} failed: {reason}; check that the source serves HTTPS on that port with a \
         certificate from a public authority"
    )]
    Tls {
        /// The scheme, host and port of the source.
        origin: String,
        /// What failed, with URLs removed.
        reason: String,
    },
    /// The response started but its body could not be read or decompressed.
    #[error("could not read the response body: {reason}; the connection dropped or the body is corrupt")]
    Body {
        /// What failed, with URLs removed.
        reason: String,
    },
}

/// "localhost at 127.0.0.1", or just the address when the host was that address already.
fn destination(host: &str, address: IpAddr) -> String {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if literal.parse::<IpAddr>() == Ok(address) { address.to_string() } else { format!("{host} at {address}") }
}

impl FetchError {
    /// Whether trying the same request later may succeed: true for timeouts and network failures,
    /// false for anything the request itself or the guard decided.
    pub fn is_transient(&self) -> bool {
        match self {
            // A TLS failure may be a server restarting as well as a misconfiguration, so it is
            // treated like any failed connection.
            FetchError::Timeout { .. }
            | FetchError::Connect { .. }
            | FetchError::Tls { .. }
            | FetchError::Body { .. } => true,
            FetchError::InvalidRequest(_)
            | FetchError::OffOrigin { .. }
            | FetchError::Refused { .. }
            | FetchError::TooLarge { .. }
            | FetchError::TooManyRedirects { .. } => false,
        }
    }
}

/// Turns a reqwest error into a [`FetchError`] that holds no URL and no secret.
///
/// The guard's refusals and the redirect policy's verdicts travel through reqwest as boxed
/// `FetchError`s, so they are found in the source chain and returned as they are. Everything else
/// becomes a message built from the chain's non-reqwest links: reqwest's own `Display` appends
/// the URL, and a nested reqwest error would keep its URL even after `without_url()` on the outer
/// one. `secret` is scrubbed from the message as a last line of defence.
pub(super) fn from_reqwest(
    err: reqwest::Error,
    origin: &str,
    connect_timeout_ms: u64,
    secret: Option<&str>,
) -> FetchError {
    let err = err.without_url();
    if let Some(found) = find_fetch_error(&err) {
        return found.clone();
    }
    if err.is_timeout() {
        // The fetcher sets no reqwest total or read timeout (it enforces its own deadline), so a
        // timeout reqwest reports is the connect timeout.
        return FetchError::Timeout { limit_ms: connect_timeout_ms, setting: "connect_timeout_ms" };
    }
    let reason = describe(&err, secret);
    if err.is_connect() && origin.starts_with("https:") && failed_in_handshake(&err) {
        return FetchError::Tls { origin: origin.to_owned(), reason: innermost(&err, secret) };
    }
    if err.is_body() || err.is_decode() {
        FetchError::Body { reason }
    } else {
        FetchError::Connect { origin: origin.to_owned(), reason }
    }
}

/// Finds a `FetchError` anywhere in the chain, looking inside `io::Error`s too, whose `source()`
/// skips the error they wrap.
fn find_fetch_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a FetchError> {
    let mut current = Some(err);
    while let Some(link) = current {
        if let Some(found) = link.downcast_ref::<FetchError>() {
            return Some(found);
        }
        if let Some(inner) = link.downcast_ref::<io::Error>().and_then(io::Error::get_ref)
            && let Some(found) = find_fetch_error(inner)
        {
            return Some(found);
        }
        current = link.source();
    }
    None
}

/// Whether a connection to an `https://` source failed in the TLS handshake rather than in
/// resolving or dialling.
///
/// With no proxy, connecting is DNS, then TCP, then TLS. DNS and TCP failures carry kinds such
/// as refused, unreachable or timed out; only the handshake reads from the server, so only it
/// fails with data the client cannot parse (`InvalidData`, which is also how rustls reports an
/// untrusted certificate or an alert), an early end of stream, or a reset of a connection that
/// had been established.
fn failed_in_handshake(err: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(link) = current {
        if let Some(io) = link.downcast_ref::<io::Error>() {
            use io::ErrorKind::{ConnectionAborted, ConnectionReset, InvalidData, UnexpectedEof};
            if matches!(io.kind(), InvalidData | UnexpectedEof | ConnectionReset | ConnectionAborted) {
                return true;
            }
            if let Some(inner) = io.get_ref()
                && failed_in_handshake(inner)
            {
                return true;
            }
        }
        current = link.source();
    }
    false
}

/// The chain's messages, outermost first, skipping reqwest's own links (see [`from_reqwest`])
/// and a link that only repeats the one before it.
fn messages(err: &reqwest::Error) -> Vec<String> {
    let mut parts: Vec<String> = Vec::new();
    let mut current = err.source();
    while let Some(link) = current {
        if !link.is::<reqwest::Error>() {
            let text = link.to_string();
            if !text.is_empty() && parts.last() != Some(&text) {
                parts.push(text);
            }
        }
        current = link.source();
    }
    parts
}

/// The chain's messages joined with ": ", with the secret scrubbed.
fn describe(err: &reqwest::Error, secret: Option<&str>) -> String {
    scrub(messages(err).join(": "), secret)
}

/// The last message of the chain, the most specific one, with the secret scrubbed. A handshake
/// failure reads better without the client's generic wrappers around it.
fn innermost(err: &reqwest::Error, secret: Option<&str>) -> String {
    scrub(messages(err).pop().unwrap_or_default(), secret)
}

/// Replaces the secret, plain or URL-encoded, as a last line of defence.
fn scrub(reason: String, secret: Option<&str>) -> String {
    let mut reason = if reason.is_empty() { "the connection failed".to_owned() } else { reason };
    if let Some(secret) = secret.filter(|s| !s.is_empty()) {
        let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        reason = reason.replace(secret, "[redacted]").replace(&encoded, "[redacted]");
    }
    reason
}

//! Fetching a project's source over HTTP: the only module that imports reqwest.
//!
//! The run pipeline hands a [`Fetcher`] one [`FetchRequest`] per page (the project's configured
//! request, possibly changed by the plugin's `prepare` or by a next-page request) and gets back a
//! [`Fetched`] response or a [`FetchError`]. Everything that makes fetching from tenant-chosen
//! URLs safe happens here:
//!
//! - The egress guard (the egress-guard invariant in ARCHITECTURE.md): unless the operator allows private sources, no request goes
//!   to a loopback, private, link-local, metadata or otherwise internal address. Host names are
//!   checked on the addresses they resolve to, IP literals before sending, redirects included
//!   (`guard.rs`, with the address ranges in `egress.rs`). The operator may open chosen private
//!   networks with `allowed_private_networks` (`network.rs`) and leave the rest closed.
//! - The origin rule: a request and every redirect it follows stay on the scheme, host and port of
//!   the project's source URL, so a plugin can page through an API but not point the host
//!   elsewhere.
//! - Bounds: a connect timeout, a total deadline that includes reading the body, a body cap
//!   counted after decompression, and a redirect limit.
//! - The API key is added here, last, and never appears in an error, a `Debug` output or a log.
//!
//! HTTP error statuses are responses, not errors: the pipeline decides what a 401 or a 503 means.
//! The module knows nothing of AWS, storage or WebAssembly.

mod egress;
mod error;
mod guard;
mod network;
mod response;
mod source_url;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};

pub use error::FetchError;
use guard::{Guard, GuardedResolver, origin_of, redirect_policy};
pub use network::Network;
pub use source_url::{MAX_URL_LEN, SourceUrl};

/// How the daemon fetches sources. Every field has a default, so the section can be left out.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// The longest wait for a connection to a source, DNS and TLS included, in milliseconds.
    pub connect_timeout_ms: u64,
    /// The longest a whole fetch may take, from connecting to the last byte of the body and
    /// including redirects, in milliseconds.
    pub timeout_ms: u64,
    /// The largest response body accepted, in bytes, counted after gzip or deflate decoding.
    pub max_body_bytes: u64,
    /// The most redirects one fetch follows. Redirects must stay on the project's origin.
    pub max_redirects: u32,
    /// Allow sources on loopback, private, link-local and metadata addresses. Off by default;
    /// `SLUICE_ALLOW_PRIVATE_SOURCES` sets it, for tests, demos and private deployments.
    pub allow_private: bool,
    /// Networks sources may reach even though `allow_private` is off: CIDR blocks or single
    /// addresses, such as `["10.1.2.0/24", "fd00:1::/64", "127.0.0.2"]`. It suits an operator
    /// whose tenants poll one known internal API: that API's network opens, and every other
    /// loopback, private, link-local and metadata address stays refused, redirects included.
    /// Entries are matched against the addresses a host name resolves to and against IP-literal
    /// hosts, with an IPv4 address and its IPv6 forms (such as `::ffff:10.1.2.3`) taken as one. A
    /// bad entry stops the daemon at start-up with the entry named. Empty by default.
    pub allowed_private_networks: Vec<Network>,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 5_000,
            timeout_ms: 30_000,
            max_body_bytes: 10 * 1024 * 1024,
            max_redirects: 5,
            allow_private: false,
            allowed_private_networks: Vec::new(),
        }
    }
}

/// One request to send. Borrowed, so the pipeline can build it from the project and the plugin's
/// output without copying.
#[derive(Debug, Clone, Copy)]
pub struct FetchRequest<'a> {
    /// `GET`, `POST`, `PUT`, `PATCH`, `DELETE` or `HEAD` (any letter case).
    pub method: &'a str,
    /// The URL to fetch; a plugin's `prepare` or next-page request may have changed it.
    pub url: &'a str,
    /// The project's configured source URL: `url`, and every redirect, must have its scheme, host
    /// and port.
    pub origin: &'a Url,
    /// Request headers. Those the host sets itself (`host`, `content-length`,
    /// `transfer-encoding`, `connection`, `upgrade`) are refused.
    pub headers: &'a [(String, String)],
    /// The request body, if any.
    pub body: Option<&'a [u8]>,
    /// The API key to add, if the project has one.
    pub api_key: Option<SourceKey<'a>>,
}

/// The tenant's API key and where it goes. Its `Debug` output hides the value.
#[derive(Clone, Copy)]
pub struct SourceKey<'a> {
    /// The key itself, from the tenant's secret.
    pub value: &'a str,
    /// Where the request carries it.
    pub placement: KeyPlacement<'a>,
}

impl fmt::Debug for SourceKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceKey").field("value", &"[redacted]").field("placement", &self.placement).finish()
    }
}

/// Where a request carries the API key. It replaces any header or query parameter of that name
/// the request already has, so a plugin cannot substitute its own.
#[derive(Debug, Clone, Copy)]
pub enum KeyPlacement<'a> {
    /// A header `name: prefix + value`, e.g. `authorization: Bearer <key>`.
    Header { name: &'a str, prefix: &'a str },
    /// A query parameter `param=prefix + value`, URL-encoded.
    Query { param: &'a str, prefix: &'a str },
}

/// A response, whatever its status.
#[derive(Debug)]
pub struct Fetched {
    /// The HTTP status code.
    pub status: u16,
    /// The response headers, lowercase names, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body, decompressed.
    pub body: Vec<u8>,
    /// The delay a `Retry-After` header asked for, at most an hour.
    pub retry_after: Option<Duration>,
}

/// Header names the host sets itself; the project API refuses them too.
const RESERVED_HEADERS: [&str; 5] = ["host", "content-length", "transfer-encoding", "connection", "upgrade"];

/// Fetches sources. Cloning is cheap and clones share one connection pool.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    guard: Arc<Guard>,
    config: SourceConfig,
}

impl Fetcher {
    /// Builds the fetcher and its connection pool, refusing settings that would disable a bound.
    pub fn new(config: SourceConfig) -> anyhow::Result<Self> {
        for (name, value) in [
            ("connect_timeout_ms", config.connect_timeout_ms),
            ("timeout_ms", config.timeout_ms),
            ("max_body_bytes", config.max_body_bytes),
        ] {
            if value == 0 {
                bail!("source setting `{name}` must be greater than 0");
            }
        }
        let guard = Arc::new(Guard::new(config.allow_private, config.allowed_private_networks.clone()));
        let client = reqwest::Client::builder()
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            // The total deadline is enforced in `fetch`, around sending and reading together.
            .redirect(redirect_policy(Arc::clone(&guard), config.max_redirects))
            .dns_resolver(Arc::new(GuardedResolver { guard: Arc::clone(&guard) }))
            // A proxy would resolve names itself, out of the guard's sight, so none is used,
            // whatever HTTP_PROXY says.
            .no_proxy()
            // A Referer would repeat the previous URL, API key included.
            .referer(false)
            .build()
            .context("could not build the HTTP client for sources")?;
        Ok(Self { client, guard, config })
    }

    /// Sends one request and reads the whole response, within the configured bounds.
    pub async fn fetch(&self, request: FetchRequest<'_>) -> Result<Fetched, FetchError> {
        let deadline = Duration::from_millis(self.config.timeout_ms);
        match tokio::time::timeout(deadline, self.fetch_within_deadline(request)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout { limit_ms: self.config.timeout_ms, setting: "timeout_ms" }),
        }
    }

    async fn fetch_within_deadline(&self, request: FetchRequest<'_>) -> Result<Fetched, FetchError> {
        let method = parse_method(request.method)?;
        let origin = request.origin;
        if !matches!(origin.scheme(), "http" | "https") || origin.host().is_none() {
            return Err(FetchError::InvalidRequest(
                "the project's source url must be an http:// or https:// URL with a host".into(),
            ));
        }
        let mut url = Url::parse(request.url)
            .map_err(|e| FetchError::InvalidRequest(format!("the request url is not a valid absolute URL: {e}")))?;
        self.guard.check_target(&url, origin)?;
        let mut headers = request_headers(request.headers)?;
        let secret = request.api_key.map(|key| key.value);
        if let Some(key) = request.api_key {
            add_api_key(key, &mut url, &mut headers)?;
        }

        let origin_text = origin_of(origin);
        let map_err = |e| error::from_reqwest(e, &origin_text, self.config.connect_timeout_ms, secret);
        let mut builder = self.client.request(method, url).headers(headers);
        if let Some(body) = request.body {
            builder = builder.body(body.to_vec());
        }
        let mut response = builder.send().await.map_err(map_err)?;

        let status = response.status().as_u16();
        let headers = response::header_pairs(response.headers());
        let retry_after = response::retry_after(response.headers(), jiff::Timestamp::now());
        let body = response::read_capped(&mut response, self.config.max_body_bytes, map_err).await?;
        Ok(Fetched { status, headers, body, retry_after })
    }
}

/// The methods a source request may use; anything else (CONNECT, TRACE, custom verbs) is refused.
fn parse_method(method: &str) -> Result<Method, FetchError> {
    const ALLOWED: [Method; 6] = [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::HEAD];
    ALLOWED.into_iter().find(|allowed| allowed.as_str().eq_ignore_ascii_case(method)).ok_or_else(|| {
        FetchError::InvalidRequest(format!(
            "method `{}` is not supported; use GET, POST, PUT, PATCH, DELETE or HEAD",
            method.escape_debug()
        ))
    })
}

/// Checks and converts the request's headers. Error messages name the header, never its value,
/// which may be a credential.
fn request_headers(pairs: &[(String, String)]) -> Result<HeaderMap, FetchError> {
    let mut headers = HeaderMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            FetchError::InvalidRequest(format!(
                "`{}` is not a valid header name; use letters, digits and '-'",
                name.escape_debug()
            ))
        })?;
        if RESERVED_HEADERS.contains(&header.as_str()) {
            return Err(FetchError::InvalidRequest(format!("header `{header}` is set by the host; remove it")));
        }
        let value = HeaderValue::from_str(value).map_err(|_| {
            FetchError::InvalidRequest(format!(
                "the value of header `{header}` is not valid; remove line breaks and control characters"
            ))
        })?;
        headers.append(header, value);
    }
    Ok(headers)
}

/// Adds the API key where the project says, replacing whatever the request had there.
fn add_api_key(key: SourceKey<'_>, url: &mut Url, headers: &mut HeaderMap) -> Result<(), FetchError> {
    match key.placement {
        KeyPlacement::Header { name, prefix } => {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                FetchError::InvalidRequest(format!(
                    "the api key header name `{}` is not valid; use letters, digits and '-'",
                    name.escape_debug()
                ))
            })?;
            let mut value = HeaderValue::from_str(&format!("{prefix}{}", key.value)).map_err(|_| {
                FetchError::InvalidRequest(
                    "the api key and its prefix do not form a valid header value; remove line breaks and control \
                     characters from the secret"
                        .into(),
                )
            })?;
            // Sensitive values are left out of hyper's and reqwest's Debug output.
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        KeyPlacement::Query { param, prefix } => {
            if param.is_empty() {
                return Err(FetchError::InvalidRequest("the api key query parameter name is empty; name it".into()));
            }
            let value = format!("{prefix}{}", key.value);
            if url.query_pairs().any(|(existing, _)| existing == param) {
                // Rebuilding the query re-encodes it, so it is done only when there is a pair to drop.
                let kept: Vec<(String, String)> = url
                    .query_pairs()
                    .filter(|(name, _)| name != param)
                    .map(|(n, v)| (n.into_owned(), v.into_owned()))
                    .collect();
                url.query_pairs_mut().clear().extend_pairs(kept);
            }
            url.query_pairs_mut().append_pair(param, &value);
        }
    }
    Ok(())
}

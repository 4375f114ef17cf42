//! Where requests may go: the egress guard (the egress-guard invariant) and the origin rule, applied to the first
//! request, to every redirect and to every DNS answer.
//!
//! Addresses are checked in two places because neither alone is enough. Host names are checked
//! after resolution, in the resolver the client connects with, so a name that resolves to a
//! private address is refused even if its DNS answer changes between requests. IP-literal hosts
//! never reach a resolver (the connector dials them directly), so they are checked before a
//! request or a redirect is sent.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect;
use url::{Host, Url};

use super::FetchError;
use super::egress::blocked_range;
use super::network::Network;

/// The egress policy one fetcher applies.
#[derive(Debug)]
pub(super) struct Guard {
    /// The operator's `SLUICE_ALLOW_PRIVATE_SOURCES`: when set, nothing is refused.
    allow_private: bool,
    /// The operator's `allowed_private_networks`: blocked addresses in them are let through.
    allowed: Vec<Network>,
}

impl Guard {
    pub(super) fn new(allow_private: bool, allowed: Vec<Network>) -> Self {
        Self { allow_private, allowed }
    }

    /// Refuses `address` (reached for `host`) when it is in a blocked range and in none of the
    /// networks the operator allowed.
    pub(super) fn check(&self, host: &str, address: IpAddr) -> Result<(), FetchError> {
        if self.allow_private || self.allowed.iter().any(|network| network.contains(address)) {
            return Ok(());
        }
        match blocked_range(address) {
            Some(range) => Err(FetchError::Refused { host: host.to_owned(), address, range }),
            None => Ok(()),
        }
    }

    /// Checks a URL that is about to be requested: its host, when it is an IP literal, must pass
    /// the guard, and its scheme, host and port must be the origin's.
    pub(super) fn check_target(&self, url: &Url, origin: &Url) -> Result<(), FetchError> {
        let literal = match url.host() {
            Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(Host::Domain(_)) | None => None,
        };
        if let Some(ip) = literal {
            self.check(url.host_str().unwrap_or_default(), ip)?;
        }
        if url.origin() != origin.origin() {
            return Err(FetchError::OffOrigin { target: origin_of(url), origin: origin_of(origin) });
        }
        Ok(())
    }
}

/// A URL's scheme, host and port, the only parts of it that errors show.
pub(super) fn origin_of(url: &Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{}://{host}:{port}", url.scheme()),
        (Some(host), None) => format!("{}://{host}", url.scheme()),
        (None, _) => format!("{}:", url.scheme()),
    }
}

/// The redirect policy of the fetcher's client: at most `max_redirects` hops, each on the origin
/// and past the guard.
///
/// A client's policy is shared by every request, but each request's origin differs, so the
/// origin is taken from the first URL of the chain, which `fetch` has already checked against the
/// project's origin.
pub(super) fn redirect_policy(guard: Arc<Guard>, max_redirects: u32) -> redirect::Policy {
    redirect::Policy::custom(move |attempt| {
        let verdict = match attempt.previous().first() {
            // `previous` holds the initial URL and every hop already followed.
            Some(_) if attempt.previous().len() > max_redirects as usize => {
                Err(FetchError::TooManyRedirects { limit: max_redirects })
            }
            Some(initial) => guard.check_target(attempt.url(), initial),
            None => Err(FetchError::InvalidRequest("a redirect arrived without the request it answers".into())),
        };
        match verdict {
            Ok(()) => attempt.follow(),
            Err(refusal) => attempt.error(refusal),
        }
    })
}

/// The client's resolver: resolves with the system resolver (through tokio), then drops the
/// addresses the guard refuses.
///
/// A name with some public and some blocked addresses is connected through the public ones only;
/// a name with only blocked addresses fails with the guard's refusal, which `from_reqwest` finds
/// in the error chain.
pub(super) struct GuardedResolver {
    pub(super) guard: Arc<Guard>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = Arc::clone(&self.guard);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0 is replaced by the URL's port when the connector dials.
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refusal = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match guard.check(&host, addr.ip()) {
                    Ok(()) => true,
                    Err(refused) => {
                        refusal.get_or_insert(refused);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                return Err(match refusal {
                    Some(refused) => Box::new(refused) as Box<dyn std::error::Error + Send + Sync>,
                    None => format!("{host} resolved to no addresses").into(),
                });
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

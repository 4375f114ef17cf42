//! Assuming tenants' roles: AssumeRole with the project's external id, credentials cached per
//! (role, external id) and renewed before they expire, and the clients that use them.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use aws_config::Region;
use aws_config::identity::IdentityCache;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_kinesis::config::Credentials;
use aws_sdk_secretsmanager::config::retry::RetryPartition;

use super::Inner;
use super::error::{AwsError, AwsErrorKind, failure};
use crate::arn::RoleArn;

/// The role to assume and how to name the session (see [`session_name`]).
#[derive(Debug, Clone, Copy)]
pub struct RoleRef<'a> {
    pub role_arn: &'a RoleArn,
    pub external_id: &'a str,
    pub session_name: &'a str,
}

/// Credentials from one AssumeRole, and the clients built with them. Every project that uses the
/// same (role, external id) shares one session, so clients (and their connection pools) are
/// reused across runs; when the credentials are renewed, a new session starts with new clients.
#[derive(Clone)]
pub struct Session {
    inner: Arc<SessionInner>,
}

struct SessionInner {
    role_arn: String,
    external_id: String,
    credentials: Credentials,
    expires_at: SystemTime,
    /// Clients by region.
    kinesis: Mutex<HashMap<String, aws_sdk_kinesis::Client>>,
    secrets: Mutex<HashMap<String, aws_sdk_secretsmanager::Client>>,
}

impl Session {
    /// The assumed role's ARN.
    pub fn role_arn(&self) -> &str {
        &self.inner.role_arn
    }

    /// When the session's credentials expire.
    pub fn expires_at(&self) -> SystemTime {
        self.inner.expires_at
    }

    pub(super) fn external_id(&self) -> &str {
        &self.inner.external_id
    }

    /// The session's Kinesis client for `region`, built on first use. Retries are Sluice's own
    /// (per failed entry, see `kinesis.rs`), so the SDK's are off.
    pub(super) fn kinesis(&self, aws: &Inner, region: &str) -> aws_sdk_kinesis::Client {
        let mut clients = self.inner.kinesis.lock().unwrap_or_else(PoisonError::into_inner);
        let client = clients.entry(region.to_string()).or_insert_with(|| {
            let config = aws_sdk_kinesis::config::Builder::from(&aws.base)
                .credentials_provider(self.inner.credentials.clone())
                .region(Region::new(region.to_string()))
                // The credentials are already in memory; a cache per client would only grow.
                .identity_cache(IdentityCache::no_cache())
                .retry_config(RetryConfig::disabled())
                .timeout_config(TimeoutConfig::builder().operation_attempt_timeout(aws.call_timeout()).build())
                .build();
            aws_sdk_kinesis::Client::from_conf(config)
        });
        client.clone()
    }

    /// The session's Secrets Manager client for `region`, built on first use, with the SDK's
    /// standard retries.
    ///
    /// The SDK bounds retries with a token bucket that, by default, every client of a service and
    /// region in the process shares. One tenant whose reads keep failing (its account throttling
    /// GetSecretValue, say) would then use up the retries of every other tenant, so each session's
    /// client gets a bucket of its own.
    pub(super) fn secrets_manager(&self, aws: &Inner, region: &str) -> aws_sdk_secretsmanager::Client {
        let mut clients = self.inner.secrets.lock().unwrap_or_else(PoisonError::into_inner);
        let client = clients.entry(region.to_string()).or_insert_with(|| {
            let partition = RetryPartition::custom(format!("secretsmanager-{region}-{}", self.inner.role_arn)).build();
            let config = aws_sdk_secretsmanager::config::Builder::from(&aws.base)
                .credentials_provider(self.inner.credentials.clone())
                .region(Region::new(region.to_string()))
                .identity_cache(IdentityCache::no_cache())
                .retry_partition(partition)
                .timeout_config(TimeoutConfig::builder().operation_attempt_timeout(aws.call_timeout()).build())
                .build();
            aws_sdk_secretsmanager::Client::from_conf(config)
        });
        client.clone()
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("role_arn", &self.inner.role_arn)
            .field("expires_at", &self.inner.expires_at)
            .field("credentials", &"** redacted **")
            .finish()
    }
}

/// Sessions by (role ARN, external id). Each key has its own async lock, held across the STS
/// call, so concurrent runs of projects sharing a role make one AssumeRole between them.
#[derive(Default)]
pub(super) struct SessionCache {
    slots: Mutex<HashMap<(String, String), Slot>>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Session>>>;

impl SessionCache {
    /// The key's slot. Adding a key first drops the slots of expired sessions nobody is using,
    /// so that roles of deleted projects do not keep their sessions and clients forever.
    fn slot(&self, key: (String, String)) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if !slots.contains_key(&key) {
            let now = SystemTime::now();
            // A slot another caller holds stays, even empty: that caller is about to fill it, and
            // dropping it would make the next caller for the key assume the role again instead of
            // waiting for the same AssumeRole.
            slots.retain(|_, slot| {
                Arc::strong_count(slot) > 1
                    || slot.try_lock().map_or(true, |session| session.as_ref().is_some_and(|s| s.expires_at() > now))
            });
        }
        slots.entry(key).or_default().clone()
    }
}

/// A transient STS failure does not fail runs while the cached credentials still have this long
/// to live: the refresh is simply tried again on the next call.
const STALE_GRACE: Duration = Duration::from_secs(60);

pub(super) async fn assume(aws: &Inner, role: RoleRef<'_>) -> Result<Session, AwsError> {
    check_role(role)?;
    let slot = aws.sessions.slot((role.role_arn.to_string(), role.external_id.to_string()));
    let mut cached = slot.lock().await;
    let refresh_before = Duration::from_millis(aws.config.credentials_refresh_before_ms);
    let now = SystemTime::now();
    if let Some(session) = cached.as_ref()
        && !needs_refresh(session.expires_at(), now, refresh_before)
    {
        return Ok(session.clone());
    }
    match assume_role(aws, role).await {
        Ok(session) => {
            *cached = Some(session.clone());
            Ok(session)
        }
        Err(err) => match cached.as_ref() {
            Some(session)
                if err.is_transient() && !needs_refresh(session.expires_at(), SystemTime::now(), STALE_GRACE) =>
            {
                tracing::warn!(role = role.role_arn.as_str(), error = %err, "renewing credentials failed; using the current ones");
                Ok(session.clone())
            }
            _ => Err(err),
        },
    }
}

/// Whether credentials expiring at `expires_at` should be renewed at `now`.
fn needs_refresh(expires_at: SystemTime, now: SystemTime, refresh_before: Duration) -> bool {
    now.checked_add(refresh_before).is_none_or(|deadline| deadline >= expires_at)
}

async fn assume_role(aws: &Inner, role: RoleRef<'_>) -> Result<Session, AwsError> {
    aws.counters.assume_role.fetch_add(1, Ordering::Relaxed);
    let output = aws
        .sts
        .assume_role()
        .role_arn(role.role_arn.as_str())
        .external_id(role.external_id)
        .role_session_name(role.session_name)
        .duration_seconds(i32::try_from(aws.config.session_duration_seconds).unwrap_or(i32::MAX))
        .send()
        .await
        .map_err(|err| {
            let failure = failure(&err);
            let (arn, detail) = (role.role_arn, failure.detail);
            let message = match failure.kind {
                AwsErrorKind::AccessDenied | AwsErrorKind::NotFound => format!(
                    "sts denied AssumeRole on {arn} ({detail}); the role must exist and its trust policy must allow \
                     sts:AssumeRole to the platform principal with the condition sts:ExternalId equal to the \
                     project's external id"
                ),
                AwsErrorKind::Invalid => format!(
                    "sts rejected AssumeRole on {arn} ({detail}); check target.role_arn, and that the role's maximum \
                     session duration is at least {} seconds",
                    aws.config.session_duration_seconds
                ),
                AwsErrorKind::Transient => format!("sts AssumeRole on {arn} failed ({detail}); retry later"),
            };
            AwsError::new(failure.kind, message)
        })?;
    let Some(credentials) = output.credentials() else {
        return Err(AwsError::new(AwsErrorKind::Transient, "sts AssumeRole returned no credentials; retry later"));
    };
    // An unreadable expiry is treated as already due, so the next call renews.
    let expires_at = SystemTime::try_from(*credentials.expiration()).unwrap_or(SystemTime::UNIX_EPOCH);
    let credentials = Credentials::new(
        credentials.access_key_id(),
        credentials.secret_access_key(),
        Some(credentials.session_token().to_string()),
        Some(expires_at),
        "sluice-assume-role",
    );
    let inner = SessionInner {
        role_arn: role.role_arn.to_string(),
        external_id: role.external_id.to_string(),
        credentials,
        expires_at,
        kinesis: Mutex::default(),
        secrets: Mutex::default(),
    };
    Ok(Session { inner: Arc::new(inner) })
}

/// Rejects what STS would reject anyway, before spending a call on it.
fn check_role(role: RoleRef<'_>) -> Result<(), AwsError> {
    if !is_sts_text(role.external_id, 2, 1224, "_+=,.@:/-") {
        return Err(AwsError::invalid(
            "the external id must be 2 to 1224 letters, digits or _+=,.@:/- characters; use the one the project reports",
        ));
    }
    if !is_sts_text(role.session_name, 2, 64, "_+=,.@-") {
        return Err(AwsError::invalid(format!(
            "`{}` is not a valid role session name; build it with aws::session_name",
            role.session_name
        )));
    }
    Ok(())
}

fn is_sts_text(text: &str, min: usize, max: usize, extra: &str) -> bool {
    (min..=max).contains(&text.len()) && text.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

/// The RoleSessionName of a session that projects of one tenant share (tenant trust), so that the
/// tenant's CloudTrail shows the tenant: `sluice-<tenant>`; run history shows the project.
pub fn tenant_session_name(tenant: &str) -> String {
    let clean: String = tenant
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) { c } else { '-' })
        .take(64 - "sluice-".len())
        .collect();
    format!("sluice-{clean}")
}

/// A valid RoleSessionName (`[\w+=,.@-]`, 2 to 64 characters) naming the tenant and the project,
/// so that the tenant's CloudTrail shows which project acted: `sluice-<tenant>-<project>`.
/// Other characters become `-`; long ids are shortened, each keeping at least half the room.
pub fn session_name(tenant: &str, project: &str) -> String {
    const PREFIX: &str = "sluice-";
    // The prefix and the separator between tenant and project take the rest of the 64.
    const ROOM: usize = 64 - PREFIX.len() - 1;
    let clean = |text: &str| -> Vec<char> {
        text.chars().map(|c| if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) { c } else { '-' }).collect()
    };
    let (tenant, project) = (clean(tenant), clean(project));
    let tenant_len = tenant.len().min((ROOM / 2).max(ROOM.saturating_sub(project.len())));
    let project_len = project.len().min(ROOM - tenant_len);
    let tenant: String = tenant[..tenant_len].iter().collect();
    let project: String = project[..project_len].iter().collect();
    format!("{PREFIX}{tenant}-{project}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slot handed to a caller that has not filled it yet survives another key's arrival, so
    /// the next caller of its key waits for the same AssumeRole instead of making another one.
    #[test]
    fn a_slot_in_use_is_kept_when_another_key_arrives() {
        let cache = SessionCache::default();
        let key = |n: &str| (format!("arn:aws:iam::111111111111:role/{n}"), "ext".to_string());
        let held = cache.slot(key("a"));
        let _other = cache.slot(key("b"));
        assert!(Arc::ptr_eq(&held, &cache.slot(key("a"))), "the held slot is still the key's");
        drop(held);
        let _third = cache.slot(key("c"));
        assert_eq!(
            cache.slots.lock().unwrap().len(),
            2,
            "an empty slot nobody holds goes: {:?}",
            cache.slots.lock().unwrap().keys()
        );
    }

    fn valid(name: &str) -> bool {
        is_sts_text(name, 2, 64, "_+=,.@-")
    }

    #[test]
    fn a_shared_session_is_named_for_the_tenant() {
        assert_eq!(tenant_session_name("ten_0123456789abcdef"), "sluice-ten_0123456789abcdef");
        assert!(valid(&tenant_session_name(&"x".repeat(100))));
        assert_eq!(tenant_session_name("a b"), "sluice-a-b");
    }

    #[test]
    fn session_names_are_valid_and_name_tenant_and_project() {
        assert_eq!(session_name("t-1", "p-2"), "sluice-t-1-p-2");
        assert_eq!(session_name("", ""), "sluice--");
        let odd = session_name("tenant with spaces/ü", "proj:ect*");
        assert!(valid(&odd), "{odd}");
        assert_eq!(odd, "sluice-tenant-with-spaces---proj-ect-");
        let long = "x".repeat(100);
        let name = session_name(&long, "p-1");
        assert!(valid(&name) && name.len() == 64 && name.ends_with("-p-1"), "{name}");
        let name = session_name("t-1", &long);
        assert!(valid(&name) && name.len() == 64 && name.starts_with("sluice-t-1-"), "{name}");
        let name = session_name(&long, &"y".repeat(100));
        assert!(valid(&name) && name.len() == 64 && name.contains("xxx-yyy"), "{name}");
    }

    #[test]
    fn credentials_are_renewed_ahead_of_expiry() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ahead = Duration::from_secs(300);
        assert!(!needs_refresh(now + Duration::from_secs(3600), now, ahead));
        assert!(needs_refresh(now + Duration::from_secs(299), now, ahead));
        assert!(needs_refresh(now - Duration::from_secs(1), now, ahead));
        assert!(needs_refresh(now + Duration::from_secs(900), now, Duration::from_secs(1000)));
    }

    #[test]
    fn bad_roles_fail_before_any_call() {
        let arn = RoleArn::parse("arn:aws:iam::123456789012:role/r").unwrap();
        let role = |id, name| RoleRef { role_arn: &arn, external_id: id, session_name: name };
        assert!(check_role(role("ext-1234", "sluice-t-p")).is_ok());
        let err = check_role(role("x", "sluice-t-p")).unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::Invalid);
        assert!(err.message.contains("external id"), "{}", err.message);
        assert!(check_role(role("ext-1234", "has space")).is_err());
    }
}

//! Reading a project's API key from the tenant's Secrets Manager secret, with the assumed role's
//! credentials, cached for a while so that every run does not cost a GetSecretValue.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::error::{AwsError, AwsErrorKind, failure};
use super::{Inner, Session};
use crate::arn::SecretArn;

/// Raw secret strings by (role ARN, external id, secret ARN). The role is part of the key because
/// whether a secret may be read at all depends on who asks. Each key has its own async lock, held
/// across the call, so concurrent runs wait for one GetSecretValue.
#[derive(Default)]
pub(super) struct SecretCache {
    slots: Mutex<HashMap<SecretKey, Slot>>,
}

type SecretKey = (String, String, String);
type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

struct Cached {
    value: String,
    read_at: Instant,
}

impl SecretCache {
    /// The key's slot. Adding a key first drops the expired entries nobody is using, so that
    /// secrets of deleted projects do not stay in memory.
    fn slot(&self, key: SecretKey, ttl: Duration) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if !slots.contains_key(&key) {
            // A slot another caller holds stays, even empty: that caller is about to fill it, and
            // dropping it would make the next read miss the value and read the secret again.
            slots.retain(|_, slot| {
                Arc::strong_count(slot) > 1
                    || slot.try_lock().map_or(true, |entry| entry.as_ref().is_some_and(|e| e.read_at.elapsed() < ttl))
            });
        }
        slots.entry(key).or_default().clone()
    }

    /// Removes the entry; a read in flight fills the removed slot, which nobody looks at again.
    pub(super) fn forget(&self, session: &Session, secret_arn: &SecretArn) {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner).remove(&key(session, secret_arn));
    }
}

fn key(session: &Session, secret_arn: &SecretArn) -> SecretKey {
    (session.role_arn().to_string(), session.external_id().to_string(), secret_arn.to_string())
}

pub(super) async fn secret(
    aws: &Inner,
    session: &Session,
    secret_arn: &SecretArn,
    json_field: Option<&str>,
) -> Result<String, AwsError> {
    let ttl = Duration::from_millis(aws.config.secret_ttl_ms);
    let slot = aws.secrets.slot(key(session, secret_arn), ttl);
    let mut cached = slot.lock().await;
    if let Some(entry) = cached.as_ref()
        && entry.read_at.elapsed() < ttl
    {
        return extract(&entry.value, json_field, secret_arn.as_str());
    }
    let value = read(aws, session, secret_arn).await?;
    // A secret whose key cannot be extracted is not cached, so the tenant's fix counts at once.
    let key = extract(&value, json_field, secret_arn.as_str())?;
    *cached = Some(Cached { value, read_at: Instant::now() });
    Ok(key)
}

async fn read(aws: &Inner, session: &Session, arn: &SecretArn) -> Result<String, AwsError> {
    let client = session.secrets_manager(aws, arn.region());
    aws.counters.get_secret_value.fetch_add(1, Ordering::Relaxed);
    let output = client.get_secret_value().secret_id(arn.as_str()).send().await.map_err(|err| {
        let failure = failure(&err);
        let (role, detail) = (session.role_arn(), failure.detail);
        let message = match failure.kind {
            AwsErrorKind::AccessDenied => format!(
                "secrets manager denied GetSecretValue on {arn} to role {role} ({detail}); allow \
                 secretsmanager:GetSecretValue on the secret in the role's policy, and kms:Decrypt on its key if \
                 the secret uses a customer managed KMS key"
            ),
            AwsErrorKind::NotFound => format!(
                "secret {arn} was not found by role {role} ({detail}); create it, or fix source.api_key.secret_arn"
            ),
            AwsErrorKind::Invalid => format!(
                "secrets manager rejected GetSecretValue on {arn} ({detail}); check source.api_key.secret_arn and \
                 that the secret is not scheduled for deletion"
            ),
            AwsErrorKind::Transient => {
                format!("secrets manager GetSecretValue on {arn} failed ({detail}); retry later")
            }
        };
        AwsError::new(failure.kind, message)
    })?;
    match output.secret_string() {
        Some(value) => Ok(value.to_string()),
        None => Err(AwsError::invalid(format!("secret {arn} holds binary data; store the API key as a secret string"))),
    }
}

/// The API key in a secret: the whole secret, or a string field of the JSON object it holds.
/// Messages name the secret and field, never the content.
fn extract(secret: &str, json_field: Option<&str>, secret_arn: &str) -> Result<String, AwsError> {
    let key = match json_field {
        None => secret.trim(),
        Some(field) => {
            let no_object = || {
                AwsError::invalid(format!(
                    "secret {secret_arn} is not a JSON object, but source.api_key.json_field is set; store a JSON \
                     object with a string field `{field}`, or remove json_field to use the whole secret"
                ))
            };
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(secret).map_err(|_| no_object())?;
            let Some(value) = object.get(field).and_then(|v| v.as_str()) else {
                return Err(AwsError::invalid(format!(
                    "secret {secret_arn} has no string field `{field}`; add it to the secret, or fix \
                     source.api_key.json_field"
                )));
            };
            return non_empty(value.trim(), secret_arn, json_field);
        }
    };
    non_empty(key, secret_arn, json_field)
}

fn non_empty(key: &str, secret_arn: &str, json_field: Option<&str>) -> Result<String, AwsError> {
    if key.is_empty() {
        let what =
            json_field.map(|f| format!("field `{f}` of secret {secret_arn}")).unwrap_or(format!("secret {secret_arn}"));
        return Err(AwsError::invalid(format!("{what} is empty; store the API key in it")));
    }
    Ok(key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:k-AbCdEf";

    #[test]
    fn adding_a_key_drops_expired_and_empty_entries_nobody_uses() {
        let cache = SecretCache::default();
        let key = |name: &str| ("role".to_string(), "ext".to_string(), name.to_string());
        let keys = |cache: &SecretCache| {
            let mut keys: Vec<String> = cache.slots.lock().unwrap().keys().map(|k| k.2.clone()).collect();
            keys.sort();
            keys
        };
        let hour = Duration::from_secs(3600);
        let busy = cache.slot(key("busy"), hour);
        let _held = busy.try_lock().unwrap();
        *cache.slot(key("read"), hour).try_lock().unwrap() =
            Some(Cached { value: "v".into(), read_at: Instant::now() });
        cache.slot(key("empty"), hour);
        cache.slot(key("new"), hour);
        assert_eq!(keys(&cache), ["busy", "new", "read"], "an empty slot is dropped, a fresh entry kept");
        cache.slot(key("newer"), Duration::ZERO);
        assert_eq!(keys(&cache), ["busy", "newer"], "expired entries are dropped, a slot in use is kept");
    }

    #[test]
    fn a_plain_secret_is_the_key() {
        assert_eq!(extract("s3cr3t\n", None, ARN).unwrap(), "s3cr3t");
        // A JSON secret without json_field is used as it is: the tenant may really mean that.
        assert_eq!(extract(r#"{"k":"v"}"#, None, ARN).unwrap(), r#"{"k":"v"}"#);
        let err = extract("  ", None, ARN).unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::Invalid);
        assert!(err.message.contains("is empty"), "{}", err.message);
    }

    #[test]
    fn a_json_field_must_be_a_string_in_an_object() {
        assert_eq!(extract(r#"{"api_key": "abc", "other": 1}"#, Some("api_key"), ARN).unwrap(), "abc");
        for secret in ["not json at all: hunter2", r#"["api_key"]"#, r#""api_key""#] {
            let err = extract(secret, Some("api_key"), ARN).unwrap_err();
            assert_eq!(err.kind, AwsErrorKind::Invalid);
            assert!(err.message.contains("is not a JSON object") && err.message.contains(ARN), "{}", err.message);
            assert!(!err.message.contains("hunter2"), "the secret never appears in messages");
        }
        for secret in [r#"{"other": "hunter2"}"#, r#"{"api_key": 42}"#, r#"{"api_key": null}"#] {
            let err = extract(secret, Some("api_key"), ARN).unwrap_err();
            assert!(err.message.contains("no string field `api_key`"), "{}", err.message);
            assert!(!err.message.contains("hunter2"));
        }
        let err = extract(r#"{"api_key": ""}"#, Some("api_key"), ARN).unwrap_err();
        assert!(err.message.contains("field `api_key` of secret"), "{}", err.message);
    }
}

//! API keys: generated from the OS's randomness, shown once, stored as SHA-256.

use sha2::{Digest, Sha256};

/// A freshly issued API key. It is shown to the caller once and never stored.
pub struct TenantKey(String);

/// Random bytes in a key: 256 bits, well past the 128 that make guessing hopeless.
const KEY_BYTES: usize = 32;

impl TenantKey {
    /// A new key: `slk_` (so that secret scanners can spot leaked keys) and 64 hex digits.
    pub fn generate() -> Self {
        Self(format!("slk_{}", random_hex(KEY_BYTES)))
    }

    /// The key itself, for the one response that shows it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The SHA-256 (hex) that the store keeps instead of the key.
    pub fn hash(&self) -> String {
        hash_key(&self.0)
    }
}

impl std::fmt::Debug for TenantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TenantKey(<redacted>)")
    }
}

/// SHA-256 of a presented key, hex.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// `n` random bytes from the OS, as hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("the operating system provides randomness");
    hex::encode(bytes)
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new active tenant with a fresh API key (returned once, stored only as its hash) and a fresh
/// external id.
pub(super) fn new_tenant(name: &str, tier: super::model::Tier) -> (super::model::Tenant, TenantKey) {
    let key = TenantKey::generate();
    let tenant = super::model::Tenant {
        id: format!("ten_{}", random_hex(8)),
        name: name.to_string(),
        tier,
        status: super::model::TenantStatus::Active,
        quota_overrides: super::model::QuotaOverrides::default(),
        created_at: super::now_rfc3339(),
        key_hash: key.hash(),
        external_id: random_hex(16),
    };
    (tenant, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_hashed() {
        let (a, b) = (TenantKey::generate(), TenantKey::generate());
        assert_eq!(a.expose().len(), 4 + 2 * KEY_BYTES);
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.hash(), hash_key(a.expose()));
        assert!(!format!("{a:?}").contains(a.expose()));
        assert!(constant_time_eq(b"same", b"same") && !constant_time_eq(b"same", b"diff"));
    }
}

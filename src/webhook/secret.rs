//! Signing secrets: made here, shown to the integration once, stored encrypted (AES-256-GCM under
//! `CCC_WEBHOOK_KEY`, the endpoint's id as associated data, so a ciphertext moved to another row
//! does not decrypt).
//!
//! Stored as `v1:<key id>:<base64 of nonce and ciphertext>`, the key id being the first 8
//! hexadecimal digits of the key's SHA-256: a secret encrypted under a key named in
//! `CCC_WEBHOOK_PREVIOUS_KEYS` still decrypts, which is how the key is rotated (README, deploy
//! runbook): the new key and the old one as previous on every replica, `webhook reencrypt`, then
//! the old one dropped.

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// The prefix of a secret as the integration is given it (the Standard Webhooks convention).
pub const SECRET_PREFIX: &str = "whsec_";

/// A key that encrypts secrets at rest: 32 bytes. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookKey([u8; 32]);

impl std::fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookKey({})", self.id())
    }
}

impl WebhookKey {
    /// The key of `text`: 32 bytes, base64.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|_| "must be 32 bytes, base64".to_owned())?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "must be 32 bytes, base64".to_owned())?;
        Ok(Self(bytes))
    }

    /// A new random key.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The key, base64 (to write it down once, as `start-dev` does).
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    /// Names the key without telling it: 8 hexadecimal digits of its SHA-256.
    pub fn id(&self) -> String {
        let digest = Sha256::digest(self.0);
        digest[..4].iter().map(|b| format!("{b:02x}")).collect()
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.0.into())
    }
}

impl Serialize for WebhookKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for WebhookKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The keys secrets may still be encrypted under, read but never written with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreviousKeys(pub Vec<WebhookKey>);

impl Serialize for PreviousKeys {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let all: Vec<String> = self.0.iter().map(WebhookKey::to_base64).collect();
        s.serialize_str(&all.join(","))
    }
}

impl<'de> Deserialize<'de> for PreviousKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(WebhookKey::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

/// A secret that could not be decrypted: under a key this replica does not have, or altered.
#[derive(Debug, thiserror::Error)]
#[error("a webhook secret could not be decrypted ({0})")]
pub struct Undecryptable(&'static str);

/// Encrypts and decrypts the secrets of endpoints.
#[derive(Debug, Clone)]
pub struct SecretBox {
    key: WebhookKey,
    previous: Vec<WebhookKey>,
}

/// A new signing secret, as the integration is given it: `whsec_` and 32 random bytes, base64.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    format!("{SECRET_PREFIX}{}", B64.encode(bytes))
}

impl SecretBox {
    /// Encrypts under `key`; decrypts under it or any of `previous`.
    pub fn new(key: WebhookKey, previous: Vec<WebhookKey>) -> Self {
        Self { key, previous }
    }

    /// `secret` of endpoint `id`, as stored.
    pub fn seal(&self, id: &str, secret: &str) -> String {
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let payload = Payload {
            msg: secret.as_bytes(),
            aad: id.as_bytes(),
        };
        // Encryption fails only for a message longer than GCM allows (64 GiB).
        let sealed = self
            .key
            .cipher()
            .encrypt(&Nonce::from(nonce), payload)
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("v1:{}:{}", self.key.id(), B64.encode(out))
    }

    /// The secret of endpoint `id` from what is stored.
    pub fn open(&self, id: &str, stored: &str) -> Result<String, Undecryptable> {
        let mut parts = stored.splitn(3, ':');
        let (Some("v1"), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Undecryptable("unknown format"));
        };
        let key = std::iter::once(&self.key)
            .chain(&self.previous)
            .find(|k| k.id() == key_id)
            .ok_or(Undecryptable("encrypted under a key this replica does not have"))?;
        let bytes = B64.decode(body).map_err(|_| Undecryptable("not base64"))?;
        if bytes.len() < 12 {
            return Err(Undecryptable("too short"));
        }
        let (nonce, sealed) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| Undecryptable("too short"))?;
        let payload = Payload {
            msg: sealed,
            aad: id.as_bytes(),
        };
        let plain = key
            .cipher()
            .decrypt(&Nonce::from(nonce), payload)
            .map_err(|_| Undecryptable("altered, or another endpoint's"))?;
        String::from_utf8(plain).map_err(|_| Undecryptable("not text"))
    }

    /// Whether `stored` is encrypted under the current key (else `webhook reencrypt` renews it).
    pub fn is_current(&self, stored: &str) -> bool {
        stored.starts_with(&format!("v1:{}:", self.key.id()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_sealed_secret_opens_for_its_endpoint_only_and_under_a_previous_key() {
        let old = WebhookKey::generate();
        let sealed = SecretBox::new(old.clone(), vec![]).seal("ep_1", "whsec_abc");
        assert!(!sealed.contains("whsec_abc"));
        let rotated = SecretBox::new(WebhookKey::generate(), vec![old]);
        assert_eq!(rotated.open("ep_1", &sealed).unwrap(), "whsec_abc");
        assert!(!rotated.is_current(&sealed));
        assert!(rotated.open("ep_2", &sealed).is_err());
        let without = SecretBox::new(WebhookKey::generate(), vec![]);
        assert!(without.open("ep_1", &sealed).is_err());
    }

    #[test]
    fn a_key_is_32_bytes_of_base64_and_never_shown() {
        assert!(WebhookKey::parse("c2hvcnQ=").is_err());
        let key = WebhookKey::generate();
        let again = WebhookKey::parse(&key.to_base64()).unwrap();
        assert_eq!(key, again);
        assert!(!format!("{key:?}").contains(&key.to_base64()));
        assert!(new_secret().starts_with(SECRET_PREFIX));
        assert_eq!(B64.decode(&new_secret()[6..]).unwrap().len(), 32);
    }
}

//! IMS access-token verification, by the rules of `docs/ims.md`.
//!
//! RS256 only; key by `kid` (certificate fallback by `x5u`); `type == access_token`; expiry from
//! `created_at + expires_in` (strings of milliseconds); `created_at` not in the future; `as` equal to
//! the configured region where set; `client_id` among the accepted clients.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Deserializer};

use moka::sync::Cache;
use sha2::{Digest, Sha256};

use super::keys::{KeyError, KeySource, KeyStore};
use crate::domain::UserId;
use crate::error::RetryAfter;
use crate::ims::BearerToken;

/// Clock skew tolerated on `created_at` and on expiry.
pub const LEEWAY_MS: i64 = 60_000;
/// The longest lifetime accepted; IMS access tokens live 24 hours.
pub const MAX_LIFETIME_MS: i64 = 7 * 24 * 3_600_000;
/// Tokens longer than this are refused unread (an IMS access token is about 1.5 KiB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// A verified token is reused for at most this long (and never past its expiry), so a repeated
/// token does not pay for RSA again.
pub const VERIFIED_CACHE_TTL: Duration = Duration::from_secs(300);
/// At most this many verified tokens are kept (about 2 KiB each: 20 MiB at the most).
pub const VERIFIED_CACHE_CAPACITY: u64 = 10_000;

/// The `user_id` suffix of IMS technical accounts (the identity of service tokens).
pub const TECHNICAL_ACCOUNT_SUFFIX: &str = "@techacct.adobe.com";

/// Why an expired token is refused (401).
pub const EXPIRED: &str = "token has expired";

/// Why a token was refused. The message is sent to the caller: it never contains the token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Refused; the reason is safe to show.
    #[error("{0}")]
    Invalid(&'static str),
    /// The signing key is unknown and IMS could not be asked now; retry after the given seconds.
    #[error("IMS keys unavailable")]
    KeysUnavailable(RetryAfter),
}

/// A token that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// The IMS client the token was issued to.
    pub client_id: String,
    /// The user, for user tokens; `None` for service tokens.
    pub user_id: Option<UserId>,
    /// The granted scopes.
    pub scopes: Vec<String>,
    /// `created_at + expires_in`, in milliseconds since the epoch.
    pub expires_at_ms: i64,
    /// The token itself, to call IMS on the caller's behalf.
    pub bearer: BearerToken,
}

impl VerifiedToken {
    /// Whether the token's scope list holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Whether this is a service (client-credentials) token: no `user_id`, or a technical
    /// account's (`...@techacct.adobe.com`, the domain in any case, as domains are). Any other
    /// `user_id` is a person's.
    pub fn is_service(&self) -> bool {
        self.user_id.as_ref().is_none_or(|u| {
            let id = u.as_str();
            // `get`: no panic when the cut falls inside a multi-byte character.
            id.get(id.len().saturating_sub(TECHNICAL_ACCOUNT_SUFFIX.len())..)
                .is_some_and(|tail| tail.eq_ignore_ascii_case(TECHNICAL_ACCOUNT_SUFFIX))
        })
    }

    /// How long the token stays valid from now (zero if already past).
    pub fn remaining(&self) -> Duration {
        let ms = self.expires_at_ms.saturating_sub(now_ms());
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }
}

/// Verifies tokens. Shared by all workers.
pub struct TokenVerifier {
    keys: Arc<KeyStore>,
    verified: Cache<[u8; 32], Arc<CachedToken>>,
    client_ids: HashSet<String>,
    region: Option<String>,
    validation: Validation,
}

/// A verified token with the key that verified it.
struct CachedToken {
    token: Arc<VerifiedToken>,
    key: KeySource,
}

struct UntilExpiry;
impl moka::Expiry<[u8; 32], Arc<CachedToken>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _: &[u8; 32],
        v: &Arc<CachedToken>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(v.token.remaining().min(VERIFIED_CACHE_TTL))
    }
}

#[derive(Deserialize)]
struct ImsClaims {
    #[serde(rename = "type")]
    token_type: String,
    client_id: String,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(rename = "as", default)]
    region: Option<String>,
    #[serde(default)]
    scope: String,
    created_at: Millis,
    expires_in: Millis,
}

/// Milliseconds as IMS writes them: a string of digits (a JSON integer is also taken).
struct Millis(i64);

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw<'a> {
            Text(std::borrow::Cow<'a, str>),
            Int(i64),
        }
        let err = || serde::de::Error::custom("milliseconds must be a non-negative integer");
        match Raw::deserialize(d)? {
            Raw::Int(i) if i >= 0 => Ok(Millis(i)),
            Raw::Int(_) => Err(err()),
            Raw::Text(s) => {
                if s.is_empty() || s.len() > 15 || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err());
                }
                s.parse().map(Millis).map_err(|_| err())
            }
        }
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl TokenVerifier {
    /// A verifier accepting `client_ids`, checking `as` against `region` when set.
    pub fn new(keys: Arc<KeyStore>, client_ids: &[String], region: Option<String>) -> Self {
        let mut validation = Validation::new(Algorithm::RS256);
        // IMS tokens carry no exp/iat/iss/aud: expiry is checked below from created_at+expires_in.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let verified = Cache::builder()
            .max_capacity(VERIFIED_CACHE_CAPACITY)
            .expire_after(UntilExpiry)
            .build();
        Self {
            keys,
            verified,
            client_ids: client_ids.iter().cloned().collect(),
            region,
            validation,
        }
    }

    /// The key cache (for readiness and refresh).
    pub fn keys(&self) -> &Arc<KeyStore> {
        &self.keys
    }

    /// Verifies `raw` (the part after `Bearer `).
    /// A token verified before is taken from the cache (keyed by its SHA-256) while it is
    /// unexpired and its key is still published.
    pub async fn verify(&self, raw: &str) -> Result<Arc<VerifiedToken>, TokenError> {
        if raw.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Invalid("token too large"));
        }
        let digest: [u8; 32] = Sha256::digest(raw.as_bytes()).into();
        let lookups = &self.keys.metrics().token_cache;
        if let Some(hit) = self.verified.get(&digest) {
            if now_ms() <= hit.token.expires_at_ms + LEEWAY_MS && self.keys.still_valid(&hit.key).await {
                lookups.with_label_values(&["hit"]).inc();
                return Ok(hit.token.clone());
            }
            self.verified.invalidate(&digest);
        }
        lookups.with_label_values(&["miss"]).inc();
        // Boxed: the miss path (key lookup, maybe an IMS download) is a few KiB of future state
        // that every request's extractor would otherwise allocate, hit or not.
        let (token, key) = Box::pin(self.verify_uncached(raw)).await?;
        let token = Arc::new(token);
        self.verified.insert(
            digest,
            Arc::new(CachedToken {
                token: token.clone(),
                key,
            }),
        );
        Ok(token)
    }

    async fn verify_uncached(&self, raw: &str) -> Result<(VerifiedToken, KeySource), TokenError> {
        use TokenError::Invalid;
        let header = jsonwebtoken::decode_header(raw).map_err(|_| Invalid("malformed token"))?;
        if header.alg != Algorithm::RS256 {
            return Err(Invalid("token algorithm must be RS256"));
        }
        if header.crit.is_some() {
            return Err(Invalid("token has critical header parameters"));
        }
        let (key, source) = self
            .keys
            .key_for(header.kid.as_deref(), header.x5u.as_deref())
            .await
            .map_err(|e| match e {
                KeyError::Unknown => Invalid("token signed with an unknown key"),
                KeyError::Unavailable(_) => TokenError::KeysUnavailable(RetryAfter::KEYS_UNAVAILABLE),
                KeyError::Deferred => TokenError::KeysUnavailable(RetryAfter::KEYS_DEFERRED),
            })?;
        let data = jsonwebtoken::decode::<ImsClaims>(raw, &key, &self.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::InvalidSignature => Invalid("token signature is invalid"),
                K::InvalidAlgorithm => Invalid("token algorithm must be RS256"),
                K::Json(_) | K::MissingRequiredClaim(_) => Invalid("token claims are missing or malformed"),
                _ => Invalid("malformed token"),
            }
        })?;
        let claims = data.claims;
        if claims.token_type != "access_token" {
            return Err(Invalid("token type must be access_token"));
        }
        let now = now_ms();
        let created = claims.created_at.0;
        let lifetime = claims.expires_in.0;
        if created > now + LEEWAY_MS {
            return Err(Invalid("token created_at is in the future"));
        }
        if lifetime == 0 || lifetime > MAX_LIFETIME_MS {
            return Err(Invalid("token expires_in is out of range"));
        }
        let expires_at = created
            .checked_add(lifetime)
            .ok_or(Invalid("token expires_in is out of range"))?;
        if now > expires_at + LEEWAY_MS {
            return Err(Invalid(EXPIRED));
        }
        if let Some(region) = &self.region
            && claims.region.as_deref() != Some(region.as_str())
        {
            return Err(Invalid("token was issued by another IMS region"));
        }
        if !self.client_ids.contains(&claims.client_id) {
            return Err(Invalid("token client is not accepted"));
        }
        let user_id = match claims.user_id {
            Some(u) => Some(UserId::parse(&u).map_err(|_| Invalid("token user_id is malformed"))?),
            None => None,
        };
        let scopes = claims
            .scope
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let token = VerifiedToken {
            client_id: claims.client_id,
            user_id,
            scopes,
            expires_at_ms: expires_at,
            bearer: BearerToken::new(raw),
        };
        Ok((token, source))
    }
}

/// The token of an `Authorization: Bearer <token>` value, if the value is well formed (RFC 6750
/// `b64token`; the scheme is case-insensitive).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim_start_matches(' ');
    let ok = !token.is_empty()
        && token.len() <= MAX_TOKEN_BYTES
        && token.bytes().all(|b| B64TOKEN[usize::from(b)]);
    ok.then_some(token)
}

/// The bytes of RFC 6750's `b64token`, as a table: this check runs over every token of every
/// request (a kilobyte or more each).
static B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=');
        b += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_values_must_be_bearer_b64token() {
        assert_eq!(bearer_token("Bearer abc.def-_"), Some("abc.def-_"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer a b"), None);
        assert_eq!(bearer_token("Bearer a\"b"), None);
        assert_eq!(
            bearer_token(&format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1))),
            None
        );
    }

    #[test]
    fn millis_are_digit_strings_or_integers() {
        let parse = |v: serde_json::Value| serde_json::from_value::<Millis>(v).map(|m| m.0).ok();
        assert_eq!(parse(serde_json::json!("86400000")), Some(86_400_000));
        assert_eq!(parse(serde_json::json!(86400000)), Some(86_400_000));
        assert_eq!(parse(serde_json::json!("-1")), None);
        assert_eq!(parse(serde_json::json!(-1)), None);
        assert_eq!(parse(serde_json::json!("1e3")), None);
        assert_eq!(parse(serde_json::json!("99999999999999999999")), None);
        assert_eq!(parse(serde_json::json!("")), None);
        assert_eq!(parse(serde_json::json!(1.5)), None);
    }
}

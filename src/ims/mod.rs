//! The IMS client: keys, organizations and profile over reqwest, in the formats of `docs/ims.md`.
//!
//! Calls made with a caller's token are cached per token (keyed by a SHA-256 of it, never the token
//! itself) for at most [`USER_CACHE_TTL`] and never past the token's expiry; concurrent identical
//! lookups are coalesced into one IMS call. Switches bypass the cache: they act on what IMS says now.
//! Those user calls go through a circuit breaker ([`breaker`]): while IMS keeps failing they answer
//! 503 at once instead of each waiting out the timeout.

pub mod breaker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use reqwest::StatusCode;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use self::breaker::Breaker;
use crate::domain::{OrgId, UserId};

/// How long an org list or profile fetched with a user's token is reused.
pub const USER_CACHE_TTL: Duration = Duration::from_secs(60);
/// How many tokens' answers are cached at most (each entry is small).
const USER_CACHE_CAPACITY: u64 = 10_000;
/// IMS answers larger than this are refused (an org list is a few KiB).
const MAX_BODY_BYTES: usize = 1 << 20;

/// What an IMS call can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ImsError {
    /// IMS could not be reached, timed out, answered 5xx or 429: retry later.
    #[error("IMS unavailable: {reason}")]
    Unavailable {
        /// Seconds to wait (from IMS's `Retry-After` where it sent one).
        retry_after_secs: u64,
        /// What happened, for logs.
        reason: String,
    },
    /// IMS refused the caller's token (401/403).
    #[error("IMS rejected the token")]
    Rejected,
    /// IMS answered something that is not what `docs/ims.md` describes.
    #[error("unusable IMS response: {0}")]
    BadResponse(String),
}

/// One org from `/ims/organizations/v6`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImsOrg {
    /// `ident@authSrc`.
    pub org_id: OrgId,
    /// `orgName`.
    pub name: String,
    /// `orgType`.
    pub org_type: String,
    /// The idents of the caller's groups in this org.
    pub group_idents: Vec<String>,
}

/// The part of `/ims/profile/v1` the service relies on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImsProfile {
    /// `userId`: always present (a profile that does not say whose it is is refused as unusable).
    pub user_id: String,
    /// `projectedProductContext[].prodCtx`.
    pub product_contexts: Vec<ProductContext>,
}

/// One `prodCtx` of a profile.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProductContext {
    /// `serviceCode`.
    #[serde(rename = "serviceCode", default)]
    pub service_code: String,
    /// `owningEntity`: the org that owns the entitlement.
    #[serde(rename = "owningEntity", default)]
    pub owning_entity: String,
    /// `statusCode`.
    #[serde(rename = "statusCode", default)]
    pub status_code: String,
}

impl ImsProfile {
    /// Whether the profile holds an active entitlement in `org` with one of `service_codes`.
    /// Only `projectedProductContext` counts: `serviceAccounts` shows free accounts as active.
    pub fn entitled_in(&self, org: &OrgId, service_codes: &[String]) -> bool {
        self.product_contexts.iter().any(|p| {
            p.owning_entity == org.as_str()
                && p.status_code == "ACTIVE"
                && service_codes.contains(&p.service_code)
        })
    }
}

/// A JSON Web Key as `/ims/keys` lists it (only RSA keys are used).
#[derive(Debug, Clone, Deserialize)]
pub struct Jwk {
    /// Key id.
    #[serde(default)]
    pub kid: String,
    /// Key type; only `RSA` is used.
    #[serde(default)]
    pub kty: String,
    /// `use`, when given, must be `sig`.
    #[serde(rename = "use", default)]
    pub key_use: Option<String>,
    /// `alg`, when given, must be `RS256`.
    #[serde(default)]
    pub alg: Option<String>,
    /// Modulus, base64url.
    #[serde(default)]
    pub n: String,
    /// Exponent, base64url.
    #[serde(default)]
    pub e: String,
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct RawOrg {
    #[serde(rename = "orgRef")]
    org_ref: RawOrgRef,
    #[serde(rename = "orgName", default)]
    org_name: String,
    #[serde(rename = "orgType", default)]
    org_type: String,
    #[serde(default)]
    groups: Vec<RawGroup>,
}

#[derive(Deserialize)]
struct RawOrgRef {
    ident: String,
    #[serde(rename = "authSrc")]
    auth_src: String,
}

#[derive(Deserialize)]
struct RawGroup {
    #[serde(default)]
    ident: serde_json::Value,
}

#[derive(Deserialize)]
struct RawProfile {
    #[serde(rename = "userId", default)]
    user_id: Option<String>,
    #[serde(rename = "projectedProductContext", default)]
    projected: Vec<RawProjected>,
}

#[derive(Deserialize)]
struct RawProjected {
    #[serde(rename = "prodCtx")]
    prod_ctx: ProductContext,
}

/// Cached value with its own expiry (bounded by the token's life).
struct Timed<T> {
    value: Arc<T>,
    ttl: Duration,
}

// Not derived: cloning shares the Arc whatever T is.
impl<T> Clone for Timed<T> {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
            ttl: self.ttl,
        }
    }
}

struct PerEntryTtl;
impl<T> moka::Expiry<[u8; 32], Timed<T>> for PerEntryTtl {
    fn expire_after_create(&self, _: &[u8; 32], v: &Timed<T>, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// The IMS client. Cheap to clone.
#[derive(Clone)]
pub struct ImsClient {
    http: reqwest::Client,
    base: Arc<str>,
    orgs: Cache<[u8; 32], Timed<Vec<ImsOrg>>>,
    profiles: Cache<[u8; 32], Timed<ImsProfile>>,
    breaker: Arc<Breaker>,
}

impl std::fmt::Debug for ImsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImsClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// A caller's bearer token, passed through to IMS. Its `Debug` never shows it.
#[derive(Clone)]
pub struct BearerToken(Arc<str>);

impl BearerToken {
    /// Wraps a token already verified by the service.
    pub fn new(raw: &str) -> Self {
        Self(Arc::from(raw))
    }
    fn cache_key(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }
    /// The raw token, for an `Authorization` header and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl ImsClient {
    /// A client for the IMS at `base` (no trailing slash needed) with a per-call timeout.
    pub fn new(base: &str, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cc-connection/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base: Arc::from(base.trim_end_matches('/')),
            orgs: user_cache(),
            profiles: user_cache(),
            breaker: Arc::new(Breaker::new(5, Duration::from_secs(5))),
        })
    }

    /// The same client with a circuit breaker of its own for the user calls: open after
    /// `failures` consecutive failures, for `cool_down`.
    pub fn with_breaker(mut self, failures: u32, cool_down: Duration) -> Self {
        self.breaker = Arc::new(Breaker::new(failures, cool_down));
        self
    }

    /// The circuit breaker of the user calls.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// The IMS base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET {ims}/ims/keys`.
    pub async fn keys(&self) -> Result<Vec<Jwk>, ImsError> {
        let url = format!("{}/ims/keys", self.base);
        let body = self.get_bytes(&url, None).await?;
        let set: JwkSet =
            serde_json::from_slice(&body).map_err(|e| ImsError::BadResponse(format!("keys: {e}")))?;
        Ok(set.keys)
    }

    /// Downloads the certificate `name` from the configured certificate base URL.
    pub async fn certificate(&self, base: &str, name: &str) -> Result<Vec<u8>, ImsError> {
        self.get_bytes(&format!("{base}{name}"), None).await
    }

    /// The caller's orgs. `fresh` bypasses (and refreshes) the cache.
    pub async fn organizations(
        &self,
        token: &BearerToken,
        remaining: Duration,
        fresh: bool,
    ) -> Result<Arc<Vec<ImsOrg>>, ImsError> {
        let fetch = async {
            let url = format!("{}/ims/organizations/v6", self.base);
            let body = self.user_call(&url, token).await?;
            let raw: Vec<RawOrg> = serde_json::from_slice(&body)
                .map_err(|e| ImsError::BadResponse(format!("organizations: {e}")))?;
            Ok(Timed {
                value: Arc::new(parse_orgs(raw)),
                ttl: USER_CACHE_TTL.min(remaining),
            })
        };
        cached(&self.orgs, token.cache_key(), fresh, fetch).await
    }

    /// The caller's profile. `fresh` bypasses (and refreshes) the cache.
    pub async fn profile(
        &self,
        token: &BearerToken,
        remaining: Duration,
        fresh: bool,
    ) -> Result<Arc<ImsProfile>, ImsError> {
        let fetch = async {
            let url = format!("{}/ims/profile/v1", self.base);
            let body = self.user_call(&url, token).await?;
            let raw: RawProfile =
                serde_json::from_slice(&body).map_err(|e| ImsError::BadResponse(format!("profile: {e}")))?;
            // A profile that does not say whose it is proves nothing about anyone's entitlements:
            // an IMS error, not an answer about this user.
            let user_id = raw
                .user_id
                .filter(|u| !u.is_empty())
                .ok_or_else(|| ImsError::BadResponse("profile: no userId".to_owned()))?;
            let profile = ImsProfile {
                user_id,
                product_contexts: raw.projected.into_iter().map(|p| p.prod_ctx).collect(),
            };
            Ok(Timed {
                value: Arc::new(profile),
                ttl: USER_CACHE_TTL.min(remaining),
            })
        };
        cached(&self.profiles, token.cache_key(), fresh, fetch).await
    }

    /// A GET with the caller's token, through the circuit breaker: refused at once while it is open.
    async fn user_call(&self, url: &str, token: &BearerToken) -> Result<Vec<u8>, ImsError> {
        let permit = self.breaker.admit().await.map_err(|wait| ImsError::Unavailable {
            retry_after_secs: crate::ratelimit::retry_after_secs(wait),
            reason: "circuit open after repeated IMS failures".to_owned(),
        })?;
        let result = self.get_bytes(url, Some(token)).await;
        match &result {
            // IMS's own 429 is an answer, quickly given: not a reason to stop asking it.
            Err(ImsError::Unavailable { reason, .. }) if !reason.starts_with("429") => permit.failed(),
            _ => permit.succeeded(),
        }
        result
    }

    /// One GET with a bounded retry: a second try after a short pause when IMS was unreachable or
    /// answered 5xx (not on 429, whose `Retry-After` is passed on, nor on 4xx).
    async fn get_bytes(&self, url: &str, token: Option<&BearerToken>) -> Result<Vec<u8>, ImsError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.get_once(url, token).await {
                Err(ImsError::Unavailable {
                    retry_after_secs,
                    reason,
                }) if attempt < 2 && !reason.starts_with("429") => {
                    tracing::debug!(%reason, retry_after_secs, "IMS call failed; retrying once");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    async fn get_once(&self, url: &str, token: Option<&BearerToken>) -> Result<Vec<u8>, ImsError> {
        let started = Instant::now();
        let result = self.get_once_unmeasured(url, token).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(ImsError::Rejected) => "rejected",
            Err(ImsError::Unavailable { .. }) => "unavailable",
            Err(ImsError::BadResponse(_)) => "bad_response",
        };
        let endpoint = url
            .strip_prefix(&*self.base)
            .filter(|p| p.starts_with("/ims/"))
            .unwrap_or("/keys/*");
        crate::metrics::metrics()
            .ims_calls
            .with_label_values(&[endpoint, outcome])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    async fn get_once_unmeasured(&self, url: &str, token: Option<&BearerToken>) -> Result<Vec<u8>, ImsError> {
        let started = Instant::now();
        let mut req = self.http.get(url);
        if let Some(t) = token {
            req = req.bearer_auth(t.expose());
        }
        let unavailable = |reason: String| ImsError::Unavailable {
            retry_after_secs: 5,
            reason,
        };
        let res = req.send().await.map_err(|e| {
            unavailable(if e.is_timeout() {
                "timeout".to_owned()
            } else {
                "unreachable".to_owned()
            })
        })?;
        let status = res.status();
        let path = res.url().path().to_owned();
        tracing::debug!(path = %path, status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "IMS call");
        match status {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Err(ImsError::Rejected),
            StatusCode::TOO_MANY_REQUESTS => {
                let secs = res
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(5)
                    .clamp(1, 300);
                return Err(ImsError::Unavailable {
                    retry_after_secs: secs,
                    reason: "429 from IMS".to_owned(),
                });
            }
            s if s.is_server_error() => {
                return Err(unavailable(format!("{} from IMS", s.as_u16())));
            }
            s => {
                return Err(ImsError::BadResponse(format!(
                    "status {} from {path}",
                    s.as_u16()
                )));
            }
        }
        if res.content_length().is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(ImsError::BadResponse("body too large".to_owned()));
        }
        let body = res
            .bytes()
            .await
            .map_err(|_| unavailable("body read failed".to_owned()))?;
        if body.len() > MAX_BODY_BYTES {
            return Err(ImsError::BadResponse("body too large".to_owned()));
        }
        Ok(body.to_vec())
    }
}

fn user_cache<T: Send + Sync + 'static>() -> Cache<[u8; 32], Timed<T>> {
    Cache::builder()
        .max_capacity(USER_CACHE_CAPACITY)
        .expire_after(PerEntryTtl)
        .build()
}

async fn cached<T: Send + Sync + 'static>(
    cache: &Cache<[u8; 32], Timed<T>>,
    key: [u8; 32],
    fresh: bool,
    fetch: impl std::future::Future<Output = Result<Timed<T>, ImsError>>,
) -> Result<Arc<T>, ImsError> {
    if fresh {
        let timed = fetch.await?;
        let value = timed.value.clone();
        cache.insert(key, timed).await;
        return Ok(value);
    }
    cache
        .try_get_with(key, fetch)
        .await
        .map(|t| t.value)
        .map_err(|e| (*e).clone())
}

fn parse_orgs(raw: Vec<RawOrg>) -> Vec<ImsOrg> {
    raw.into_iter()
        .filter_map(|o| {
            // An org whose id is not of the documented form cannot be connected; skip it.
            let org_id = OrgId::from_org_ref(&o.org_ref.ident, &o.org_ref.auth_src)?;
            let group_idents = o
                .groups
                .into_iter()
                .filter_map(|g| match g.ident {
                    serde_json::Value::String(s) => Some(s),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect();
            Some(ImsOrg {
                org_id,
                name: o.org_name,
                org_type: o.org_type,
                group_idents,
            })
        })
        .collect()
}

/// Whether `user` (by the profile IMS returned for the token) is who the token says; a mismatch
/// means IMS and the token disagree, which the service treats as a rejected token.
pub fn profile_matches(profile: &ImsProfile, user: &UserId) -> bool {
    profile.user_id == user.as_str()
}

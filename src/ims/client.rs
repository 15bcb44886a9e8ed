//! The IMS calls over HTTP: a bounded retry, the circuit breaker on user calls, metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tracing::Instrument as _;

use super::breaker::Breaker;
use super::cache::{Freshness, RefusedTokens, UserCache};
use super::wire::{self, ImsOrg, ImsProfile, Jwk};
use super::{BearerToken, ImsError, Unavailability};
use crate::config;
use crate::metrics::Metrics;

/// IMS answers larger than this are refused (an org list is a few KiB).
const MAX_BODY_BYTES: usize = 1 << 20;

/// The IMS client. Cheap to clone.
#[derive(Clone)]
pub struct ImsClient {
    http: reqwest::Client,
    base: Arc<str>,
    orgs: UserCache<Vec<ImsOrg>>,
    profiles: UserCache<ImsProfile>,
    refused: RefusedTokens,
    breaker: Arc<Breaker>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for ImsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImsClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl ImsClient {
    /// A client for the IMS at `base` (no trailing slash needed) with a per-call timeout and the
    /// configuration's default circuit breaker.
    pub fn new(base: &str, timeout: Duration) -> Result<Self, reqwest::Error> {
        Self::with_breaker(
            base,
            timeout,
            config::DEFAULT_IMS_BREAKER_FAILURES,
            config::DEFAULT_IMS_BREAKER_COOLDOWN,
            &Arc::default(),
        )
    }

    /// Like [`ImsClient::new`], with a circuit breaker for the user calls that opens after
    /// `failures` consecutive failures, for `cool_down`; its calls counted in `metrics`.
    pub fn with_breaker(
        base: &str,
        timeout: Duration,
        failures: u32,
        cool_down: Duration,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cc-connection/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base: Arc::from(base.trim_end_matches('/')),
            orgs: UserCache::new(),
            profiles: UserCache::new(),
            refused: RefusedTokens::new(),
            breaker: Arc::new(Breaker::new(failures, cool_down, metrics.clone())),
            metrics: metrics.clone(),
        })
    }

    /// Where this client's calls, and the key and token caches built on it, are counted.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
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
        wire::parse_keys(&body)
    }

    /// Downloads the certificate `name` from the configured certificate base URL.
    pub async fn certificate(&self, base: &str, name: &str) -> Result<Vec<u8>, ImsError> {
        self.get_bytes(&format!("{base}{name}"), None).await
    }

    /// The caller's orgs, from the cache if `freshness` allows.
    pub async fn organizations(
        &self,
        token: &BearerToken,
        remaining: Duration,
        freshness: Freshness,
    ) -> Result<Arc<Vec<ImsOrg>>, ImsError> {
        let fetch = async {
            let url = format!("{}/ims/organizations/v6", self.base);
            wire::parse_orgs(&self.user_call(&url, token).await?)
        };
        self.orgs.get(token, remaining, freshness, fetch).await
    }

    /// Whether a cached lookup of the caller's orgs would be answered without asking IMS: the list
    /// is cached, or IMS refused the token lately.
    pub fn organizations_known(&self, token: &BearerToken) -> bool {
        self.refused.contains(token) || self.orgs.contains(token)
    }

    /// The caller's profile, from the cache if `freshness` allows.
    pub async fn profile(
        &self,
        token: &BearerToken,
        remaining: Duration,
        freshness: Freshness,
    ) -> Result<Arc<ImsProfile>, ImsError> {
        let fetch = async {
            let url = format!("{}/ims/profile/v1", self.base);
            wire::parse_profile(&self.user_call(&url, token).await?)
        };
        self.profiles.get(token, remaining, freshness, fetch).await
    }

    /// The caller's orgs and profile, asked for at once (the org picker and a switch need both);
    /// each answer on its own, so the caller decides which failure counts first.
    pub async fn orgs_and_profile(
        &self,
        token: &BearerToken,
        remaining: Duration,
        freshness: Freshness,
    ) -> (
        Result<Arc<Vec<ImsOrg>>, ImsError>,
        Result<Arc<ImsProfile>, ImsError>,
    ) {
        tokio::join!(
            self.organizations(token, remaining, freshness),
            self.profile(token, remaining, freshness),
        )
    }

    /// A GET with the caller's token, through the circuit breaker: refused at once while it is open,
    /// and from memory for a token IMS refused within the last [`super::cache::REFUSED_TOKEN_TTL`].
    async fn user_call(&self, url: &str, token: &BearerToken) -> Result<Vec<u8>, ImsError> {
        if self.refused.contains(token) {
            return Err(ImsError::Rejected);
        }
        let permit = self.breaker.admit().await.map_err(|wait| ImsError::Unavailable {
            retry_after_secs: crate::error::RetryAfter::after(wait).as_secs(),
            cause: Unavailability::CircuitOpen,
        })?;
        let result = self.get_bytes(url, Some(token)).await;
        match &result {
            // IMS's own 429 is an answer, quickly given: not a reason to stop asking it.
            Err(ImsError::Unavailable { cause, .. }) if *cause != Unavailability::RateLimited => {
                permit.failed()
            }
            _ => permit.succeeded(),
        }
        if matches!(result, Err(ImsError::Rejected)) {
            self.refused.insert(token);
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
                    cause,
                }) if attempt < 2 && cause != Unavailability::RateLimited => {
                    tracing::debug!(reason = %cause, retry_after_secs, "IMS call failed; retrying once");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    async fn get_once(&self, url: &str, token: Option<&BearerToken>) -> Result<Vec<u8>, ImsError> {
        let started = Instant::now();
        let endpoint = url
            .strip_prefix(&*self.base)
            .filter(|p| p.starts_with("/ims/"))
            .unwrap_or("/keys/*");
        let span = crate::telemetry::ims_call_span(endpoint, url);
        let result = self
            .get_once_unmeasured(url, token)
            .instrument(span.clone())
            .await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(ImsError::Rejected) => "rejected",
            Err(ImsError::Unavailable { .. }) => "unavailable",
            Err(ImsError::BadResponse(_)) => "bad_response",
        };
        crate::telemetry::end_ims_call_span(&span, outcome);
        self.metrics
            .ims_calls
            .with_label_values(&[endpoint, outcome])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    async fn get_once_unmeasured(&self, url: &str, token: Option<&BearerToken>) -> Result<Vec<u8>, ImsError> {
        let started = Instant::now();
        let mut req = self.http.get(url);
        for (name, value) in crate::telemetry::outgoing_trace_headers() {
            req = req.header(name, value);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t.expose());
        }
        let unavailable = |cause: Unavailability| ImsError::Unavailable {
            retry_after_secs: 5,
            cause,
        };
        let res = req.send().await.map_err(|e| {
            unavailable(if e.is_timeout() {
                Unavailability::Timeout
            } else {
                Unavailability::Unreachable
            })
        })?;
        let status = res.status();
        crate::telemetry::note_response_status(status.as_u16());
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
                    cause: Unavailability::RateLimited,
                });
            }
            s if s.is_server_error() => {
                return Err(unavailable(Unavailability::ServerError(s.as_u16())));
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
            .map_err(|_| unavailable(Unavailability::BodyReadFailed))?;
        if body.len() > MAX_BODY_BYTES {
            return Err(ImsError::BadResponse("body too large".to_owned()));
        }
        Ok(body.to_vec())
    }
}

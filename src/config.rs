//! Configuration: built once at start from defaults and the environment, validated, then passed
//! around as data (`Arc<Config>`).
//!
//! Names are an interface (the README's configuration table): `DATABASE_URL` and `CCC_*` variables.

use std::net::SocketAddr;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Serialized};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

/// Which command the configuration is for: their defaults differ (the README's configuration table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `start-dev`: SQLite under `./data/`, the built-in development IMS, pretty logs.
    Dev,
    /// `serve` (and `migrate`, `tenant`): production defaults; required settings must be given.
    Serve,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (production).
    Json,
    /// Human-readable lines (development).
    Pretty,
}

/// What a request's trace does with the caller's `traceparent` (`CCC_TRACE_INCOMING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceIncoming {
    /// Continue the caller's trace (an end-to-end trace: the default).
    #[default]
    Continue,
    /// Start a trace of our own, linked to the caller's: for callers that are not trusted to pick
    /// our trace ids or our sampling.
    Link,
}

/// Where the IMS is (`CCC_IMS_URL`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ImsEndpoint {
    /// Unset: `start-dev` starts the built-in development IMS (`serve` refuses to start).
    #[default]
    Dev,
    /// The IMS at this base URL (https, or http on loopback only).
    Url(Url),
}

impl Serialize for ImsEndpoint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Dev => s.serialize_none(),
            Self::Url(url) => s.serialize_str(url.as_str()),
        }
    }
}

impl<'de> Deserialize<'de> for ImsEndpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(opt_url(d)?.map_or(Self::Dev, Self::Url))
    }
}

/// The validated configuration of one process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// `DATABASE_URL`: a `sqlite:` or `postgres:` URL.
    #[serde(default, deserialize_with = "opt_string")]
    pub database_url: Option<String>,
    /// `CCC_LISTEN`: the listen address.
    pub listen: SocketAddr,
    /// `CCC_IMS_URL`: IMS base URL (https, or http on loopback only); unset in `start-dev`: start
    /// the built-in development IMS.
    #[serde(default)]
    pub ims_url: ImsEndpoint,
    /// `CCC_CLIENT_IDS`: token `client_id`s accepted at all, comma-separated.
    #[serde(default, deserialize_with = "list")]
    pub client_ids: Vec<String>,
    /// `CCC_INTEGRATION_CLIENT_IDS`: clients whose service tokens may read any tenant's connection.
    #[serde(default, deserialize_with = "list")]
    pub integration_client_ids: Vec<String>,
    /// `CCC_PROVISIONING_CLIENT_IDS`: clients whose service tokens may register, update, list and
    /// remove tenants over the API (`/tenants`); empty: no one may. Their tokens are accepted
    /// whether or not `CCC_CLIENT_IDS` lists them.
    #[serde(default, deserialize_with = "list")]
    pub provisioning_client_ids: Vec<String>,
    /// `CCC_PROVISIONING_SCOPE`: the scope a provisioning client must hold.
    #[serde(deserialize_with = "string")]
    pub provisioning_scope: String,
    /// `CCC_ADMIN_SCOPE`: the scope an administrator's client must hold to switch.
    #[serde(deserialize_with = "string")]
    pub admin_scope: String,
    /// `CCC_READ_SCOPE`: the scope an integration client must hold to read.
    #[serde(deserialize_with = "string")]
    pub read_scope: String,
    /// `CCC_IMS_REGION`: the `as` claim required of tokens; empty: not checked.
    #[serde(default, deserialize_with = "opt_string")]
    pub ims_region: Option<String>,
    /// `CCC_CC_SERVICE_CODES`: `serviceCode`s that count as a Creative Cloud entitlement.
    #[serde(default, deserialize_with = "list")]
    pub cc_service_codes: Vec<String>,
    /// `CCC_IMS_CERT_URL`: base URL of `x5u` certificates (fallback when the JWKS lacks a `kid`).
    #[serde(default, deserialize_with = "opt_url", serialize_with = "ser_opt_url")]
    pub ims_cert_url: Option<Url>,
    /// `CCC_IMS_CERT_NAME_PREFIX`: the start of every certificate name of the configured IMS; a
    /// token naming another `x5u` is refused without a download. Unset: derived from
    /// `CCC_IMS_REGION` (`ims-na1` -> `ims_na1-key-`), not checked without a region.
    #[serde(default, deserialize_with = "opt_string")]
    pub ims_cert_name_prefix: Option<String>,
    /// `CCC_LOG_FORMAT`: `json` or `pretty`.
    pub log_format: LogFormat,
    /// `CCC_TRACE_INCOMING`: `continue` (a request's span continues the caller's `traceparent`)
    /// or `link` (it starts a trace of its own, linked to the caller's). Traces on only.
    #[serde(default)]
    pub trace_incoming: TraceIncoming,
    /// `CCC_DB_MAX_CONNECTIONS`: size of the database pool.
    pub db_max_connections: u32,
    /// `CCC_DB_CONNECT_TIMEOUT_MS`: how long a request waits for a database connection, a pooled
    /// one or a new one opened (connecting included), in milliseconds.
    pub db_connect_timeout_ms: u64,
    /// `CCC_DB_STATEMENT_TIMEOUT_MS`: PostgreSQL statement timeout; the same plus half a second
    /// bounds each statement and each commit on our side (at least 1).
    pub db_statement_timeout_ms: u64,
    /// `CCC_DB_MIGRATION_TIMEOUT_MS`: how long applying the migrations may take in all (`serve`
    /// with `CCC_MIGRATE`, and `migrate`), the migration lock's wait included; then it fails.
    pub db_migration_timeout_ms: u64,
    /// `CCC_DB_LISTENER_TIMEOUT_MS`: how long the PostgreSQL change listener may go without
    /// hearing its own heartbeat (sent every third of this) before it is replaced.
    pub db_listener_timeout_ms: u64,
    /// `CCC_DB_READ_BATCH_SIZE`: most distinct tenants one batched read query fetches.
    pub db_read_batch_size: usize,
    /// `CCC_DB_READ_BATCHES_IN_FLIGHT`: most batched read queries at once (each holds a pooled
    /// connection; capped at the pool size less one, so switches always find one).
    pub db_read_batches_in_flight: usize,
    /// `CCC_IMS_TIMEOUT_MS`: the whole-request timeout of one IMS call.
    pub ims_timeout_ms: u64,
    /// `CCC_MIGRATE`: whether `serve` applies pending migrations at start (`false` when a separate
    /// `cc-connection migrate` step does it).
    pub migrate: bool,
    /// `CCC_IMS_RATE_PER_MINUTE`: IMS-bound requests (switch, disconnect, org listing) one user may
    /// make per minute on average, per replica; 0: no limit.
    pub ims_rate_per_minute: u32,
    /// `CCC_IMS_RATE_BURST`: how many of those a user may make at once.
    pub ims_rate_burst: u32,
    /// `CCC_IMS_BREAKER_FAILURES`: consecutive failed IMS user calls (timeout, unreachable, 5xx)
    /// after which the circuit opens and they answer 503 at once.
    pub ims_breaker_failures: u32,
    /// `CCC_IMS_BREAKER_COOLDOWN_MS`: how long an open circuit refuses before it lets one trial call
    /// through.
    pub ims_breaker_cooldown_ms: u64,
    /// `CCC_OPS_LISTEN`: a second listen address for `/metrics` and the probes; unset: they are
    /// served on `CCC_LISTEN`.
    #[serde(default, deserialize_with = "opt_addr")]
    pub ops_listen: Option<SocketAddr>,
    /// `CCC_MAX_WATCHERS`: requests that may wait for a change (`?wait=`) at once on this replica;
    /// beyond it a watch answers at once, as a plain read.
    pub max_watchers: usize,
    /// `CCC_REQUEST_BODY_TIMEOUT_MS`: how long a request's body may take to arrive once its headers
    /// have; then 408 `request-timeout`.
    #[serde(default = "default_request_body_timeout_ms")]
    pub request_body_timeout_ms: u64,
    /// `CCC_MAX_WATCHERS_PER_CALLER`: watches one caller (a user, or a service token's client) may
    /// hold at once on this replica; beyond it their watch answers at once.
    pub max_watchers_per_caller: usize,
    /// `CCC_MAX_WATCHERS_PER_TENANT`: watches of one tenant held at once on this replica; beyond it
    /// a watch of that tenant answers at once.
    pub max_watchers_per_tenant: usize,
    /// `CCC_FEED_HEARTBEAT_MS`: how long a change feed stream (Server-Sent Events) goes without a
    /// change before it sends `event: position`.
    pub feed_heartbeat_ms: u64,
    /// `CCC_FEED_BUFFER`: changes this replica's feed broadcast holds for its Server-Sent Events
    /// subscribers (one that falls further behind is closed; it resumes from its last id), and
    /// the latest changes its tail keeps to answer held long polls from.
    pub feed_buffer: usize,
    /// `CCC_WEBHOOK_KEY`: 32 bytes, base64: encrypts webhook secrets at rest; unset: webhooks are
    /// off (their operations answer 503 `webhooks-unavailable`, nothing is delivered).
    #[serde(default)]
    pub webhook_key: Option<crate::webhook::WebhookKey>,
    /// `CCC_WEBHOOK_PREVIOUS_KEYS`: keys secrets may still be encrypted under (comma-separated,
    /// base64), read but never written: the key rotation path (`webhook reencrypt`).
    #[serde(default)]
    pub webhook_previous_keys: crate::webhook::PreviousKeys,
    /// `CCC_WEBHOOK_ALLOW_INSECURE`: endpoints may be `http` on loopback.
    #[serde(default)]
    pub webhook_allow_insecure: bool,
    /// `CCC_WEBHOOK_ALLOW_PRIVATE`: endpoints may resolve to loopback, private, link-local,
    /// unique-local, multicast and metadata addresses.
    #[serde(default)]
    pub webhook_allow_private: bool,
    /// `CCC_WEBHOOK_MAX_ENDPOINTS`: webhook endpoints one integration may have.
    #[serde(default = "default_webhook_max_endpoints")]
    pub webhook_max_endpoints: usize,
    /// `CCC_WEBHOOK_TIMEOUT_MS`: the whole-request timeout of one delivery attempt.
    #[serde(default = "default_webhook_timeout_ms")]
    pub webhook_timeout_ms: u64,
    /// `CCC_WEBHOOK_LEASE_MS`: how long a replica holds an endpoint it delivers to without renewing
    /// it; a replica that dies is replaced within this and one sweep (a fifth of it).
    #[serde(default = "default_webhook_lease_ms")]
    pub webhook_lease_ms: u64,
    /// `CCC_WEBHOOK_RETRY_SCHEDULE_MS`: the waits before each retry, in milliseconds
    /// (comma-separated), each given ±20% jitter; after the last the endpoint is disabled.
    #[serde(default = "default_webhook_retry_schedule_ms", deserialize_with = "ms_list")]
    pub webhook_retry_schedule_ms: Vec<u64>,
    /// `CCC_WEBHOOK_MAX_DELIVERING`: endpoints one replica delivers to at once (one task each);
    /// the others wait for a replica with room.
    #[serde(default = "default_webhook_max_delivering")]
    pub webhook_max_delivering: usize,
}

/// The default of `CCC_WEBHOOK_MAX_ENDPOINTS`.
pub const DEFAULT_WEBHOOK_MAX_ENDPOINTS: usize = 10;

fn default_webhook_max_endpoints() -> usize {
    DEFAULT_WEBHOOK_MAX_ENDPOINTS
}

fn default_webhook_timeout_ms() -> u64 {
    10_000
}

fn default_webhook_lease_ms() -> u64 {
    25_000
}

/// About 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (the contract's schedule).
fn default_webhook_retry_schedule_ms() -> Vec<u64> {
    [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000]
        .iter()
        .map(|s| s * 1_000)
        .collect()
}

fn default_webhook_max_delivering() -> usize {
    1_000
}

/// The default of `CCC_PROVISIONING_SCOPE`.
pub const DEFAULT_PROVISIONING_SCOPE: &str = "aem_assets.cc_connection.provision";

/// The default of `CCC_DB_MAX_CONNECTIONS`; also [`crate::store::DbOptions`]'s.
pub const DEFAULT_DB_MAX_CONNECTIONS: u32 = 10;
/// The default of `CCC_DB_CONNECT_TIMEOUT_MS`; also [`crate::store::DbOptions`]'s.
pub const DEFAULT_DB_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The default of `CCC_DB_STATEMENT_TIMEOUT_MS`; also [`crate::store::DbOptions`]'s.
pub const DEFAULT_DB_STATEMENT_TIMEOUT_MS: u64 = 5_000;
/// The default of `CCC_DB_MIGRATION_TIMEOUT_MS`: ten minutes (DDL on a large table takes long).
pub const DEFAULT_DB_MIGRATION_TIMEOUT_MS: u64 = 600_000;
/// The default of `CCC_DB_READ_BATCH_SIZE`; also [`crate::store::DbOptions`]'s.
pub const DEFAULT_DB_READ_BATCH_SIZE: usize = 256;
/// The default of `CCC_DB_READ_BATCHES_IN_FLIGHT`; also [`crate::store::DbOptions`]'s.
pub const DEFAULT_DB_READ_BATCHES_IN_FLIGHT: usize = 2;
/// The default of `CCC_IMS_BREAKER_FAILURES`; also [`crate::ims::ImsClient::new`]'s.
pub const DEFAULT_IMS_BREAKER_FAILURES: u32 = 5;
/// The default of `CCC_IMS_BREAKER_COOLDOWN_MS`; also [`crate::ims::ImsClient::new`]'s.
pub const DEFAULT_IMS_BREAKER_COOLDOWN: Duration = Duration::from_secs(5);

/// The default cap on watchers per replica (`CCC_MAX_WATCHERS`), sized to the pod of
/// `deploy/k8s` (memory limit 256 MiB): a held watch costs about 23 KiB (10,000 held watches,
/// 255 MiB RSS, `BENCH_SECONDS=5 target/release/examples/bench_watch`, actix-http as published), so
/// 6,000 take about 135 MiB, leaving the rest to the process's baseline (about 30 MiB) and to
/// requests, caches and the pool.
pub const DEFAULT_MAX_WATCHERS: usize = 6_000;

/// The default cap on watchers of one caller per replica (`CCC_MAX_WATCHERS_PER_CALLER`): no
/// caller takes more than a twelfth of the replica's.
pub const DEFAULT_MAX_WATCHERS_PER_CALLER: usize = 500;

/// The default cap on watchers of one tenant per replica (`CCC_MAX_WATCHERS_PER_TENANT`): no
/// tenant takes more than a third of the replica's.
pub const DEFAULT_MAX_WATCHERS_PER_TENANT: usize = 2_000;

/// The default of `CCC_REQUEST_BODY_TIMEOUT_MS`: a switch body is under 100 bytes.
pub const DEFAULT_REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(10);

fn default_request_body_timeout_ms() -> u64 {
    DEFAULT_REQUEST_BODY_TIMEOUT.as_millis() as u64
}

/// A configuration that cannot be used, said in one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required setting is missing.
    #[error("{0} is required (see README, Configuration)")]
    Missing(&'static str),
    /// A setting has a value that cannot be used.
    #[error("{name}: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Why.
        reason: String,
    },
}

impl Config {
    /// Defaults of a mode, before the environment is applied. Those of `Dev` name no IMS, client or
    /// region: the command that starts the development IMS adds its own (`cli::dev_defaults`).
    pub fn defaults(mode: Mode) -> Self {
        let dev = mode == Mode::Dev;
        Self {
            database_url: dev.then(|| "sqlite://./data/cc-connection.db?mode=rwc".to_owned()),
            listen: if dev {
                ([127, 0, 0, 1], 8080).into()
            } else {
                ([0, 0, 0, 0], 8080).into()
            },
            ims_url: if dev {
                ImsEndpoint::Dev
            } else {
                ImsEndpoint::Url(known_url("https://ims-na1.adobelogin.com"))
            },
            client_ids: Vec::new(),
            integration_client_ids: Vec::new(),
            provisioning_client_ids: Vec::new(),
            provisioning_scope: DEFAULT_PROVISIONING_SCOPE.to_owned(),
            admin_scope: "aem_assets.cc_connection.admin".to_owned(),
            read_scope: "aem_assets.cc_connection.read".to_owned(),
            ims_region: (!dev).then(|| "ims-na1".to_owned()),
            cc_service_codes: vec!["creative_cloud".to_owned()],
            ims_cert_url: (!dev).then(|| known_url("https://static.adobelogin.com/keys/prod/")),
            ims_cert_name_prefix: None,
            log_format: if dev { LogFormat::Pretty } else { LogFormat::Json },
            trace_incoming: TraceIncoming::Continue,
            db_max_connections: DEFAULT_DB_MAX_CONNECTIONS,
            db_connect_timeout_ms: DEFAULT_DB_CONNECT_TIMEOUT.as_millis() as u64,
            db_statement_timeout_ms: DEFAULT_DB_STATEMENT_TIMEOUT_MS,
            db_migration_timeout_ms: DEFAULT_DB_MIGRATION_TIMEOUT_MS,
            db_listener_timeout_ms: 3_000,
            db_read_batch_size: DEFAULT_DB_READ_BATCH_SIZE,
            db_read_batches_in_flight: DEFAULT_DB_READ_BATCHES_IN_FLIGHT,
            ims_timeout_ms: 5_000,
            migrate: true,
            ims_rate_per_minute: 60,
            ims_rate_burst: 30,
            ims_breaker_failures: DEFAULT_IMS_BREAKER_FAILURES,
            ims_breaker_cooldown_ms: DEFAULT_IMS_BREAKER_COOLDOWN.as_millis() as u64,
            ops_listen: None,
            max_watchers: DEFAULT_MAX_WATCHERS,
            request_body_timeout_ms: default_request_body_timeout_ms(),
            max_watchers_per_caller: DEFAULT_MAX_WATCHERS_PER_CALLER,
            max_watchers_per_tenant: DEFAULT_MAX_WATCHERS_PER_TENANT,
            feed_heartbeat_ms: 15_000,
            feed_buffer: 4_096,
            webhook_key: None,
            webhook_previous_keys: crate::webhook::PreviousKeys::default(),
            webhook_allow_insecure: false,
            webhook_allow_private: false,
            webhook_max_endpoints: DEFAULT_WEBHOOK_MAX_ENDPOINTS,
            webhook_timeout_ms: default_webhook_timeout_ms(),
            webhook_lease_ms: default_webhook_lease_ms(),
            webhook_retry_schedule_ms: default_webhook_retry_schedule_ms(),
            webhook_max_delivering: default_webhook_max_delivering(),
        }
    }

    /// Loads the configuration of `mode` from the process environment and validates it.
    pub fn load(mode: Mode) -> Result<Self, ConfigError> {
        Self::load_over(mode, Self::defaults(mode))
    }

    /// Loads the configuration of `mode` from the process environment over `defaults` (a mode's
    /// defaults, completed by the command) and validates it.
    pub fn load_over(mode: Mode, defaults: Self) -> Result<Self, ConfigError> {
        Self::from_figment(
            mode,
            Figment::new()
                .merge(Serialized::defaults(defaults))
                .merge(Env::prefixed("CCC_"))
                .merge(Env::raw().only(&["DATABASE_URL"])),
        )
    }

    fn from_figment(mode: Mode, figment: Figment) -> Result<Self, ConfigError> {
        let config: Self = figment.extract().map_err(|e| {
            let name = e.path.first().map(|p| p.to_ascii_uppercase()).unwrap_or_default();
            ConfigError::Invalid {
                name: "configuration",
                reason: format!("CCC_{name}: {}", e.kind),
            }
        })?;
        config.validate(mode)?;
        Ok(config)
    }

    /// Checks what types alone cannot: required settings, URL schemes, sane bounds.
    pub fn validate(&self, mode: Mode) -> Result<(), ConfigError> {
        let Some(db) = &self.database_url else {
            return Err(ConfigError::Missing("DATABASE_URL"));
        };
        if !(db.starts_with("sqlite:") || db.starts_with("postgres:") || db.starts_with("postgresql:")) {
            return Err(ConfigError::Invalid {
                name: "DATABASE_URL",
                reason: "must be a sqlite: or postgres: URL".to_owned(),
            });
        }
        if self.client_ids.is_empty() {
            return Err(ConfigError::Missing("CCC_CLIENT_IDS"));
        }
        match &self.ims_url {
            ImsEndpoint::Url(url) => check_ims_url("CCC_IMS_URL", url)?,
            ImsEndpoint::Dev if mode == Mode::Serve => return Err(ConfigError::Missing("CCC_IMS_URL")),
            ImsEndpoint::Dev => {}
        }
        if let Some(url) = &self.ims_cert_url {
            check_ims_url("CCC_IMS_CERT_URL", url)?;
            if !url.as_str().ends_with('/') {
                return Err(ConfigError::Invalid {
                    name: "CCC_IMS_CERT_URL",
                    reason: "must end with '/' (certificate names are appended to it)".to_owned(),
                });
            }
        }
        if self.cc_service_codes.is_empty() {
            return Err(ConfigError::Missing("CCC_CC_SERVICE_CODES"));
        }
        if self.admin_scope.is_empty() || self.read_scope.is_empty() || self.provisioning_scope.is_empty() {
            return Err(ConfigError::Invalid {
                name: "CCC_ADMIN_SCOPE/CCC_READ_SCOPE/CCC_PROVISIONING_SCOPE",
                reason: "must not be empty".to_owned(),
            });
        }
        if self.db_max_connections == 0 {
            return Err(ConfigError::Invalid {
                name: "CCC_DB_MAX_CONNECTIONS",
                reason: "must be at least 1".to_owned(),
            });
        }
        if self.ims_rate_per_minute > 0 && self.ims_rate_burst == 0 {
            return Err(ConfigError::Invalid {
                name: "CCC_IMS_RATE_BURST",
                reason: "must be at least 1 while CCC_IMS_RATE_PER_MINUTE is set".to_owned(),
            });
        }
        if self.db_connect_timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                name: "CCC_DB_CONNECT_TIMEOUT_MS",
                reason: "must be at least 1".to_owned(),
            });
        }
        if self.request_body_timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                name: "CCC_REQUEST_BODY_TIMEOUT_MS",
                reason: "must be at least 1".to_owned(),
            });
        }
        if self.ims_breaker_failures == 0 {
            return Err(ConfigError::Invalid {
                name: "CCC_IMS_BREAKER_FAILURES",
                reason: "must be at least 1".to_owned(),
            });
        }
        if let Some(ops) = self.ops_listen
            && ops.port() != 0
            && ops.port() == self.listen.port()
        {
            return Err(ConfigError::Invalid {
                name: "CCC_OPS_LISTEN",
                reason: "must use another port than CCC_LISTEN".to_owned(),
            });
        }
        if self.db_listener_timeout_ms < 300 {
            return Err(ConfigError::Invalid {
                name: "CCC_DB_LISTENER_TIMEOUT_MS",
                reason: "must be at least 300".to_owned(),
            });
        }
        for (name, value) in [
            // Every database wait is bounded on our side.
            (
                "CCC_DB_STATEMENT_TIMEOUT_MS",
                self.db_statement_timeout_ms as usize,
            ),
            (
                "CCC_DB_MIGRATION_TIMEOUT_MS",
                usize::try_from(self.db_migration_timeout_ms).unwrap_or(usize::MAX),
            ),
            ("CCC_DB_READ_BATCH_SIZE", self.db_read_batch_size),
            ("CCC_DB_READ_BATCHES_IN_FLIGHT", self.db_read_batches_in_flight),
            ("CCC_FEED_BUFFER", self.feed_buffer),
            ("CCC_WEBHOOK_MAX_DELIVERING", self.webhook_max_delivering),
            (
                "CCC_WEBHOOK_TIMEOUT_MS",
                usize::try_from(self.webhook_timeout_ms).unwrap_or(usize::MAX),
            ),
            (
                "CCC_FEED_HEARTBEAT_MS",
                usize::try_from(self.feed_heartbeat_ms).unwrap_or(usize::MAX),
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    name,
                    reason: "must be at least 1".to_owned(),
                });
            }
        }
        // An attempt must end well within the lease, or another replica could take the endpoint
        // over while it is still being delivered to.
        if self.webhook_lease_ms < 2 * self.webhook_timeout_ms + 1_000 {
            return Err(ConfigError::Invalid {
                name: "CCC_WEBHOOK_LEASE_MS",
                reason: "must be at least twice CCC_WEBHOOK_TIMEOUT_MS and one second".to_owned(),
            });
        }
        Ok(())
    }

    /// How long a request waits for a database connection (`CCC_DB_CONNECT_TIMEOUT_MS`).
    pub fn db_connect_timeout(&self) -> Duration {
        Duration::from_millis(self.db_connect_timeout_ms)
    }

    /// How long a request body may take to arrive (`CCC_REQUEST_BODY_TIMEOUT_MS`).
    pub fn request_body_timeout(&self) -> Duration {
        Duration::from_millis(self.request_body_timeout_ms)
    }

    /// The start every certificate name of the configured IMS has: `CCC_IMS_CERT_NAME_PREFIX`, else
    /// IMS's naming for `CCC_IMS_REGION` (`ims-na1` names its keys `ims_na1-key-at-1`, stage
    /// `ims-na1-stg1` names them `ims_na1-stg1-key-at-1`); `None` without either.
    pub fn cert_name_prefix(&self) -> Option<String> {
        self.ims_cert_name_prefix.clone().or_else(|| {
            self.ims_region
                .as_deref()
                .map(|region| format!("{}-key-", region.replacen('-', "_", 1)))
        })
    }

    /// Every client whose tokens are accepted at all: `CCC_CLIENT_IDS` and the provisioning
    /// clients (a client named as a provisioning client is meant to be let in).
    pub fn accepted_client_ids(&self) -> Vec<String> {
        let mut all = self.client_ids.clone();
        for client in &self.provisioning_client_ids {
            if !all.contains(client) {
                all.push(client.clone());
            }
        }
        all
    }

    /// The IMS call timeout.
    pub fn ims_timeout(&self) -> Duration {
        Duration::from_millis(self.ims_timeout_ms)
    }
}

/// IMS URLs carry tokens: https only, except plain http to this machine (development, tests).
fn check_ims_url(name: &'static str, url: &Url) -> Result<(), ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        name,
        reason: reason.to_owned(),
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(d)) => d == "localhost",
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err(invalid("must be https (http only on loopback)"))
            }
        }
        _ => Err(invalid("must be https (http only on loopback)")),
    }
}

/// Accepts a string, a number or a boolean (figment types environment values by their look).
fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        S(String),
        I(i64),
        U(u64),
        F(f64),
        B(bool),
    }
    Ok(match Scalar::deserialize(d)? {
        Scalar::S(s) => s,
        Scalar::I(i) => i.to_string(),
        Scalar::U(u) => u.to_string(),
        Scalar::F(f) => f.to_string(),
        Scalar::B(b) => b.to_string(),
    })
}

/// Like [`string`], with an empty value meaning "not set".
fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = Option::<StringLike>::deserialize(d)?.map(|s| s.0);
    Ok(s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()))
}

/// A URL written in this file, known to parse.
fn known_url(raw: &'static str) -> Url {
    Url::parse(raw).expect("a default URL parses")
}

/// An optional URL; empty means "not set".
fn opt_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Url>, D::Error> {
    opt_string(d)?
        .map(|s| Url::parse(&s).map_err(|_| serde::de::Error::custom("is not a URL")))
        .transpose()
}

fn ser_opt_url<S: Serializer>(url: &Option<Url>, s: S) -> Result<S::Ok, S::Error> {
    url.as_ref().map(Url::as_str).serialize(s)
}

/// An optional socket address; empty means "not set".
fn opt_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    opt_string(d)?
        .map(|s| s.parse().map_err(serde::de::Error::custom))
        .transpose()
}

/// A comma-separated list (or a real list); blanks dropped.
fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListLike {
        Seq(Vec<StringLike>),
        One(StringLike),
    }
    let items = match Option::<ListLike>::deserialize(d)? {
        None => Vec::new(),
        Some(ListLike::Seq(v)) => v.into_iter().map(|s| s.0).collect(),
        Some(ListLike::One(s)) => s.0.split(',').map(str::to_owned).collect(),
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect())
}

/// A list of milliseconds, comma-separated (or a real list).
fn ms_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    list(d)?
        .iter()
        .map(|s| {
            s.parse()
                .map_err(|_| serde::de::Error::custom("is not a list of milliseconds"))
        })
        .collect()
}

struct StringLike(String);
impl<'de> Deserialize<'de> for StringLike {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        string(d).map(StringLike)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

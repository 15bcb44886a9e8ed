//! Webhooks: the change feed pushed to integrations' endpoints, signed as Standard Webhooks 1.0
//! says, in feed order, at least once.
//!
//! An endpoint is a cursor over the feed: its row holds the position of the last change delivered,
//! and nothing is copied into a queue of its own (`store.rs`). One replica at a time delivers to an
//! endpoint, through a lease in its row (`deliver.rs`); `secret.rs` keeps the signing secrets
//! encrypted, `sign.rs` signs, `address.rs` decides where a delivery may go.

pub mod address;
pub mod cli;
pub mod deliver;
pub mod metrics;
pub mod secret;
pub mod sign;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

pub use address::AddressPolicy;
pub use secret::{PreviousKeys, SecretBox, WebhookKey};
pub use store::{EndpointRecord, Endpoints};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::watch::Watchers;

/// How long a rotated-out secret keeps signing.
pub const PREVIOUS_SECRET_SIGNS_FOR: Duration = Duration::from_secs(24 * 3600);

/// What the webhooks are configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where deliveries may go.
    pub policy: AddressPolicy,
    /// Endpoints per integration.
    pub max_endpoints: usize,
    /// The whole-request timeout of an attempt.
    pub timeout: Duration,
    /// How long a lease lasts unrenewed.
    pub lease: Duration,
    /// The waits before each retry.
    pub retry_schedule: Vec<Duration>,
    /// Endpoints one replica delivers to at once.
    pub max_delivering: usize,
}

impl Settings {
    /// The settings of `config`.
    pub fn of(config: &Config) -> Self {
        Self {
            policy: AddressPolicy {
                allow_insecure: config.webhook_allow_insecure,
                allow_private: config.webhook_allow_private,
            },
            max_endpoints: config.webhook_max_endpoints,
            timeout: Duration::from_millis(config.webhook_timeout_ms),
            lease: Duration::from_millis(config.webhook_lease_ms),
            retry_schedule: config
                .webhook_retry_schedule_ms
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
            max_delivering: config.webhook_max_delivering,
        }
    }
}

/// The webhooks of one replica: the endpoints' table, the secrets' encryption (none without
/// `CCC_WEBHOOK_KEY`: webhooks are off), and the delivery worker. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Webhooks {
    /// The configured settings.
    pub settings: Settings,
    /// The endpoints' rows.
    pub endpoints: Endpoints,
    secrets: Option<SecretBox>,
    dispatcher: deliver::Dispatcher,
}

impl Webhooks {
    /// The webhooks of `config` over `store`, woken by `watchers`, counted in `metrics`. Delivery
    /// starts with [`Webhooks::start`]. Call within the runtime the worker is to run on.
    pub fn new(config: &Config, store: &Store, watchers: &Watchers, metrics: &Metrics) -> Arc<Self> {
        let settings = Settings::of(config);
        let secrets = config
            .webhook_key
            .clone()
            .map(|key| SecretBox::new(key, config.webhook_previous_keys.0.clone()));
        let endpoints = Endpoints::new(store.clone());
        // Registered once per application; a second registry entry is a bug caught at start.
        let webhook_metrics = metrics::WebhookMetrics::new(metrics)
            .unwrap_or_else(|e| panic!("webhook metrics are invalid: {e}"));
        let dispatcher = deliver::Dispatcher::new(
            settings.clone(),
            endpoints.clone(),
            secrets.clone(),
            watchers.clone(),
            webhook_metrics,
        );
        Arc::new(Self {
            settings,
            endpoints,
            secrets,
            dispatcher,
        })
    }

    /// The secrets' encryption; `None`: webhooks are off (no `CCC_WEBHOOK_KEY`).
    pub fn secrets(&self) -> Option<&SecretBox> {
        self.secrets.as_ref()
    }

    /// Starts delivering (nothing without a key).
    pub fn start(&self) {
        if self.secrets.is_some() {
            self.dispatcher.start();
        }
    }

    /// Tells this replica's worker that endpoint `id` changed (created, replayed, enabled,
    /// deleted): it looks again now rather than at its next sweep.
    pub fn changed(&self, id: &str) {
        self.dispatcher.poke(id);
    }
}

//! The webhooks' metrics, in the application's registry. Labels are bounded: outcomes and
//! statuses are fixed sets, and endpoint ids number at most `CCC_WEBHOOK_MAX_ENDPOINTS` per
//! integration (the configured integrations are a short list).

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use crate::metrics::Metrics;

/// What one attempt came to, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Delivered,
    /// Another status (a redirect included: never followed).
    Rejected,
    /// 410 Gone: the endpoint is disabled.
    Gone,
    /// No answer within the timeout.
    Timeout,
    /// No connection: refused, reset, TLS, or no allowed address.
    Unreachable,
}

impl Outcome {
    /// The label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Rejected => "rejected",
            Self::Gone => "gone",
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
        }
    }
}

/// The webhooks' metrics. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WebhookMetrics {
    /// Attempts by outcome.
    pub deliveries: IntCounterVec,
    /// How long attempts took, in seconds.
    pub attempt_duration: Histogram,
    /// Endpoints by status (`active`, `failing`, `disabled`), read at each sweep.
    pub endpoints: IntGaugeVec,
    /// Per endpoint not disabled: how long ago the oldest change not yet delivered to it was
    /// committed (0: none pending), read at each sweep.
    pub oldest_undelivered: IntGaugeVec,
    /// Endpoints disabled by delivery, by reason (`gone`, `retries_exhausted`).
    pub disabled: IntCounterVec,
    /// Endpoints this replica is delivering to now.
    pub delivering: IntGauge,
}

impl WebhookMetrics {
    /// The metrics, registered in `metrics`' registry.
    pub fn new(metrics: &Metrics) -> Result<Self, prometheus::Error> {
        let deliveries = IntCounterVec::new(
            Opts::new("webhook_deliveries_total", "Webhook delivery attempts by outcome"),
            &["outcome"],
        )?;
        let attempt_duration = Histogram::with_opts(
            HistogramOpts::new(
                "webhook_attempt_duration_seconds",
                "Webhook delivery attempts' duration",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let endpoints = IntGaugeVec::new(
            Opts::new("webhook_endpoints", "Webhook endpoints by status"),
            &["status"],
        )?;
        let oldest_undelivered = IntGaugeVec::new(
            Opts::new(
                "webhook_oldest_undelivered_seconds",
                "Age of the oldest change not yet delivered to a webhook endpoint",
            ),
            &["endpoint"],
        )?;
        let disabled = IntCounterVec::new(
            Opts::new(
                "webhook_endpoints_disabled_total",
                "Webhook endpoints disabled by delivery, by reason",
            ),
            &["reason"],
        )?;
        let delivering = IntGauge::new(
            "webhook_delivering_endpoints",
            "Webhook endpoints this replica is delivering to",
        )?;
        for outcome in [
            Outcome::Delivered,
            Outcome::Rejected,
            Outcome::Gone,
            Outcome::Timeout,
            Outcome::Unreachable,
        ] {
            deliveries.with_label_values(&[outcome.as_str()]);
        }
        for reason in ["gone", "retries_exhausted"] {
            disabled.with_label_values(&[reason]);
        }
        metrics.register(Box::new(deliveries.clone()))?;
        metrics.register(Box::new(attempt_duration.clone()))?;
        metrics.register(Box::new(endpoints.clone()))?;
        metrics.register(Box::new(oldest_undelivered.clone()))?;
        metrics.register(Box::new(disabled.clone()))?;
        metrics.register(Box::new(delivering.clone()))?;
        Ok(Self {
            deliveries,
            attempt_duration,
            endpoints,
            oldest_undelivered,
            disabled,
            delivering,
        })
    }
}

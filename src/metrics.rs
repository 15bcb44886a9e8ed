//! Prometheus metrics, served at `/metrics` in the text format by the `prometheus` crate.
//!
//! One registry per application, built at start and kept in its state (what a scrape of this
//! replica describes); the parts that count hold handles to it. The one process-wide count is that
//! of the tracing layer (`logfilter.rs`), sampled at each scrape.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The service's metrics; shared as an `Arc`.
pub struct Metrics {
    registry: Registry,
    /// Requests by method (the routed ones, else `other`), route template and status.
    pub http_requests: IntCounterVec,
    /// Request latency by method (as above) and route template, in seconds.
    pub http_latency: HistogramVec,
    /// IMS calls by endpoint and outcome (`ok`, `rejected`, `unavailable`, `bad_response`).
    pub ims_calls: HistogramVec,
    /// Verified-token cache lookups by result (`hit`, `miss`).
    pub token_cache: IntCounterVec,
    /// Signing-key cache lookups by result (`hit`, `miss`: a miss asks IMS, rate-limited).
    pub key_cache: IntCounterVec,
    /// JWKS fetches that answered, by outcome (`loaded`, `no_usable_key`: the keys in hand kept).
    pub jwks_refreshes: IntCounterVec,
    /// Switches by outcome (`created`, `replaced`, `unchanged`, `disconnected`).
    pub switches: IntCounterVec,
    /// Database pool connections by state (`in_use`, `idle`), sampled at scrape time.
    pub db_pool: IntGaugeVec,
    /// Batched read queries run (each answers every tenant-view read queued when it started).
    pub db_read_queries: IntCounter,
    /// Tenant-view reads answered by batched read queries: this over `db_read_queries` is the
    /// mean batch.
    pub db_reads: IntCounter,
    /// The IMS circuit breaker's state: 1 for the current one of `closed`, `open`, `half_open`.
    pub ims_breaker_state: IntGaugeVec,
    /// Circuit breaker transitions by the state entered.
    pub ims_breaker_transitions: IntCounterVec,
    /// IMS user calls refused at once by the open circuit.
    pub ims_breaker_rejected: IntCounter,
    /// Requests waiting for a change (watchers) now.
    pub watchers: IntGauge,
    /// Delay from the commit of a change to the answer of a watcher it woke, in seconds.
    pub watch_delay: Histogram,
    /// 1 while the change feed delivers (PostgreSQL: the `LISTEN` connection is up), else 0.
    pub watch_feed_up: IntGauge,
    /// Times the `LISTEN` connection was re-established after being lost.
    pub watch_feed_reconnects: IntCounter,
    /// Connections the HTTP layer dropped for the client's doing, by kind (`malformed`: a request
    /// that does not parse; `timeout`: one whose head did not arrive in time): counted, not logged.
    pub http_dropped_connections: IntCounterVec,
    /// Change notifications received on the `LISTEN` connection: every committed change on any
    /// replica reaches every replica, so none while changes are committed means the feed stalled.
    pub watch_notifications: IntCounter,
    /// The cap on watchers (`CCC_MAX_WATCHERS`), so an alert can compare `watchers` with it.
    pub watchers_max: IntGauge,
    /// The last `/readyz` answer by check (`database`, `ims_keys`): 1 passed, 0 failed. Absent
    /// until the first probe.
    pub readiness_checks: IntGaugeVec,
    /// 1 while this replica finds the database unreachable (an outage: requests answer 503 and
    /// one probe per back-off goes through), else 0.
    pub db_outage: IntGauge,
    /// Database waits that failed or were refused because the database was unreachable.
    pub db_unavailable: IntCounter,
    /// Server-Sent Events subscribers of the change feed now.
    pub feed_subscribers: IntGauge,
    /// Changes sent to change feed subscribers (Server-Sent Events).
    pub feed_changes_sent: IntCounter,
    /// Change feed subscribers closed because they fell behind the broadcast (they resume).
    pub feed_subscribers_cut: IntCounter,
    /// Database reads of the change feed's rows, by reader: `tail` (the replica's one tail, which
    /// answers every held long poll and stream), `request` (a request's first read), `catch-up` (a
    /// stream behind what the tail holds).
    pub feed_reads: IntCounterVec,
}

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new_custom(Some("ccc".to_owned()), None)?;
    let http_requests = IntCounterVec::new(
        Opts::new("http_requests_total", "HTTP requests by method, route and status"),
        &["method", "route", "status"],
    )?;
    let http_latency = HistogramVec::new(
        HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ]),
        &["method", "route"],
    )?;
    let ims_calls = HistogramVec::new(
        HistogramOpts::new("ims_call_duration_seconds", "IMS calls by endpoint and outcome")
            .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
        &["endpoint", "outcome"],
    )?;
    let token_cache = IntCounterVec::new(
        Opts::new("token_cache_lookups_total", "Verified-token cache lookups"),
        &["result"],
    )?;
    let key_cache = IntCounterVec::new(
        Opts::new("key_cache_lookups_total", "IMS signing-key cache lookups"),
        &["result"],
    )?;
    let jwks_refreshes = IntCounterVec::new(
        Opts::new("jwks_refreshes_total", "IMS JWKS answers by outcome"),
        &["outcome"],
    )?;
    let switches = IntCounterVec::new(
        Opts::new("switches_total", "Connection changes by outcome"),
        &["outcome"],
    )?;
    let db_pool = IntGaugeVec::new(
        Opts::new("db_pool_connections", "Database pool connections"),
        &["state"],
    )?;
    let db_read_queries = IntCounter::new(
        "db_read_queries_total",
        "Batched read queries run (each answers the reads queued when it started)",
    )?;
    let db_reads = IntCounter::new(
        "db_reads_total",
        "Tenant-view reads answered by the batched read queries",
    )?;
    let ims_breaker_state = IntGaugeVec::new(
        Opts::new("ims_breaker_state", "IMS circuit breaker state (1 = current)"),
        &["state"],
    )?;
    for (state, value) in [("closed", 1), ("open", 0), ("half_open", 0)] {
        ims_breaker_state.with_label_values(&[state]).set(value);
    }
    let ims_breaker_transitions = IntCounterVec::new(
        Opts::new(
            "ims_breaker_transitions_total",
            "IMS circuit breaker transitions by state entered",
        ),
        &["to"],
    )?;
    let ims_breaker_rejected = IntCounter::new(
        "ims_breaker_rejected_total",
        "IMS user calls refused at once by the open circuit",
    )?;
    let watchers = IntGauge::new("watchers", "Requests waiting for a change (watchers)")?;
    let watch_delay = Histogram::with_opts(
        HistogramOpts::new(
            "watch_delay_seconds",
            "Delay from the commit of a change to the answer of a watcher it woke",
        )
        .buckets(vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ]),
    )?;
    let watch_feed_up = IntGauge::new(
        "watch_feed_up",
        "1 while the change feed (PostgreSQL LISTEN) delivers",
    )?;
    let watch_feed_reconnects = IntCounter::new(
        "watch_feed_reconnects_total",
        "Times the LISTEN connection was re-established",
    )?;
    let http_dropped_connections = IntCounterVec::new(
        Opts::new(
            "http_dropped_connections_total",
            "Connections dropped for a malformed request or one whose head came too slowly",
        ),
        &["kind"],
    )?;
    registry.register(Box::new(http_dropped_connections.clone()))?;
    let watch_notifications = IntCounter::new(
        "watch_notifications_total",
        "Change notifications received on the LISTEN connection",
    )?;
    let watchers_max = IntGauge::new("watchers_max", "The cap on watchers (CCC_MAX_WATCHERS)")?;
    let readiness_checks = IntGaugeVec::new(
        Opts::new(
            "readiness_check",
            "The last /readyz answer by check (1 passed, 0 failed)",
        ),
        &["check"],
    )?;
    registry.register(Box::new(watch_notifications.clone()))?;
    registry.register(Box::new(watchers_max.clone()))?;
    registry.register(Box::new(readiness_checks.clone()))?;
    let db_outage = IntGauge::new(
        "db_outage",
        "1 while the database is unreachable from this replica (requests answer 503)",
    )?;
    let db_unavailable = IntCounter::new(
        "db_unavailable_total",
        "Database waits failed or refused because the database was unreachable",
    )?;
    registry.register(Box::new(db_outage.clone()))?;
    registry.register(Box::new(db_unavailable.clone()))?;
    let feed_subscribers = IntGauge::new(
        "feed_subscribers",
        "Server-Sent Events subscribers of the change feed",
    )?;
    let feed_changes_sent = IntCounter::new(
        "feed_changes_sent_total",
        "Changes sent to change feed subscribers",
    )?;
    let feed_subscribers_cut = IntCounter::new(
        "feed_subscribers_cut_total",
        "Change feed subscribers closed because they fell behind",
    )?;
    registry.register(Box::new(feed_subscribers.clone()))?;
    registry.register(Box::new(feed_changes_sent.clone()))?;
    registry.register(Box::new(feed_subscribers_cut.clone()))?;
    let feed_reads = IntCounterVec::new(
        Opts::new(
            "feed_reads_total",
            "Database reads of the change feed's rows, by reader (tail, request, catch-up)",
        ),
        &["reader"],
    )?;
    registry.register(Box::new(feed_reads.clone()))?;
    registry.register(Box::new(watchers.clone()))?;
    registry.register(Box::new(watch_delay.clone()))?;
    registry.register(Box::new(watch_feed_up.clone()))?;
    registry.register(Box::new(watch_feed_reconnects.clone()))?;
    registry.register(Box::new(http_requests.clone()))?;
    registry.register(Box::new(http_latency.clone()))?;
    registry.register(Box::new(ims_calls.clone()))?;
    registry.register(Box::new(token_cache.clone()))?;
    registry.register(Box::new(key_cache.clone()))?;
    registry.register(Box::new(jwks_refreshes.clone()))?;
    registry.register(Box::new(switches.clone()))?;
    registry.register(Box::new(db_pool.clone()))?;
    registry.register(Box::new(db_read_queries.clone()))?;
    registry.register(Box::new(db_reads.clone()))?;
    registry.register(Box::new(ims_breaker_state.clone()))?;
    registry.register(Box::new(ims_breaker_transitions.clone()))?;
    registry.register(Box::new(ims_breaker_rejected.clone()))?;
    Ok(Metrics {
        registry,
        http_requests,
        http_latency,
        ims_calls,
        token_cache,
        key_cache,
        jwks_refreshes,
        switches,
        db_pool,
        db_read_queries,
        db_reads,
        ims_breaker_state,
        ims_breaker_transitions,
        ims_breaker_rejected,
        watchers,
        watch_delay,
        watch_feed_up,
        watch_feed_reconnects,
        http_dropped_connections,
        watch_notifications,
        watchers_max,
        readiness_checks,
        db_outage,
        db_unavailable,
        feed_subscribers,
        feed_changes_sent,
        feed_subscribers_cut,
        feed_reads,
    })
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry of every metric, at zero.
    pub fn new() -> Self {
        // Only fails on duplicate or malformed names, which are constants above: at start, never
        // from a request.
        build().unwrap_or_else(|e| panic!("metrics definitions are invalid: {e}"))
    }

    /// Sets `counter` to `total` (a count kept elsewhere, sampled at scrape time; never lowered).
    pub fn sample(counter: &IntCounter, total: u64) {
        counter.inc_by(total.saturating_sub(counter.get()));
    }

    /// Adds `collector` to this registry (a part that keeps its own metrics, as `webhook` does).
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) -> Result<(), prometheus::Error> {
        self.registry.register(collector)
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "metrics could not be encoded");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

//! `/metrics`: the Prometheus scrape (on `CCC_OPS_LISTEN` when that is set, else beside the API).

use actix_web::{HttpResponse, route, web};

use crate::metrics::Metrics;
use crate::state::AppState;

/// Metrics in the Prometheus text format: requests by route and status, latency, IMS calls,
/// token-cache hits and misses, database pool use, batched reads, switches.
///
/// Served on `CCC_OPS_LISTEN` instead (and not here) when that is set.
#[utoipa::path(
    tag = "operations",
    security(()),
    responses((status = 200, description = "Prometheus text exposition", body = String,
               content_type = "text/plain; version=0.0.4",
               example = "ccc_switches_total{outcome=\"created\"} 1")),
)]
#[route("/metrics", method = "GET", method = "HEAD")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let m = &state.metrics;
    // What the store and the process's log filter count themselves, sampled now.
    let (size, idle) = state.store.pool_size();
    m.db_pool
        .with_label_values(&["in_use"])
        .set(i64::from(size.saturating_sub(idle)));
    m.db_pool.with_label_values(&["idle"]).set(i64::from(idle));
    let (queries, reads) = state.store.read_stats();
    Metrics::sample(&m.db_read_queries, queries);
    Metrics::sample(&m.db_reads, reads);
    let (down, unavailable) = state.store.outage_stats();
    m.db_outage.set(i64::from(down));
    Metrics::sample(&m.db_unavailable, unavailable);
    for (kind, dropped) in crate::logfilter::dropped_connections() {
        Metrics::sample(&m.http_dropped_connections.with_label_values(&[kind]), dropped);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(m.render())
}

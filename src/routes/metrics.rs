//! `/metrics`: the Prometheus scrape (on `CCC_OPS_LISTEN` when that is set, else beside the API).

use actix_web::{HttpResponse, route, web};

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
    let m = crate::metrics::metrics();
    let (size, idle) = state.store.pool_size();
    m.db_pool
        .with_label_values(&["in_use"])
        .set(i64::from(size.saturating_sub(idle)));
    m.db_pool.with_label_values(&["idle"]).set(i64::from(idle));
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(m.render())
}

//! Probes: `/healthz` (the process answers) and `/readyz` (it can serve: database and keys).

use actix_web::{HttpResponse, route, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::state::AppState;

/// Whether the service can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ReadinessStatus {
    /// The database answered and IMS keys are loaded.
    Ready,
    /// One of them is missing.
    NotReady,
}

/// A probe's answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"status": "ready", "database": true, "ims_keys": true}))]
pub struct Readiness {
    /// `ready` or `not-ready`.
    pub status: ReadinessStatus,
    /// Whether the database answered.
    pub database: bool,
    /// Whether IMS signing keys are loaded.
    pub ims_keys: bool,
}

/// Liveness: the process is up and serving HTTP.
#[utoipa::path(
    tag = "operations",
    security(()),
    responses((status = 200, description = "Alive", body = String, content_type = "text/plain", example = "ok")),
)]
#[route("/healthz", method = "GET", method = "HEAD")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// Readiness: the database is reachable and IMS keys are loaded (the database's answer is reused
/// for up to a second).
#[utoipa::path(
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready", body = Readiness,
         example = json!({"status": "not-ready", "database": false, "ims_keys": true})),
    ),
)]
#[route("/readyz", method = "GET", method = "HEAD")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let database = state.readiness.check(&state.store).await;
    let ims_keys = state.verifier.keys().is_loaded();
    let ready = database && ims_keys;
    let checks = &state.metrics.readiness_checks;
    checks.with_label_values(&["database"]).set(i64::from(database));
    checks.with_label_values(&["ims_keys"]).set(i64::from(ims_keys));
    let body = Readiness {
        status: if ready {
            ReadinessStatus::Ready
        } else {
            ReadinessStatus::NotReady
        },
        database,
        ims_keys,
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

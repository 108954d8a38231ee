//! `/healthz` (the process answers) and `/readyz` (the database answers and is migrated).

use poem::{handler, http::StatusCode, web::{Data, Json}};
use serde_json::{Value, json};

use crate::ApiState;

#[handler]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

#[handler]
pub async fn readyz(state: Data<&ApiState>) -> (StatusCode, Json<Value>) {
    let backend = state.store.backend_name();
    let expected = state.expected_schema_version;
    match state.store.schema_version().await {
        Ok(Some(v)) if v >= expected => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "database": backend, "schema_version": v })),
        ),
        Ok(found) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "unavailable",
                "database": backend,
                "schema_version": found,
                "error": {
                    "code": "SCHEMA_NOT_MIGRATED",
                    "message": format!("the database is at schema version {}, this build needs {expected}; run `socialsync migrate`", found.unwrap_or(0)),
                },
            })),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: database unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({
                    "status": "unavailable",
                    "database": backend,
                    "error": { "code": "DATABASE_UNAVAILABLE", "message": "the database does not answer" },
                })),
            )
        }
    }
}

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4";

/// `/metrics`: this process's counters in the Prometheus text format.
#[handler]
pub fn metrics(state: Data<&ApiState>) -> poem::Response {
    let body = state.metrics.as_ref().map(|r| r()).unwrap_or_default();
    poem::Response::builder().content_type(PROMETHEUS_TEXT).body(body)
}

#[handler]
pub fn metrics_only(render: Data<&crate::MetricsRender>) -> poem::Response {
    poem::Response::builder().content_type(PROMETHEUS_TEXT).body(render.0())
}

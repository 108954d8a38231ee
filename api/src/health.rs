//! `/healthz` (the process answers) and `/readyz` (the database answers and is migrated: both
//! socialsync's schema and apalis').

use poem::{handler, http::StatusCode, web::{Data, Json}};
use serde_json::{Value, json};

use crate::ApiState;

#[handler]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the database answers and carries both schemas this build needs: socialsync's
/// domain tables and apalis' queue tables (each has its own migration history).
#[handler]
pub async fn readyz(state: Data<&ApiState>) -> (StatusCode, Json<Value>) {
    let backend = state.store.backend_name();
    let expected = state.expected_schema_version;
    let q_expected = state.expected_queue_version;
    let versions = async { Ok::<_, jobs::store::StoreError>((state.store.schema_version().await?, state.store.queue_schema_version().await?)) };
    let behind = |found: Option<i64>, queue: Option<i64>, message: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "unavailable",
                "database": backend,
                "schema_version": found,
                "queue_schema_version": queue,
                "error": { "code": "SCHEMA_NOT_MIGRATED", "message": message },
            })),
        )
    };
    match versions.await {
        Ok((Some(v), Some(q))) if v >= expected && q >= q_expected => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "database": backend, "schema_version": v, "queue_schema_version": q })),
        ),
        Ok((found, queue)) if found.is_none_or(|v| v < expected) => behind(
            found,
            queue,
            format!("the database is at schema version {}, this build needs {expected}; run `socialsync migrate`", found.unwrap_or(0)),
        ),
        Ok((found, queue)) => behind(
            found,
            queue,
            format!("apalis' queue tables are at migration {}, this build needs {q_expected}; run `socialsync migrate`", queue.unwrap_or(0)),
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

//! The API's one error type and the JSON body every 4xx and 5xx carries:
//! `{"error":{"code":"…","message":"…"}}`. Codes are stable; frontends branch on them.
//!
//! Handlers return [`ApiError`]; errors poem or poem-openapi raise before a handler runs
//! (unknown route, malformed JSON, a missing parameter, an oversized body) are turned into
//! the same body by [`render`], so no request ever gets a plain-text or HTML error.

use poem::{Response, http::StatusCode};
use serde_json::json;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra fields of the error object (e.g. `retry_after_seconds`).
    pub extra: Option<(&'static str, serde_json::Value)>,
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), extra: None, headers: Vec::new() }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", format!("no such {what}"))
    }

    /// An unexpected failure: the cause is logged here, the caller sees only that it failed.
    pub fn internal(cause: &dyn std::error::Error) -> Self {
        tracing::error!(error = %error_chain(cause), "request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "the request failed; it has been logged")
    }

    pub fn unavailable() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "DATABASE_UNAVAILABLE", "the database is unavailable; try again shortly")
            .with_header("retry-after", "5".into())
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some((k, v)) = self.extra {
            error[k] = v;
        }
        let mut resp = Response::builder()
            .status(self.status)
            .content_type("application/json")
            .body(json!({ "error": error }).to_string());
        for (name, value) in self.headers {
            if let Ok(v) = value.parse() {
                resp.headers_mut().insert(name, v);
            }
        }
        resp
    }
}

impl From<jobs::StoreError> for ApiError {
    fn from(e: jobs::StoreError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %error_chain(&e), "database unavailable");
            ApiError::unavailable()
        } else {
            ApiError::internal(&e)
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl poem::error::ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        self.status
    }

    fn as_response(&self) -> Response {
        self.clone().into_response()
    }
}

/// Any error from poem or poem-openapi, as the JSON body.
pub fn render(err: poem::Error) -> ApiError {
    if let Some(api) = err.downcast_ref::<ApiError>() {
        return api.clone();
    }
    let status = err.status();
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("NOT_FOUND", "no such route".to_string()),
        StatusCode::METHOD_NOT_ALLOWED => ("METHOD_NOT_ALLOWED", "this route does not take that method".to_string()),
        StatusCode::PAYLOAD_TOO_LARGE => ("PAYLOAD_TOO_LARGE", "the request body is too large".to_string()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("UNSUPPORTED_MEDIA_TYPE", "send application/json".to_string()),
        StatusCode::UNAUTHORIZED => ("UNAUTHORIZED", "missing or invalid credentials".to_string()),
        s if s.is_client_error() => ("INVALID_REQUEST", err.to_string()),
        _ => {
            tracing::error!(error = %err, status = status.as_u16(), "request failed");
            return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "the request failed; it has been logged");
        }
    };
    ApiError::new(status, code, message)
}

/// "outer: inner: innermost", for logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

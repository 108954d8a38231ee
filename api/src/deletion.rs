//! `/deletion/{code}`: the public page Meta links a user to after they asked for their data to
//! be deleted. It shows that deletion's state and nothing else — no account, no platform id —
//! and an unknown code looks like any other (404).

use poem::{handler, http::StatusCode, web::{Data, Html, Path}, IntoResponse, Response};

use crate::ApiState;

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;color:#222}";

#[handler]
pub async fn status(Path(code): Path<String>, state: Data<&ApiState>) -> Response {
    let found = if code.len() <= 64 && code.bytes().all(|b| b.is_ascii_hexdigit()) { state.store.platform_event_by_code(&code).await } else { Ok(None) };
    let (status, state_attr, text) = match found {
        Ok(Some(event)) => {
            let text = match event.state() {
                "done" => "Done: your data has been deleted.",
                "in_progress" => "In progress: your data is being deleted.",
                _ => "Received: your request will be carried out shortly.",
            };
            (StatusCode::OK, event.state(), text)
        }
        Ok(None) => (StatusCode::NOT_FOUND, "", "No deletion request has this code."),
        Err(e) => {
            tracing::warn!(error = %e, "deletion status: database unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "", "The status cannot be read right now; try again in a minute.")
        }
    };
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Data deletion</title><style>{STYLE}</style></head>\
         <body><h1>Data deletion</h1><p id=\"state\" data-state=\"{state_attr}\">{text}</p></body></html>"
    ))
    .with_status(status)
    .into_response()
}

/// The page's inline parts, for its Content-Security-Policy.
pub fn html() -> String {
    format!("<style>{STYLE}</style>")
}

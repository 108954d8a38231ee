//! Around every request: injected faults (5xx share, latency, hangs), then the request log and
//! counters. Handlers name the endpoint and account through [`Seen`] on the response.

use std::time::Duration;

use poem::{Endpoint, IntoResponse, Request, Response, http::StatusCode};
use serde_json::json;

use crate::{
    Sandbox,
    state::{LOG_CAPACITY, LoggedRequest, Net, random_token, real_now_us},
};

/// What a handler tells the log about the request it served.
#[derive(Clone, Debug)]
pub struct Seen {
    pub net: Net,
    pub endpoint: &'static str,
    pub account: Option<String>,
}

/// Marks a response with what it served.
pub fn seen(mut resp: Response, net: Net, endpoint: &'static str, account: Option<&str>) -> Response {
    resp.extensions_mut().insert(Seen { net, endpoint, account: account.map(str::to_owned) });
    resp
}

pub async fn observe<E: Endpoint>(ep: E, req: Request) -> poem::Result<Response> {
    let sandbox = req.data::<Sandbox>().cloned().expect("sandbox data is attached");
    let path = req.uri().path().trim_start_matches('/').to_owned();
    let method = req.method().to_string();
    let peer = req.remote_addr().as_socket_addr().map(|a| a.to_string());
    let is_admin = path.starts_with("_admin");
    if is_admin && !sandbox.admin.admits(&req) {
        let body = json!({"error": "unauthorized", "message": "the control surface needs Authorization: Bearer <SANDBOX_ADMIN_TOKEN>; it is closed while that is not set"});
        return Ok((StatusCode::UNAUTHORIZED, poem::web::Json(body)).into_response());
    }
    // The log says when a request arrived, not when its answer was ready.
    let arrived_us = real_now_us();

    if !is_admin {
        let fault = {
            let mut s = sandbox.lock();
            s.fault_counter += 1;
            let n = s.fault_counter;
            s.faults.iter_mut().find(|f| path.starts_with(&f.path_prefix)).and_then(|f| {
                f.matched += 1;
                (f.matched > f.pass_first).then(|| (f.clone(), n))
            })
        };
        if let Some((fault, n)) = fault {
            if fault.hang {
                // Far longer than any client timeout; the client gives up first.
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            if fault.latency_ms > 0 {
                tokio::time::sleep(Duration::from_millis(fault.latency_ms)).await;
            }
            // Deterministic spread: request n fails when the running share crosses an integer.
            let fails = ((n as f64) * fault.error_rate).floor() > (((n - 1) as f64) * fault.error_rate).floor();
            if fails {
                let resp = server_error(&path);
                record(&sandbox, &method, &path, peer, &resp, arrived_us);
                return Ok(resp);
            }
        }
    }

    let resp = ep.call(req).await.map(IntoResponse::into_response).unwrap_or_else(|e| e.into_response());
    if !is_admin {
        record(&sandbox, &method, &path, peer, &resp, arrived_us);
    }
    Ok(resp)
}

fn record(sandbox: &Sandbox, method: &str, path: &str, peer: Option<String>, resp: &Response, arrived_us: i64) {
    let arrived_ms = arrived_us.div_euclid(1000);
    let seen = resp.extensions().get::<Seen>().cloned();
    let mut s = sandbox.lock();
    if let Some(Seen { net, endpoint, account: Some(a) }) = &seen {
        s.count(*net, endpoint, a);
    }
    let entry = LoggedRequest {
        seq: s.next_seq,
        at_ms: arrived_ms + s.clock_offset_ms,
        real_ms: arrived_ms,
        real_us: arrived_us,
        method: method.to_owned(),
        path: path.to_owned(),
        endpoint: seen.as_ref().map_or_else(String::new, |x| x.endpoint.to_owned()),
        account: seen.and_then(|x| x.account),
        status: resp.status().as_u16(),
        peer,
    };
    s.next_seq += 1;
    s.log.push_back(entry);
    if s.log.len() > LOG_CAPACITY {
        s.log.pop_front();
    }
}

/// A 5xx in the shape of the platform the path belongs to.
fn server_error(path: &str) -> Response {
    let body = if path.starts_with("tiktok") {
        json!({ "data": {}, "error": { "code": "internal_error", "message": "Something went wrong. Please try again later.", "log_id": random_token(12) } })
    } else {
        json!({ "error": { "message": "An unexpected error has occurred. Please retry your request later.", "type": "OAuthException", "is_transient": true, "code": 2, "fbtrace_id": random_token(9) } })
    };
    poem::web::Json(body).with_status(StatusCode::INTERNAL_SERVER_ERROR).into_response()
}

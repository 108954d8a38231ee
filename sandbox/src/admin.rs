//! The control surface, `/_admin/…`, for tests and the dashboard (JSON over HTTP):
//!
//! | route | what |
//! |---|---|
//! | `GET /_admin/clock`, `POST /_admin/clock` `{"advance_secs":N}` or `{"set_ms":T}` | the sandbox clock |
//! | `GET /_admin/settings`, `PATCH /_admin/settings` `{…some fields…}` | the spec's settings |
//! | `GET /_admin/accounts`, `POST /_admin/accounts` `{"platform","username","followers"?,"posts"?}` | accounts |
//! | `PATCH /_admin/accounts/{platform}/{id}/switches` `{"consent_revoked":true,…}` | per-account switches (turning `consent_revoked` or `account_deleted` on sends the platform's event, when its URL is set) |
//! | `GET /_admin/deliveries` | the events sent to the app, each with its answer |
//! | `GET /_admin/faults`, `PUT /_admin/faults` `[{"path_prefix","error_rate","latency_ms","hang"}]` | faults |
//! | `GET /_admin/counters` | calls per `platform:endpoint:account` |
//! | `GET /_admin/requests?after=SEQ&limit=N` | the request log |
//! | `GET /_admin/secrets` | every code and token ever issued, and the apps' client secrets (for leak scans) |
//! | `POST /_admin/reset` | a fresh world (settings kept) |

use std::collections::HashMap;

use poem::{
    IntoResponse, Response, Route, get, handler,
    http::StatusCode,
    patch, post,
    web::{Data, Json, Path, Query},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    Sandbox, demo, events,
    state::{Fault, Net, Settings, State, Switches},
};

pub fn routes() -> Route {
    Route::new()
        .at("/clock", get(clock).post(move_clock))
        .at("/settings", get(settings).patch(patch_settings))
        .at("/accounts", get(accounts).post(create_account))
        .at("/accounts/:platform/:id/switches", patch(patch_switches))
        .at("/faults", get(faults).put(put_faults))
        .at("/counters", get(counters))
        .at("/requests", get(requests))
        .at("/deliveries", get(deliveries))
        .at("/secrets", get(secrets))
        .at("/reset", post(reset))
}

fn bad(message: impl std::fmt::Display) -> Response {
    Json(json!({ "error": message.to_string() })).with_status(StatusCode::BAD_REQUEST).into_response()
}

fn clock_body(s: &State) -> Value {
    json!({ "now_ms": s.now_ms(), "offset_ms": s.clock_offset_ms })
}

#[handler]
fn clock(sandbox: Data<&Sandbox>) -> Json<Value> {
    Json(clock_body(&sandbox.lock()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveClock {
    advance_secs: Option<i64>,
    set_ms: Option<i64>,
}

#[handler]
fn move_clock(Json(m): Json<MoveClock>, sandbox: Data<&Sandbox>) -> Json<Value> {
    let mut s = sandbox.lock();
    if let Some(secs) = m.advance_secs {
        s.clock_offset_ms += secs * 1000;
    }
    if let Some(t) = m.set_ms {
        s.clock_offset_ms += t - s.now_ms();
    }
    Json(clock_body(&s))
}

#[handler]
fn settings(sandbox: Data<&Sandbox>) -> Json<Value> {
    Json(serde_json::to_value(&sandbox.lock().settings).expect("settings serialize"))
}

/// Merges `patch`'s fields into `current` and reads the result back as `T`.
fn merge<T: serde::Serialize + serde::de::DeserializeOwned>(current: &T, patch: Value) -> Result<T, String> {
    let mut v = serde_json::to_value(current).map_err(|e| e.to_string())?;
    let (Value::Object(base), Value::Object(p)) = (&mut v, patch) else { return Err("expected a JSON object".into()) };
    base.extend(p);
    serde_json::from_value(v).map_err(|e| e.to_string())
}

#[handler]
fn patch_settings(Json(p): Json<Value>, sandbox: Data<&Sandbox>) -> Response {
    let mut s = sandbox.lock();
    match merge::<Settings>(&s.settings, p) {
        Ok(new) => {
            s.settings = new;
            Json(serde_json::to_value(&s.settings).expect("settings serialize")).into_response()
        }
        Err(e) => bad(e),
    }
}

#[handler]
fn accounts(sandbox: Data<&Sandbox>) -> Json<Value> {
    let s = sandbox.lock();
    let mut list: Vec<_> = s.accounts.values().collect();
    list.sort_by(|a, b| (a.net as u8, &a.username).cmp(&(b.net as u8, &b.username)));
    Json(json!(list))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    platform: Net,
    username: String,
    name: Option<String>,
    followers: Option<i64>,
    posts: Option<usize>,
}

#[handler]
fn create_account(Json(a): Json<NewAccount>, sandbox: Data<&Sandbox>) -> Response {
    if a.username.is_empty() {
        return bad("username is empty");
    }
    let mut s = sandbox.lock();
    let posts = a.posts.unwrap_or(s.settings.posts_per_account as usize);
    let name = a.name.unwrap_or_else(|| a.username.clone());
    let id = demo::create(&mut s, a.platform, &a.username, &name, a.followers.unwrap_or(1000), posts);
    Json(json!(s.account(a.platform, &id))).into_response()
}

#[handler]
fn patch_switches(Path((platform, id)): Path<(String, String)>, Json(p): Json<Value>, sandbox: Data<&Sandbox>) -> Response {
    let net = match platform.as_str() {
        "instagram" => Net::Instagram,
        "tiktok" => Net::Tiktok,
        other => return bad(format!("unknown platform {other}")),
    };
    let mut s = sandbox.lock();
    let Some(account) = s.accounts.get_mut(&(net, id.clone())) else {
        return Json(json!({ "error": "no such account" })).with_status(StatusCode::NOT_FOUND).into_response();
    };
    match merge::<Switches>(&account.switches, p) {
        Ok(new) => {
            let deleted_now = new.account_deleted && !account.switches.account_deleted;
            let revoked_now = new.consent_revoked && !account.switches.consent_revoked;
            account.switches = new;
            let body = json!(account.switches);
            // The platform tells the app, as Meta and TikTok do when a user removes it or leaves.
            if let Some(out) = (deleted_now || revoked_now).then(|| events::revoked(&s, net, &id, deleted_now)).flatten() {
                drop(s);
                events::send(sandbox.clone(), out);
            }
            Json(body).into_response()
        }
        Err(e) => bad(e),
    }
}

#[handler]
fn deliveries(sandbox: Data<&Sandbox>) -> Json<Value> {
    Json(json!(sandbox.lock().deliveries))
}

#[handler]
fn faults(sandbox: Data<&Sandbox>) -> Json<Value> {
    Json(json!(sandbox.lock().faults))
}

#[handler]
fn put_faults(Json(f): Json<Vec<Fault>>, sandbox: Data<&Sandbox>) -> Response {
    if f.iter().any(|x| !(0.0..=1.0).contains(&x.error_rate)) {
        return bad("error_rate must be between 0 and 1");
    }
    sandbox.lock().faults = f;
    Json(json!(sandbox.lock().faults)).into_response()
}

#[handler]
fn counters(sandbox: Data<&Sandbox>) -> Json<HashMap<String, u64>> {
    Json(sandbox.lock().counters.clone())
}

#[derive(Deserialize)]
struct LogQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

#[handler]
fn requests(Query(q): Query<LogQuery>, sandbox: Data<&Sandbox>) -> Json<Value> {
    let s = sandbox.lock();
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(10_000).min(100_000);
    let entries: Vec<_> = s.log.iter().filter(|e| e.seq > after).take(limit).collect();
    Json(json!(entries))
}

/// What a leak scan looks for: nothing here may appear in plaintext anywhere socialsync writes.
#[handler]
fn secrets(sandbox: Data<&Sandbox>) -> Json<Value> {
    let s = sandbox.lock();
    Json(json!({
        "codes": s.codes.keys().collect::<Vec<_>>(),
        "tokens": s.tokens.keys().collect::<Vec<_>>(),
        "client_secrets": [crate::INSTAGRAM_CLIENT_SECRET, crate::TIKTOK_CLIENT_SECRET],
    }))
}

#[handler]
fn reset(sandbox: Data<&Sandbox>) -> Json<Value> {
    let mut s = sandbox.lock();
    let kept = s.settings.clone();
    *s = State::new(kept);
    Json(json!({ "reset": true }))
}

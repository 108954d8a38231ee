//! The platforms' callbacks over real HTTP: deauthorisation, data deletion and webhooks are
//! verified before anything is stored; erasure requests get their status page.

mod common;

use api::limits::Policies;
use jobs::Timestamp;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::TestDb;

use common::*;

/// HMAC-SHA256 of `parts` with `key`.
fn hmac(key: &str, parts: &[&[u8]]) -> Vec<u8> {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

async fn event_count(app: &App) -> i64 {
    let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM platform_events").fetch_one(&pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_events_are_verified_before_anything_is_stored() {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
    let app = start(TestDb::new(testkit::Backend::Postgres).await, |_| {}).await;
    let tiktok_secret = app.platforms.tiktok.credentials.client_secret.expose().to_owned();
    let webhook = format!("{}/api/v1/platforms/tiktok/webhook", app.url);
    let now = Timestamp::now().millis() / 1000;
    let body = format!(r#"{{"client_key":"ck","event":"authorization.removed","create_time":{now},"user_openid":"open-1","content":"{{\"reason\":1}}"}}"#);
    let sign = |key: &str, t: i64, body: &str| {
        let s: String = hmac(key, &[t.to_string().as_bytes(), b".", body.as_bytes()]).iter().map(|b| format!("{b:02x}")).collect();
        format!("t={t},s={s}")
    };
    let post = |sig: Option<String>, body: String| {
        let mut req = app.http.post(&webhook).header("content-type", "application/json").body(body);
        if let Some(sig) = sig {
            req = req.header("TikTok-Signature", sig);
        }
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };

    // Refused, and nothing stored: no signature, a wrong key, a truncated body, a stale time.
    let refused = [
        (None, body.clone(), 401, "EVENT_SIGNATURE_INVALID"),
        (Some(sign("not-the-secret", now, &body)), body.clone(), 401, "EVENT_SIGNATURE_INVALID"),
        (Some(sign(&tiktok_secret, now, &body)), body[..body.len() - 2].to_owned(), 401, "EVENT_SIGNATURE_INVALID"),
        (Some(sign(&tiktok_secret, now - 301, &body)), body.clone(), 401, "EVENT_STALE"),
        (Some(sign(&tiktok_secret, now, "{}")), "{}".to_owned(), 400, "EVENT_MALFORMED"),
    ];
    for (sig, b, status, code) in refused {
        let (got, body) = post(sig, b).await;
        assert_error(StatusCode::from_u16(got).unwrap(), &body, status, code);
    }
    assert_eq!(event_count(&app).await, 0, "nothing refused was stored");

    // A valid one is stored once, however often it is delivered — and served although the
    // refusals above locked the address out (they spent its `auth` budget).
    let (status, first) = post(Some(sign(&tiktok_secret, now, &body)), body.clone()).await;
    assert_eq!((status, first["created"].as_bool()), (200, Some(true)), "{first}");
    for _ in 0..99 {
        let (status, again) = post(Some(sign(&tiktok_secret, now, &body)), body.clone()).await;
        assert_eq!((status, again["created"].as_bool()), (200, Some(false)), "{again}");
    }
    assert_eq!(event_count(&app).await, 1, "100 deliveries, one event");
    assert_eq!(app.db.store.queue_counts(jobs::events::KIND).await.unwrap(), vec![("Pending".to_owned(), 1)], "one job for it");

    // Meta's signed_request: only with the app secret and its algorithm (on a server whose
    // `auth` budget the refusals do not spend, to see each one's code).
    let app = start(TestDb::new(testkit::Backend::Postgres).await, |c| c.policies = Policies::with_overrides("general=10000/15m,auth=1000/15m").unwrap()).await;
    let meta_secret = app.platforms.instagram.credentials.client_secret.expose().to_owned();
    let deauthorize = format!("{}/api/v1/platforms/instagram/deauthorize", app.url);
    let signed = |key: &str, payload: Value| {
        let encoded = B64.encode(payload.to_string());
        format!("{}.{encoded}", B64.encode(hmac(key, &[encoded.as_bytes()])))
    };
    let payload = json!({ "algorithm": "HMAC-SHA256", "issued_at": now, "user_id": "17841400000001" });
    for (form, status, code) in [
        (signed("not-the-secret", payload.clone()), 401, "EVENT_SIGNATURE_INVALID"),
        (signed(&meta_secret, json!({ "algorithm": "HMAC-SHA1", "issued_at": now, "user_id": "1" })), 401, "EVENT_SIGNATURE_INVALID"),
        ("garbage".to_owned(), 400, "EVENT_MALFORMED"),
    ] {
        let resp = app.http.post(&deauthorize).form(&[("signed_request", form)]).send().await.unwrap();
        let got = resp.status();
        assert_error(got, &resp.json().await.unwrap(), status, code);
    }
    assert_eq!(event_count(&app).await, 0);
    let resp = app.http.post(&deauthorize).form(&[("signed_request", signed(&meta_secret, payload.clone()))]).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(event_count(&app).await, 1);

    // The data deletion callback: a status page and a code, the same code for a redelivery.
    let deletion = format!("{}/api/v1/platforms/instagram/data-deletion", app.url);
    let resp = app.http.post(&deletion).form(&[("signed_request", signed("not-the-secret", payload.clone()))]).send().await.unwrap();
    let got = resp.status();
    assert_error(got, &resp.json().await.unwrap(), 401, "EVENT_SIGNATURE_INVALID");
    let mut answers = Vec::new();
    for _ in 0..2 {
        let resp = app.http.post(&deletion).form(&[("signed_request", signed(&meta_secret, payload.clone()))]).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        answers.push(resp.json::<Value>().await.unwrap());
    }
    assert_eq!(answers[0], answers[1], "a redelivery answers the same code");
    let code = answers[0]["confirmation_code"].as_str().unwrap();
    assert_eq!(answers[0]["url"].as_str(), Some(format!("{}/deletion/{code}", app.url).as_str()));
    let page = app.http.get(answers[0]["url"].as_str().unwrap()).send().await.unwrap();
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    assert!(page.text().await.unwrap().contains("data-state=\"received\""), "no worker here: the job has not run");
    assert_eq!(event_count(&app).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_or_a_sibling_service_asks_for_an_erasure_and_gets_its_status_page() {
    let app = start(TestDb::new(testkit::Backend::Postgres).await, |_| {}).await;
    let id = account(&app, "user-1", "puid-1").await;
    let other = account(&app, "user-1", "puid-2").await;
    let (status, first, _) = app.call(Method::DELETE, &format!("/api/v1/social-media/accounts/{id}?erase=true"), Some("user-1"), None).await;
    assert_eq!(status, 202, "{first}");
    let code = first["confirmation_code"].as_str().unwrap();
    assert_eq!(first["url"].as_str(), Some(format!("{}/deletion/{code}", app.url).as_str()));
    let stored = app.db.store.account(jobs::AccountId(id)).await.unwrap().unwrap();
    assert!(stored.access_token.is_none() && stored.status == jobs::AccountStatus::Disconnected, "disconnected at once");
    let (_, again, _) = app.call(Method::DELETE, &format!("/api/v1/social-media/accounts/{id}?erase=true"), Some("user-1"), None).await;
    assert_eq!(again, first, "asked twice: one erasure");
    let (status, body, _) = app.call(Method::DELETE, &format!("/api/v1/social-media/accounts/{other}?erase=true"), Some("user-2"), None).await;
    assert_error(status, &body, 404, "NOT_FOUND");

    // A sibling service erases everything of a user: one deletion per account, the first the same.
    let erase = format!("{}/api/v1/users/user-1/erase", app.url);
    assert_eq!(app.http.post(&erase).send().await.unwrap().status(), 401);
    let resp = app.http.post(&erase).header("X-Service-Token", "service-token").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let codes: Vec<&str> = body["deletions"].as_array().unwrap().iter().map(|d| d["confirmation_code"].as_str().unwrap()).collect();
    assert_eq!(codes.len(), 2, "{body}");
    assert!(codes.contains(&code));
    assert_eq!(app.db.store.queue_counts(jobs::events::KIND).await.unwrap(), vec![("Pending".to_owned(), 2)], "one erase job per account");
}

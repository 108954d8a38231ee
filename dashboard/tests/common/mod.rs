//! What the dashboard's tests share: the dashboard served in-process over real HTTP on a test
//! database, a client keeping its session cookie, and dead jobs to act on.

#![allow(dead_code)] // each test file uses some of it

use std::time::Duration;

use dashboard::{Access, Dashboard, DashboardConfig, ScheduleConfig};
use jobs::{
    AccountId, Store, Timestamp,
    store::Pool,
    sync::{self, SyncReason},
};
use poem::{EndpointExt, Route, Server, listener::TcpAcceptor};
use reqwest::{StatusCode, header};
use testkit::{TestDb, platform::SandboxServer};

pub struct Ops {
    pub url: String,
    pub http: reqwest::Client,
    pub cookie: String,
    pub dashboard: Dashboard,
    _sandbox: SandboxServer,
}

pub async fn serve(db: &TestDb, access: Access, read_only: bool) -> Ops {
    let sandbox = SandboxServer::start().await;
    let cx = testkit::job_context(&db.store, &sandbox.platforms(Duration::from_secs(5)));
    let config = DashboardConfig {
        access,
        session_key: [9; 32],
        read_only,
        secure_cookies: false,
        schedules: vec![
            ScheduleConfig { name: jobs::sweeps::REFRESH_SWEEP, expr: "0 2 * * *".into() },
            ScheduleConfig { name: jobs::sweeps::SYNC_SWEEP, expr: "0 3 * * *".into() },
        ],
        timezone: chrono_tz::Tz::UTC,
        sweep_chunk: 100,
        live_every: Duration::from_millis(200),
        keep_history_on_disconnect: true,
    };
    let dashboard = Dashboard::new(cx, config, None);
    let app = Route::new().nest(dashboard::BASE, dashboard::routes(dashboard.clone())).boxed();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { Server::new_with_acceptor(TcpAcceptor::from_tokio(listener).unwrap()).run(app).await });
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    Ops { url, http, cookie: String::new(), dashboard, _sandbox: sandbox }
}

impl Ops {
    /// GETs a dashboard page (keeping the session cookie it hands out); returns status and body.
    pub async fn get(&mut self, path: &str) -> (StatusCode, String) {
        let resp = self.http.get(format!("{}/dashboard{path}", self.url)).header(header::COOKIE, &self.cookie).send().await.unwrap();
        if let Some(c) = resp.headers().get(header::SET_COOKIE) {
            self.cookie = c.to_str().unwrap().split(';').next().unwrap().to_owned();
        }
        (resp.status(), resp.text().await.unwrap())
    }

    /// POSTs a form; returns status, `Location` and body.
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> (StatusCode, String, String) {
        let resp = self.http.post(format!("{}/dashboard{path}", self.url)).header(header::COOKIE, &self.cookie).form(form).send().await.unwrap();
        let location = resp.headers().get(header::LOCATION).map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
        (resp.status(), location, resp.text().await.unwrap())
    }

    /// The CSRF token of the forms on `path`.
    pub async fn csrf(&mut self, path: &str) -> String {
        let (_, html) = self.get(path).await;
        let marker = r#"name="csrf" value=""#;
        let at = html.find(marker).expect("a form with a CSRF token") + marker.len();
        html[at..].split('"').next().unwrap().to_owned()
    }
}

/// `n` sync jobs, killed after one attempt.
pub async fn dead_syncs(store: &Store, n: i64) -> Vec<String> {
    let sql = store.pool().pick(
        "UPDATE apalis.jobs SET status = 'Killed', attempts = 1 WHERE id = $1",
        "UPDATE Jobs SET status = 'Killed', attempts = 1 WHERE id = $1",
    );
    let mut ids = vec![];
    for i in 0..n {
        let id = store.enqueue(&sync::job(AccountId(100 + i), SyncReason::Manual, Timestamp::now())).await.unwrap().id;
        match store.pool() {
            Pool::Postgres(p) => sqlx::query(sql).bind(&id).execute(p).await.unwrap().rows_affected(),
            Pool::Sqlite(p) => sqlx::query(sql).bind(&id).execute(p).await.unwrap().rows_affected(),
        };
        ids.push(id);
    }
    ids
}

impl Ops {
    /// Signs in with `name` (empty: the shared password) and `password`; keeps the session.
    pub async fn sign_in(&mut self, name: &str, password: &str) -> StatusCode {
        let resp = self.http.post(format!("{}/dashboard/login", self.url)).form(&[("name", name), ("password", password)]).send().await.unwrap();
        if let Some(c) = resp.headers().get(header::SET_COOKIE) {
            self.cookie = c.to_str().unwrap().split(';').next().unwrap().to_owned();
        }
        resp.status()
    }
}

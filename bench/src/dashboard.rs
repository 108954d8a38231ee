//! Dashboard page times with N jobs in the queue table (97 % done, 1 % each waiting, retrying
//! and dead), N/5 finished attempts in the last hour and 50 000 accounts: the median of 5 GETs
//! of each page over HTTP. The overview is timed cold (its shared frame older than a tick, so
//! the request runs the count queries). Baseline: `SELECT count(*)` of the queue table.

use std::time::{Duration, Instant};

use dashboard::{Access, Dashboard, DashboardConfig, ScheduleConfig};
use poem::{EndpointExt, Route, Server, listener::TcpAcceptor};

use crate::{Figure, median, percentile};

/// How often the overview's shared frame is recomputed (production's tick).
const TICK: Duration = Duration::from_secs(2);

pub async fn run(jobs: i64) -> Vec<Figure> {
    let (db, store, pool) = crate::database().await;
    for sql in [
        "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority, last_result, done_at, dedup_key)
         SELECT lpad(to_hex(i), 26, '0'), (ARRAY['sync', 'refresh', 'notify', 'connect'])[1 + i % 4],
            convert_to('{\"account_id\":' || (i % 50000) || '}', 'UTF8'),
            CASE WHEN i % 100 < 97 THEN 'Done' WHEN i % 100 < 98 THEN 'Pending' ELSE 'Failed' END,
            CASE WHEN i % 100 < 99 THEN 1 ELSE 5 END, 5, now() - (i % 1000) * interval '1 second', 0,
            CASE WHEN i % 100 >= 98 THEN '{\"Err\": \"transient: instagram answered 503\"}'::jsonb ELSE '{\"Ok\": null}'::jsonb END,
            now(), (ARRAY['sync', 'refresh', 'notify', 'connect'])[1 + i % 4] || ':' || (i % 50000)
         FROM generate_series(1, $1) AS i",
        "INSERT INTO job_runs (queue, job_id, attempt, worker, started_at, finished_at, outcome)
         SELECT 'sync', lpad(to_hex(i), 26, '0'), 1, 'bench', (extract(epoch FROM now()) * 1000)::bigint - i % 3600000,
            (extract(epoch FROM now()) * 1000)::bigint - i % 3600000 + 5, CASE WHEN i % 10 = 0 THEN 'dead' ELSE 'succeeded' END
         FROM generate_series(1, $1 / 5) AS i",
    ] {
        sqlx::query(sql).bind(jobs).execute(&pool).await.expect("seeded");
    }
    sqlx::query(
        "INSERT INTO social_accounts (user_id, platform, platform_user_id, username, status, status_changed_at, created_at, updated_at)
         SELECT 'user-' || i, 'instagram', 'puid-' || i, 'creator' || i, 'active', 0, 0, 0 FROM generate_series(1, 50000) AS i",
    )
    .execute(&pool)
    .await
    .expect("accounts seeded");
    sqlx::query("VACUUM ANALYZE").execute(&pool).await.expect("vacuumed");

    let (base, _sandbox) = serve(&store, TICK).await;
    let http = reqwest::Client::new();
    let get = |path: String| {
        let (http, url) = (http.clone(), format!("{base}{path}"));
        async move {
            let resp = http.get(&url).send().await.expect("the dashboard answers");
            assert_eq!(resp.status(), 200, "{url}");
            resp.bytes().await.expect("a page");
        }
    };

    let baseline = median(5, || async {
        sqlx::query("SELECT count(*) FROM apalis.jobs").execute(&pool).await.expect("counted");
    })
    .await;
    let mut cold = vec![];
    for _ in 0..5 {
        tokio::time::sleep(TICK + Duration::from_millis(100)).await; // the shared frame goes stale
        let t = Instant::now();
        get("/".into()).await;
        cold.push(t.elapsed());
    }
    let overview = percentile(&mut cold, 50.0);
    let mut figures = vec![figure("overview (cold: counts computed)", overview, baseline, jobs)];
    for (name, path) in [
        ("job list, newest first", "/jobs"),
        ("job list, dead", "/jobs?state=dead"),
        ("job list, sync and pending", "/jobs?queue=sync&state=pending"),
        ("job list, one account", "/jobs?account=4242"),
        ("job list, error text", "/jobs?error=answered%20503"),
        ("a job's page", "/jobs/00000000000000000000000400"),
        ("accounts", "/accounts"),
        ("health", "/health"),
        ("workers", "/workers"),
        ("cron", "/cron"),
    ] {
        let t = median(5, || get(path.to_owned())).await;
        figures.push(figure(name, t, baseline, jobs));
    }
    drop(db);
    figures
}

/// The dashboard on `store`, open, on a port of its own: its base URL (and the sandbox its
/// context needs, to keep alive). `live_every`: how old the overview's shared frame may be.
pub(crate) async fn serve(store: &jobs::Store, live_every: Duration) -> (String, testkit::platform::SandboxServer) {
    let sandbox = testkit::platform::SandboxServer::start().await;
    let cx = testkit::job_context(store, &sandbox.platforms(Duration::from_secs(5)));
    let config = DashboardConfig {
        access: Access::Open,
        session_key: [3; 32],
        read_only: false,
        secure_cookies: false,
        schedules: vec![
            ScheduleConfig { name: jobs::sweeps::REFRESH_SWEEP, expr: "0 2 * * *".into() },
            ScheduleConfig { name: jobs::sweeps::SYNC_SWEEP, expr: "0 3 * * *".into() },
            ScheduleConfig { name: jobs::retention::PRUNE, expr: "*/10 * * * *".into() },
        ],
        timezone: chrono_tz::Tz::UTC,
        sweep_chunk: jobs::sweeps::CHUNK,
        live_every,
        keep_history_on_disconnect: true,
    };
    let app = Route::new().nest(dashboard::BASE, dashboard::routes(Dashboard::new(cx, config, None))).boxed();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let base = format!("http://{}/dashboard", listener.local_addr().expect("bound"));
    tokio::spawn(async move { Server::new_with_acceptor(TcpAcceptor::from_tokio(listener).expect("a listener")).run(app).await });
    (base, sandbox)
}

fn figure(page: &str, value: Duration, baseline: Duration, jobs: i64) -> Figure {
    Figure::time(format!("dashboard: {page}, {jobs} jobs"), value, "SELECT count(*) of the queue table", baseline, "< 200 ms at 1 000 000 jobs")
}

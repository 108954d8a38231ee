//! One attempt of one job: decode, run the handler, record it in `job_runs`, and end it
//! durably in the queue table.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use jobs::{
    AccountId, connect,
    job::{JobContext, JobError, Outcome, backoff},
    events, notify, refresh,
    store::{AttemptEnd, JobOutcome},
    sync,
};
use serde_json::Value;
use tracing::Instrument;

/// What the handler of one queue needs.
#[derive(Clone)]
pub struct QueueRuntime {
    pub kind: &'static str,
    /// The apalis worker's name (`{process}.{kind}`): what `lock_by` holds for its jobs.
    pub worker_name: String,
    pub cx: JobContext,
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// The longest an attempt may run.
    pub timeout: Duration,
    /// The process's run-record writer, shared by its queues.
    pub runs: crate::run_log::RunLog,
    pub handler: Handler,
    /// What ops have paused: a paused queue's jobs wait, unstarted.
    pub paused: crate::pauses::Paused,
    /// Attempts at once in this process, resized to the queue's live concurrency.
    pub slots: Arc<crate::slots::LiveSlots>,
}

impl QueueRuntime {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        setup: &crate::WorkerSetup,
        kind: &'static str,
        worker_name: String,
        q: crate::QueueConfig,
        runs: crate::run_log::RunLog,
        paused: crate::pauses::Paused,
        slots: Arc<crate::slots::LiveSlots>,
    ) -> Arc<Self> {
        let c = &setup.config;
        let (retry_base, retry_cap, timeout) = (c.retry_base, c.retry_cap, q.timeout);
        Arc::new(Self { kind, worker_name, cx: setup.context.clone(), retry_base, retry_cap, timeout, runs, handler: c.handler, paused, slots })
    }
}

/// The attempt limit of each queue.
pub fn max_attempts(kind: &str) -> i32 {
    match kind {
        connect::KIND => connect::MAX_ATTEMPTS,
        refresh::KIND => refresh::MAX_ATTEMPTS,
        sync::KIND => sync::MAX_ATTEMPTS,
        notify::KIND => notify::MAX_ATTEMPTS,
        events::KIND => events::MAX_ATTEMPTS,
        _ => 1,
    }
}

/// What runs one attempt of a job of a queue (`kind`, payload, context): [`dispatch`] in
/// production; the benchmarks time the runtime alone with a no-op in its place.
pub type Handler = for<'a> fn(&'static str, Value, &'a JobContext) -> Attempt<'a>;

/// A running attempt's handler.
pub type Attempt<'a> = Pin<Box<dyn Future<Output = Result<Outcome, JobError>> + Send + 'a>>;

/// The production [`Handler`]: each queue's job.
pub fn dispatch<'a>(kind: &'static str, args: Value, cx: &'a JobContext) -> Attempt<'a> {
    Box::pin(run_job(kind, args, cx))
}

async fn run_job(kind: &str, args: Value, cx: &JobContext) -> Result<Outcome, JobError> {
    fn decode<T: serde::de::DeserializeOwned>(args: Value) -> Result<T, JobError> {
        serde_json::from_value(args).map_err(|e| JobError::GiveUp { class: "bad_payload", message: e.to_string() })
    }
    match kind {
        connect::KIND => connect::run(decode(args)?, cx).await,
        refresh::KIND => refresh::run(decode(args)?, cx).await,
        sync::KIND => sync::run(decode(args)?, cx).await,
        notify::KIND => notify::run(decode(args)?, cx).await,
        events::KIND => events::run(decode(args)?, cx).await,
        other => Err(JobError::GiveUp { class: "unknown_queue", message: format!("no handler for queue {other}") }),
    }
}

/// How an attempt's end stands once [`run`] returns.
pub enum Ended {
    /// It succeeded: the job is still to be acknowledged, and its run record ended with it.
    Succeeded(crate::run_log::Run, crate::run_log::Ending),
    /// It failed or was deferred: its end and its run record are written.
    Recorded,
}

/// Runs attempt `attempt` (1-based) of job `job_id`. Returns `Err` only when the attempt's
/// start or end could not be written.
pub async fn run(rt: Arc<QueueRuntime>, job_id: String, attempt: i32, args: Value) -> Result<Ended, String> {
    let account_id = args.get("account_id").and_then(Value::as_i64).map(AccountId);
    let span = tracing::info_span!("job", job.kind = rt.kind, job.id = %job_id, job.attempt = attempt, account_id = account_id.map(|a| a.0));
    run_in_span(&rt, &job_id, attempt, account_id, args).instrument(span).await
}

/// How long an attempt of `kind` runs before its start is recorded. An attempt over sooner is
/// recorded once, whole, with its end: one row write instead of two, and no statement to wait
/// for before the handler starts. A longer one has its start recorded while it runs (the
/// dashboard shows it running; a crash leaves it open in the history). A crash inside this
/// window leaves no record of the attempt — only the attempt count its rescue adds — so the
/// queues whose attempts spend a one-time credential (an OAuth code, a rotating refresh token)
/// record every start at once: a spent credential is always explained by a cut-off attempt.
pub fn record_start_after(kind: &str) -> Duration {
    match kind {
        connect::KIND | refresh::KIND => Duration::ZERO,
        _ => Duration::from_millis(100),
    }
}

async fn run_in_span(rt: &QueueRuntime, job_id: &str, attempt: i32, account_id: Option<AccountId>, args: Value) -> Result<Ended, String> {
    let cx = &rt.cx;
    let began = std::time::Instant::now();
    let start = crate::run_log::RunStart { queue: rt.kind, job_id: job_id.to_owned(), account_id, attempt, worker: cx.worker.clone(), at: cx.now() };

    let handler = async {
        use futures::FutureExt;
        let attempt = std::panic::AssertUnwindSafe((rt.handler)(rt.kind, args, cx)).catch_unwind();
        match tokio::time::timeout(rt.timeout, attempt).await {
            Ok(Ok(r)) => r,
            // A bug, not the job's fault: tried again later like any failure, then dead.
            Ok(Err(_)) => Err(JobError::Retry { class: "panic", message: "the handler panicked".into(), after: None }),
            Err(_) => Err(JobError::Retry {
                class: "timeout",
                message: format!("the attempt ran longer than {} s", rt.timeout.as_secs()),
                after: None,
            }),
        }
    };
    tokio::pin!(handler);
    let after = record_start_after(rt.kind);
    let (result, run) = if after.is_zero() {
        let id = rt.runs.start(start).await?;
        (handler.await, crate::run_log::Run::Started(id))
    } else {
        let quick = tokio::select! {
            r = &mut handler => Some(r),
            _ = tokio::time::sleep(after) => None,
        };
        match quick {
            Some(r) => (r, crate::run_log::Run::Whole(start)),
            None => {
                let (r, recorded) = tokio::join!(handler, rt.runs.start(start.clone()));
                let run = match recorded {
                    Ok(id) => crate::run_log::Run::Started(id),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot record the attempt's start; recording it whole at its end");
                        crate::run_log::Run::Whole(start)
                    }
                };
                (r, run)
            }
        }
    };

    let now = cx.now();
    let max = max_attempts(rt.kind);
    let (end, outcome, class, message) = match &result {
        Ok(o) => {
            let text = match o {
                Outcome::Done(t) | Outcome::Skipped(t) => t.clone(),
            };
            tracing::info!(outcome = %text, "job succeeded");
            (None, JobOutcome::Succeeded, None, None)
        }
        Err(JobError::Defer { until, payload }) => {
            tracing::debug!(until = %until, "job deferred");
            (Some(AttemptEnd::Defer { run_at: cx.real(*until), payload: payload.clone() }), JobOutcome::Deferred, None, None)
        }
        Err(e @ JobError::GiveUp { class, message }) => {
            tracing::warn!(error = %e, "job failed for good");
            (Some(AttemptEnd::Killed { error: e.to_string() }), JobOutcome::Dead, Some(*class), Some(message.clone()))
        }
        Err(e @ JobError::Retry { class, message, after }) => {
            if attempt >= max {
                tracing::warn!(error = %e, attempts = attempt, "job failed on its last attempt; it is dead");
                (Some(AttemptEnd::Dead { error: e.to_string() }), JobOutcome::Dead, Some(*class), Some(message.clone()))
            } else {
                let wait = backoff(attempt as u32, rt.retry_base, rt.retry_cap).max(after.unwrap_or_default());
                tracing::info!(error = %e, retry_in_ms = wait.as_millis() as u64, "job failed; retrying later");
                (Some(AttemptEnd::Retry { run_at: cx.real(now.plus(wait)), error: e.to_string() }), JobOutcome::Retrying, Some(*class), Some(message.clone()))
            }
        }
    };
    metrics::counter!("socialsync_job_attempts_total", "queue" => rt.kind, "outcome" => outcome.as_str()).increment(1);
    metrics::histogram!("socialsync_job_duration_seconds", "queue" => rt.kind).record(began.elapsed().as_secs_f64());
    let ending = crate::run_log::Ending { outcome, error_class: class.map(str::to_owned), error: message, at: now };
    let Some(end) = end else {
        return Ok(Ended::Succeeded(run, ending));
    };
    // The run record first, as for a success: whoever sees the job's end (the dashboard, the
    // API, a test) sees its whole history. A crash in between only reruns the attempt.
    rt.runs.end(run, ending).await?;
    // The attempt is counted here, except for a deferral, which never ran.
    let counted = if matches!(end, AttemptEnd::Defer { .. }) { attempt - 1 } else { attempt };
    let held = cx.store.end_attempt(job_id, &rt.worker_name, counted, &end).await.map_err(|e| e.to_string())?;
    if !held {
        tracing::warn!("the job was rescued from this worker meanwhile; its end is not recorded");
    }
    Ok(Ended::Recorded)
}

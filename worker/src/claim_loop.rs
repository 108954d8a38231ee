//! The PostgreSQL queues, run by socialsync's own loop rather than apalis' worker.
//!
//! Why: apalis' worker claims a batch, waits until it is drained, then claims again, and
//! acknowledges through the same state machine between fetches; once handlers take a few
//! milliseconds (ours wait for their run records) it runs at half its no-op rate, and every
//! claim waits for the slowest job of the previous batch (measured 2026-11-27 at 132e2f9). Here:
//! - a claim is made as soon as a slot is free, for as many jobs as slots are free plus as many
//!   as ended while the last claim was under way (claimed ahead: quick jobs find a slot about
//!   when they arrive, long ones are not hoarded), at most `batch` (`apalis.get_jobs`, the same
//!   claim apalis makes), with up to [`CLAIMS_IN_FLIGHT`] claims under way at once (one beside
//!   another waits for room for half a batch);
//! - a job starts once it has a slot; at shutdown, a job claimed and not started is put back
//!   as never claimed (no attempt counted);
//! - a slot is freed when the handler ends, before its acknowledgement is written: successes
//!   are acknowledged in groups ([`jobs::group`]), each job `Done` and its run record ended in
//!   one statement ([`claims::acknowledge`]), up to [`ACK_WRITERS`] at once (one beside
//!   another waits for half a batch, or for the other to end); at most [`OPEN_PER_SLOT`] × concurrency jobs are
//!   claimed and not yet acknowledged;
//! - idle, it wakes on apalis' insert notification (LISTEN) or every `poll_interval`;
//! - a queue ops have paused ([`crate::pauses`]) claims nothing, a paused platform's jobs are
//!   passed over by the claim, and a job claimed and not started when its pause is heard is
//!   put back;
//! - every `poll_interval` the process rescues the jobs of its queues' dead workers, as
//!   apalis does, in one statement.
//!
//! The table, the states and the rescue are apalis' own (DESIGN.md §5.1 holds as before: a
//! claimed job is `Queued` with `lock_by` set until its end is written; a worker whose process
//! stops beating (`queues::keep_alive`) has its jobs put back). SQLite keeps apalis' worker.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
    time::Duration,
};

use futures::stream::{FuturesUnordered, StreamExt};

use jobs::{
    group::Grouped,
    store::claims::{self, Claimed, Success, WholeRun},
};
use sqlx::PgPool;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::{
    QueueConfig, SHUTDOWN_GRACE,
    attempt::{Ended, QueueRuntime},
    run_log::Run,
};

/// Claimed jobs not yet acknowledged, per slot of concurrency. With 4, claims at concurrency
/// 64 on no-op jobs found room for 42 jobs on average, the rest of the 256 waiting for their
/// acknowledgements (measured 2026-11-28 at ee31429).
pub(crate) const OPEN_PER_SLOT: usize = 8;
/// At most this many acknowledgements share a statement.
const MAX_ACK_GROUP: usize = 512;
/// Acknowledgement statements of a queue running at once (their jobs never overlap). Each
/// waits for its WAL flush; more under way share flushes (PostgreSQL's group commit): no-op
/// jobs at concurrency 64 ran at ×0.6–0.7 of the statements alone with 2, ×0.7–0.8 with 4,
/// about the same with 6 or 8 (measured 2026-11-28 at ee31429). Four leave most of the process's
/// 10 connections to handlers and the other queues.
const ACK_WRITERS: usize = 4;
/// Claim statements of a queue running at once (`SKIP LOCKED`: they never claim the same job).
/// One at a time, a claim's round trip bounded the queue: at concurrency 64 on no-op jobs it
/// took 3.7 ms for 31 jobs (measured 2026-11-27 at a606ace).
const CLAIMS_IN_FLIGHT: usize = 2;

/// What a queue's loop and its attempts share.
#[derive(Default)]
struct Flow {
    /// Jobs claimed, or asked for by a claim under way, that hold no slot yet.
    unstarted: AtomicUsize,
    /// Attempts ended so far (their slots freed): how many ended while a claim was under way
    /// is how many the next claim asks for ahead.
    ended: AtomicUsize,
    /// Signalled when a slot frees or a claimed job's `open` permit is given back.
    freed: Notify,
}

/// One queue's loop: claims, runs and acknowledges until `shutdown`, then gives running
/// attempts [`SHUTDOWN_GRACE`] to end and puts back the jobs not started.
pub async fn run_queue(
    pool: PgPool,
    rt: Arc<QueueRuntime>,
    q: QueueConfig,
    poll: Duration,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let kind = rt.kind;
    let first = rt.worker_name.clone();
    let (mut rt, mut restarts, mut registered) = (rt, 0, false);
    let concurrency = q.concurrency.max(1);
    let batch = q.batch.max(1);
    // A claim beside one already in flight waits for half a batch of room: sent at the
    // first free slot, it carried a handful of jobs (14 on average at concurrency 64), and most
    // of a claim's cost is fixed: 0.45 ms for one job, 1.0 ms for 64 (measured
    // 2026-11-27 at efc983d). With no claim in flight, room for one is enough (pick-up latency). An
    // acknowledgement beside another written waits for as many, for the same reason.
    let least_beside = (batch.min(concurrency) / 2).max(1);
    let acks = {
        let pool = pool.clone();
        Grouped::with_writers(MAX_ACK_GROUP, ACK_WRITERS, least_beside, move |done: Vec<Success>| {
            let pool = pool.clone();
            async move {
                claims::acknowledge(&pool, kind, &done)
                    .await
                    .map_err(|e| e.to_string())
            }
        })
    };
    let open_max = concurrency * OPEN_PER_SLOT;
    let open = Arc::new(Semaphore::new(open_max));
    // The slots follow the queue's live concurrency (`crate::slots`); the bounds above stay
    // those of the configured one, so a queue set higher runs at most `open_max` at once.
    let run = Running { pool: pool.clone(), acks, slots: rt.slots.clone(), flow: Arc::default(), shutdown: shutdown.clone() };
    let (slots, flow) = (&run.slots, &run.flow);
    // Jobs a claim asks for beyond the free slots: as many as ended while the last claim was
    // under way, so that they find a slot about when they arrive. Quick jobs keep claims full
    // instead of each carrying only the slots freed during the one before (26 jobs a claim,
    // not 64, at concurrency 64 on no-op jobs, measured 2026-11-28 at ee31429); long jobs, of which
    // next to none end during a claim, are not claimed ahead, so a worker does not hold jobs
    // that another's free slot could run.
    let mut ahead = 0;
    // Claims in flight, each with the worker it claims for and what it took.
    let mut in_flight = FuturesUnordered::new();
    // No new claim before this instant: after a claim that found nothing (an insert
    // notification ends the wait early: `true`) or one that failed (`false`).
    let mut resume: Option<(tokio::time::Instant, bool)> = None;
    // Ops' pauses: a paused queue claims nothing until resumed.
    let mut pause_changes = rt.paused.clone();
    loop {
        if !registered {
            // Under a new name only once the old name's claims are in and their jobs started.
            while let Some(claim) = in_flight.next().await {
                run.started(claim);
            }
            if let Err(e) = claims::register_worker(&pool, &rt.worker_name, kind).await {
                tracing::warn!(worker = %rt.worker_name, error = %e, "cannot register the queue worker; trying again");
                if pause(poll, &shutdown).await {
                    break;
                }
                continue;
            }
            registered = true;
        }
        let paused = resume.is_some();
        // Paused platforms' jobs are passed over; with all of them paused, nothing is claimed.
        let except = rt.paused.paused_platforms(kind);
        let held = rt.paused.holding(kind, None).is_some() || except.len() == jobs::Platform::ALL.len();
        let may_claim = !paused && !held && in_flight.len() < CLAIMS_IN_FLIGHT && !shutdown.is_cancelled();
        if may_claim {
            let need = if in_flight.is_empty() { 1 } else { least_beside };
            let room = (slots.available() + ahead).saturating_sub(flow.unstarted.load(Relaxed));
            let n = room.min(open.available_permits()).min(batch);
            if n >= need {
                let taken = open.clone().try_acquire_many_owned(n as u32).expect("only this loop takes open permits");
                flow.unstarted.fetch_add(n, Relaxed);
                let (pool, rt, ended) = (pool.clone(), rt.clone(), flow.ended.load(Relaxed));
                in_flight.push(async move {
                    let claimed = claims::claim(&pool, &rt.worker_name, kind, n, &except).await;
                    Claim { rt, claimed, taken, ended }
                });
                continue;
            }
        }
        let (until, wakeable) = resume.unwrap_or((tokio::time::Instant::now(), false));
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(claim) = in_flight.next(), if !in_flight.is_empty() => {
                match &claim.claimed {
                    Ok(jobs) if jobs.is_empty() => resume = Some((tokio::time::Instant::now() + poll, true)),
                    Ok(_) => ahead = flow.ended.load(Relaxed).wrapping_sub(claim.ended).min(concurrency),
                    Err(e) => {
                        // A claim cut off with its connection may have committed: jobs locked by
                        // this name that no attempt runs. Go on under a new name, so the old one
                        // stops beating and the rescue gives its jobs to a live worker, as for a
                        // crashed process (attempts still running under it end as usual, unless
                        // rescued first).
                        if e.is_unavailable() && claim.rt.worker_name == rt.worker_name {
                            restarts += 1;
                            let name = crate::queues::incarnation(&first, restarts);
                            tracing::warn!(worker = %rt.worker_name, error = %e, new_name = %name, "lost the database while claiming jobs; claiming again under a new name");
                            rt = Arc::new(QueueRuntime {
                                worker_name: name,
                                ..(*rt).clone()
                            });
                            registered = false;
                        } else if !e.is_unavailable() {
                            tracing::warn!(worker = %rt.worker_name, error = %e, "cannot claim jobs; trying again");
                        }
                        resume = Some((tokio::time::Instant::now() + poll, false));
                    }
                }
                run.started(claim);
            }
            _ = wake.notified(), if paused && wakeable => resume = None,
            _ = tokio::time::sleep_until(until), if paused => resume = None,
            _ = flow.freed.notified(), if may_claim => {}
            // A pause or a resume: claim again at once (a resumed platform's jobs are due).
            _ = pause_changes.changed() => resume = None,
        }
    }
    // Claims already sent may have committed: their jobs are put back, as the jobs claimed
    // ahead and not started are.
    while let Some(claim) = in_flight.next().await {
        run.started(claim);
    }
    // Every claimed job holds an `open` permit until its end is written or it is put back:
    // taking them all is waiting for the last.
    if tokio::time::timeout(SHUTDOWN_GRACE, open.acquire_many(open_max as u32))
        .await
        .is_err()
    {
        tracing::warn!(worker = %rt.worker_name, "attempts still running after the grace period; their jobs will be rescued and run again");
    }
}

/// A claim's answer: the worker it claimed for, the jobs, the `open` permits it took for as
/// many as it asked for, and [`Flow::ended`] when it was sent.
struct Claim {
    rt: Arc<QueueRuntime>,
    claimed: jobs::store::Result<Vec<Claimed>>,
    taken: OwnedSemaphorePermit,
    ended: usize,
}

/// A claimed job's `open` permit: given back, it wakes the loop, which may be waiting for it.
struct Open(Option<OwnedSemaphorePermit>, Arc<Flow>);

impl Drop for Open {
    fn drop(&mut self) {
        // The permit first: woken before it is back, the loop would find no room and wait on.
        drop(self.0.take());
        self.1.freed.notify_one();
    }
}

/// What every attempt of a queue's loop shares.
#[derive(Clone)]
struct Running {
    pool: PgPool,
    acks: Grouped<Success, bool>,
    slots: Arc<crate::slots::LiveSlots>,
    flow: Arc<Flow>,
    shutdown: CancellationToken,
}

impl Running {
    /// Starts an attempt for each job a claim brought, each as soon as it has a slot; what
    /// was asked for and not found is given back.
    fn started(&self, Claim { rt, claimed, mut taken, .. }: Claim) {
        let jobs = claimed.unwrap_or_default();
        let unfilled = taken.num_permits() - jobs.len();
        self.flow.unstarted.fetch_sub(unfilled, Relaxed);
        if unfilled > 0 {
            drop(taken.split(unfilled));
            self.flow.freed.notify_one();
        }
        for job in jobs {
            let open = taken.split(1).expect("a permit a job");
            tokio::spawn(self.clone().attempt(rt.clone(), job, open));
        }
    }

    /// One attempt of a claimed job once it has a slot, then its acknowledgement (see
    /// [`until_written`]). After shutdown, a job still without a slot is put back unstarted.
    async fn attempt(self, rt: Arc<QueueRuntime>, job: Claimed, open: OwnedSemaphorePermit) {
        let _open = Open(Some(open), self.flow.clone());
        let Claimed {
            id,
            payload,
            attempt,
            platform,
        } = job;
        let slot = tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => None,
            slot = self.slots.acquire() => Some(slot),
        };
        self.flow.unstarted.fetch_sub(1, Relaxed);
        // Not started after a shutdown, nor once its queue or its platform's jobs are paused:
        // put back as never claimed.
        let slot = slot.filter(|_| rt.paused.holding(rt.kind, platform).is_none());
        let Some(slot) = slot else {
            // Once: if it fails, the rescue puts the job back (counting an attempt).
            if let Err(e) = claims::release(&self.pool, &rt.worker_name, std::slice::from_ref(&id)).await {
                tracing::warn!(job.id = %id, error = %e, "cannot put back a job not started; it will be rescued");
            }
            return;
        };
        let ended = crate::attempt::run(rt.clone(), id.clone(), attempt, payload).await;
        drop(slot);
        self.flow.ended.fetch_add(1, Relaxed);
        self.flow.freed.notify_one();
        match ended {
            Ok(Ended::Recorded) => {}
            Ok(Ended::Succeeded(run, ending)) => {
                let run = match run {
                    Run::Started(run_id) => Ok(run_id),
                    Run::Whole(s) => Err(WholeRun {
                        account_id: s.account_id,
                        worker: s.worker,
                        started_at: s.at,
                    }),
                };
                let done = Success {
                    job_id: id,
                    worker: rt.worker_name.clone(),
                    attempt,
                    at: ending.at,
                    run,
                };
                let held = until_written(&self.shutdown, &format!("cannot acknowledge job {}", done.job_id), || self.acks.call(done.clone())).await;
                if held == Some(false) {
                    tracing::warn!(job.id = %done.job_id, "the job was rescued from this worker meanwhile; its success is not recorded on it");
                }
            }
            // The attempt's start or end could not be written: put the job back unchanged, to be
            // claimed again (handlers are idempotent).
            Err(e) => {
                tracing::warn!(job.id = %id, error = %e, "cannot record the attempt; putting the job back");
                let ids = std::slice::from_ref(&id);
                until_written(&self.shutdown, &format!("cannot put job {id} back"), || claims::release(&self.pool, &rt.worker_name, ids)).await;
            }
        }
    }
}

/// Sleeps `d`; true if shutdown came first.
async fn pause(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

/// Runs `write` until it succeeds, every second, while the process runs (None if shutdown
/// came first): the job stays claimed until its end is written, and if the process stops
/// first, the rescue runs it again.
async fn until_written<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    shutdown: &CancellationToken,
    what: &str,
    mut write: impl FnMut() -> F,
) -> Option<T> {
    loop {
        match write().await {
            Ok(v) => return Some(v),
            Err(e) => tracing::warn!(error = %e, "{what}; trying again"),
        }
        if pause(Duration::from_secs(1), shutdown).await {
            return None;
        }
    }
}

/// Puts back the jobs of `queues`' dead workers, every `poll`: one statement for all.
pub async fn rescue_loop(
    pool: PgPool,
    queues: Vec<&'static str>,
    poll: Duration,
    orphan_after: Duration,
    shutdown: CancellationToken,
) {
    loop {
        match claims::rescue_orphans(&pool, &queues, orphan_after).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                jobs = n,
                "rescued the jobs of a worker that stopped beating"
            ),
            Err(e) => tracing::debug!(error = %e, "cannot rescue orphaned jobs"),
        }
        if pause(poll, &shutdown).await {
            return;
        }
    }
}

/// Wakes each queue's loop when apalis' insert trigger announces a due job of its queue
/// (LISTEN `apalis::job::insert`); reconnects after a lost connection.
pub async fn listen(
    pool: PgPool,
    wakers: HashMap<&'static str, Arc<Notify>>,
    poll: Duration,
    shutdown: CancellationToken,
) {
    #[derive(serde::Deserialize)]
    struct Inserted {
        job_type: String,
    }
    'connect: loop {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "cannot listen for new jobs; polling meanwhile");
                if pause(poll, &shutdown).await {
                    return;
                }
                continue 'connect;
            }
        };
        if let Err(e) = listener.listen("apalis::job::insert").await {
            tracing::debug!(error = %e, "cannot listen for new jobs; polling meanwhile");
            if pause(poll, &shutdown).await {
                return;
            }
            continue 'connect;
        }
        loop {
            let note = tokio::select! {
                _ = shutdown.cancelled() => return,
                n = listener.recv() => n,
            };
            match note {
                Ok(n) => {
                    if let Some(w) = serde_json::from_str::<Inserted>(n.payload())
                        .ok()
                        .and_then(|i| wakers.get(i.job_type.as_str()))
                    {
                        w.notify_one();
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "lost the new-job notifications; reconnecting");
                    if pause(poll, &shutdown).await {
                        return;
                    }
                    continue 'connect;
                }
            }
        }
    }
}

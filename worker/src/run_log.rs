//! Run records (`job_runs`) written in groups ([`jobs::group`]): every attempt still waits for
//! its start to be recorded before its handler runs, and for its end before apalis
//! acknowledges it, but the attempts running at the same moment share one statement for their
//! starts and one for their ends. At concurrency 64 that is a statement per group instead of
//! two per job; at concurrency 1 it is the same statement as before, one channel hop later.

use jobs::{
    AccountId, Timestamp,
    group::Grouped,
    store::{JobRunEnd, JobRunStart, Store},
};

/// At most this many records share a statement.
const MAX_GROUP: usize = 512;

/// One attempt's start, owned so it can wait in the writer's queue.
pub struct RunStart {
    pub queue: &'static str,
    pub job_id: String,
    pub account_id: Option<AccountId>,
    pub attempt: i32,
    pub worker: String,
    pub at: Timestamp,
}

/// The process's run-record writers; cheap to clone.
#[derive(Clone)]
pub struct RunLog {
    starts: Grouped<RunStart, i64>,
    ends: Grouped<JobRunEnd, ()>,
}

impl RunLog {
    /// Starts the writer tasks (on the current tokio runtime).
    pub fn new(store: Store) -> Self {
        let for_ends = store.clone();
        let starts = Grouped::new(MAX_GROUP, move |starts: Vec<RunStart>| {
            let store = store.clone();
            async move {
                let runs: Vec<_> = starts
                    .iter()
                    .map(|r| (JobRunStart { queue: r.queue, job_id: &r.job_id, account_id: r.account_id, attempt: r.attempt, worker: &r.worker }, r.at))
                    .collect();
                store.start_job_runs(&runs).await.map_err(|e| e.to_string())
            }
        });
        let ends = Grouped::new(MAX_GROUP, move |ends: Vec<JobRunEnd>| {
            let store = for_ends.clone();
            async move { store.finish_job_runs(&ends).await.map(|()| vec![(); ends.len()]).map_err(|e| e.to_string()) }
        });
        Self { starts, ends }
    }

    /// Records an attempt's start; returns its run id once it is written.
    pub async fn start(&self, run: RunStart) -> Result<i64, String> {
        self.starts.call(run).await
    }

    /// Records how an attempt ended, once it is written.
    pub async fn end(&self, end: JobRunEnd) -> Result<(), String> {
        self.ends.call(end).await
    }
}

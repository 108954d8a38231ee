//! Run records (`job_runs`) written in groups ([`jobs::group`]): the attempts running at the
//! same moment share one statement for their records and one for their ends. An attempt over
//! within [`crate::attempt::record_start_after`] (100 ms; not connect or refresh) is recorded
//! once, whole, at its end; a longer one has its start recorded while it runs, and its end
//! later. Every attempt waits for its
//! record to be written before its job is acknowledged (on PostgreSQL a success's record is
//! written by the acknowledgement itself, `jobs::store::claims::acknowledge`).

use jobs::{
    AccountId, Timestamp,
    group::Grouped,
    store::{JobRunEnd, JobRunEnding, JobRunStart, Store},
};

/// At most this many records share a statement.
const MAX_GROUP: usize = 512;

/// One attempt's start, owned so it can wait in the writer's queue.
#[derive(Clone, Debug)]
pub struct RunStart {
    pub queue: &'static str,
    pub job_id: String,
    pub account_id: Option<AccountId>,
    pub attempt: i32,
    pub worker: String,
    pub at: Timestamp,
}

/// An attempt's run record, as it stands when the attempt ends.
#[derive(Debug)]
pub enum Run {
    /// Its start is recorded, under this id.
    Started(i64),
    /// Nothing is recorded yet: it is to be written whole.
    Whole(RunStart),
}

/// How an attempt ended.
pub type Ending = JobRunEnding;

/// The process's run-record writers; cheap to clone.
#[derive(Clone)]
pub struct RunLog {
    records: Grouped<(RunStart, Option<Ending>), i64>,
    ends: Grouped<JobRunEnd, ()>,
}

impl RunLog {
    /// Starts the writer tasks (on the current tokio runtime).
    pub fn new(store: Store) -> Self {
        let for_ends = store.clone();
        let records = Grouped::new(MAX_GROUP, move |records: Vec<(RunStart, Option<Ending>)>| {
            let store = store.clone();
            async move {
                let runs: Vec<_> = records
                    .iter()
                    .map(|(r, end)| (JobRunStart { queue: r.queue, job_id: &r.job_id, account_id: r.account_id, attempt: r.attempt, worker: &r.worker }, r.at, end.as_ref()))
                    .collect();
                store.record_job_runs(&runs).await.map_err(|e| e.to_string())
            }
        });
        let ends = Grouped::new(MAX_GROUP, move |ends: Vec<JobRunEnd>| {
            let store = for_ends.clone();
            async move { store.finish_job_runs(&ends).await.map(|()| vec![(); ends.len()]).map_err(|e| e.to_string()) }
        });
        Self { records, ends }
    }

    /// Records an attempt's start; returns its run id once it is written.
    pub async fn start(&self, run: RunStart) -> Result<i64, String> {
        self.records.call((run, None)).await
    }

    /// Records how an attempt ended (its whole record, if its start was not written), once
    /// it is written.
    pub async fn end(&self, run: Run, ending: Ending) -> Result<(), String> {
        match run {
            Run::Started(id) => {
                let Ending { outcome, error_class, error, at } = ending;
                self.ends.call(JobRunEnd { id, outcome, error_class, error, at }).await
            }
            Run::Whole(start) => self.records.call((start, Some(ending))).await.map(drop),
        }
    }
}

//! Run records (`job_runs`) written in groups: every attempt still waits for its start to be
//! recorded before its handler runs, and for its end before apalis acknowledges it, but the
//! attempts running at the same moment share one statement for their starts and one for their
//! ends ("group commit"). At concurrency 64 that is a statement per group instead of two per
//! job; at concurrency 1 it is the same statement as before, one channel hop later.

use jobs::{
    AccountId, Timestamp,
    store::{JobRunEnd, JobRunStart, Store},
};
use tokio::sync::{mpsc, oneshot};

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

enum Request {
    Start(RunStart, oneshot::Sender<Result<i64, String>>),
    End(JobRunEnd, oneshot::Sender<Result<(), String>>),
}

/// The process's run-record writer; cheap to clone. Its task ends with the last clone.
#[derive(Clone)]
pub struct RunLog {
    requests: mpsc::UnboundedSender<Request>,
}

impl RunLog {
    /// Starts the writer task (on the current tokio runtime).
    pub fn new(store: Store) -> Self {
        let (requests, rx) = mpsc::unbounded_channel();
        tokio::spawn(write(store, rx));
        Self { requests }
    }

    /// Records an attempt's start; returns its run id once it is written.
    pub async fn start(&self, run: RunStart) -> Result<i64, String> {
        let (tx, rx) = oneshot::channel();
        self.requests.send(Request::Start(run, tx)).map_err(|_| STOPPED.to_owned())?;
        rx.await.map_err(|_| STOPPED.to_owned())?
    }

    /// Records how an attempt ended, once it is written.
    pub async fn end(&self, end: JobRunEnd) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.requests.send(Request::End(end, tx)).map_err(|_| STOPPED.to_owned())?;
        rx.await.map_err(|_| STOPPED.to_owned())?
    }
}

const STOPPED: &str = "the run-record writer stopped";

/// Takes whatever has queued up since the last statement (at least one request), writes the
/// starts and the ends side by side, answers each waiting attempt.
async fn write(store: Store, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
        let (mut starts, mut start_replies, mut ends, mut end_replies) = (vec![], vec![], vec![], vec![]);
        for request in group.drain(..) {
            match request {
                Request::Start(run, reply) => {
                    starts.push(run);
                    start_replies.push(reply);
                }
                Request::End(end, reply) => {
                    ends.push(end);
                    end_replies.push(reply);
                }
            }
        }
        let record_starts = async {
            if starts.is_empty() {
                return Ok(vec![]);
            }
            let runs: Vec<_> = starts
                .iter()
                .map(|r| (JobRunStart { queue: r.queue, job_id: &r.job_id, account_id: r.account_id, attempt: r.attempt, worker: &r.worker }, r.at))
                .collect();
            store.start_job_runs(&runs).await
        };
        let record_ends = async { if ends.is_empty() { Ok(()) } else { store.finish_job_runs(&ends).await } };
        let (started, ended) = tokio::join!(record_starts, record_ends);
        match started {
            Ok(ids) => start_replies.into_iter().zip(ids).for_each(|(reply, id)| drop(reply.send(Ok(id)))),
            Err(e) => start_replies.into_iter().for_each(|reply| drop(reply.send(Err(e.to_string())))),
        }
        let ended = ended.map_err(|e| e.to_string());
        end_replies.into_iter().for_each(|reply| drop(reply.send(ended.clone())));
    }
}

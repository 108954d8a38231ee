//! Group commit: callers that arrive while a write is running share the next one.
//!
//! Each caller still waits for its own answer, so nothing is acknowledged before it is
//! written; but N concurrent callers cost about one statement instead of N. Used for the
//! workers' run records, the claim loop's acknowledgements (two writers a queue) and the API's
//! rate-limit hits, where many requests write the same small table at once.

use std::{future::Future, sync::Arc};

use tokio::sync::{Mutex, mpsc, oneshot};

type Reply<T> = oneshot::Sender<Result<T, String>>;
type Requests<Req, Resp> = Arc<Mutex<mpsc::UnboundedReceiver<(Req, Reply<Resp>)>>>;

/// A writer of `Req`s in groups, each answered with a `Resp`; cheap to clone. Its tasks (on the
/// tokio runtime it was created on) end with the last clone.
pub struct Grouped<Req, Resp> {
    requests: mpsc::UnboundedSender<(Req, Reply<Resp>)>,
}

impl<Req, Resp> Clone for Grouped<Req, Resp> {
    fn clone(&self) -> Self {
        Self { requests: self.requests.clone() }
    }
}

const STOPPED: &str = "the group writer stopped";

impl<Req: Send + 'static, Resp: Send + 'static> Grouped<Req, Resp> {
    /// `write` gets every request waiting (at most `max` at a time) and must answer each, in
    /// order; an error answers the whole group.
    pub fn new<W, Fut>(max: usize, write: W) -> Self
    where
        W: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Resp>, String>> + Send + 'static,
    {
        Self::with_writers(max, 1, write)
    }

    /// As [`Grouped::new`], with up to `writers` groups written at once: while one statement
    /// runs, the next group gathers and starts on another connection (the requests of
    /// different groups must not conflict).
    pub fn with_writers<W, Fut>(max: usize, writers: usize, write: W) -> Self
    where
        W: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Resp>, String>> + Send + 'static,
    {
        let (requests, rx) = mpsc::unbounded_channel::<(Req, Reply<Resp>)>();
        let (rx, write) = (Arc::new(Mutex::new(rx)), Arc::new(write));
        for _ in 0..writers.max(1) {
            tokio::spawn(Self::writer(rx.clone(), max, write.clone()));
        }
        Self { requests }
    }

    async fn writer<W, Fut>(rx: Requests<Req, Resp>, max: usize, write: Arc<W>)
    where
        W: Fn(Vec<Req>) -> Fut,
        Fut: Future<Output = Result<Vec<Resp>, String>>,
    {
        let mut group = Vec::with_capacity(max);
        // The receiver is held only while a group gathers, not while it is written.
        while rx.lock().await.recv_many(&mut group, max).await > 0 {
            let (reqs, replies): (Vec<Req>, Vec<Reply<Resp>>) = group.drain(..).unzip();
            match write(reqs).await {
                Ok(answers) if answers.len() == replies.len() => {
                    replies.into_iter().zip(answers).for_each(|(reply, a)| drop(reply.send(Ok(a))));
                }
                Ok(answers) => {
                    let e = format!("a group of {} got {} answers", replies.len(), answers.len());
                    replies.into_iter().for_each(|reply| drop(reply.send(Err(e.clone()))));
                }
                Err(e) => replies.into_iter().for_each(|reply| drop(reply.send(Err(e.clone())))),
            }
        }
    }

    /// Queues `req` for the next group and waits for its answer.
    pub async fn call(&self, req: Req) -> Result<Resp, String> {
        let (tx, rx) = oneshot::channel();
        self.requests.send((req, tx)).map_err(|_| STOPPED.to_owned())?;
        rx.await.map_err(|_| STOPPED.to_owned())?
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::Grouped;

    /// A writer that waits until `writers` groups are being written at once.
    fn meeting(writers: usize) -> Grouped<u32, u32> {
        let all_in = Arc::new(tokio::sync::Barrier::new(2));
        Grouped::with_writers(1, writers, move |reqs: Vec<u32>| {
            let all_in = all_in.clone();
            async move {
                all_in.wait().await;
                Ok(reqs.into_iter().map(|r| r * 10).collect())
            }
        })
    }

    #[tokio::test]
    async fn two_writers_write_two_groups_at_once_and_answer_each_caller() {
        let g = meeting(2);
        let (a, b) = tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(g.call(1), g.call(2)) }).await.expect("both groups written together");
        assert_eq!((a.unwrap(), b.unwrap()), (10, 20));
    }

    #[tokio::test]
    async fn one_writer_writes_one_group_at_a_time() {
        let g = meeting(1);
        let both = tokio::time::timeout(Duration::from_millis(300), async { tokio::join!(g.call(1), g.call(2)) }).await;
        assert!(both.is_err(), "the second group waited for the first");
    }
}

//! Group commit: callers that arrive while a write is running share the next one.
//!
//! Each caller still waits for its own answer, so nothing is acknowledged before it is
//! written; but N concurrent callers cost about one statement instead of N. Used for the
//! workers' run records and the API's rate-limit hits, where many requests write the same
//! small table at once.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

type Reply<T> = oneshot::Sender<Result<T, String>>;

/// A writer of `Req`s in groups, each answered with a `Resp`; cheap to clone. Its task (on the
/// tokio runtime it was created on) ends with the last clone.
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
        W: Fn(Vec<Req>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<Resp>, String>> + Send,
    {
        let (requests, mut rx) = mpsc::unbounded_channel::<(Req, Reply<Resp>)>();
        tokio::spawn(async move {
            let mut group = Vec::with_capacity(max);
            while rx.recv_many(&mut group, max).await > 0 {
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
        });
        Self { requests }
    }

    /// Queues `req` for the next group and waits for its answer.
    pub async fn call(&self, req: Req) -> Result<Resp, String> {
        let (tx, rx) = oneshot::channel();
        self.requests.send((req, tx)).map_err(|_| STOPPED.to_owned())?;
        rx.await.map_err(|_| STOPPED.to_owned())?
    }
}

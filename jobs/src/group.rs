//! Group commit: callers that arrive while a write is running share the next one.
//!
//! Each caller still waits for its own answer, so nothing is acknowledged before it is
//! written; but N concurrent callers cost about one statement instead of N. Used for the
//! workers' run records, the claim loop's acknowledgements (two writers a queue) and the API's
//! rate-limit hits, where many requests write the same small table at once.

use std::{future::Future, sync::Arc};

use tokio::sync::{Mutex, mpsc, oneshot, watch};

type Reply<T> = oneshot::Sender<Result<T, String>>;
type Requests<Req, Resp> = Arc<Mutex<mpsc::UnboundedReceiver<(Req, Reply<Resp>)>>>;

/// One group being written, counted while it lives (a writer's task may end in its write).
struct Writing<'a>(&'a watch::Sender<usize>);

impl<'a> Writing<'a> {
    fn start(writing: &'a watch::Sender<usize>) -> Self {
        writing.send_modify(|n| *n += 1);
        Self(writing)
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

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
        Self::with_writers(max, 1, 1, write)
    }

    /// As [`Grouped::new`], with up to `writers` groups written at once: while one statement
    /// runs, the next group gathers and starts on another connection (the requests of
    /// different groups must not conflict). A group written beside another waits until it
    /// holds `least_beside` requests, or until the other is written: a writer freed took
    /// whatever was queued, and a statement of a few requests cost nearly as much as a full
    /// one (measured 2026-11-28 at c41d8b0 and 344bc3d). Alone, a writer never waits.
    pub fn with_writers<W, Fut>(max: usize, writers: usize, least_beside: usize, write: W) -> Self
    where
        W: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Resp>, String>> + Send + 'static,
    {
        let (requests, rx) = mpsc::unbounded_channel::<(Req, Reply<Resp>)>();
        let (rx, write) = (Arc::new(Mutex::new(rx)), Arc::new(write));
        let writing = Arc::new(watch::Sender::new(0usize));
        let least_beside = least_beside.clamp(1, max.max(1));
        for _ in 0..writers.max(1) {
            tokio::spawn(Self::writer(rx.clone(), max, least_beside, writing.clone(), write.clone()));
        }
        Self { requests }
    }

    async fn writer<W, Fut>(rx: Requests<Req, Resp>, max: usize, least_beside: usize, writing: Arc<watch::Sender<usize>>, write: Arc<W>)
    where
        W: Fn(Vec<Req>) -> Fut,
        Fut: Future<Output = Result<Vec<Resp>, String>>,
    {
        let mut group = Vec::with_capacity(max);
        let mut others = writing.subscribe();
        loop {
            // The receiver is held only while a group gathers, not while it is written.
            let mut queued = rx.lock().await;
            if queued.recv_many(&mut group, max).await == 0 {
                return;
            }
            while group.len() < least_beside {
                let room = max - group.len();
                tokio::select! {
                    biased;
                    _ = others.wait_for(|&n| n == 0) => break,
                    n = queued.recv_many(&mut group, room) => if n == 0 { break },
                }
            }
            drop(queued);
            let (reqs, replies): (Vec<Req>, Vec<Reply<Resp>>) = group.drain(..).unzip();
            let written = {
                let _counted = Writing::start(&writing);
                write(reqs).await
            };
            match written {
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
        Grouped::with_writers(1, writers, 1, move |reqs: Vec<u32>| {
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

    #[tokio::test]
    async fn a_group_beside_another_waits_for_enough_requests_or_for_the_other_to_end() {
        let (release, released) = tokio::sync::watch::channel(false);
        let groups = Arc::new(std::sync::Mutex::new(Vec::new()));
        let g = {
            let groups = groups.clone();
            Grouped::with_writers(8, 2, 3, move |reqs: Vec<u32>| {
                let (groups, mut released) = (groups.clone(), released.clone());
                async move {
                    groups.lock().unwrap().push(reqs.clone());
                    if reqs == [1] {
                        released.wait_for(|&r| r).await.unwrap();
                    }
                    Ok(reqs)
                }
            })
        };
        let first = tokio::spawn({
            let g = g.clone();
            async move { g.call(1).await }
        });
        while groups.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        let (g2, g3) = (g.clone(), g.clone());
        let second = tokio::spawn(async move { g2.call(2).await });
        let short = tokio::time::timeout(Duration::from_millis(300), async { g3.call(3).await }).await;
        assert!(short.is_err(), "two requests beside a running group wait for a third");
        assert_eq!(*groups.lock().unwrap(), [vec![1]]);
        release.send(true).unwrap();
        assert_eq!(first.await.unwrap(), Ok(1));
        assert_eq!(second.await.unwrap(), Ok(2));
        let mut written = groups.lock().unwrap().clone();
        written[1].sort();
        assert_eq!(written, [vec![1], vec![2, 3]], "the two written together once the first ended, the abandoned one too");
    }
}

//! A small pool of low-priority OS threads for CPU-bound crypto (JWT
//! signing). The async workers only hand jobs over and await the result, and
//! the pool's threads run at the lowest scheduling priority, so a burst of
//! token minting slows minting, never the Check answers on the same cores.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

pub struct CpuPool {
    jobs: Sender<Job>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: usize,
}

impl CpuPool {
    /// `threads` workers named `<name>-<i>`; at most `max_in_flight` jobs at once.
    pub fn new(name: &str, threads: usize, max_in_flight: usize) -> std::io::Result<Self> {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    if let Err(e) = thread_priority::set_current_thread_priority(
                        thread_priority::ThreadPriority::Min,
                    ) {
                        tracing::warn!(error = ?e, "cannot lower the signing threads' priority");
                    }
                    loop {
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(poisoned) => poisoned.into_inner().recv(),
                        };
                        match job {
                            Ok(job) => job(),
                            // The pool was dropped.
                            Err(_) => return,
                        }
                    }
                })?;
        }
        Ok(Self {
            jobs: tx,
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_in_flight,
        })
    }

    /// Runs `f` on the pool; `None` if the pool is saturated or gone.
    pub async fn run<T, F>(&self, f: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.max_in_flight {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let in_flight = self.in_flight.clone();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
            in_flight.fetch_sub(1, Ordering::AcqRel);
        });
        if self.jobs.send(job).is_err() {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        rx.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_off_the_runtime_and_refuses_beyond_its_queue() {
        let pool = CpuPool::new("test", 2, 64).unwrap();
        let name = pool
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("test-"));
        let results = futures::future::join_all((0..32).map(|i| pool.run(move || i * 2))).await;
        assert_eq!(
            results.iter().flatten().sum::<i32>(),
            (0..32).map(|i| i * 2).sum::<i32>()
        );

        let tiny = Arc::new(CpuPool::new("tiny", 1, 1).unwrap());
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let holder = tiny.clone();
        let blocked = tokio::spawn(async move { holder.run(move || gate.recv().is_ok()).await });
        // Wait until the one slot is taken, then a second job is refused.
        while tiny.in_flight.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(tiny.run(|| 1).await, None);
        release.send(()).unwrap();
        assert_eq!(blocked.await.unwrap(), Some(true));
    }
}

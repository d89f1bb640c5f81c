//! Layer compression off the critical path.
//!
//! A RUN step's upper dir becomes the next step's lower dir as soon as its uncompressed tar has been
//! hashed (the diff_id names the layer dir; the step keys chain on the parent key, never on a compressed
//! digest). Deflating the layer is ten times the work of hashing it, so it goes to one background thread
//! per image while the next steps run; the manifest is written once every layer is done.
//!
//! One thread per image, working in step order: memory stays that of one compression pipeline per
//! image being built, however many steps are waiting. A job that fails fails the image: the error is
//! reported at the next step (or at the end) with the instruction's `file:line`, and the jobs queued
//! behind it are dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use super::BuildError;

/// A unit of background work.
type Job<'scope, T> = Box<dyn FnOnce() -> Result<T, BuildError> + Send + 'scope>;

/// Runs jobs in submission order on one thread of `scope`, started at the first job.
pub(crate) struct Background<'scope, 'env, T> {
    scope: &'scope Scope<'scope, 'env>,
    worker: Option<Worker<'scope, T>>,
    /// Jobs submitted whose result has not been collected.
    pending: usize,
    /// Time the collected jobs ran.
    busy: Duration,
}

/// What [`Background::finish`] gives back: the results, and where the time went.
#[derive(Debug)]
pub(crate) struct Finished<T> {
    /// The results of the jobs not collected by [`Background::poll`], in order.
    pub results: Vec<T>,
    /// How long all jobs ran (work taken off the critical path, less `waited`).
    pub busy: Duration,
    /// How long `finish` waited for jobs still running (work left on the critical path).
    pub waited: Duration,
}

struct Worker<'scope, T> {
    jobs: mpsc::Sender<Job<'scope, T>>,
    results: mpsc::Receiver<(Result<T, BuildError>, Duration)>,
    stop: Arc<AtomicBool>,
    thread: ScopedJoinHandle<'scope, ()>,
}

impl<'scope, 'env, T: Send + 'scope> Background<'scope, 'env, T> {
    /// No thread yet: a build whose steps all come from the cache never starts one.
    pub(crate) fn new(scope: &'scope Scope<'scope, 'env>) -> Self {
        Background { scope, worker: None, pending: 0, busy: Duration::ZERO }
    }

    /// Queues `job`.
    pub(crate) fn submit(&mut self, job: impl FnOnce() -> Result<T, BuildError> + Send + 'scope) {
        let worker = self.worker.get_or_insert_with(|| {
            let (jobs, queue) = mpsc::channel::<Job<'scope, T>>();
            let (done, results) = mpsc::channel();
            let stop = Arc::new(AtomicBool::new(false));
            let stopped = Arc::clone(&stop);
            let thread = std::thread::Builder::new()
                .name("layer-compress".into())
                .spawn_scoped(self.scope, move || {
                    for job in queue {
                        if stopped.load(Ordering::Relaxed) {
                            break;
                        }
                        let started = Instant::now();
                        let result = job();
                        let failed = result.is_err();
                        if done.send((result, started.elapsed())).is_err() || failed {
                            break;
                        }
                    }
                })
                .expect("spawn the layer compression thread");
            Worker { jobs, results, stop, thread }
        });
        self.pending += 1;
        // The worker only stops after a failure, which `poll`/`finish` report before more is submitted.
        let _ = worker.jobs.send(Box::new(job));
    }

    /// Results of the jobs finished so far, without waiting; the first failure, if any.
    pub(crate) fn poll(&mut self) -> Result<Vec<T>, BuildError> {
        let mut done = Vec::new();
        if let Some(w) = &self.worker {
            while let Ok((result, took)) = w.results.try_recv() {
                self.pending -= 1;
                self.busy += took;
                done.push(result?);
            }
        }
        Ok(done)
    }

    /// Waits for every job; their results, or the first failure.
    pub(crate) fn finish(mut self) -> Result<Finished<T>, BuildError> {
        let mut done = Vec::new();
        let started = Instant::now();
        if let Some(w) = self.worker.take() {
            drop(w.jobs);
            while self.pending > 0 {
                let Ok((result, took)) = w.results.recv() else {
                    // The thread ended without reporting: it panicked (the scope re-raises that panic).
                    return Err(BuildError::Input("the layer compression thread died".into()));
                };
                self.pending -= 1;
                self.busy += took;
                done.push(result?);
            }
            let _ = w.thread.join();
        }
        Ok(Finished { results: done, busy: self.busy, waited: started.elapsed() })
    }
}

impl<T> Drop for Background<'_, '_, T> {
    /// Leaving early (a step failed): jobs not started yet are dropped; the one running finishes (its
    /// result is cached and helps the re-run), and the scope waits for it.
    fn drop(&mut self) {
        if let Some(w) = &self.worker {
            w.stop.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    #[test]
    fn results_come_back_in_order() {
        std::thread::scope(|s| {
            let mut bg = Background::new(s);
            for i in 0..5 {
                bg.submit(move || {
                    std::thread::sleep(Duration::from_millis(5));
                    Ok(i * 10)
                });
            }
            let mut got = bg.poll().unwrap();
            got.extend(bg.finish().unwrap().results);
            assert_eq!(got, vec![0, 10, 20, 30, 40]);
        });
    }

    #[test]
    fn a_failure_is_reported_and_later_jobs_do_not_run() {
        let ran = Mutex::new(Vec::new());
        let err = std::thread::scope(|s| {
            let mut bg = Background::new(s);
            let ran = &ran;
            bg.submit(move || {
                ran.lock().unwrap().push(0);
                Ok(())
            });
            bg.submit(move || Err(BuildError::Input("disk full while compressing".into())));
            bg.submit(move || {
                ran.lock().unwrap().push(2);
                Ok(())
            });
            bg.finish().unwrap_err()
        });
        assert_eq!(err.to_string(), "disk full while compressing");
        assert_eq!(*ran.lock().unwrap(), vec![0]);
    }

    #[test]
    fn nothing_submitted_starts_no_thread() {
        std::thread::scope(|s| {
            let bg = Background::<()>::new(s);
            assert!(bg.worker.is_none());
            assert!(bg.finish().unwrap().results.is_empty());
        });
    }
}

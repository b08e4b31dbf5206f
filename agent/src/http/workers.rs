//! Connection threads: the listener hands each accepted connection to one of a few threads in
//! turn, each running its own single-threaded tokio runtime.
//!
//! Why not the agent's work-stealing runtime: a connection's task then never moves between
//! cores, and waking it never involves another thread. Under a flood of small requests that
//! cross-thread traffic (wakeups, stolen tasks, shared timer and I/O driver state) costs more
//! than answering the request does. This is how nginx runs its workers; handing connections
//! out in turn (rather than letting the kernel spread them over several listening sockets)
//! keeps even a handful of connections balanced.
//!
//! Handlers run on these threads, so they must not block: disk and CPU-heavy work goes to
//! `spawn_blocking` as everywhere else in the agent.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// The connection threads of one listener.
#[derive(Debug)]
pub(super) struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Starts `n` threads (at least one), named `<name>-<i>`.
    pub(super) fn start(n: usize, name: &str) -> std::io::Result<Self> {
        let n = n.max(1);
        let mut w = Self {
            handles: Vec::with_capacity(n),
            next: AtomicUsize::new(0),
            stops: Vec::with_capacity(n),
            threads: Vec::with_capacity(n),
        };
        for i in 0..n {
            let (stop, stopped) = oneshot::channel::<()>();
            let (ready, handle) = std::sync::mpsc::sync_channel(1);
            // The runtime is built, run and dropped on its own thread: a runtime must not be
            // dropped on an async thread, which is where `start` is called from.
            let thread = std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || {
                let rt = match Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                // Each thread keeps its own `Date` header text, so requests never read the clock.
                drop(rt.spawn(super::plain::keep_date_fresh()));
                if ready.send(Ok(rt.handle().clone())).is_err() {
                    return;
                }
                // Either a stop message or the sender dropped: both mean stop.
                rt.block_on(async move {
                    let _ = stopped.await;
                });
                // Dropping the runtime drops whatever connection tasks are left.
                drop(rt);
            });
            let started = thread.and_then(|t| {
                w.threads.push(t);
                handle.recv().unwrap_or_else(|_| {
                    Err(std::io::Error::other("connection thread ended before starting"))
                })
            });
            match started {
                Ok(h) => {
                    w.handles.push(h);
                    w.stops.push(stop);
                }
                Err(e) => {
                    drop(stop);
                    w.stop_detached();
                    return Err(e);
                }
            }
        }
        Ok(w)
    }

    /// Runs `task` on the next thread in turn.
    pub(super) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        drop(self.handles[i].spawn(task));
    }

    /// Stops every thread (dropping connection tasks still running) and waits for them.
    pub(super) async fn stop(mut self) {
        self.stops.clear();
        let threads = std::mem::take(&mut self.threads);
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                if t.join().is_err() {
                    tracing::error!("a connection thread panicked");
                }
            }
        });
        if let Err(e) = joined.await {
            tracing::error!(error = %e, "stopping connection threads failed");
        }
    }

    /// Tells every thread to stop without waiting for them (safe on an async thread).
    fn stop_detached(&mut self) {
        self.stops.clear();
        self.threads.clear();
    }
}

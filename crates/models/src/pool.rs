//! A small persistent thread pool tuned for decode latency on few cores.
//!
//! Decoding one token runs a few hundred short parallel sections (one per
//! matrix multiplication, attention, ...). Spawning threads or even waking
//! parked ones for each would cost more than the work, so workers spin on an
//! epoch counter for a short while after each job and only then park. The
//! calling thread always takes part as worker 0, so `n_threads = 1` runs
//! everything inline with no synchronisation at all.
//!
//! Work inside a job is handed out in chunks through an atomic counter rather
//! than split statically: on a shared machine one core may be slowed by a
//! neighbour, and dynamic chunks keep the other from waiting idle.
//!
//! Deliberately absent: work stealing, nested parallelism (a job must not call
//! back into the pool) and priorities.

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// How many times a worker polls for the next job before parking. About
/// 50–200 µs on current x86 cores: long enough to cover the gap between two
/// matmuls of a decode step, short enough not to burn a core when idle.
const SPIN_ITERS: u32 = 20_000;

type Job = dyn Fn(usize) + Sync;

struct Shared {
    /// Incremented by the caller each time a job is published.
    epoch: AtomicU64,
    /// The current job; valid while the caller is inside `broadcast`.
    job: UnsafeCell<Option<*const Job>>,
    /// Workers (not counting the caller) that finished the current epoch.
    done: AtomicUsize,
    panicked: AtomicBool,
    shutdown: AtomicBool,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written only by the caller while no worker reads it (all
// workers finished the previous epoch), and read by workers only between the
// epoch bump and their `done` increment, while the caller keeps the closure
// alive inside `broadcast`.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

/// A fixed set of worker threads; see the module docs.
pub struct ThreadPool {
    n_threads: usize,
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool").field("n_threads", &self.n_threads).finish()
    }
}

impl ThreadPool {
    /// A pool running jobs on `n_threads` threads (the caller plus
    /// `n_threads - 1` workers). `0` means the number of available cores.
    pub fn new(n_threads: usize) -> ThreadPool {
        let n_threads = if n_threads == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            n_threads
        };
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let handles = (1..n_threads)
            .map(|tid| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("hearth-worker-{tid}"))
                    .spawn(move || worker_loop(&shared, tid))
                    .expect("failed to spawn a worker thread")
            })
            .collect();
        ThreadPool { n_threads, shared, handles }
    }

    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Runs `f(thread_index)` once on every thread of the pool and returns
    /// when all have finished. A panic in any of them is re-raised here.
    pub fn broadcast(&self, f: &(dyn Fn(usize) + Sync)) {
        if self.n_threads == 1 {
            f(0);
            return;
        }
        let s = &*self.shared;
        // SAFETY: every worker finished the previous epoch (we waited for it),
        // so nobody reads `job` now. The pointer's lifetime is erased; it is
        // only dereferenced before this function returns.
        unsafe {
            let ptr: *const Job = std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static Job>(f);
            *s.job.get() = Some(ptr);
        }
        s.done.store(0, Ordering::Relaxed);
        s.epoch.fetch_add(1, Ordering::Release);
        if s.sleepers.load(Ordering::Acquire) > 0 {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        let mine = catch_unwind(AssertUnwindSafe(|| f(0)));
        let workers = self.n_threads - 1;
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) < workers {
            spins += 1;
            if spins < SPIN_ITERS {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        if let Err(p) = mine {
            std::panic::resume_unwind(p);
        }
        if s.panicked.swap(false, Ordering::AcqRel) {
            panic!("a worker thread panicked while running a pool job");
        }
    }

    /// Calls `f(start, end)` for consecutive ranges covering `0..n`, each at
    /// most `chunk` long, spread dynamically over the pool's threads.
    pub fn parallel_for(&self, n: usize, chunk: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        if n == 0 {
            return;
        }
        let chunk = chunk.max(1);
        if self.n_threads == 1 || n <= chunk {
            let mut start = 0;
            while start < n {
                let end = (start + chunk).min(n);
                f(start, end);
                start = end;
            }
            return;
        }
        let next = AtomicUsize::new(0);
        self.broadcast(&|_tid| loop {
            let start = next.fetch_add(chunk, Ordering::Relaxed);
            if start >= n {
                break;
            }
            f(start, (start + chunk).min(n));
        });
    }

    /// A chunk size giving each thread about `per_thread` chunks of `n` items,
    /// rounded up to a multiple of `align` (e.g. rows handled together by a kernel).
    pub fn chunk_for(&self, n: usize, per_thread: usize, align: usize) -> usize {
        let pieces = (self.n_threads * per_thread).max(1);
        let c = n.div_ceil(pieces).max(1);
        c.div_ceil(align.max(1)) * align.max(1)
    }
}

fn worker_loop(s: &Shared, tid: usize) {
    let mut seen = 0u64;
    loop {
        let mut spins = 0u32;
        let epoch = loop {
            let e = s.epoch.load(Ordering::Acquire);
            if e != seen || s.shutdown.load(Ordering::Acquire) {
                break e;
            }
            spins += 1;
            if spins < SPIN_ITERS {
                std::hint::spin_loop();
                continue;
            }
            // Park: register as a sleeper, re-check under the lock so a
            // publish between the check and the wait is not missed.
            let g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.sleepers.fetch_add(1, Ordering::AcqRel);
            let mut g = g;
            while s.epoch.load(Ordering::Acquire) == seen && !s.shutdown.load(Ordering::Acquire) {
                g = s.wake.wait(g).unwrap_or_else(|e| e.into_inner());
            }
            s.sleepers.fetch_sub(1, Ordering::AcqRel);
            drop(g);
            spins = 0;
        };
        if s.shutdown.load(Ordering::Acquire) {
            return;
        }
        seen = epoch;
        // SAFETY: see `Shared`; the caller keeps the job alive until `done`
        // reaches the worker count.
        let job = unsafe { (*s.job.get()).expect("job published with epoch") };
        let r = catch_unwind(AssertUnwindSafe(|| unsafe { (*job)(tid) }));
        if r.is_err() {
            s.panicked.store(true, Ordering::Release);
        }
        s.done.fetch_add(1, Ordering::Release);
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        {
            let _g = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// A raw pointer that jobs may share to write disjoint parts of one buffer.
/// Whoever dereferences it promises that no two threads touch the same index.
#[derive(Clone, Copy)]
pub struct SyncPtr<T>(pub *mut T);
unsafe impl<T> Send for SyncPtr<T> {}
unsafe impl<T> Sync for SyncPtr<T> {}

impl<T> SyncPtr<T> {
    pub fn new(s: &mut [T]) -> SyncPtr<T> {
        SyncPtr(s.as_mut_ptr())
    }
    /// # Safety
    /// `start..start+len` must lie inside the original slice and no other
    /// thread may access it concurrently.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, start: usize, len: usize) -> &mut [T] {
        std::slice::from_raw_parts_mut(self.0.add(start), len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_index_is_visited_exactly_once() {
        for threads in [1, 2, 3] {
            let pool = ThreadPool::new(threads);
            for n in [0usize, 1, 7, 64, 1000] {
                let hits: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
                pool.parallel_for(n, 5, &|s, e| {
                    for h in &hits[s..e] {
                        h.fetch_add(1, Ordering::Relaxed);
                    }
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "threads={threads} n={n}");
            }
        }
    }

    #[test]
    fn broadcast_runs_on_every_thread_many_times() {
        let pool = ThreadPool::new(3);
        let count = AtomicUsize::new(0);
        for _ in 0..2000 {
            pool.broadcast(&|_| {
                count.fetch_add(1, Ordering::Relaxed);
            });
        }
        assert_eq!(count.load(Ordering::Relaxed), 6000);
    }

    #[test]
    fn workers_wake_after_parking() {
        let pool = ThreadPool::new(2);
        let seen = AtomicUsize::new(0);
        std::thread::sleep(std::time::Duration::from_millis(50));
        pool.broadcast(&|tid| {
            seen.fetch_or(1 << tid, Ordering::Relaxed);
        });
        assert_eq!(seen.load(Ordering::Relaxed), 0b11);
    }

    #[test]
    fn a_panicking_job_is_reported_and_the_pool_survives() {
        let pool = ThreadPool::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.broadcast(&|tid| {
                if tid == 1 {
                    panic!("boom");
                }
            })
        }));
        assert!(r.is_err());
        let count = AtomicUsize::new(0);
        pool.broadcast(&|_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 2);
    }
}

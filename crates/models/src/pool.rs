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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// How many times a worker polls for the next job before parking. About
/// 50–200 µs on current x86 cores: long enough to cover the gap between two
/// matmuls of a decode step, short enough not to burn a core when idle.
const SPIN_ITERS: u32 = 20_000;

type Job = dyn Fn() + Sync;

/// `state = epoch << 1 | closed`. A job is published by storing it and then
/// the next epoch with `closed = 0`; the caller closes it once every chunk is
/// claimed. Workers register in `active` before re-checking `state`, so the
/// caller, which waits for `active == 0` after closing, never returns while
/// a worker can still dereference the job — and never waits for a worker
/// that was descheduled and has not joined yet (it simply misses the job).
struct Shared {
    state: AtomicU64,
    job: UnsafeCell<Option<*const Job>>,
    active: AtomicUsize,
    panicked: AtomicBool,
    shutdown: AtomicBool,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written only by the caller between jobs, when no worker
// is registered in `active` with an open state; workers read it only while
// registered and after seeing the open state of the epoch it belongs to.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

/// A fixed set of worker threads; see the module docs.
pub struct ThreadPool {
    n_threads: usize,
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
    /// Serialises callers: one job at a time.
    busy: Mutex<()>,
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
            state: AtomicU64::new(1),
            job: UnsafeCell::new(None),
            active: AtomicUsize::new(0),
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
                    .spawn(move || worker_loop(&shared))
                    .expect("failed to spawn a worker thread")
            })
            .collect();
        ThreadPool { n_threads, shared, handles, busy: Mutex::new(()) }
    }

    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Calls `f(start, end)` for consecutive ranges covering `0..n`, each at
    /// most `chunk` long, spread dynamically over the pool's threads. Returns
    /// when every range is done. A panic in any range is re-raised here.
    pub fn parallel_for(&self, n: usize, chunk: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        self.run(n, chunk, None, f)
    }

    /// [`parallel_for`](Self::parallel_for) with guided sizes: each claimed
    /// range is about `1 / (2 · threads)` of what is left, rounded up to a
    /// multiple of `align`, at most `chunk` and at least `align`. Large
    /// ranges first keep the claims few; small ones last keep the threads
    /// finishing together (equal chunks of a batched matmul left one thread
    /// idle for half a chunk on average, ~6% of a batched decode step).
    pub fn parallel_for_guided(&self, n: usize, chunk: usize, align: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        self.run(n, chunk, Some(align.max(1)), f)
    }

    fn run(&self, n: usize, chunk: usize, guided: Option<usize>, f: &(dyn Fn(usize, usize) + Sync)) {
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
        let _one_job = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let next = AtomicUsize::new(0);
        let parts = 2 * self.n_threads;
        let claim = || match guided {
            None => {
                let start = next.fetch_add(chunk, SeqCst);
                (start < n).then(|| (start, (start + chunk).min(n)))
            }
            Some(align) => {
                let mut start = next.load(SeqCst);
                loop {
                    if start >= n {
                        return None;
                    }
                    let size = ((n - start).div_ceil(parts).div_ceil(align) * align).clamp(align, chunk.max(align));
                    let end = (start + size).min(n);
                    match next.compare_exchange_weak(start, end, SeqCst, SeqCst) {
                        Ok(_) => return Some((start, end)),
                        Err(now) => start = now,
                    }
                }
            }
        };
        let work = || {
            while let Some((start, end)) = claim() {
                f(start, end);
            }
        };
        let s = &*self.shared;
        let epoch = (s.state.load(SeqCst) >> 1) + 1;
        // SAFETY: the previous job is closed and `active` is 0, so no worker
        // reads `job` now. The lifetime is erased; the pointer is only
        // dereferenced by registered workers before this function returns.
        unsafe {
            let job: &(dyn Fn() + Sync + '_) = &work;
            let ptr = std::mem::transmute::<*const (dyn Fn() + Sync + '_), *const Job>(job as *const _);
            *s.job.get() = Some(ptr);
        }
        s.state.store(epoch << 1, SeqCst);
        if s.sleepers.load(SeqCst) > 0 {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        let mine = catch_unwind(AssertUnwindSafe(work));
        s.state.store(epoch << 1 | 1, SeqCst);
        let mut spins = 0u32;
        while s.active.load(SeqCst) > 0 {
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
        if s.panicked.swap(false, SeqCst) {
            panic!("a worker thread panicked while running a pool job");
        }
    }

    /// A chunk size giving each thread about `per_thread` chunks of `n` items,
    /// rounded up to a multiple of `align` (e.g. rows handled together by a kernel).
    pub fn chunk_for(&self, n: usize, per_thread: usize, align: usize) -> usize {
        let pieces = (self.n_threads * per_thread).max(1);
        let c = n.div_ceil(pieces).max(1);
        c.div_ceil(align.max(1)) * align.max(1)
    }
}

fn worker_loop(s: &Shared) {
    let mut seen = s.state.load(SeqCst) >> 1;
    loop {
        let mut spins = 0u32;
        let state = loop {
            let st = s.state.load(SeqCst);
            if (st >> 1) != seen && st & 1 == 0 {
                break st;
            }
            if s.shutdown.load(SeqCst) {
                return;
            }
            spins += 1;
            if spins < SPIN_ITERS {
                std::hint::spin_loop();
                continue;
            }
            let g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.sleepers.fetch_add(1, SeqCst);
            let mut g = g;
            loop {
                let st = s.state.load(SeqCst);
                if ((st >> 1) != seen && st & 1 == 0) || s.shutdown.load(SeqCst) {
                    break;
                }
                g = s.wake.wait(g).unwrap_or_else(|e| e.into_inner());
            }
            s.sleepers.fetch_sub(1, SeqCst);
            drop(g);
            spins = 0;
        };
        s.active.fetch_add(1, SeqCst);
        if s.state.load(SeqCst) != state {
            // Closed, or already replaced by a newer job: skip it.
            s.active.fetch_sub(1, SeqCst);
            seen = state >> 1;
            continue;
        }
        seen = state >> 1;
        // SAFETY: registered in `active` while the state is open, so the
        // caller is still inside `parallel_for` and the job is alive.
        let job = unsafe { (*s.job.get()).expect("job published with its epoch") };
        if catch_unwind(AssertUnwindSafe(|| unsafe { (*job)() })).is_err() {
            s.panicked.store(true, SeqCst);
        }
        s.active.fetch_sub(1, SeqCst);
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, SeqCst);
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
    use std::sync::atomic::{AtomicU32, Ordering};

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
    fn guided_ranges_cover_every_index_once_aligned_and_bounded() {
        for threads in [1, 2, 3] {
            let pool = ThreadPool::new(threads);
            for n in [0usize, 1, 7, 64, 1000, 1217] {
                for (chunk, align) in [(5, 1), (40, 2), (400, 16)] {
                    let hits: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
                    pool.parallel_for_guided(n, chunk, align, &|s, e| {
                        // Every range starts on a multiple of `align` and is
                        // at most `chunk` (or `align`, if larger) long.
                        assert_eq!(s % align, 0, "start {s}");
                        assert!(e - s <= chunk.max(align), "range {s}..{e}");
                        for h in &hits[s..e] {
                            h.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                    assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "threads={threads} n={n} chunk={chunk} align={align}");
                }
            }
        }
    }

    #[test]
    fn many_small_jobs_complete() {
        let pool = ThreadPool::new(3);
        let count = AtomicUsize::new(0);
        for _ in 0..2000 {
            pool.parallel_for(6, 1, &|s, e| {
                count.fetch_add(e - s, Ordering::Relaxed);
            });
        }
        assert_eq!(count.load(Ordering::Relaxed), 12000);
    }

    #[test]
    fn workers_wake_after_parking_and_share_work() {
        let pool = ThreadPool::new(2);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let seen = Mutex::new(std::collections::HashSet::new());
        pool.parallel_for(64, 1, &|_, _| {
            std::thread::sleep(std::time::Duration::from_millis(1));
            seen.lock().unwrap().insert(std::thread::current().id());
        });
        assert_eq!(seen.lock().unwrap().len(), 2, "both threads took part");
    }

    #[test]
    fn the_caller_does_not_wait_for_a_busy_machine() {
        // Even with the worker unable to run (it is parked and we never let
        // it join), the caller completes every chunk itself.
        let pool = ThreadPool::new(2);
        let hits = AtomicUsize::new(0);
        pool.parallel_for(1000, 10, &|s, e| {
            hits.fetch_add(e - s, Ordering::Relaxed);
        });
        assert_eq!(hits.load(Ordering::Relaxed), 1000);
    }

    #[test]
    fn a_panicking_job_is_reported_and_the_pool_survives() {
        let pool = ThreadPool::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.parallel_for(100, 1, &|s, _| {
                if s == 37 {
                    panic!("boom");
                }
            })
        }));
        assert!(r.is_err());
        let count = AtomicUsize::new(0);
        pool.parallel_for(10, 1, &|s, e| {
            count.fetch_add(e - s, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 10);
    }
}

//! The background writer: keeps database latency off the request path.
//!
//! The server hands each finished record to [`LedgerWriter::submit`], which
//! puts it on a bounded channel and returns at once; one writer thread drains
//! the channel, up to [`MAX_BATCH`] records per transaction.
//!
//! # When the channel is full: drop and count, never block
//! `submit` never waits. If the database stalls long enough for the channel
//! to fill (capacity is the caller's choice; thousands of records is seconds
//! of traffic), further records are **dropped**, counted in
//! [`WriterStats::dropped`], and logged at WARN with the running count (on
//! the 1st, 2nd, 4th, 8th, ... drop, so a long outage does not flood the
//! log). The request path runs on async worker threads, and one stalled
//! database must not stall every request in the gateway; an accounting gap
//! that is counted and logged is the lesser harm. The report therefore says
//! "at least", and operators watch `dropped`.
//!
//! # When a write fails
//! A failed batch is retried record by record, so one bad record (say, a
//! duplicate request id) does not sink the others; records that still fail
//! are counted in [`WriterStats::failed`] and logged at ERROR with their
//! request id only. A store that panics is treated the same way (the panic
//! is caught; the thread lives on). There is no on-disk retry queue: a database that stays
//! down loses the records submitted meanwhile (counted).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::error::LedgerError;
use crate::record::LedgerRecord;
use crate::LedgerStore;

/// Most records written in one transaction.
pub const MAX_BATCH: usize = 256;

enum Msg {
    Record(Box<LedgerRecord>),
    Flush(mpsc::Sender<()>),
}

#[derive(Default)]
struct Counters {
    submitted: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

/// Counts since the writer started. `submitted = written + failed + queued`
/// once flushed; `dropped` never reached the queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Records accepted onto the queue.
    pub submitted: u64,
    /// Records the store committed.
    pub written: u64,
    /// Records refused because the queue was full (or the writer had stopped).
    pub dropped: u64,
    /// Records the store rejected, even when retried alone.
    pub failed: u64,
}

/// A handle to the writer thread. Cheap to share (`Arc<LedgerWriter>`);
/// dropping it flushes what is queued and joins the thread.
pub struct LedgerWriter {
    tx: Option<SyncSender<Msg>>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
}

impl LedgerWriter {
    /// Starts the writer thread over `store` with a queue of `capacity`
    /// records (at least 1).
    pub fn spawn(store: Arc<dyn LedgerStore>, capacity: usize) -> Result<LedgerWriter, LedgerError> {
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        let counters = Arc::new(Counters::default());
        let c = Arc::clone(&counters);
        let thread = std::thread::Builder::new()
            .name("hearth-ledger".into())
            .spawn(move || run(store, rx, c))
            .map_err(|source| LedgerError::Io { path: "hearth-ledger writer thread".into(), source })?;
        Ok(LedgerWriter { tx: Some(tx), counters, thread: Some(thread) })
    }

    /// Queues `record` without blocking. Returns `false` (and counts a drop)
    /// when the queue is full or the writer has stopped.
    pub fn submit(&self, record: LedgerRecord) -> bool {
        let sent = match &self.tx {
            Some(tx) => match tx.try_send(Msg::Record(Box::new(record))) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
            },
            None => false,
        };
        if sent {
            self.counters.submitted.fetch_add(1, Ordering::Relaxed);
        } else {
            let n = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped_total = n, "ledger: queue full or writer stopped; record dropped");
            }
        }
        sent
    }

    /// Blocks until every record submitted before this call has been written
    /// (or has failed). For shutdown and tests, not the request path.
    pub fn flush(&self) -> Result<(), LedgerError> {
        let tx = self.tx.as_ref().ok_or(LedgerError::WriterClosed)?;
        let (done_tx, done_rx) = mpsc::channel();
        tx.send(Msg::Flush(done_tx)).map_err(|_| LedgerError::WriterClosed)?;
        done_rx.recv().map_err(|_| LedgerError::WriterClosed)
    }

    pub fn stats(&self) -> WriterStats {
        WriterStats {
            submitted: self.counters.submitted.load(Ordering::Relaxed),
            written: self.counters.written.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
        }
    }

    /// Writes everything queued, stops the thread, and returns the final
    /// counts.
    pub fn shutdown(mut self) -> WriterStats {
        self.stop();
        self.stats()
    }

    fn stop(&mut self) {
        // Closing the channel ends the thread's loop after it drains.
        self.tx = None;
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("ledger: writer thread panicked");
            }
        }
    }
}

impl Drop for LedgerWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(store: Arc<dyn LedgerStore>, rx: Receiver<Msg>, counters: Arc<Counters>) {
    let mut batch: Vec<LedgerRecord> = Vec::with_capacity(MAX_BATCH);
    let mut flushes: Vec<mpsc::Sender<()>> = Vec::new();
    // Blocks for the first message, then takes what is already queued.
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Record(r) => batch.push(*r),
                Msg::Flush(done) => {
                    // Everything before the flush is in `batch` already.
                    flushes.push(done);
                    break;
                }
            }
            if batch.len() >= MAX_BATCH {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !batch.is_empty() {
            write(store.as_ref(), &batch, &counters);
            batch.clear();
        }
        for done in flushes.drain(..) {
            // The flusher may have given up waiting; nothing to do then.
            let _ = done.send(());
        }
    }
}

/// Calls the store, turning a panic into an error: a bug in one store call
/// must not end accounting for the life of the process.
fn guarded(f: impl FnOnce() -> Result<(), LedgerError>) -> Result<(), LedgerError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            Err(LedgerError::StorePanicked(msg))
        }
    }
}

fn write(store: &dyn LedgerStore, batch: &[LedgerRecord], counters: &Counters) {
    match guarded(|| store.record_batch(batch)) {
        Ok(()) => {
            counters.written.fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        Err(e) if batch.len() == 1 => fail(&batch[0], &e, counters),
        Err(e) => {
            tracing::warn!(error = %e, records = batch.len(), "ledger: batch write failed; retrying one by one");
            for r in batch {
                match guarded(|| store.record(r)) {
                    Ok(()) => {
                        counters.written.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => fail(r, &e, counters),
                }
            }
        }
    }
}

fn fail(r: &LedgerRecord, e: &LedgerError, counters: &Counters) {
    counters.failed.fetch_add(1, Ordering::Relaxed);
    tracing::error!(request_id = %r.request_id, error = %e, "ledger: record not written");
}

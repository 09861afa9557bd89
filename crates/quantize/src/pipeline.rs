//! The quantization run: plan, check, stream every tensor through the
//! converters on several threads, write atomically.
//!
//! The output file is laid out as llama-quantize lays it out (metadata in
//! the input's order with `general.quantization_version` and
//! `general.file_type` moved to the end, tensors in `weights_map` order,
//! 32-byte alignment), so for the types whose quantizers are byte-identical
//! (all of them, with `hearth-kernels`' `_ref` ports) the whole file is
//! byte-identical too.
//!
//! Rows are independent, so each slab of rows is split into contiguous
//! ranges, one per thread; the result does not depend on the thread count.
//! Memory stays bounded by the slab size: tensors are read row range by row
//! range from the (memory-mapped) source and written through the streaming
//! GGUF writer.

use crate::disk::{self, FullAfter};
use crate::ftype::FileType;
use crate::plan::{self, ModelFacts, Plan, PlanOptions, TensorPlan};
use crate::source::TensorSource;
use crate::QuantizeError;
use hearth_formats::atomic::AtomicFile;
use hearth_formats::gguf::{GgufWriteError, GgufWriter, TensorSink};
use hearth_formats::{GgmlType, MetaValue, TensorInfo};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// `GGML_QNT_VERSION` (ggml.h), which llama-quantize writes to
/// `general.quantization_version`.
pub const QUANTIZATION_VERSION: u32 = 2;

/// Keys llama-quantize drops (it never writes split files).
const SPLIT_KEYS: [&str; 3] = ["split.no", "split.count", "split.tensors.count"];

/// How to run.
#[derive(Clone, Debug)]
pub struct QuantizeOptions {
    pub ftype: FileType,
    /// Worker threads; 0 = all available cores.
    pub threads: usize,
    pub plan: PlanOptions,
    /// Refuse to start when the output's filesystem has less free space
    /// than the output needs (default on).
    pub check_free_space: bool,
    /// Set from another thread (a Ctrl-C handler) to stop between slabs;
    /// the run then fails with [`QuantizeError::Cancelled`] and leaves no
    /// output.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Upper bound on the working memory of one slab of rows (source f32
    /// values plus output bytes). Default 256 MiB.
    pub slab_bytes: usize,
    /// Fault injection for tests: the output writer reports "no space left
    /// on device" after this many bytes.
    #[doc(hidden)]
    pub simulate_disk_full_after: Option<u64>,
}

impl QuantizeOptions {
    pub fn new(ftype: FileType) -> QuantizeOptions {
        QuantizeOptions {
            ftype,
            threads: 0,
            plan: PlanOptions::default(),
            check_free_space: true,
            cancel: None,
            slab_bytes: 256 << 20,
            simulate_disk_full_after: None,
        }
    }

    fn n_threads(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// What happened, for progress display.
#[derive(Debug)]
pub enum Event<'a> {
    /// Types chosen and sizes known; nothing written yet.
    Planned {
        plan: &'a Plan,
        file_len: u64,
        src_bytes: u64,
    },
    /// A tensor is about to be written (`index` in output order).
    Tensor {
        index: usize,
        tensor: &'a TensorPlan,
    },
    /// Source bytes processed so far (monotonic, ends at `src_bytes`).
    Progress { src_bytes_done: u64 },
}

/// Per-tensor outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorReport {
    pub name: String,
    pub src_type: GgmlType,
    pub dst_type: GgmlType,
    pub n_elements: u64,
    pub src_bytes: u64,
    pub dst_bytes: u64,
    /// Root-mean-square difference between the output (dequantized) and the
    /// source values (widened to f32); 0 for copied tensors.
    pub rmse: f64,
    pub fallback: Option<plan::Fallback>,
}

/// The outcome of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub ftype: FileType,
    pub path: PathBuf,
    /// Size of the written file.
    pub file_len: u64,
    pub tensors: Vec<TensorReport>,
}

impl Report {
    pub fn n_elements(&self) -> u64 {
        self.tensors.iter().map(|t| t.n_elements).sum()
    }

    pub fn src_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.src_bytes).sum()
    }

    pub fn dst_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.dst_bytes).sum()
    }

    /// Bits per weight of the tensor data, as llama-quantize prints it.
    pub fn bits_per_weight(&self) -> f64 {
        self.dst_bytes() as f64 * 8.0 / self.n_elements().max(1) as f64
    }
}

/// Chooses the output types without writing anything (llama-quantize
/// `--dry-run`).
pub fn plan_for(
    src: &dyn TensorSource,
    ftype: FileType,
    opts: &PlanOptions,
) -> Result<Plan, QuantizeError> {
    let facts = ModelFacts::from_metadata(src.metadata())?;
    plan::plan(ftype, &facts, src.tensors(), opts)
}

/// The GGUF header of the output: the source's metadata (split keys
/// dropped, `general.quantization_version` and `general.file_type` set and
/// moved to the end, as gguf.cpp's remove-then-append does) and the
/// planned tensors.
pub fn output_writer(src: &dyn TensorSource, plan: &Plan) -> Result<GgufWriter, QuantizeError> {
    let mut w = GgufWriter::new();
    const MOVED: [&str; 2] = ["general.quantization_version", "general.file_type"];
    for (k, v) in src.metadata() {
        if MOVED.contains(&k.as_str()) || SPLIT_KEYS.contains(&k.as_str()) {
            continue;
        }
        w.add_meta(k.clone(), v.clone())
            .map_err(QuantizeError::Write)?;
    }
    w.add_meta(MOVED[0], MetaValue::U32(QUANTIZATION_VERSION))
        .map_err(QuantizeError::Write)?;
    w.add_meta(MOVED[1], MetaValue::U32(plan.ftype.llama_ftype()))
        .map_err(QuantizeError::Write)?;
    for t in &plan.tensors {
        w.add_tensor(t.name.clone(), &t.dims, t.dst_type)
            .map_err(QuantizeError::Write)?;
    }
    Ok(w)
}

/// Quantizes `src` into a new file at `out`. The file appears only when
/// complete; on any error (including [`QuantizeError::Cancelled`]) nothing
/// is left under `out` and a file already there is untouched.
pub fn quantize(
    src: &dyn TensorSource,
    out: &Path,
    opts: &QuantizeOptions,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<Report, QuantizeError> {
    let plan = plan_for(src, opts.ftype, &opts.plan)?;
    refuse_overwriting_input(src, out)?;
    let writer = output_writer(src, &plan)?;
    let layout = writer.layout().map_err(QuantizeError::Write)?;
    let file_len = layout.file_len;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if opts.check_free_space {
        let available = disk::available_bytes(&dir).map_err(|source| QuantizeError::Io {
            path: dir.clone(),
            source,
        })?;
        if let Some(available) = available {
            if available < file_len {
                return Err(QuantizeError::NotEnoughSpace {
                    dir,
                    needed: file_len,
                    available,
                });
            }
        }
    }
    let src_bytes: u64 = plan
        .tensors
        .iter()
        .map(|t| {
            src.tensors()[t.source_index]
                .ty
                .row_bytes(t.n_elements())
                .unwrap_or(0)
        })
        .sum();
    on_event(Event::Planned {
        plan: &plan,
        file_len,
        src_bytes,
    });

    let mut file = AtomicFile::create(out).map_err(|source| io_or_full(out, file_len, source))?;
    let mut job = Job {
        src,
        plan: &plan,
        opts,
        threads: opts.n_threads(),
        done: 0,
        next: 0,
        reports: Vec::new(),
        failure: None,
    };
    let result = match opts.simulate_disk_full_after {
        Some(limit) => {
            let mut w = FullAfter {
                inner: &mut file,
                limit,
                written: 0,
            };
            writer.write(&mut w, |info, sink| job.fill(info, sink, on_event))
        }
        None => writer.write(&mut file, |info, sink| job.fill(info, sink, on_event)),
    };
    if let Some(e) = job.failure.take() {
        // The callback's own error, not the io::Error it had to return.
        return Err(e);
    }
    match result {
        Ok(_) => {}
        Err(GgufWriteError::Io(source)) | Err(GgufWriteError::IoAt { source, .. }) => {
            return Err(io_or_full(out, file_len, source));
        }
        Err(e) => return Err(QuantizeError::Write(e)),
    }
    file.commit()
        .map_err(|source| io_or_full(out, file_len, source))?;
    Ok(Report {
        ftype: opts.ftype,
        path: out.to_path_buf(),
        file_len,
        tensors: job.reports,
    })
}

fn io_or_full(path: &Path, needed: u64, source: io::Error) -> QuantizeError {
    if disk::is_disk_full(&source) {
        QuantizeError::DiskFull {
            path: path.to_path_buf(),
            needed,
        }
    } else {
        QuantizeError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The output must not be one of the input files (the rename would replace
/// the input while it is still mapped).
fn refuse_overwriting_input(src: &dyn TensorSource, out: &Path) -> Result<(), QuantizeError> {
    let Ok(out_meta) = std::fs::metadata(out) else {
        return Ok(()); // nothing there yet
    };
    for f in src.files() {
        let Ok(in_meta) = std::fs::metadata(&f) else {
            continue;
        };
        #[cfg(unix)]
        let same = {
            use std::os::unix::fs::MetadataExt;
            in_meta.dev() == out_meta.dev() && in_meta.ino() == out_meta.ino()
        };
        #[cfg(not(unix))]
        let same = {
            let _ = (&in_meta, &out_meta);
            std::fs::canonicalize(&f).ok() == std::fs::canonicalize(out).ok()
        };
        if same {
            return Err(QuantizeError::OutputIsInput {
                path: out.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// State shared by the per-tensor callbacks of one write.
struct Job<'a> {
    src: &'a dyn TensorSource,
    plan: &'a Plan,
    opts: &'a QuantizeOptions,
    threads: usize,
    done: u64,
    next: usize,
    reports: Vec<TensorReport>,
    failure: Option<QuantizeError>,
}

impl Job<'_> {
    /// The writer's per-tensor callback: it must return an io::Error, so
    /// typed failures are parked in `self.failure`.
    fn fill(
        &mut self,
        info: &TensorInfo,
        sink: &mut TensorSink<'_>,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> io::Result<()> {
        let index = self.next;
        self.next += 1;
        let Some(t) = self.plan.tensors.get(index).filter(|t| t.name == info.name) else {
            return self.fail(QuantizeError::Internal(format!(
                "writer asked for {} out of order",
                info.name
            )));
        };
        on_event(Event::Tensor { index, tensor: t });
        match self.tensor(t, sink, on_event) {
            Ok(r) => {
                self.reports.push(r);
                Ok(())
            }
            Err(Failure::Io(e)) => Err(e),
            Err(Failure::Typed(e)) => self.fail(e),
        }
    }

    fn fail(&mut self, e: QuantizeError) -> io::Result<()> {
        let msg = e.to_string();
        self.failure = Some(e);
        Err(io::Error::other(msg))
    }

    fn cancelled(&self) -> bool {
        self.opts
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }

    fn tensor(
        &mut self,
        t: &TensorPlan,
        sink: &mut TensorSink<'_>,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<TensorReport, Failure> {
        let st = &self.src.tensors()[t.source_index];
        let ne0 = st.row_len();
        let n_rows = st.n_rows();
        let src_row = st
            .ty
            .row_bytes(ne0)
            .ok_or_else(|| shape(t, "rows are not whole source blocks"))?;
        let dst_row = t
            .dst_type
            .row_bytes(ne0)
            .ok_or_else(|| shape(t, "rows are not whole output blocks"))?;
        let mut report = TensorReport {
            name: t.name.clone(),
            src_type: t.src_type,
            dst_type: t.dst_type,
            n_elements: t.n_elements(),
            src_bytes: src_row * n_rows,
            dst_bytes: t.dst_bytes,
            rmse: 0.0,
            fallback: t.fallback.clone(),
        };
        // Rows per slab: the f32 values, source and output bytes of a row,
        // twice over (the row buffers of the threads are small).
        let per_row = (ne0 * 4 + src_row + dst_row).max(1);
        let slab_rows = (self.opts.slab_bytes as u64 / per_row).clamp(1, n_rows.max(1));
        let mut sum_sq = 0.0f64;
        let mut out = Vec::new();
        let mut first = 0u64;
        while first < n_rows {
            if self.cancelled() {
                return Err(Failure::Typed(QuantizeError::Cancelled));
            }
            let last = (first + slab_rows).min(n_rows);
            let data = self
                .src
                .read_rows(t.source_index, first..last)
                .map_err(|source| {
                    Failure::Typed(QuantizeError::Source {
                        tensor: t.name.clone(),
                        source,
                    })
                })?;
            if data.len() as u64 != (last - first) * src_row {
                return Err(shape(t, "the source returned the wrong number of bytes"));
            }
            if t.converts() {
                out.resize(((last - first) * dst_row) as usize, 0);
                let (sq, bad) = convert_rows(
                    t.src_type,
                    t.dst_type,
                    ne0 as usize,
                    &data,
                    &mut out,
                    self.threads,
                );
                if bad {
                    return Err(Failure::Typed(QuantizeError::NonFinite {
                        tensor: t.name.clone(),
                    }));
                }
                sum_sq += sq;
                sink.write_all(&out).map_err(Failure::Io)?;
            } else {
                if !finite_floats(t.src_type, &data) {
                    return Err(Failure::Typed(QuantizeError::NonFinite {
                        tensor: t.name.clone(),
                    }));
                }
                sink.write_all(&data).map_err(Failure::Io)?;
            }
            self.done += data.len() as u64;
            on_event(Event::Progress {
                src_bytes_done: self.done,
            });
            first = last;
        }
        report.rmse = (sum_sq / report.n_elements.max(1) as f64).sqrt();
        Ok(report)
    }
}

enum Failure {
    Io(io::Error),
    Typed(QuantizeError),
}

fn shape(t: &TensorPlan, m: &str) -> Failure {
    Failure::Typed(QuantizeError::Shape {
        tensor: t.name.clone(),
        message: m.into(),
    })
}

/// Whether an F32/F16/BF16 buffer holds only finite values (other types
/// are not inspected).
fn finite_floats(ty: GgmlType, data: &[u8]) -> bool {
    match ty {
        GgmlType::F32 => data
            .chunks_exact(4)
            .all(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite()),
        // Exponent all ones = inf or NaN.
        GgmlType::F16 => data
            .chunks_exact(2)
            .all(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7c00 != 0x7c00),
        GgmlType::BF16 => data
            .chunks_exact(2)
            .all(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7f80 != 0x7f80),
        _ => true,
    }
}

/// Converts whole rows of `src` (type `from`) into `dst` (type `to`) on up
/// to `threads` threads. Returns the sum of squared differences between
/// the dequantized output and the source values, and whether any output
/// value (or source value) is not finite (llama-quantize refuses such data:
/// `ggml_validate_row_data`).
fn convert_rows(
    from: GgmlType,
    to: GgmlType,
    ne0: usize,
    src: &[u8],
    dst: &mut [u8],
    threads: usize,
) -> (f64, bool) {
    let src_row = hearth_kernels::row_bytes(from, ne0);
    let dst_row = hearth_kernels::row_bytes(to, ne0);
    let n_rows = src.len() / src_row.max(1);
    // About 16k elements per thread at least (llama-quant.cpp uses chunks
    // of 32*512 elements), so small tensors do not pay for thread starts.
    let useful = (n_rows * ne0).div_ceil(16 * 1024).max(1);
    let n_threads = threads.clamp(1, useful).min(n_rows.max(1));
    let work = |src: &[u8], dst: &mut [u8]| -> (f64, bool) {
        let mut x = vec![0f32; ne0];
        let mut y = vec![0f32; ne0];
        let mut sq = 0f64;
        let mut bad = false;
        for (s, d) in src.chunks_exact(src_row).zip(dst.chunks_exact_mut(dst_row)) {
            hearth_kernels::dequantize_row(from, s, &mut x);
            hearth_kernels::quantize_row_ref(to, &x, d);
            hearth_kernels::dequantize_row(to, d, &mut y);
            for (a, b) in x.iter().zip(&y) {
                // A NaN in the source can quantize to a finite code (the
                // block maximum ignores it), so check both sides.
                bad |= !b.is_finite() || !a.is_finite();
                let e = f64::from(*b) - f64::from(*a);
                sq += e * e;
            }
        }
        (sq, bad)
    };
    if n_threads <= 1 {
        return work(src, dst);
    }
    let rows_per = n_rows.div_ceil(n_threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = src
            .chunks(rows_per * src_row)
            .zip(dst.chunks_mut(rows_per * dst_row))
            .map(|(a, b)| s.spawn(move || work(a, b)))
            .collect();
        handles
            .into_iter()
            .fold((0.0, false), |(sq, bad), h| match h.join() {
                Ok((q, b)) => (sq + q, bad | b),
                // A panicking kernel is a bug; keep the panic's message.
                Err(p) => std::panic::resume_unwind(p),
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_do_not_change_the_bytes() {
        let ne0 = 256;
        let rows = 37;
        let x: Vec<f32> = (0..ne0 * rows)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * (1.0 + (i % 13) as f32))
            .collect();
        let src: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        for to in [GgmlType::Q4_K, GgmlType::Q8_0, GgmlType::Q3_K] {
            let rb = hearth_kernels::row_bytes(to, ne0);
            let mut one = vec![0u8; rb * rows];
            let mut many = vec![0u8; rb * rows];
            let (sq1, _) = convert_rows(GgmlType::F32, to, ne0, &src, &mut one, 1);
            let (sq4, _) = convert_rows(GgmlType::F32, to, ne0, &src, &mut many, 4);
            assert_eq!(one, many, "{to}");
            assert!((sq1 - sq4).abs() <= 1e-9 * sq1.max(1.0));
            // Same as quantizing row by row with the reference.
            let mut r = vec![0u8; rb];
            hearth_kernels::quantize_row_ref(to, &x[ne0 * 5..ne0 * 6], &mut r);
            assert_eq!(&one[rb * 5..rb * 6], &r[..]);
        }
    }

    #[test]
    fn non_finite_values_are_reported() {
        let mut x = vec![0.5f32; 64];
        x[3] = f32::NAN;
        let src: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut dst = vec![0u8; hearth_kernels::row_bytes(GgmlType::Q8_0, 64)];
        assert!(convert_rows(GgmlType::F32, GgmlType::Q8_0, 64, &src, &mut dst, 1).1);
        assert!(!finite_floats(GgmlType::F32, &src));
        assert!(!finite_floats(GgmlType::F16, &0x7c00u16.to_le_bytes()));
        assert!(finite_floats(GgmlType::BF16, &0x3f80u16.to_le_bytes()));
    }
}

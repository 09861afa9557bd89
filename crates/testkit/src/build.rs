//! Rebuilding a fixture variant's GGUF file from its recipe, in Rust alone.
//!
//! The GGUF files llama.cpp ran are not committed (12–160 MB each). A test gets
//! the same bytes back by regenerating the F32 weights from the recipe's PRNG,
//! quantizing every tensor to the type llama.cpp chose for it with
//! `hearth_kernels::quantize_row_ref` (byte-identical to ggml's
//! `quantize_row_*_ref`, which `llama-quantize` uses when no importance matrix is
//! given), and checking each tensor's SHA-256 against the one the generator
//! recorded from llama.cpp's file. A mismatch is an error naming the tensor, so a
//! drifted quantizer or PRNG cannot silently produce a different model.
//!
//! Metadata is written in the key order of llama.cpp's file (recipe scalars plus
//! the vocabulary's `tokenizer.*` keys). Header bytes are not compared: alignment
//! padding and the order of keys do not change what a loader computes, and the
//! tensor data is what the comparison needs to be exact about.
//!
//! Built files are cached (`<cache>/<fixture>-<VARIANT>.gguf`) and reused when
//! every tensor still hashes to the recorded value.

use crate::{Recipe, TestkitError};
use hearth_formats::{GgmlType, GgufFile, GgufWriter};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Quantizes `data` (ggml order, `dims[0]` contiguous) to `ty`, row by row.
pub fn quantize_tensor(ty: GgmlType, dims: &[u64], data: &[f32]) -> Result<Vec<u8>, TestkitError> {
    let cols = *dims.first().ok_or_else(|| TestkitError::Format("tensor without dimensions".into()))?;
    let row_bytes = ty
        .row_bytes(cols)
        .ok_or_else(|| TestkitError::Format(format!("a row of {cols} is not whole {ty} blocks")))?;
    let cols = usize::try_from(cols).map_err(|_| TestkitError::Format("row too long".into()))?;
    let row_bytes = usize::try_from(row_bytes).map_err(|_| TestkitError::Format("row too long".into()))?;
    if cols == 0 || data.len() % cols != 0 {
        return Err(TestkitError::Format(format!("{} values do not fill rows of {cols}", data.len())));
    }
    let mut out = vec![0u8; data.len() / cols * row_bytes];
    for (src, dst) in data.chunks_exact(cols).zip(out.chunks_exact_mut(row_bytes)) {
        hearth_kernels::quantize_row_ref(ty, src, dst);
    }
    Ok(out)
}

/// Every tensor of `variant`, in file order, as llama.cpp's file holds it; each
/// tensor's SHA-256 is checked against the recipe.
pub fn variant_tensors(recipe: &Recipe, variant: &str) -> Result<Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>, TestkitError> {
    let v = recipe.variant(variant)?;
    let mut f32s: HashMap<String, (Vec<u64>, Vec<f32>)> = HashMap::new();
    for t in recipe.f32_tensors() {
        let (name, dims, data) = t?;
        f32s.insert(name, (dims, data));
    }
    let mut out = Vec::with_capacity(v.tensors().len());
    for t in v.tensors() {
        let (dims, data) = f32s
            .remove(&t.name)
            .ok_or_else(|| TestkitError::Format(format!("variant {variant}: tensor {} is not in the recipe", t.name)))?;
        if dims != t.dims {
            return Err(TestkitError::Format(format!("variant {variant}: tensor {} dims {:?} != {:?}", t.name, t.dims, dims)));
        }
        let bytes = quantize_tensor(t.ty, &dims, &data)?;
        v.check_tensor(&t.name, &bytes)?;
        out.push((t.name.clone(), dims, t.ty, bytes));
    }
    Ok(out)
}

/// Checks every tensor of the GGUF at `path` against `variant`'s recorded hashes.
pub fn verify_file(recipe: &Recipe, variant: &str, path: &Path) -> Result<(), TestkitError> {
    let v = recipe.variant(variant)?;
    let f = GgufFile::open(path)?;
    if f.tensors().len() != v.tensors().len() {
        return Err(TestkitError::Format(format!(
            "{}: {} tensors, the recipe records {}",
            path.display(),
            f.tensors().len(),
            v.tensors().len()
        )));
    }
    for t in v.tensors() {
        let info =
            f.tensor(&t.name).ok_or_else(|| TestkitError::Format(format!("{}: no tensor {}", path.display(), t.name)))?;
        if info.ty != t.ty || info.dims != t.dims {
            return Err(TestkitError::Format(format!("{}: tensor {} has the wrong type or shape", path.display(), t.name)));
        }
        v.check_tensor(&t.name, f.tensor_data(info))?;
    }
    Ok(())
}

/// Where built fixture files are cached: `$HEARTH_FIXTURE_CACHE`, else
/// `<repo>/target/fixture-ggufs`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("HEARTH_FIXTURE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join("target").join("fixture-ggufs"))
}

/// The GGUF file of `variant`: reused from the cache if it verifies, otherwise
/// rebuilt from the recipe (every tensor hash checked) and written atomically.
pub fn variant_gguf(recipe: &Recipe, variant: &str) -> Result<PathBuf, TestkitError> {
    let dir = cache_dir();
    let path = dir.join(format!("{}-{variant}.gguf", recipe.fixture()));
    if path.exists() && verify_file(recipe, variant, &path).is_ok() {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).map_err(|source| TestkitError::Io { path: dir.clone(), source })?;
    write_variant(recipe, variant, &path)?;
    Ok(path)
}

/// Builds `variant` from the recipe and writes it to `path`.
pub fn write_variant(recipe: &Recipe, variant: &str, path: &Path) -> Result<(), TestkitError> {
    let vocab = recipe.open_vocab()?;
    let md = recipe.variant_metadata(variant, &vocab)?;
    let tensors = variant_tensors(recipe, variant)?;
    let mut w = GgufWriter::new();
    for (k, v) in md {
        w.add_meta(k, v).map_err(|e| TestkitError::Format(e.to_string()))?;
    }
    for (name, dims, ty, _) in &tensors {
        w.add_tensor(name.clone(), dims, *ty).map_err(|e| TestkitError::Format(e.to_string()))?;
    }
    let data: Vec<&[u8]> = tensors.iter().map(|t| t.3.as_slice()).collect();
    w.write_to_path_with_data(path, &data).map_err(|e| TestkitError::Format(format!("{}: {e}", path.display())))?;
    Ok(())
}

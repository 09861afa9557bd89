//! The model used when a command names none: `foldoc-demo`, the 3.1M-parameter
//! Llama-architecture model Hearth trained itself (assets/demo/README.md).
//!
//! It is compiled into the binary so a fresh machine runs with no download.
//! The engine memory-maps model files, so on first use the bytes are written
//! once to the user's cache directory (temporary file, then rename: a crash
//! never leaves a half-written model under the final name) and that file is
//! loaded; later runs find it there. `HEARTH_MODEL` names another default.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The demo model's GGUF bytes.
const DEMO: &[u8] = include_bytes!("../../../assets/demo/foldoc-demo.gguf");
pub const DEMO_NAME: &str = "foldoc-demo";

/// 64-bit FNV-1a: enough to tell one embedded build's bytes from another's
/// in the cache file name (not a security boundary: the file is re-checked
/// by size and the GGUF parser treats it as hostile anyway).
fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("hearth")
}

/// The embedded demo model as a file on disk (written on first use).
pub fn demo_path() -> Result<PathBuf> {
    let dir = cache_dir();
    let path = dir.join(format!("{DEMO_NAME}-{:016x}.gguf", fnv1a(DEMO)));
    if std::fs::metadata(&path).map(|m| m.len() == DEMO.len() as u64).unwrap_or(false) {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(DEMO).context("writing the demo model")?;
    tmp.as_file().sync_all().context("writing the demo model")?;
    tmp.persist(&path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(path)
}

/// `explicit` if given, else `$HEARTH_MODEL`, else the embedded demo model.
pub fn resolve(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("HEARTH_MODEL").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let p = demo_path()?;
    tracing::info!("no model named: using the embedded demo model {}", p.display());
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_demo_is_a_gguf_and_extracts_identically() {
        assert_eq!(&DEMO[..4], b"GGUF");
        let dir = tempfile::tempdir().unwrap();
        // Only this test touches XDG_CACHE_HOME in this binary.
        std::env::set_var("XDG_CACHE_HOME", dir.path());
        let p = demo_path().unwrap();
        assert!(p.starts_with(dir.path()));
        assert_eq!(std::fs::read(&p).unwrap(), DEMO);
        // A truncated cache file is replaced, not loaded.
        std::fs::write(&p, &DEMO[..100]).unwrap();
        let p2 = demo_path().unwrap();
        assert_eq!(p, p2);
        assert_eq!(std::fs::read(&p2).unwrap().len(), DEMO.len());
    }
}

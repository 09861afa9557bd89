//! The bytes behind a parsed file: a read-only memory map, or an owned
//! buffer for images built in memory.

use std::path::Path;

pub(crate) enum Source {
    Mmap(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Source {
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Source::Mmap(m) => m,
            Source::Owned(v) => v,
        }
    }

    pub(crate) fn is_mapped(&self) -> bool {
        matches!(self, Source::Mmap(_))
    }

    /// Maps `path` read-only. An empty file cannot be mapped on every
    /// platform, so it becomes an empty owned buffer.
    pub(crate) fn map(path: &Path) -> std::io::Result<Source> {
        let file = std::fs::File::open(path)?;
        if file.metadata()?.len() == 0 {
            return Ok(Source::Owned(Vec::new()));
        }
        // SAFETY: the map is read-only; like every mmap-based loader we rely
        // on the file not being truncated or rewritten while it is mapped
        // (a truncation shows up as SIGBUS, not as memory unsafety in Rust
        // terms we could guard against here).
        let map = unsafe { memmap2::Mmap::map(&file) }?;
        Ok(Source::Mmap(map))
    }
}

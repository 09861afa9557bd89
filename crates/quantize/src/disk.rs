//! Free space on the output's filesystem, and recognising "disk full".

use std::io;
use std::path::Path;

/// Bytes an unprivileged process may still write on the filesystem holding
/// `dir` (`statvfs`: `f_bavail * f_frsize`), or `None` where the platform
/// has no such call here.
pub fn available_bytes(dir: &Path) -> io::Result<Option<u64>> {
    #[cfg(unix)]
    {
        let s = rustix::fs::statvfs(dir).map_err(io::Error::from)?;
        Ok(Some(s.f_bavail.saturating_mul(s.f_frsize)))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(None)
    }
}

/// Whether an I/O error means the filesystem (or the user's quota) is full.
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge
    )
}

/// A writer that fails with "no space left on device" once `limit` bytes
/// have gone through: how the tests (and `--simulate-disk-full-after`)
/// exercise the out-of-space path without a full filesystem.
pub(crate) struct FullAfter<W> {
    pub inner: W,
    pub limit: u64,
    pub written: u64,
}

impl<W: io::Write> io::Write for FullAfter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.limit.saturating_sub(self.written);
        if room == 0 {
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        let n = (buf.len() as u64).min(room) as usize;
        let n = self.inner.write(&buf[..n])?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_temp_dir_has_some_space_and_a_missing_dir_is_an_error() {
        let dir = std::env::temp_dir();
        if let Some(n) = available_bytes(&dir).unwrap() {
            assert!(n > 0);
        }
        #[cfg(unix)]
        assert!(available_bytes(Path::new("/nonexistent/hearth/dir")).is_err());
    }

    #[test]
    fn full_after_fails_with_storage_full() {
        let mut w = FullAfter {
            inner: Vec::new(),
            limit: 5,
            written: 0,
        };
        let e = w.write_all(b"0123456789").unwrap_err();
        assert!(is_disk_full(&e));
        assert_eq!(w.inner, b"01234");
        assert!(is_disk_full(&io::Error::from_raw_os_error(28))); // ENOSPC on Linux
    }
}

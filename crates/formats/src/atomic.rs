//! Writing a file so that it appears under its final name complete or not at
//! all.
//!
//! The bytes go to a temporary file in the *same directory* as the target (a
//! rename is only atomic within one file system), are flushed and
//! `fsync`ed, and the temporary file is then renamed over the target; on Unix
//! the directory is `fsync`ed too so the rename itself survives a crash. A
//! write that fails, or an [`AtomicFile`] dropped without
//! [`AtomicFile::commit`], removes the temporary file and leaves any previous
//! file at the target untouched. A process killed mid-write leaves only a
//! hidden `.NAME.PID.N.tmp` file behind, never a truncated `NAME`.
//!
//! Deliberately absent: preserving the permissions or ownership of a file
//! being replaced, and Windows-specific replace semantics beyond
//! `std::fs::rename`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes temporary files of concurrent writers in one process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Buffer size for the file writer: large enough that tensor data streams
/// in few system calls.
const BUF_SIZE: usize = 1 << 20;

/// A file being written under a temporary name; see the module docs.
pub struct AtomicFile {
    target: PathBuf,
    tmp: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Creates the temporary file next to `target`.
    pub fn create(target: impl AsRef<Path>) -> io::Result<AtomicFile> {
        let target = target.as_ref().to_path_buf();
        let name = target
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "target path has no file name"))?;
        let dir = parent_dir(&target);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.{n}.tmp", std::process::id()));
        let tmp = dir.join(tmp_name);
        // create_new: never clobber anything that happens to have the name.
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        Ok(AtomicFile { target, tmp, writer: Some(BufWriter::with_capacity(BUF_SIZE, file)) })
    }

    /// The temporary path being written.
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// Flushes, syncs and renames the file into place. On failure the
    /// temporary file is removed and the target left as it was.
    pub fn commit(mut self) -> io::Result<()> {
        let result = self.finish();
        if result.is_err() {
            // After a successful rename this finds nothing, which is fine.
            let _ = std::fs::remove_file(&self.tmp);
        }
        result
    }

    fn finish(&mut self) -> io::Result<()> {
        let writer = self.writer.take().ok_or_else(|| io::Error::other("atomic file already finished"))?;
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.tmp, &self.target)?;
        sync_dir(&parent_dir(&self.target))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.writer {
            Some(w) => w.write(buf),
            None => Err(io::Error::other("atomic file already finished")),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.writer {
            Some(w) => w.write_all(buf),
            None => Err(io::Error::other("atomic file already finished")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.writer {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Some(w) = self.writer.take() {
            // Not committed: discard. Errors here have nowhere to go; the
            // worst case is a stray hidden temporary file.
            drop(w);
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Writes a file atomically: `f` writes the contents; the file appears under
/// `path` only if `f` returns `Ok` and the commit succeeds.
pub fn write_atomically<T, E: From<io::Error>>(
    path: impl AsRef<Path>,
    f: impl FnOnce(&mut AtomicFile) -> Result<T, E>,
) -> Result<T, E> {
    let mut file = AtomicFile::create(path)?;
    let out = f(&mut file)?;
    file.commit()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hearth-atomic-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn commit_replaces_and_failure_keeps_the_old_file() {
        let dir = scratch("commit");
        let target = dir.join("model.gguf");
        std::fs::write(&target, b"old contents").unwrap();

        // A failed write leaves the old file and no temporary file.
        let r: Result<(), io::Error> = write_atomically(&target, |f| {
            f.write_all(b"half of the new")?;
            Err(io::Error::other("interrupted"))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"old contents");
        assert_eq!(entries(&dir), vec!["model.gguf".to_string()]);

        // A dropped, uncommitted file likewise.
        {
            let mut f = AtomicFile::create(&target).unwrap();
            f.write_all(b"abandoned").unwrap();
            assert!(f.temp_path().exists());
        }
        assert_eq!(entries(&dir), vec!["model.gguf".to_string()]);

        write_atomically(&target, |f| f.write_all(b"new contents")).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new contents");
        assert_eq!(entries(&dir), vec!["model.gguf".to_string()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_rename_leaves_no_temporary_file() {
        let dir = scratch("rename");
        // The target is a non-empty directory, so renaming a file onto it fails.
        let target = dir.join("occupied");
        std::fs::create_dir_all(target.join("inner")).unwrap();
        let mut f = AtomicFile::create(&target).unwrap();
        f.write_all(b"data").unwrap();
        assert!(f.commit().is_err());
        assert_eq!(entries(&dir), vec!["occupied".to_string()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_path_without_a_file_name_is_refused() {
        assert!(AtomicFile::create("/").is_err());
    }
}

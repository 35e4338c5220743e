//! Atomic file writes: a temporary file in the same directory, fsync, then rename, so a run
//! that dies mid-write leaves either the old file or the new one, never half of one.

use std::io::Write;
use std::path::Path;

use crate::{Error, Result};

/// Flushes a directory's entries (a rename inside it) to disk, so that the renamed file survives a
/// power loss as well as a kill. A no-op where directories cannot be opened (not Unix).
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    if cfg!(unix) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Whether `name` is the name of one of [`atomic_write`]'s (or quarc's checkpoint writer's)
/// temporary files: `.<file>.tmp-<pid>`. A run that was killed mid-write leaves one behind.
pub fn is_temp_file_name(name: &str) -> bool {
    name.starts_with('.')
        && name
            .rsplit_once(".tmp-")
            .is_some_and(|(_, pid)| !pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit()))
}

/// Writes `bytes` to `path` atomically.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("quarc-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("a.bin");
/// quarc_base::atomic_write(&path, b"hello")?;
/// assert_eq!(std::fs::read(&path).unwrap(), b"hello");
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), quarc_base::Error>(())
/// ```
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::config(format!("{path:?} has no file name")))?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    tracing::trace!(path = %path.display(), bytes = bytes.len(), ok = result.is_ok(), "atomic write");
    result.map_err(io)
}

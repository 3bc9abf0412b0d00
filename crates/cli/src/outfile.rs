//! Writing files the user asked for (`--out`): a new file each time, never
//! through a symlink and never inheriting an old file's permissions.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// Who may read a file written with [`write_new_file`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readers {
    /// Only the owner (0600): secret keys, Setup Messages.
    Owner,
    /// Everyone (0644): public keys.
    Everyone,
}

/// Writes `bytes` to a new temporary file next to `path` (created
/// exclusively, mode 0600), flushes it to disk, sets its mode and renames it
/// over `path`. The rename replaces whatever `path` was — a file of another
/// mode, a symlink — without writing through it; a crash leaves either the
/// old file or the complete new one.
pub fn write_new_file(path: &Path, bytes: &[u8], readers: Readers) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let context = || format!("cannot write {}", path.display());
    let mut tmp = tempfile::Builder::new()
        .prefix(".sma-out-")
        .tempfile_in(parent)
        .with_context(context)?;
    tmp.write_all(bytes).with_context(context)?;
    tmp.as_file().sync_all().with_context(context)?;
    #[cfg(unix)]
    if readers == Readers::Everyone {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .with_context(context)?;
    }
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(context)?;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_secret_replaces_an_open_file_with_a_private_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.asc");
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_new_file(&path, b"secret", Readers::Owner).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"secret");
        assert_eq!(
            mode(&path),
            0o600,
            "the old file's mode must not carry over"
        );
    }

    #[test]
    fn a_symlink_is_replaced_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"untouched").unwrap();
        let link = dir.path().join("key.asc");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        write_new_file(&link, b"secret", Readers::Owner).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
        assert!(!std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&link).unwrap(), b"secret");
    }

    #[test]
    fn public_files_are_readable_and_no_temporary_file_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pub.asc");
        write_new_file(&path, b"public", Readers::Everyone).unwrap();
        assert_eq!(mode(&path), 0o644);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "only the written file remains");
    }
}

//! Writing secrets to disk: owner-only permissions from the first byte, atomically.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` with mode 0600, via a temporary file and a rename.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with_mode(path, bytes, 0o600)
}

/// Writes `bytes` to `path` with mode 0644, via a temporary file and a rename.
pub fn write_public(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with_mode(path, bytes, 0o644)
}

/// Creates `path` empty with mode 0600 if it does not exist, and makes it 0600 if it does.
pub fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

/// Creates `dir` if needed and makes it owner-only: the directory 0700 and every file in it
/// 0600 (subdirectories are left as they are). Returns the files whose mode was changed.
pub fn secure_dir(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let mut changed = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_file() && meta.permissions().mode() & 0o777 != 0o600 {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))?;
            changed.push(entry.path());
        }
    }
    Ok(changed)
}

fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

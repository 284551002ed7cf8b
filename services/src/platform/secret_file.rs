//! Node-local copies of replicated secrets (the JWT signing key, the carrier token).
//!
//! The secret itself lives in its service's replicated state, so every node signs and checks
//! with the same one. The file is the operator's copy on this node (what is handed to the
//! carrier, what an older data directory held before the secret was replicated): read once
//! at start to offer it for installation, rewritten with whatever value was installed.

use std::io::Write;
use std::path::Path;

/// The file's bytes, or `None` when there is no such file.
pub fn read(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Writes `bytes` to `path` owner-only (0600), creating its directory. Written whole to a
/// sibling then renamed, so a crash never leaves half a secret.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&partial)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&partial, path)?;
    Ok(())
}

/// Writes `bytes` unless the file already holds exactly them (no needless rewrite at every
/// start).
pub fn write_if_changed(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if read(path)?.as_deref() == Some(bytes) {
        return Ok(());
    }
    write(path, bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_secret_file_is_private_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/secret");
        assert_eq!(read(&path).unwrap(), None);
        write_if_changed(&path, b"one").unwrap();
        assert_eq!(read(&path).unwrap().as_deref(), Some(&b"one"[..]));
        write_if_changed(&path, b"two").unwrap();
        assert_eq!(read(&path).unwrap().as_deref(), Some(&b"two"[..]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}

//! Components by content: each kept once under its SHA-256, so a job names what it
//! runs exactly and a worker fetches each component once.

use std::path::{Path, PathBuf};

pub use eddy_core::sha256;

/// A directory of components named by their SHA-256.
#[derive(Clone, Debug)]
pub struct Blobs {
    dir: PathBuf,
}

impl Blobs {
    /// The store in `dir`, created if missing.
    pub fn open(dir: &Path) -> std::io::Result<Blobs> {
        std::fs::create_dir_all(dir)?;
        Ok(Blobs {
            dir: dir.to_owned(),
        })
    }

    /// Where the component with `sha` is (or would be) kept.
    pub fn path(&self, sha: &str) -> PathBuf {
        self.dir.join(format!("{sha}.wasm"))
    }

    /// Whether the component with `sha` is here.
    pub fn has(&self, sha: &str) -> bool {
        valid(sha) && self.path(sha).is_file()
    }

    /// Keeps `bytes`, written whole or not at all; returns their SHA-256.
    pub fn put(&self, bytes: &[u8]) -> std::io::Result<String> {
        let sha = sha256(bytes);
        if !self.has(&sha) {
            let tmp = self.dir.join(format!(".{sha}.{}", std::process::id()));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, self.path(&sha))?;
        }
        Ok(sha)
    }

    /// The component with `sha`; an error if it is not here or its bytes do not hash
    /// to it.
    pub fn get(&self, sha: &str) -> std::io::Result<Vec<u8>> {
        if !valid(sha) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{sha:?} is not a SHA-256"),
            ));
        }
        let bytes = std::fs::read(self.path(sha))?;
        if sha256(&bytes) != sha {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("component {sha} is corrupt"),
            ));
        }
        Ok(bytes)
    }
}

/// Whether `sha` is 64 lowercase hex digits (so it is safe in a file name).
fn valid(sha: &str) -> bool {
    sha.len() == 64
        && sha
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_is_kept_once_under_its_hash_and_checked_when_read() {
        let dir = std::env::temp_dir().join(format!("eddy-blobs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let blobs = Blobs::open(&dir).unwrap();
        let sha = blobs.put(b"component").unwrap();
        assert_eq!(sha, sha256(b"component"));
        assert_eq!(blobs.put(b"component").unwrap(), sha);
        assert_eq!(blobs.get(&sha).unwrap(), b"component");
        std::fs::write(blobs.path(&sha), b"tampered").unwrap();
        assert!(blobs.get(&sha).unwrap_err().to_string().contains("corrupt"));
        assert!(blobs.get("../../etc/passwd").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

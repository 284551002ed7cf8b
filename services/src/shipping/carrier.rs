//! The carrier's webhook credential: a random token made at first start and kept in
//! `<data-dir>/services/shipping/carrier-token` (mode 0600), given to the carrier out of band
//! and presented in `X-Carrier-Token`.

use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

pub const TOKEN_FILE: &str = "carrier-token";

#[derive(Debug, thiserror::Error)]
pub enum CarrierTokenError {
    #[error("cannot read or write the carrier token {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot generate the carrier token: {0}")]
    Random(String),
    #[error("the carrier token file {0} is empty or not text")]
    Malformed(String),
}

pub struct CarrierToken {
    /// A digest of the token: comparing digests keeps the comparison's length fixed.
    digest: [u8; 32],
}

impl CarrierToken {
    /// Reads the token from `dir`, creating it on first start.
    pub fn load_or_create(dir: &Path) -> Result<CarrierToken, CarrierTokenError> {
        let path = dir.join(TOKEN_FILE);
        let io = |source| CarrierTokenError::Io {
            path: path.display().to_string(),
            source,
        };
        let token = match std::fs::read_to_string(&path) {
            Ok(token) => token.trim().to_string(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(io)?;
                let mut secret = [0u8; 32];
                getrandom::fill(&mut secret)
                    .map_err(|error| CarrierTokenError::Random(error.to_string()))?;
                let token: String = secret.iter().map(|byte| format!("{byte:02x}")).collect();
                // Written whole then renamed, so a crash never leaves half a token.
                let partial = dir.join("carrier-token.partial");
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create(true).truncate(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(&partial).map_err(io)?;
                file.write_all(token.as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                std::fs::rename(&partial, &path).map_err(io)?;
                token
            }
            Err(error) => return Err(io(error)),
        };
        if token.is_empty() {
            return Err(CarrierTokenError::Malformed(path.display().to_string()));
        }
        Ok(CarrierToken {
            digest: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// Whether `presented` is the token, in time independent of where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        presented
            .iter()
            .zip(self.digest.iter())
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_token_is_made_once_private_and_matched_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let first = CarrierToken::load_or_create(dir.path()).unwrap();
        let token = std::fs::read_to_string(dir.path().join(TOKEN_FILE)).unwrap();
        assert_eq!(token.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(first.matches(&token));
        assert!(!first.matches(&token[1..]));
        assert!(!first.matches(""));
        let again = CarrierToken::load_or_create(dir.path()).unwrap();
        assert!(again.matches(&token), "the token survives a restart");
    }
}

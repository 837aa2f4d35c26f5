//! Signing keys that are not certificates' (the key that signs ServiceAccount
//! tokens): made once, kept as a private file, read back with their public
//! half.

use std::path::Path;

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};

use crate::{Error, Result, write_private};

/// A key pair, PEM: the private key (PKCS#8) and its public key
/// (SubjectPublicKeyInfo).
#[derive(Clone)]
pub struct KeyPem {
    /// The private key.
    pub private_pem: String,
    /// Its public key.
    pub public_pem: String,
}

impl std::fmt::Debug for KeyPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPem")
            .field("public_pem", &self.public_pem)
            .finish_non_exhaustive()
    }
}

/// The key pair kept at `path` (an ECDSA P-256 key made and written 0600 on
/// first use).
pub fn key_pair_load_or_create(path: &Path) -> Result<KeyPem> {
    match std::fs::read_to_string(path) {
        Ok(private_pem) => key_pair_of(&private_pem),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(Error::Generate)?;
            let pem = KeyPem {
                private_pem: key.serialize_pem(),
                public_pem: key.public_key_pem(),
            };
            write_private(path, pem.private_pem.as_bytes())?;
            Ok(pem)
        }
        Err(source) => Err(Error::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A private key (PEM) with its public key.
pub fn key_pair_of(private_pem: &str) -> Result<KeyPem> {
    let key = KeyPair::from_pem(private_pem).map_err(|e| Error::BadKey(e.to_string()))?;
    Ok(KeyPem {
        private_pem: private_pem.to_owned(),
        public_pem: key.public_key_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_key_is_made_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pki/sa.key");
        let made = key_pair_load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let read = key_pair_load_or_create(&path).unwrap();
        assert_eq!(made.public_pem, read.public_pem);
        assert!(made.public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert!(key_pair_of("not a key").is_err());
    }
}

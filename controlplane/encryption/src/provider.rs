//! Providers: how one value is encrypted and decrypted, byte for byte as the
//! Kubernetes API server lays it out in etcd.
//!
//! An encrypted value is `k8s:enc:<provider>:v1:<key name>:` followed by what the
//! provider wrote:
//!
//! - `aescbc`: a random 16-byte IV, then AES-CBC of the value padded with PKCS#7;
//! - `aesgcm`: a random 12-byte nonce, then AES-GCM's ciphertext and 16-byte tag,
//!   with the store key (`/registry/secrets/default/db`) as additional
//!   authenticated data, so a value copied under another key does not decrypt;
//! - `secretbox`: a random 24-byte nonce, then NaCl's secretbox (XSalsa20 and
//!   Poly1305; the tag comes first).
//!
//! `identity` writes values as they are. A value is read with the first provider
//! (in configuration order) whose prefix it carries and whose key decrypts it.

use std::fmt;
use std::sync::Arc;

use aes::{Aes128, Aes192, Aes256};
use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Nonce, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm};
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::consts::U16;
use cbc::cipher::{BlockCipher, BlockDecryptMut, BlockEncryptMut, BlockSizeUser, InnerIvInit};
use crypto_secretbox::XSalsa20Poly1305;

/// What every encrypted value starts with; no plaintext value does (JSON
/// starts with `{`).
pub(crate) const ENCRYPTED: &[u8] = b"k8s:enc:";

/// Length of an AES-CBC IV.
const CBC_IV: usize = 16;
/// Length of an AES-GCM nonce.
const GCM_NONCE: usize = 12;
/// Length of a secretbox nonce.
const SECRETBOX_NONCE: usize = 24;

/// The kinds of provider an `EncryptionConfiguration` can list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// AES in CBC mode with PKCS#7 padding.
    Aescbc,
    /// AES in GCM mode, bound to the store key.
    Aesgcm,
    /// XSalsa20 and Poly1305 (NaCl's secretbox).
    Secretbox,
    /// No encryption.
    Identity,
}

impl Kind {
    /// The provider's name, as the configuration spells it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Aescbc => "aescbc",
            Kind::Aesgcm => "aesgcm",
            Kind::Secretbox => "secretbox",
            Kind::Identity => "identity",
        }
    }

    /// The lengths in bytes a key of this provider may have.
    pub(crate) fn key_lengths(self) -> &'static [usize] {
        match self {
            Kind::Aescbc | Kind::Aesgcm => &[16, 24, 32],
            Kind::Secretbox => &[32],
            Kind::Identity => &[],
        }
    }

    /// What the values this provider writes start with, before the key's name.
    fn prefix(self) -> &'static [u8] {
        match self {
            Kind::Aescbc => b"k8s:enc:aescbc:v1:",
            Kind::Aesgcm => b"k8s:enc:aesgcm:v1:",
            Kind::Secretbox => b"k8s:enc:secretbox:v1:",
            Kind::Identity => b"",
        }
    }
}

/// Why a value could not be encrypted or decrypted.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// The system gave no random bytes for an IV or a nonce.
    #[error("no random bytes for a nonce: {0}")]
    Random(getrandom::Error),
    /// Encrypting failed (the value is too large for the cipher).
    #[error("{key}: encrypting with {provider} key {name:?} failed")]
    Encrypt {
        /// The store key.
        key: String,
        /// The provider.
        provider: &'static str,
        /// The key's name.
        name: String,
    },
    /// The value was encrypted with a provider or key the configuration lacks.
    #[error(
        "{key} is encrypted with {used}, which no provider of the encryption configuration has"
    )]
    UnknownKey {
        /// The store key.
        key: String,
        /// The value's prefix up to the key's name (`k8s:enc:aescbc:v1:key1`).
        used: String,
    },
    /// Every key that could have encrypted the value failed to decrypt it.
    #[error("{key} could not be decrypted: {}", .failures.join("; "))]
    Decrypt {
        /// The store key.
        key: String,
        /// What each key tried said.
        failures: Vec<String>,
    },
    /// The value is encrypted but its resource is not configured for encryption.
    #[error(
        "{key} holds an encrypted value, but the encryption configuration covers no resource it belongs to"
    )]
    NotConfigured {
        /// The store key.
        key: String,
    },
}

/// One named key of a provider.
pub(crate) struct Key {
    name: String,
    cipher: Cipher,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key").field("name", &self.name).finish()
    }
}

impl Key {
    /// A key of `kind` called `name`; `None` when `secret` is not of a length
    /// the provider takes.
    pub(crate) fn new(kind: Kind, name: String, secret: &[u8]) -> Option<Key> {
        let cipher = match kind {
            Kind::Aescbc => Cipher::Cbc(match secret.len() {
                16 => Aes::A128(Aes128::new_from_slice(secret).ok()?),
                24 => Aes::A192(Aes192::new_from_slice(secret).ok()?),
                32 => Aes::A256(Aes256::new_from_slice(secret).ok()?),
                _ => return None,
            }),
            Kind::Aesgcm => Cipher::Gcm(match secret.len() {
                16 => Gcm::A128(Aes128Gcm::new_from_slice(secret).ok()?),
                24 => Gcm::A192(AesGcm::new_from_slice(secret).ok()?),
                32 => Gcm::A256(Aes256Gcm::new_from_slice(secret).ok()?),
                _ => return None,
            }),
            Kind::Secretbox => {
                Cipher::Secretbox(Box::new(XSalsa20Poly1305::new_from_slice(secret).ok()?))
            }
            Kind::Identity => return None,
        };
        Some(Key { name, cipher })
    }
}

/// A block cipher of one of AES's key sizes.
#[derive(Clone)]
enum Aes {
    A128(Aes128),
    A192(Aes192),
    A256(Aes256),
}

/// AES-GCM of one of AES's key sizes.
enum Gcm {
    A128(Aes128Gcm),
    A192(AesGcm<Aes192, U12>),
    A256(Aes256Gcm),
}

/// A key, ready to use.
enum Cipher {
    Cbc(Aes),
    Gcm(Gcm),
    Secretbox(Box<XSalsa20Poly1305>),
}

impl Cipher {
    /// The bytes after the key name's prefix: nonce (or IV), then ciphertext.
    fn seal(&self, plaintext: &[u8], store_key: &str) -> Result<Vec<u8>, SealError> {
        match self {
            Cipher::Cbc(aes) => {
                let iv = random::<CBC_IV>()?;
                let sealed = match aes {
                    Aes::A128(c) => cbc_seal(c, &iv, plaintext),
                    Aes::A192(c) => cbc_seal(c, &iv, plaintext),
                    Aes::A256(c) => cbc_seal(c, &iv, plaintext),
                };
                Ok([&iv[..], &sealed].concat())
            }
            Cipher::Gcm(gcm) => {
                let nonce = random::<GCM_NONCE>()?;
                let aad = store_key.as_bytes();
                let sealed = match gcm {
                    Gcm::A128(c) => aead_seal(c, &nonce, plaintext, aad),
                    Gcm::A192(c) => aead_seal(c, &nonce, plaintext, aad),
                    Gcm::A256(c) => aead_seal(c, &nonce, plaintext, aad),
                }
                .ok_or(SealError::Cipher)?;
                Ok([&nonce[..], &sealed].concat())
            }
            Cipher::Secretbox(c) => {
                let nonce = random::<SECRETBOX_NONCE>()?;
                let sealed =
                    aead_seal(c.as_ref(), &nonce, plaintext, b"").ok_or(SealError::Cipher)?;
                Ok([&nonce[..], &sealed].concat())
            }
        }
    }

    /// The plaintext of the bytes after the key name's prefix.
    fn open(&self, data: &[u8], store_key: &str) -> Result<Vec<u8>, &'static str> {
        match self {
            Cipher::Cbc(aes) => {
                let (iv, ciphertext) = split::<CBC_IV>(data)?;
                if ciphertext.is_empty() || ciphertext.len() % CBC_IV != 0 {
                    return Err("the value is not a whole number of AES blocks");
                }
                match aes {
                    Aes::A128(c) => cbc_open(c, iv, ciphertext),
                    Aes::A192(c) => cbc_open(c, iv, ciphertext),
                    Aes::A256(c) => cbc_open(c, iv, ciphertext),
                }
                .ok_or("invalid padding (wrong key, or the value was altered)")
            }
            Cipher::Gcm(gcm) => {
                let (nonce, sealed) = split::<GCM_NONCE>(data)?;
                let aad = store_key.as_bytes();
                match gcm {
                    Gcm::A128(c) => aead_open(c, nonce, sealed, aad),
                    Gcm::A192(c) => aead_open(c, nonce, sealed, aad),
                    Gcm::A256(c) => aead_open(c, nonce, sealed, aad),
                }
                .ok_or(
                    "authentication failed (wrong key, or the value was altered or written under another store key)",
                )
            }
            Cipher::Secretbox(c) => {
                let (nonce, sealed) = split::<SECRETBOX_NONCE>(data)?;
                aead_open(c.as_ref(), nonce, sealed, b"")
                    .ok_or("authentication failed (wrong key, or the value was altered)")
            }
        }
    }
}

/// Why a key could not seal a value.
enum SealError {
    Random(getrandom::Error),
    Cipher,
}

/// `data`'s first `N` bytes (its nonce or IV), and the rest.
fn split<const N: usize>(data: &[u8]) -> Result<(&[u8; N], &[u8]), &'static str> {
    data.split_first_chunk::<N>()
        .ok_or("the value is shorter than its nonce")
}

/// `N` bytes from the system's random source.
fn random<const N: usize>() -> Result<[u8; N], SealError> {
    let mut bytes = [0; N];
    getrandom::fill(&mut bytes).map_err(SealError::Random)?;
    Ok(bytes)
}

fn cbc_seal<C>(cipher: &C, iv: &[u8; CBC_IV], plaintext: &[u8]) -> Vec<u8>
where
    C: BlockEncryptMut + BlockCipher + BlockSizeUser<BlockSize = U16> + Clone,
{
    cbc::Encryptor::<C>::inner_iv_init(cipher.clone(), iv.into())
        .encrypt_padded_vec_mut::<Pkcs7>(plaintext)
}

fn cbc_open<C>(cipher: &C, iv: &[u8; CBC_IV], ciphertext: &[u8]) -> Option<Vec<u8>>
where
    C: BlockDecryptMut + BlockCipher + BlockSizeUser<BlockSize = U16> + Clone,
{
    cbc::Decryptor::<C>::inner_iv_init(cipher.clone(), iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(ciphertext)
        .ok()
}

fn aead_seal<A: Aead>(aead: &A, nonce: &[u8], msg: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    aead.encrypt(Nonce::<A>::from_slice(nonce), Payload { msg, aad })
        .ok()
}

fn aead_open<A: Aead>(aead: &A, nonce: &[u8], msg: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    aead.decrypt(Nonce::<A>::from_slice(nonce), Payload { msg, aad })
        .ok()
}

/// One provider of a configuration: its kind and keys, the first of which
/// encrypts.
#[derive(Debug)]
pub(crate) struct Provider {
    kind: Kind,
    keys: Vec<Key>,
}

impl Provider {
    /// The identity provider.
    pub(crate) fn identity() -> Provider {
        Provider {
            kind: Kind::Identity,
            keys: Vec::new(),
        }
    }

    /// A provider of `kind` with `keys` (at least one).
    pub(crate) fn new(kind: Kind, keys: Vec<Key>) -> Provider {
        Provider { kind, keys }
    }

    /// Whether the values it writes are encrypted.
    pub(crate) fn encrypts(&self) -> bool {
        self.kind != Kind::Identity
    }
}

/// The providers of one resource, in order: the first writes, all read.
#[derive(Clone, Debug, Default)]
pub(crate) struct Chain(pub(crate) Vec<Arc<Provider>>);

impl Chain {
    /// What to store for `value` written under `store_key`: `None` to store it as
    /// it is.
    pub(crate) fn seal(
        &self,
        store_key: &str,
        value: &[u8],
    ) -> Result<Option<Vec<u8>>, TransformError> {
        let Some(provider) = self.0.first() else {
            return Ok(None);
        };
        let Some(key) = provider.keys.first() else {
            return Ok(None);
        };
        let sealed = key.cipher.seal(value, store_key).map_err(|e| match e {
            SealError::Random(e) => TransformError::Random(e),
            SealError::Cipher => TransformError::Encrypt {
                key: store_key.to_owned(),
                provider: provider.kind.name(),
                name: key.name.clone(),
            },
        })?;
        let prefix = provider.kind.prefix();
        let mut out = Vec::with_capacity(prefix.len() + key.name.len() + 1 + sealed.len());
        out.extend_from_slice(prefix);
        out.extend_from_slice(key.name.as_bytes());
        out.push(b':');
        out.extend_from_slice(&sealed);
        Ok(Some(out))
    }

    /// What `stored` (read from `store_key`) decrypts to: `None` when it is not
    /// encrypted.
    pub(crate) fn open(
        &self,
        store_key: &str,
        stored: &[u8],
    ) -> Result<Option<Vec<u8>>, TransformError> {
        if !stored.starts_with(ENCRYPTED) {
            return Ok(None);
        }
        let mut failures = Vec::new();
        for provider in &self.0 {
            if provider.kind == Kind::Identity {
                continue;
            }
            let Some(rest) = stored.strip_prefix(provider.kind.prefix()) else {
                continue;
            };
            for key in &provider.keys {
                let Some(data) = rest
                    .strip_prefix(key.name.as_bytes())
                    .and_then(|r| r.strip_prefix(b":"))
                else {
                    continue;
                };
                match key.cipher.open(data, store_key) {
                    Ok(plaintext) => return Ok(Some(plaintext)),
                    Err(why) => failures.push(format!(
                        "{} key {:?}: {why}",
                        provider.kind.name(),
                        key.name
                    )),
                }
            }
        }
        if failures.is_empty() {
            Err(TransformError::UnknownKey {
                key: store_key.to_owned(),
                used: used(stored),
            })
        } else {
            Err(TransformError::Decrypt {
                key: store_key.to_owned(),
                failures,
            })
        }
    }
}

/// The provider and key name an encrypted value names: its first five
/// colon-separated fields (`k8s:enc:aescbc:v1:key1`), shown safely.
fn used(stored: &[u8]) -> String {
    let end = stored
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b':')
        .nth(4)
        .map_or(stored.len(), |(at, _)| at);
    String::from_utf8_lossy(&stored[..end.min(80)])
        .escape_debug()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORE_KEY: &str = "/registry/secrets/default/s";
    const PLAINTEXT: &[u8] = br#"{"kind":"Secret","data":{"a":"c2VjcmV0"}}"#;

    fn unhex(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    fn chain(kind: Kind, keys: &[(&str, Vec<u8>)]) -> Chain {
        let keys = keys
            .iter()
            .map(|(name, secret)| Key::new(kind, name.to_string(), secret).unwrap())
            .collect();
        Chain(vec![Arc::new(Provider::new(kind, keys))])
    }

    fn bytes(range: std::ops::Range<u8>) -> Vec<u8> {
        range.collect()
    }

    // Values laid out as the API server writes them, made by an independent
    // implementation of each cipher with fixed nonces.
    #[test]
    fn reads_values_in_the_api_servers_layout() {
        let cases = [
            (
                Kind::Aescbc,
                bytes(0..32),
                "6b38733a656e633a6165736362633a76313a6b6579313a6465666768696a6b6c6d6e6f7071727344283a8a80a45cba29966b60a5c5bdab0852d02cb7739da2357f6af4aaa1bce0f4c516a51efa03339b81384506a65b63",
            ),
            (
                Kind::Aesgcm,
                bytes(32..48),
                "6b38733a656e633a61657367636d3a76313a6b6579313a000102030405060708090a0b91c6ef8e2a207aa4ddbc3b7ff48c3b429763174836977aee4eb5663ef4163a4924f709078588ac65fa0f80d492a667c6d0b5f93934175e0179",
            ),
            (
                Kind::Secretbox,
                bytes(64..96),
                "6b38733a656e633a736563726574626f783a76313a6b6579313a000102030405060708090a0b0c0d0e0f1011121314151617d384d44e204b1854a1483f500c3b096387358922ea169ea247893eb35328a8a31fdcab05dfe35f4ab3f5407482b014d2e76f8071678dac0aa1",
            ),
        ];
        for (kind, secret, stored) in cases {
            let chain = chain(kind, &[("key1", secret)]);
            let opened = chain.open(STORE_KEY, &unhex(stored)).unwrap();
            assert_eq!(opened.as_deref(), Some(PLAINTEXT), "{kind:?}");
        }
    }

    #[test]
    fn every_key_length_round_trips() {
        for kind in [Kind::Aescbc, Kind::Aesgcm, Kind::Secretbox] {
            for &len in kind.key_lengths() {
                let chain = chain(kind, &[("k", vec![7; len])]);
                let sealed = chain.seal(STORE_KEY, PLAINTEXT).unwrap().unwrap();
                let prefix = format!("k8s:enc:{}:v1:k:", kind.name());
                assert!(sealed.starts_with(prefix.as_bytes()), "{kind:?} {len}");
                let opened = chain.open(STORE_KEY, &sealed).unwrap();
                assert_eq!(opened.as_deref(), Some(PLAINTEXT), "{kind:?} {len}");
                // A fresh nonce every time.
                assert_ne!(chain.seal(STORE_KEY, PLAINTEXT).unwrap().unwrap(), sealed);
            }
        }
    }

    #[test]
    fn gcm_values_are_bound_to_their_store_key() {
        let chain = chain(Kind::Aesgcm, &[("k", vec![1; 32])]);
        let sealed = chain.seal(STORE_KEY, PLAINTEXT).unwrap().unwrap();
        let err = chain
            .open("/registry/secrets/default/other", &sealed)
            .unwrap_err();
        assert!(matches!(err, TransformError::Decrypt { .. }), "{err}");
        assert!(err.to_string().contains("another store key"), "{err}");
    }

    #[test]
    fn wrong_keys_are_errors() {
        for kind in [Kind::Aesgcm, Kind::Secretbox] {
            let right = chain(kind, &[("k", vec![1; 32])]);
            let wrong = chain(kind, &[("k", vec![2; 32])]);
            let sealed = right.seal(STORE_KEY, PLAINTEXT).unwrap().unwrap();
            let err = wrong.open(STORE_KEY, &sealed).unwrap_err().to_string();
            assert!(err.contains(STORE_KEY), "{err}");
            assert!(err.contains("authentication failed"), "{err}");
        }
        let sealed = chain(Kind::Aescbc, &[("old", vec![1; 32])])
            .seal(STORE_KEY, PLAINTEXT)
            .unwrap()
            .unwrap();
        let err = chain(Kind::Aescbc, &[("new", vec![1; 32])])
            .open(STORE_KEY, &sealed)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{STORE_KEY} is encrypted with k8s:enc:aescbc:v1:old, \
                 which no provider of the encryption configuration has"
            )
        );
    }

    #[test]
    fn damaged_values_are_errors_not_panics() {
        let cases = [
            (Kind::Aescbc, "k8s:enc:aescbc:v1:k:"),
            (Kind::Aescbc, "k8s:enc:aescbc:v1:k:0123456789abcdef"),
            (Kind::Aescbc, "k8s:enc:aescbc:v1:k:0123456789abcdef012"),
            (Kind::Aesgcm, "k8s:enc:aesgcm:v1:k:short"),
            (Kind::Aesgcm, "k8s:enc:aesgcm:v1:k:0123456789ab"),
            (
                Kind::Secretbox,
                "k8s:enc:secretbox:v1:k:0123456789abcdef01234567",
            ),
        ];
        for (kind, stored) in cases {
            let chain = chain(kind, &[("k", vec![1; 32])]);
            assert!(
                chain.open(STORE_KEY, stored.as_bytes()).is_err(),
                "{stored}"
            );
        }
    }

    #[test]
    fn plaintext_is_read_as_it_is_and_identity_writes_it() {
        let identity = Chain(vec![Arc::new(Provider::identity())]);
        assert_eq!(identity.seal(STORE_KEY, PLAINTEXT).unwrap(), None);
        let aes = chain(Kind::Aescbc, &[("k", vec![1; 16])]);
        assert_eq!(aes.open(STORE_KEY, PLAINTEXT).unwrap(), None);
    }
}

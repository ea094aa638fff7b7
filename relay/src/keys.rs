//! Signing and verifying keys of either algorithm, as PEM files: PKCS#8 for a
//! private key, SubjectPublicKeyInfo for a public one. A file's algorithm is
//! read from the key itself, never from a name or a setting.

use std::fmt;
use std::path::Path;

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer, Verifier};
use getrandom::SysRng;
use getrandom::rand_core::UnwrapErr;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sm2::elliptic_curve::Generate;
use sm2::pkcs8::LineEnding;

use crate::error::{Error, Result};

/// SM2's signer identity. GB/T 32918 and OpenSSL use this one by default; a
/// signature verifies only under the identity it was made with.
pub const SM2_DISTINGUISHING_ID: &str = "1234567812345678";

/// A signature algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// Ed25519 (RFC 8032): the default.
    #[default]
    Ed25519,
    /// SM2 signatures over SM3 (GB/T 32918, GB/T 32905): the national
    /// algorithms that reverse isolation devices in Chinese utilities require.
    Sm2,
}

impl Algorithm {
    /// The name in headers, configs and on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::Sm2 => "sm2",
        }
    }

    /// The algorithm of a name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "ed25519" => Some(Algorithm::Ed25519),
            "sm2" => Some(Algorithm::Sm2),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names a public key in a file's header: the first 8 bytes of the SHA-256 of
/// its SubjectPublicKeyInfo, in hex. It picks the key to try; the signature,
/// not the id, decides.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    fn of_public_key_info(der: &[u8]) -> Self {
        Self(hex::encode(&Sha256::digest(der)[..8]))
    }

    /// The id as written in headers.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Signature length of both algorithms: 64 bytes (Ed25519's R‖S, SM2's r‖s).
pub const SIGNATURE_LEN: usize = 64;

enum Secret {
    Ed25519(Box<ed25519_dalek::SigningKey>),
    // Built once: SM2's signer derives the public key and the identity hash
    // (ZA), which costs more than a signature.
    Sm2(Box<sm2::dsa::SigningKey>),
}

/// A private key that signs files.
pub struct SigningKey {
    secret: Secret,
    public: VerifyingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm())
            .field("id", &self.public.id)
            .finish()
    }
}

fn key_error(what: &str, e: impl fmt::Display) -> Error {
    Error::Key(format!("{what}: {e}"))
}

impl SigningKey {
    /// A new key from the operating system's random source.
    pub fn generate(algorithm: Algorithm) -> Result<Self> {
        let mut rng = UnwrapErr(SysRng);
        match algorithm {
            Algorithm::Ed25519 => Self::ed25519(ed25519_dalek::SigningKey::generate(&mut rng)),
            Algorithm::Sm2 => Self::sm2(&sm2::SecretKey::generate_from_rng(&mut rng)),
        }
    }

    /// The key whose secret is these 32 bytes (reproducible keys for tests and
    /// benches; `None` for the rare SM2 value outside its field).
    pub fn from_seed(algorithm: Algorithm, seed: [u8; 32]) -> Option<Self> {
        match algorithm {
            Algorithm::Ed25519 => Self::ed25519(ed25519_dalek::SigningKey::from_bytes(&seed)).ok(),
            Algorithm::Sm2 => Self::sm2(&sm2::SecretKey::from_slice(&seed).ok()?).ok(),
        }
    }

    fn ed25519(key: ed25519_dalek::SigningKey) -> Result<Self> {
        let public = VerifyingKey::from_public(Public::Ed25519(key.verifying_key()))?;
        Ok(Self {
            secret: Secret::Ed25519(Box::new(key)),
            public,
        })
    }

    fn sm2(secret: &sm2::SecretKey) -> Result<Self> {
        let key = sm2::dsa::SigningKey::new(SM2_DISTINGUISHING_ID, secret)
            .map_err(|e| key_error("SM2 key", e))?;
        let public = VerifyingKey::from_public(Public::Sm2(Box::new(key.verifying_key().clone())))?;
        Ok(Self {
            secret: Secret::Sm2(Box::new(key)),
            public,
        })
    }

    /// A PKCS#8 PEM private key of either algorithm.
    pub fn from_pem(pem: &str) -> Result<Self> {
        if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
            return Self::ed25519(key);
        }
        match sm2::SecretKey::from_pkcs8_pem(pem) {
            Ok(secret) => Self::sm2(&secret),
            Err(e) => Err(key_error(
                "not an Ed25519 or SM2 private key in PKCS#8 PEM",
                e,
            )),
        }
    }

    /// Reads a private key file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_pem(&text).map_err(|e| e.in_file(path))
    }

    /// The key as PKCS#8 PEM.
    pub fn to_pem(&self) -> Result<String> {
        let pem = match &self.secret {
            Secret::Ed25519(key) => key.to_pkcs8_pem(LineEnding::LF),
            Secret::Sm2(key) => {
                sm2::SecretKey::from(key.as_nonzero_scalar()).to_pkcs8_pem(LineEnding::LF)
            }
        };
        pem.map(|pem| pem.to_string())
            .map_err(|e| key_error("encoding the private key", e))
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.public.algorithm()
    }

    /// The public half.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.public
    }

    /// Signs `message`. Both algorithms sign deterministically (Ed25519 by its
    /// definition, SM2 with RFC 6979 nonces), so a file sealed again from the
    /// same content is the same bytes.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        match &self.secret {
            Secret::Ed25519(key) => key.sign(message).to_bytes(),
            Secret::Sm2(key) => {
                let signature: sm2::dsa::Signature = key.sign(message);
                let mut bytes = [0; SIGNATURE_LEN];
                bytes.copy_from_slice(&signature.to_bytes());
                bytes
            }
        }
    }
}

#[derive(Clone)]
enum Public {
    Ed25519(ed25519_dalek::VerifyingKey),
    Sm2(Box<sm2::dsa::VerifyingKey>),
}

/// A public key that checks files' signatures.
#[derive(Clone)]
pub struct VerifyingKey {
    public: Public,
    id: KeyId,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("algorithm", &self.algorithm())
            .field("id", &self.id)
            .finish()
    }
}

impl VerifyingKey {
    fn from_public(public: Public) -> Result<Self> {
        let der = match &public {
            Public::Ed25519(key) => key.to_public_key_der(),
            Public::Sm2(key) => key.to_public_key_der(),
        }
        .map_err(|e| key_error("encoding the public key", e))?;
        Ok(Self {
            id: KeyId::of_public_key_info(der.as_bytes()),
            public,
        })
    }

    /// A SubjectPublicKeyInfo PEM public key of either algorithm. A weak
    /// Ed25519 key (of small order, which would accept forged signatures) is
    /// refused.
    pub fn from_pem(pem: &str) -> Result<Self> {
        if let Ok(key) = ed25519_dalek::VerifyingKey::from_public_key_pem(pem) {
            if key.is_weak() {
                return Err(Error::Key(
                    "a weak Ed25519 public key (of small order) is never trusted".into(),
                ));
            }
            return Self::from_public(Public::Ed25519(key));
        }
        let public = sm2::PublicKey::from_public_key_pem(pem).map_err(|e| {
            key_error(
                "not an Ed25519 or SM2 public key in SubjectPublicKeyInfo PEM",
                e,
            )
        })?;
        let key = sm2::dsa::VerifyingKey::new(SM2_DISTINGUISHING_ID, public)
            .map_err(|e| key_error("SM2 public key", e))?;
        Self::from_public(Public::Sm2(Box::new(key)))
    }

    /// Reads a public key file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_pem(&text).map_err(|e| e.in_file(path))
    }

    /// The key as SubjectPublicKeyInfo PEM.
    pub fn to_pem(&self) -> Result<String> {
        match &self.public {
            Public::Ed25519(key) => key.to_public_key_pem(LineEnding::LF),
            Public::Sm2(key) => key.to_public_key_pem(LineEnding::LF),
        }
        .map_err(|e| key_error("encoding the public key", e))
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self.public {
            Public::Ed25519(_) => Algorithm::Ed25519,
            Public::Sm2(_) => Algorithm::Sm2,
        }
    }

    /// The id headers name it by.
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// Whether `signature` is this key's over `message`. Ed25519 is checked
    /// strictly: no small-order commitment, only canonical scalars, so no second
    /// valid signature can be made from a first.
    pub fn verify(&self, message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> bool {
        match &self.public {
            Public::Ed25519(key) => key
                .verify_strict(message, &ed25519_dalek::Signature::from_bytes(signature))
                .is_ok(),
            Public::Sm2(key) => sm2::dsa::Signature::from_slice(signature)
                .is_ok_and(|signature| key.verify(message, &signature).is_ok()),
        }
    }
}

/// Writes a new key pair: `PREFIX.key` (the private key, readable by its owner
/// only) and `PREFIX.pub`; refuses to replace either.
pub fn write_key_pair(algorithm: Algorithm, prefix: &Path) -> Result<SigningKey> {
    let key = SigningKey::generate(algorithm)?;
    let private = prefix.with_extension("key");
    let public = prefix.with_extension("pub");
    for path in [&private, &public] {
        if path.exists() {
            return Err(Error::Key(format!(
                "{} exists; a key pair is never overwritten",
                path.display()
            )));
        }
    }
    crate::files::write_durably(&private, key.to_pem()?.as_bytes(), true)?;
    crate::files::write_durably(&public, key.verifying_key().to_pem()?.as_bytes(), false)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_both_algorithms_round_trip_through_pem_and_sign() {
        for algorithm in [Algorithm::Ed25519, Algorithm::Sm2] {
            let key = SigningKey::generate(algorithm).unwrap();
            let again = SigningKey::from_pem(&key.to_pem().unwrap()).unwrap();
            assert_eq!(again.algorithm(), algorithm);
            assert_eq!(again.verifying_key().id(), key.verifying_key().id());
            let public = VerifyingKey::from_pem(&key.verifying_key().to_pem().unwrap()).unwrap();
            assert_eq!(public.id(), key.verifying_key().id());

            let signature = key.sign(b"header");
            assert_eq!(
                signature,
                again.sign(b"header"),
                "{algorithm} is deterministic"
            );
            assert!(public.verify(b"header", &signature));
            assert!(!public.verify(b"headers", &signature));
            let mut flipped = signature;
            flipped[7] ^= 1;
            assert!(!public.verify(b"header", &flipped));
            let other = SigningKey::generate(algorithm).unwrap();
            assert!(!other.verifying_key().verify(b"header", &signature));
            assert_ne!(other.verifying_key().id(), public.id());
        }
    }

    #[test]
    fn a_key_of_the_other_kind_or_no_key_is_refused() {
        let private = SigningKey::generate(Algorithm::Ed25519)
            .unwrap()
            .to_pem()
            .unwrap();
        let as_public = VerifyingKey::from_pem(&private).unwrap_err().to_string();
        assert!(
            as_public.contains("not an Ed25519 or SM2 public key"),
            "{as_public}"
        );
        let garbage =
            SigningKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .unwrap_err()
                .to_string();
        assert!(
            garbage.contains("not an Ed25519 or SM2 private key"),
            "{garbage}"
        );
    }

    #[test]
    fn a_key_pair_is_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("collector");
        let key = write_key_pair(Algorithm::Sm2, &prefix).unwrap();
        let read = SigningKey::read(&prefix.with_extension("key")).unwrap();
        assert_eq!(read.verifying_key().id(), key.verifying_key().id());
        let public = VerifyingKey::read(&prefix.with_extension("pub")).unwrap();
        assert_eq!(public.algorithm(), Algorithm::Sm2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(prefix.with_extension("key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = write_key_pair(Algorithm::Sm2, &prefix)
            .unwrap_err()
            .to_string();
        assert!(again.contains("never overwritten"), "{again}");
    }
}

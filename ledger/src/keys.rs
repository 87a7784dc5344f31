//! Ed25519 signing keys, key ids, key files and key-rotation proofs.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::Signer;
use rand_core::OsRng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::{Hash, KeyId};

/// Context string of the BLAKE3 key derivation that turns a public key into
/// a [`KeyId`].
const KEY_ID_CONTEXT: &str = "sealgate 2026-11 key id v1";
/// Domain tag of the message a new key signs to prove possession at rotation.
const ROTATION_DOMAIN: &[u8] = b"sealgate.rotation.v1\0";
const KEY_FILE_FORMAT: &str = "sealgate-ed25519-key-v1";

/// The id of an Ed25519 public key.
pub fn key_id(public: &ed25519_dalek::VerifyingKey) -> KeyId {
    let full = blake3::derive_key(KEY_ID_CONTEXT, public.as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&full[..16]);
    KeyId(id)
}

/// Parses and checks a public key given as 64 hex digits: the key of a
/// genesis or a rotation (`docs/FORMAT.md` §6). It must be the canonical
/// encoding (RFC 8032 §5.1.3: `y` below the field prime, no sign bit on
/// `x = 0`) of a point in the prime-order subgroup other than the identity,
/// as libsodium's `crypto_core_ed25519_is_valid_point` requires. Every key
/// an Ed25519 secret yields is one. Over such keys `verify_strict` and
/// libsodium give the same answer for every signature.
pub fn parse_public_key(hex_text: &str) -> Result<ed25519_dalek::VerifyingKey, String> {
    let bytes: [u8; 32] = crate::event::parse_hex_array(hex_text).map_err(|e| format!("public key {e}"))?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
        .map_err(|e| format!("public key is not a valid Ed25519 point: {e}"))?;
    let point = key.to_edwards();
    if point.compress().to_bytes() != bytes {
        return Err("public key is not the canonical encoding of its Ed25519 point".into());
    }
    if key.is_weak() {
        return Err("public key is a weak (small-order) Ed25519 key".into());
    }
    if !point.is_torsion_free() {
        return Err("public key is an Ed25519 point of mixed order (it has a small-order component)".into());
    }
    Ok(key)
}

/// A private signing key with its id.
pub struct SigningKey {
    inner: ed25519_dalek::SigningKey,
    id: KeyId,
}

impl SigningKey {
    pub fn generate() -> SigningKey {
        SigningKey::from_dalek(ed25519_dalek::SigningKey::generate(&mut OsRng))
    }

    fn from_dalek(inner: ed25519_dalek::SigningKey) -> SigningKey {
        let id = key_id(&inner.verifying_key());
        SigningKey { inner, id }
    }

    /// For tests and benchmarks: a key from fixed bytes.
    pub fn from_seed(seed: [u8; 32]) -> SigningKey {
        SigningKey::from_dalek(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    pub fn public(&self) -> ed25519_dalek::VerifyingKey {
        self.inner.verifying_key()
    }

    pub fn public_hex(&self) -> String {
        hex::encode(self.public().as_bytes())
    }

    /// Signs an event hash.
    pub fn sign_hash(&self, hash: &Hash) -> ed25519_dalek::Signature {
        self.inner.sign(&hash.0)
    }

    /// Signs the text of a signed note (a checkpoint, `checkpoint.rs`).
    /// A note's text is longer than 32 bytes, so it is never taken for an
    /// event hash, a rotation message or a snapshot digest, which this key
    /// also signs and which are all 32 bytes.
    pub(crate) fn sign_note(&self, text: &[u8]) -> ed25519_dalek::Signature {
        self.inner.sign(text)
    }

    /// Writes the key to `path` with mode 0600. Never overwrites: an existing
    /// file is an error. The file and its directory are synced.
    pub fn write_new(&self, path: &Path) -> Result<()> {
        let file = KeyFile {
            format: KEY_FILE_FORMAT.into(),
            key_id: self.id.to_string(),
            public_key: self.public_hex(),
            secret_key: hex::encode(self.inner.to_bytes()),
        };
        let mut text = serde_json::to_string_pretty(&file).map_err(|e| Error::KeyFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        text.push('\n');
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Error::KeyFile {
                    path: path.to_path_buf(),
                    reason: "already exists; refusing to overwrite a key".into(),
                },
                _ => Error::io("cannot create key file", path, e),
            })?;
        f.write_all(text.as_bytes())
            .map_err(|e| Error::io("cannot write key file", path, e))?;
        f.sync_all().map_err(|e| Error::io("cannot sync key file", path, e))?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    }

    /// Reads a key file written by [`SigningKey::write_new`]. Refuses files
    /// that others can read, and files whose key id does not match the key.
    pub fn read(path: &Path) -> Result<SigningKey> {
        let bad = |reason: String| Error::KeyFile {
            path: path.to_path_buf(),
            reason,
        };
        let meta = fs::metadata(path).map_err(|e| Error::io("cannot read key file", path, e))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(bad(format!(
                "mode {mode:04o} lets others read the private key; run `chmod 600` on it"
            )));
        }
        let text = fs::read_to_string(path).map_err(|e| Error::io("cannot read key file", path, e))?;
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| bad(format!("not a sealgate key file: {e}")))?;
        if file.format != KEY_FILE_FORMAT {
            return Err(bad(format!(
                "unknown format `{}` (expected `{KEY_FILE_FORMAT}`)",
                file.format
            )));
        }
        let secret: [u8; 32] =
            crate::event::parse_hex_array(&file.secret_key).map_err(|e| bad(format!("secret_key {e}")))?;
        let key = SigningKey::from_dalek(ed25519_dalek::SigningKey::from_bytes(&secret));
        if key.public_hex() != file.public_key || key.id.to_string() != file.key_id {
            return Err(bad("public_key or key_id does not match the secret key".into()));
        }
        Ok(key)
    }

    /// The proof that this (new) key signs at rotation: possession of the
    /// new key, bound to the ledger and to the key it replaces.
    pub fn rotation_proof(&self, ledger_id: &[u8; 16], old: KeyId) -> ed25519_dalek::Signature {
        self.inner
            .sign(rotation_message(ledger_id, old, &self.public()).as_bytes())
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.id)
    }
}

fn rotation_message(ledger_id: &[u8; 16], old: KeyId, new_public: &ed25519_dalek::VerifyingKey) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    h.update(ROTATION_DOMAIN);
    h.update(ledger_id);
    h.update(&old.0);
    h.update(new_public.as_bytes());
    h.finalize()
}

/// Checks a rotation proof.
pub fn verify_rotation_proof(
    ledger_id: &[u8; 16],
    old: KeyId,
    new_public: &ed25519_dalek::VerifyingKey,
    proof: &ed25519_dalek::Signature,
) -> bool {
    new_public
        .verify_strict(rotation_message(ledger_id, old, new_public).as_bytes(), proof)
        .is_ok()
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    format: String,
    key_id: String,
    public_key: String,
    secret_key: String,
}

/// A directory of key files named `<key id>.key`.
#[derive(Clone, Debug)]
pub struct KeyDir {
    path: PathBuf,
}

impl KeyDir {
    pub fn new(path: impl Into<PathBuf>) -> KeyDir {
        KeyDir { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file_for(&self, id: KeyId) -> PathBuf {
        self.path.join(format!("{id}.key"))
    }

    /// Stores a new key (mode 0700 directory, 0600 file).
    pub fn store(&self, key: &SigningKey) -> Result<PathBuf> {
        create_private_dir(&self.path)?;
        let path = self.file_for(key.id());
        key.write_new(&path)?;
        Ok(path)
    }

    /// The key `id`, from its file `<id>.key`, which must hold that key:
    /// a file put in another key's place would otherwise sign the ledger's
    /// next events with a key its schedule does not know.
    pub fn load(&self, id: KeyId) -> Result<SigningKey> {
        let path = self.file_for(id);
        if !path.exists() {
            return Err(Error::KeyFile {
                path,
                reason: format!("signing key {id} is not in {}", self.path.display()),
            });
        }
        let key = SigningKey::read(&path)?;
        if key.id() != id {
            return Err(Error::KeyFile {
                path,
                reason: format!("holds key {}, not key {id} its name says", key.id()),
            });
        }
        Ok(key)
    }
}

pub(crate) fn create_private_dir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| Error::io("cannot create directory", path, e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io("cannot set permissions on", path, e))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("cannot sync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trip_and_no_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.key");
        let key = SigningKey::generate();
        key.write_new(&path).expect("write");
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = SigningKey::read(&path).expect("read");
        assert_eq!(back.id(), key.id());
        let err = SigningKey::generate()
            .write_new(&path)
            .expect_err("overwrite")
            .to_string();
        assert!(err.contains("refusing to overwrite"), "{err}");
        assert_eq!(SigningKey::read(&path).expect("still there").id(), key.id());
    }

    #[test]
    fn a_key_file_in_another_keys_place_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = KeyDir::new(tmp.path().join("keys"));
        let (mine, theirs) = (SigningKey::generate(), SigningKey::generate());
        dir.store(&mine).expect("store");
        dir.store(&theirs).expect("store");
        fs::rename(dir.file_for(theirs.id()), dir.file_for(mine.id())).expect("swap in");
        let err = dir.load(mine.id()).expect_err("another key's file").to_string();
        assert!(
            err.contains(&format!("holds key {}, not key {}", theirs.id(), mine.id())),
            "{err}"
        );
        assert!(err.contains(&dir.file_for(mine.id()).display().to_string()), "{err}");
    }

    #[test]
    fn refuses_world_readable_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.key");
        SigningKey::generate().write_new(&path).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = SigningKey::read(&path).expect_err("0644").to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    /// Ed25519 public keys that decode but that `parse_public_key` refuses,
    /// each for its own reason, and the key of a real secret, which it takes.
    #[test]
    fn public_keys_must_be_canonical_prime_order_points() {
        let good = SigningKey::from_seed([7; 32]);
        assert_eq!(parse_public_key(&good.public_hex()), Ok(good.public()));
        // y = p + 3, which decodes (to y = 3) but is not y's encoding.
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xed + 3;
        non_canonical[31] = 0x7f;
        // The identity (small order), and the identity with the sign bit of
        // x = 0 set (neither canonical nor of large order).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut negative_zero = identity;
        negative_zero[31] |= 0x80;
        // The key of seed 7 plus a point of order 8: what a holder of that
        // secret could introduce to make signatures that verify or not
        // depending on the verifier (computed with curve25519-dalek).
        let mixed = "1f4f580e73ac208f06760190e9edc6f5916775dabd9c1cdca393175c2d6d1083";
        let cases = [
            (hex::encode(non_canonical), "not the canonical encoding"),
            (hex::encode(identity), "weak (small-order)"),
            (hex::encode(negative_zero), "not the canonical encoding"),
            (mixed.to_owned(), "mixed order"),
            (format!("02{}", "00".repeat(31)), "not a valid Ed25519 point"),
        ];
        for (hex_text, want) in cases {
            let err = parse_public_key(&hex_text).expect_err(&hex_text);
            assert!(err.contains(want), "{hex_text}: `{err}` does not say `{want}`");
        }
    }

    #[test]
    fn rotation_proof_binds_ledger_and_old_key() {
        let old = SigningKey::generate();
        let new = SigningKey::generate();
        let proof = new.rotation_proof(&[1; 16], old.id());
        assert!(verify_rotation_proof(&[1; 16], old.id(), &new.public(), &proof));
        assert!(!verify_rotation_proof(&[2; 16], old.id(), &new.public(), &proof));
        assert!(!verify_rotation_proof(&[1; 16], new.id(), &new.public(), &proof));
    }
}

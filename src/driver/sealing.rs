//! Inline keys at rest: sealed before a state file is written.
//!
//! The OpenSandbox API passes object-storage keys as volume options, and a
//! volume's record must keep them to mount it again after a restart. They
//! are written sealed with AES-256-GCM under a random key kept beside the
//! registry (`STATE_DIR/secret.key`, mode 0600), with the volume's name as
//! associated data so a sealed blob cannot be moved to another record.
//! Whoever can read that key can unseal: this keeps the keys out of state
//! files that are copied, attached to a bug report or grepped, not out of
//! the hands of root on the host (who can read the mount's environment
//! anyway).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde_json::{Map, Value};
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

const KEY_LEN: usize = 32;
/// The fields of `Credentials::Inline` that are sealed together.
const SECRET_FIELDS: &[&str] = &["access_key_id", "access_key_secret", "session_token"];

pub struct Sealer {
    key: LessSafeKey,
}

impl Sealer {
    /// Reads the key at `path`, creating it (mode 0600) on first use.
    pub fn open_or_create(path: &Path) -> io::Result<Sealer> {
        let mut bytes = [0u8; KEY_LEN];
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(mut f) => {
                aws_lc_rs::rand::fill(&mut bytes)
                    .map_err(|_| io::Error::other("no random bytes for the state key"))?;
                f.write_all(&bytes)?;
                f.sync_all()?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let mut f = fs::File::open(path)?;
                f.read_exact(&mut bytes).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("{} is not a 32-byte key: {e}", path.display()),
                    )
                })?;
            }
            Err(e) => return Err(e),
        }
        let key = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| io::Error::other("the state key is unusable"))?;
        Ok(Sealer {
            key: LessSafeKey::new(key),
        })
    }

    fn seal(&self, aad: &str, plaintext: &[u8]) -> io::Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| io::Error::other("no random nonce"))?;
        let mut data = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut data,
            )
            .map_err(|_| io::Error::other("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(to_hex(&out))
    }

    fn unseal(&self, aad: &str, sealed: &str) -> io::Result<Vec<u8>> {
        let bad = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "the sealed keys do not open with this state directory's secret.key (was the file copied from elsewhere?)",
            )
        };
        let bytes = from_hex(sealed).ok_or_else(bad)?;
        if bytes.len() < NONCE_LEN {
            return Err(bad());
        }
        let (nonce, data) = bytes.split_at(NONCE_LEN);
        let mut data = data.to_vec();
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut data)
            .map_err(|_| bad())?;
        Ok(plain.to_vec())
    }

    /// Replaces inline keys in a serialized record with a sealed blob.
    pub fn seal_record(&self, name: &str, record: &mut Value) -> io::Result<()> {
        let Some(creds) = credentials(record) else {
            return Ok(());
        };
        if creds.get("source").and_then(Value::as_str) != Some("inline") {
            return Ok(());
        }
        let mut secret = Map::new();
        for field in SECRET_FIELDS {
            if let Some(v) = creds.remove(*field) {
                secret.insert(field.to_string(), v);
            }
        }
        let plaintext = serde_json::to_vec(&secret).map_err(io::Error::other)?;
        creds.insert("source".into(), Value::from("sealed"));
        creds.insert("sealed".into(), Value::from(self.seal(name, &plaintext)?));
        Ok(())
    }

    /// Undoes [`Self::seal_record`]; records written before sealing (plain
    /// inline keys) are read as they are.
    pub fn unseal_record(&self, name: &str, record: &mut Value) -> io::Result<()> {
        let Some(creds) = credentials(record) else {
            return Ok(());
        };
        if creds.get("source").and_then(Value::as_str) != Some("sealed") {
            return Ok(());
        }
        let sealed = creds
            .remove("sealed")
            .and_then(|v| v.as_str().map(String::from))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "sealed keys missing"))?;
        let plain = self.unseal(name, &sealed)?;
        let secret: Map<String, Value> = serde_json::from_slice(&plain)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        creds.insert("source".into(), Value::from("inline"));
        creds.extend(secret);
        Ok(())
    }
}

/// Inline keys a record holds sealed read as inline keys whose values are
/// this placeholder when a record is only shown ([`hide_sealed`]).
pub const HIDDEN: &str = "(sealed)";

/// Makes a serialized record with sealed keys readable without the state
/// key: its credentials become inline keys with [`HIDDEN`] values, enough
/// to show the volume (`Credentials::describe` never shows a key), never
/// to mount it.
pub fn hide_sealed(record: &mut Value) {
    let Some(creds) = credentials(record) else {
        return;
    };
    if creds.get("source").and_then(Value::as_str) != Some("sealed") {
        return;
    }
    creds.remove("sealed");
    creds.insert("source".into(), Value::from("inline"));
    for field in &SECRET_FIELDS[..2] {
        creds.insert(field.to_string(), Value::from(HIDDEN));
    }
}

/// `spec.backend.credentials` of a serialized record, if it has one.
fn credentials(record: &mut Value) -> Option<&mut Map<String, Value>> {
    record
        .get_mut("spec")?
        .get_mut("backend")?
        .get_mut("credentials")?
        .as_object_mut()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record() -> Value {
        json!({"name": "v", "spec": {"backend": {"type": "s3", "bucket": "b",
            "credentials": {"source": "inline", "access_key_id": "AKIDSEALME",
                            "access_key_secret": "s3cr3t-sealed", "session_token": "tok"}}}})
    }

    #[test]
    fn inline_keys_are_sealed_and_unsealed() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("secret.key");
        let sealer = Sealer::open_or_create(&key).unwrap();
        let mut r = record();
        sealer.seal_record("v", &mut r).unwrap();
        let text = r.to_string();
        for secret in ["AKIDSEALME", "s3cr3t-sealed", "tok\""] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(r["spec"]["backend"]["credentials"]["source"], "sealed");
        // The key persists: a new Sealer on the same file opens it.
        let again = Sealer::open_or_create(&key).unwrap();
        again.unseal_record("v", &mut r).unwrap();
        assert_eq!(r, record());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn a_blob_moved_to_another_volume_or_key_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::open_or_create(&dir.path().join("a.key")).unwrap();
        let mut r = record();
        sealer.seal_record("v", &mut r).unwrap();
        let mut moved = r.clone();
        assert!(sealer.unseal_record("other", &mut moved).is_err());
        let stranger = Sealer::open_or_create(&dir.path().join("b.key")).unwrap();
        let err = stranger.unseal_record("v", &mut r).unwrap_err();
        assert!(err.to_string().contains("secret.key"), "{err}");
    }

    #[test]
    fn sealed_keys_are_hidden_for_showing_without_the_state_key() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::open_or_create(&dir.path().join("k")).unwrap();
        let mut r = record();
        sealer.seal_record("v", &mut r).unwrap();
        hide_sealed(&mut r);
        let creds = &r["spec"]["backend"]["credentials"];
        assert_eq!(
            creds,
            &json!({"source": "inline", "access_key_id": HIDDEN, "access_key_secret": HIDDEN})
        );
        // Anything else is left as it is.
        let mut p =
            json!({"spec": {"backend": {"credentials": {"source": "profile", "name": "t"}}}});
        let before = p.clone();
        hide_sealed(&mut p);
        assert_eq!(p, before);
    }

    #[test]
    fn records_without_inline_keys_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::open_or_create(&dir.path().join("k")).unwrap();
        let mut r = json!({"name": "h", "spec": {"backend": {"type": "host", "path": "/x"}}});
        let before = r.clone();
        sealer.seal_record("h", &mut r).unwrap();
        assert_eq!(r, before);
        let mut p =
            json!({"spec": {"backend": {"credentials": {"source": "profile", "name": "t"}}}});
        let before = p.clone();
        sealer.seal_record("p", &mut p).unwrap();
        assert_eq!(p, before);
    }
}

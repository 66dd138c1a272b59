//! Sensitive task content, sealed at rest with AES-256-GCM.
//!
//! A sealed text is `enc:v1:<key id>:<base64 of nonce ‖ ciphertext ‖ tag>`: a fresh 96-bit
//! random nonce per seal, and the field it belongs to (`input`, `output`) as associated data, so
//! a ciphertext moved to another field does not open. The key id (the start of the key's
//! SHA-256) says which key opens it, so keys rotate: new content is sealed with the current key,
//! old content opens with the key it names for as long as that key is configured.
//!
//! Task inputs and outputs are JSON objects and webhook secrets start `whsec_`, so a stored text
//! that starts with [`PREFIX`] is sealed and anything else is plain: reading code opens what is
//! sealed and passes the rest. Webhook signing secrets are sealed whenever the server has a key.
//!
//! Keys come from `CLAWJOBS_DATA_KEY` (64 hex digits or the base64 of 32 bytes; older ones, still
//! opened, in `CLAWJOBS_DATA_KEYS_PREVIOUS`, comma-separated), or from the key file `data.key` in
//! the data directory: one key per line, the first the current one, created on first start with
//! owner-only permissions and refused when anyone else may read it.

use std::path::Path;

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};

use crate::error::EngineError;

/// What every sealed text starts with.
pub const PREFIX: &str = "enc:v1:";
/// The key file's name in the data directory.
pub const KEY_FILE: &str = "data.key";
const NONCE_BYTES: usize = 12;

/// Which part of a task a text is: bound to the ciphertext as associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Input,
    Output,
    /// A buyer webhook's signing secret.
    WebhookSecret,
}

impl Field {
    fn aad(self) -> &'static [u8] {
        match self {
            Field::Input => b"clawjobs:task:input",
            Field::Output => b"clawjobs:task:output",
            Field::WebhookSecret => b"clawjobs:webhook:secret",
        }
    }
}

struct DataKey {
    id: String,
    cipher: Aes256Gcm,
}

/// The configured keys: the first seals, all open.
pub struct DataKeys {
    keys: Vec<DataKey>,
}

impl std::fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("DataKeys").field("ids", &ids).finish()
    }
}

/// Whether `stored` is a sealed text.
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

fn key_id(secret: &[u8; 32]) -> String {
    let digest = Sha256::new()
        .chain_update(b"clawjobs data key\n")
        .chain_update(secret)
        .finalize();
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// A key as configured: 64 hex digits, or the base64 of 32 bytes.
fn parse_key(text: &str, what: &str) -> Result<[u8; 32], EngineError> {
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| bad_key(what))?
    } else {
        B64.decode(text).map_err(|_| bad_key(what))?
    };
    bytes.try_into().map_err(|_| bad_key(what))
}

fn bad_key(what: &str) -> EngineError {
    EngineError::internal(format!(
        "{what} is not a data key: give 64 hex digits or the base64 of 32 random bytes \
         (openssl rand -hex 32)"
    ))
}

impl DataKeys {
    /// Keys from raw secrets, the first the current one.
    pub fn from_secrets(secrets: &[[u8; 32]]) -> Result<DataKeys, EngineError> {
        if secrets.is_empty() {
            return Err(EngineError::internal("no data key"));
        }
        let keys = secrets
            .iter()
            .map(|s| {
                Ok(DataKey {
                    id: key_id(s),
                    cipher: Aes256Gcm::new_from_slice(s).map_err(EngineError::internal)?,
                })
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        Ok(DataKeys { keys })
    }

    /// The keys of `CLAWJOBS_DATA_KEY` (and `CLAWJOBS_DATA_KEYS_PREVIOUS`), else of the key file
    /// in `data_dir`, created when missing. None without either (a MongoDB node given no key:
    /// sensitive tasks are refused there, since several nodes must share one key).
    pub fn load(
        current: Option<&str>,
        previous: Option<&str>,
        data_dir: Option<&Path>,
    ) -> Result<Option<DataKeys>, EngineError> {
        if let Some(current) = current.filter(|c| !c.trim().is_empty()) {
            let mut secrets = vec![parse_key(current, "CLAWJOBS_DATA_KEY")?];
            for old in previous
                .unwrap_or("")
                .split(',')
                .filter(|s| !s.trim().is_empty())
            {
                secrets.push(parse_key(old, "a key in CLAWJOBS_DATA_KEYS_PREVIOUS")?);
            }
            return DataKeys::from_secrets(&secrets).map(Some);
        }
        let Some(dir) = data_dir else {
            return Ok(None);
        };
        DataKeys::from_file(&dir.join(KEY_FILE)).map(Some)
    }

    /// The keys of a key file (one per line, the first the current one), made with a new random
    /// key and mode 0600 when it does not exist.
    pub fn from_file(path: &Path) -> Result<DataKeys, EngineError> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let shown = path.display();
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(mut file) => {
                let key = aes_gcm::Key::<Aes256Gcm>::generate();
                let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
                file.write_all(format!("{hex}\n").as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| EngineError::internal(format!("cannot write {shown}: {e}")))?;
                tracing::info!(path = %shown, "created a data key for sensitive tasks");
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(EngineError::internal(format!("cannot create {shown}: {e}"))),
        }
        let meta = std::fs::metadata(path)
            .map_err(|e| EngineError::internal(format!("cannot read {shown}: {e}")))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(EngineError::internal(format!(
                "{shown} may be read by others (mode {mode:o}): chmod 600 it"
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| EngineError::internal(format!("cannot read {shown}: {e}")))?;
        let secrets = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| parse_key(l, &format!("a line of {shown}")))
            .collect::<Result<Vec<_>, _>>()?;
        DataKeys::from_secrets(&secrets)
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> &str {
        &self.keys[0].id
    }

    pub fn seal(&self, field: Field, plain: &str) -> Result<String, EngineError> {
        let key = &self.keys[0];
        let nonce = Nonce::generate();
        let sealed = key
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain.as_bytes(),
                    aad: field.aad(),
                },
            )
            .map_err(|_| EngineError::internal("sealing failed"))?;
        let mut blob = Vec::with_capacity(NONCE_BYTES + sealed.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}:{}", key.id, B64.encode(blob)))
    }

    /// The plain text of `stored`: opened when sealed, as it is otherwise.
    pub fn open(&self, field: Field, stored: &str) -> Result<String, EngineError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_string());
        };
        let (id, body) = rest
            .split_once(':')
            .ok_or_else(|| EngineError::internal("a sealed text without its key id"))?;
        let key = self.keys.iter().find(|k| k.id == id).ok_or_else(|| {
            EngineError::internal(format!(
                "sealed with data key {id}, which is not configured (add it to \
                 CLAWJOBS_DATA_KEYS_PREVIOUS or the key file)"
            ))
        })?;
        let blob = B64
            .decode(body)
            .map_err(|_| EngineError::internal("a sealed text that is not base64"))?;
        if blob.len() < NONCE_BYTES {
            return Err(EngineError::internal("a sealed text too short"));
        }
        let (nonce, sealed) = blob.split_at(NONCE_BYTES);
        let nonce = Nonce::try_from(nonce).map_err(|_| EngineError::internal("a bad nonce"))?;
        let plain = key
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: field.aad(),
                },
            )
            .map_err(|_| {
                EngineError::internal(format!("a sealed {field:?} did not open with key {id}"))
            })?;
        String::from_utf8(plain).map_err(EngineError::internal)
    }
}

/// The plain text of `stored`: opened when it is sealed (which needs `keys`: a server without
/// them answers `SENSITIVE_DISABLED`), as it is otherwise.
pub fn open_with(
    keys: Option<&DataKeys>,
    field: Field,
    stored: &str,
) -> Result<String, EngineError> {
    if !is_sealed(stored) {
        return Ok(stored.to_string());
    }
    keys.ok_or(EngineError::SensitiveDisabled)?
        .open(field, stored)
}

/// What lists, feeds, the admin console and logs show of a sensitive task's input: its type and
/// its size, never a word of it.
pub fn input_preview(task_type: &str, input: &serde_json::Value) -> String {
    let chars = |v: &serde_json::Value| -> usize {
        match v {
            serde_json::Value::String(s) => s.chars().count(),
            other => other.to_string().chars().count(),
        }
    };
    let count = |key: &str| input.get(key).and_then(|v| v.as_array()).map(Vec::len);
    let total: usize = match input.as_object() {
        Some(o) => o.values().map(chars).sum(),
        None => chars(input),
    };
    let kind = task_type.split(':').next().unwrap_or(task_type);
    let many = |n: usize, word: &str| {
        if n == 1 {
            format!("1 {word}")
        } else {
            format!("{n} {word}s")
        }
    };
    let size = many(total, "character");
    match (count("messages"), count("segments")) {
        (Some(n), _) => format!("sensitive {kind} task: {}, {size}", many(n, "message")),
        (None, Some(n)) => format!("sensitive {kind} task: {}, {size}", many(n, "segment")),
        _ => format!("sensitive {kind} task: {size}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secrets: &[u8]) -> DataKeys {
        let s: Vec<[u8; 32]> = secrets.iter().map(|b| [*b; 32]).collect();
        DataKeys::from_secrets(&s).unwrap()
    }

    #[test]
    fn a_sealed_text_opens_and_shows_nothing_of_the_plain_text() {
        let k = keys(&[1]);
        let plain = r#"{"text":"the patient's diagnosis"}"#;
        let sealed = k.seal(Field::Input, plain).unwrap();
        assert!(is_sealed(&sealed) && sealed.starts_with(&format!("{PREFIX}{}:", k.current_id())));
        assert!(!sealed.contains("diagnosis"));
        assert_ne!(
            sealed,
            k.seal(Field::Input, plain).unwrap(),
            "a fresh nonce each time"
        );
        assert_eq!(k.open(Field::Input, &sealed).unwrap(), plain);
        // Plain text passes through.
        assert_eq!(k.open(Field::Input, plain).unwrap(), plain);
    }

    #[test]
    fn a_text_opens_only_as_its_field_and_unchanged() {
        let k = keys(&[1]);
        let sealed = k.seal(Field::Output, "{}").unwrap();
        assert!(k.open(Field::Input, &sealed).is_err());
        // One bit of the ciphertext changed: the tag does not hold.
        let (head, body) = sealed.rsplit_once(':').unwrap();
        let mut blob = B64.decode(body).unwrap();
        blob[NONCE_BYTES] ^= 1;
        let changed = format!("{head}:{}", B64.encode(blob));
        assert!(k.open(Field::Output, &changed).is_err());
        assert!(k.open(Field::Output, "enc:v1:nokeyid").is_err());
    }

    #[test]
    fn keys_rotate_old_texts_open_with_the_key_they_name() {
        let old = keys(&[1]);
        let sealed_before = old.seal(Field::Output, "{\"a\":1}").unwrap();
        let rotated = keys(&[2, 1]);
        assert_ne!(rotated.current_id(), old.current_id());
        assert_eq!(
            rotated.open(Field::Output, &sealed_before).unwrap(),
            "{\"a\":1}"
        );
        let sealed_after = rotated.seal(Field::Output, "{\"b\":2}").unwrap();
        assert!(sealed_after.contains(rotated.current_id()));
        // A key dropped from the configuration: its texts no longer open, and say why.
        let err = keys(&[2]).open(Field::Output, &sealed_before).unwrap_err();
        assert!(format!("{err:?}").contains(old.current_id()), "{err:?}");
    }

    #[test]
    fn a_preview_tells_the_size_and_nothing_else() {
        let chat = serde_json::json!({"messages": [{"role": "user", "content": "my secret plan"}]});
        let p = input_preview("chat", &chat);
        assert!(p.starts_with("sensitive chat task: 1 message, "), "{p}");
        assert!(!p.contains("secret"), "{p}");
        let skill = serde_json::json!({"text": "confidential"});
        assert_eq!(
            input_preview("skill:summarise", &skill),
            "sensitive skill task: 12 characters"
        );
    }

    #[test]
    fn keys_come_from_the_environment_or_a_private_key_file() {
        use std::os::unix::fs::PermissionsExt;
        let hex = "11".repeat(32);
        let k = DataKeys::load(Some(&hex), Some(&B64.encode([2u8; 32])), None)
            .unwrap()
            .unwrap();
        assert_eq!(k.keys.len(), 2);
        assert!(DataKeys::load(Some("short"), None, None).is_err());
        assert!(DataKeys::load(None, None, None).unwrap().is_none());

        let dir = tempfile::tempdir().unwrap();
        let first = DataKeys::load(None, None, Some(dir.path()))
            .unwrap()
            .unwrap();
        let path = dir.path().join(KEY_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // The same key at the next start.
        let again = DataKeys::load(None, None, Some(dir.path()))
            .unwrap()
            .unwrap();
        assert_eq!(first.current_id(), again.current_id());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = DataKeys::load(None, None, Some(dir.path())).unwrap_err();
        assert!(format!("{refused:?}").contains("chmod 600"), "{refused:?}");
    }
}

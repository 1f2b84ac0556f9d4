//! Encryption at rest for connected-account credentials (docs/semantics.md, Decision 12):
//! AES-256-GCM with the operator's master key, a fresh random nonce per value, and the account SID
//! as associated data so a ciphertext cannot be moved to another account's row.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretString};

/// The 32-byte key from `SWITCHBOARD_MASTER_KEY`. Debug never prints it.
pub struct MasterKey(SecretBox<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

/// Why a master key or a ciphertext was rejected.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "SWITCHBOARD_MASTER_KEY must be 32 bytes, base64 or hex encoded (e.g. `openssl rand -base64 32`); got {0}"
    )]
    BadKey(String),
    #[error(
        "a stored credential could not be decrypted (wrong SWITCHBOARD_MASTER_KEY, or the row was tampered with)"
    )]
    Decrypt,
    #[error(
        "SWITCHBOARD_MASTER_KEY is not set: {0} needs the key the connected accounts' credentials are encrypted with (the one `switchboard accounts add` used); for a new installation make one with `openssl rand -base64 32` and give the same key to every service and the CLI"
    )]
    Missing(String),
    #[error(
        "SWITCHBOARD_OLD_MASTER_KEYS: key {0} must be 32 bytes, base64 or hex encoded; got {1}"
    )]
    BadOldKey(usize, String),
    #[error(
        "{0} is the public test key of Switchboard's test suite, which anyone can read: make a key with `openssl rand -base64 32` (only tests may use it, with SWITCHBOARD_ALLOW_TEST_KEY=1)"
    )]
    TestKey(&'static str),
}

impl MasterKey {
    /// The key a service cannot run without: `value` is `SWITCHBOARD_MASTER_KEY`, `who` names
    /// the program in the error when it is missing (no default key exists outside tests).
    pub fn require(value: Option<&str>, who: &str) -> Result<MasterKey, SecretError> {
        match value {
            Some(text) if !text.trim().is_empty() => MasterKey::parse(text),
            _ => Err(SecretError::Missing(who.to_owned())),
        }
    }

    /// Parses a key given as base64 (44 chars) or hex (64 chars).
    pub fn parse(text: &str) -> Result<MasterKey, SecretError> {
        let t = text.trim();
        let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16).unwrap())
                .collect::<Vec<u8>>()
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .map_err(|_| SecretError::BadKey("neither 64 hex digits nor valid base64".into()))?
        };
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|v: Vec<u8>| SecretError::BadKey(format!("{} bytes", v.len())))?;
        Ok(MasterKey(SecretBox::new(Box::new(key))))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(self.0.expose_secret()).expect("32-byte key")
    }

    /// Encrypts `plaintext` bound to `context` (the account SID).
    pub fn encrypt(&self, plaintext: &str, context: &str) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .expect("AES-GCM encryption does not fail for small inputs");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypts what [`MasterKey::encrypt`] produced for the same `context`.
    pub fn decrypt(&self, blob: &[u8], context: &str) -> Result<SecretString, SecretError> {
        if blob.len() < 12 + 16 {
            return Err(SecretError::Decrypt);
        }
        let (nonce, ct) = blob.split_at(12);
        let pt = self
            .cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Decrypt)?;
        String::from_utf8(pt)
            .map(SecretString::from)
            .map_err(|_| SecretError::Decrypt)
    }
}

/// The constant key of Switchboard's test suite (`switchboard_test_support::MASTER_KEY`): known
/// to anyone who reads the sources, so the services and the CLI refuse it unless
/// `SWITCHBOARD_ALLOW_TEST_KEY=1` (tests only).
const TEST_KEY: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

/// The variable that lets the services and the CLI run with the test suite's key (tests only).
pub const ALLOW_TEST_KEY_ENV: &str = "SWITCHBOARD_ALLOW_TEST_KEY";

/// Version byte of ciphertexts that carry their key id: `0x01 ‖ key id (8) ‖ nonce (12) ‖
/// AES-256-GCM ciphertext and tag`, the first 9 bytes and the account SID as associated data.
/// Ciphertexts without it (`nonce ‖ ciphertext`, the first format) are still read.
const FORMAT_V1: u8 = 1;

/// A key's id: 8 bytes that name it without revealing it (the first 8 bytes of the AES-256-GCM
/// tag of an empty message under the key, nonce zero, associated data
/// `switchboard master key id v1`, a key check value). Shown as 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub [u8; 8]);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl MasterKey {
    /// This key's id ([`KeyId`]).
    pub fn id(&self) -> KeyId {
        let tag = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&[0u8; 12]),
                Payload {
                    msg: b"",
                    aad: b"switchboard master key id v1",
                },
            )
            .expect("AES-GCM encryption does not fail for small inputs");
        let mut id = [0u8; 8];
        id.copy_from_slice(&tag[..8]);
        KeyId(id)
    }

    /// Whether this is the test suite's public key.
    pub fn is_test_key(&self) -> bool {
        self.0.expose_secret() == TEST_KEY
    }

    /// Encrypts `plaintext` bound to `context` in the format that names this key
    /// ([`FORMAT_V1`]).
    pub fn encrypt_with_id(&self, plaintext: &str, context: &str) -> Vec<u8> {
        let mut out = vec![FORMAT_V1];
        out.extend_from_slice(&self.id().0);
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let mut aad = out.clone();
        aad.extend_from_slice(context.as_bytes());
        let ct = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption does not fail for small inputs");
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    fn decrypt_v1(&self, blob: &[u8], context: &str) -> Option<SecretString> {
        let (header, rest) = blob.split_at(9);
        let (nonce, ct) = rest.split_at(12);
        let mut aad = header.to_vec();
        aad.extend_from_slice(context.as_bytes());
        let pt = self
            .cipher()
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .ok()?;
        String::from_utf8(pt).ok().map(SecretString::from)
    }
}

/// How a stored credential was decrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyUse {
    /// The id of the key that decrypted it.
    pub key_id: KeyId,
    /// Whether that key is the current one (`SWITCHBOARD_MASTER_KEY`).
    pub current: bool,
    /// Whether the ciphertext carries its key id (false: the first format, without one).
    pub has_key_id: bool,
}

impl KeyUse {
    /// Whether `switchboard accounts rekey` would rewrite it (an old key, or no key id).
    pub fn needs_rekey(&self) -> bool {
        !(self.current && self.has_key_id)
    }

    /// A label for reports: the key id, with `(no key id stored)` for the first format.
    pub fn label(&self) -> String {
        if self.has_key_id {
            self.key_id.to_string()
        } else {
            format!("{} (no key id stored)", self.key_id)
        }
    }
}

/// The configured keys: the current one (`SWITCHBOARD_MASTER_KEY`), which encrypts, and old
/// ones (`SWITCHBOARD_OLD_MASTER_KEYS`), which only decrypt, during a rotation.
#[derive(Debug)]
pub struct Keyring {
    current: MasterKey,
    old: Vec<MasterKey>,
}

impl From<MasterKey> for Keyring {
    fn from(current: MasterKey) -> Keyring {
        Keyring {
            current,
            old: Vec::new(),
        }
    }
}

impl Keyring {
    /// The keys a service or the CLI is configured with: `current` is
    /// `SWITCHBOARD_MASTER_KEY` (required: `who` names the program in the error when it is
    /// missing), `old` is `SWITCHBOARD_OLD_MASTER_KEYS` (comma-separated). The test suite's key
    /// is refused unless `SWITCHBOARD_ALLOW_TEST_KEY=1` ([`Keyring::refuse_test_key`]).
    pub fn require(
        current: Option<&str>,
        old: Option<&str>,
        who: &str,
    ) -> Result<Keyring, SecretError> {
        let current = MasterKey::require(current, who)?;
        Keyring::with_old(current, old)
    }

    /// `current` with the old keys listed in `old` (comma-separated; empty items ignored),
    /// checked with [`Keyring::refuse_test_key`].
    pub fn with_old(current: MasterKey, old: Option<&str>) -> Result<Keyring, SecretError> {
        let mut keys = Vec::new();
        for (i, text) in old
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .enumerate()
        {
            keys.push(MasterKey::parse(text).map_err(|e| match e {
                SecretError::BadKey(why) => SecretError::BadOldKey(i + 1, why),
                other => other,
            })?);
        }
        let ring = Keyring { current, old: keys };
        ring.refuse_test_key(
            std::env::var(ALLOW_TEST_KEY_ENV)
                .map(|v| v.trim() == "1")
                .unwrap_or(false),
        )?;
        Ok(ring)
    }

    /// [`SecretError::TestKey`] when a configured key is the test suite's public one and
    /// `allowed` is false.
    pub fn refuse_test_key(&self, allowed: bool) -> Result<(), SecretError> {
        if allowed {
            return Ok(());
        }
        if self.current.is_test_key() {
            return Err(SecretError::TestKey("SWITCHBOARD_MASTER_KEY"));
        }
        if self.old.iter().any(MasterKey::is_test_key) {
            return Err(SecretError::TestKey("SWITCHBOARD_OLD_MASTER_KEYS"));
        }
        Ok(())
    }

    /// The key that encrypts.
    pub fn current(&self) -> &MasterKey {
        &self.current
    }

    /// The ids of the old keys.
    pub fn old_ids(&self) -> Vec<KeyId> {
        self.old.iter().map(MasterKey::id).collect()
    }

    /// Encrypts with the current key, naming it in the ciphertext.
    pub fn encrypt(&self, plaintext: &str, context: &str) -> Vec<u8> {
        self.current.encrypt_with_id(plaintext, context)
    }

    /// Decrypts with whichever configured key the ciphertext names; a ciphertext of the first
    /// format (no key id) is tried with the current key, then the old ones.
    pub fn decrypt(
        &self,
        blob: &[u8],
        context: &str,
    ) -> Result<(SecretString, KeyUse), SecretError> {
        let keys =
            std::iter::once((&self.current, true)).chain(self.old.iter().map(|k| (k, false)));
        if blob.first() == Some(&FORMAT_V1) && blob.len() >= 9 + 12 + 16 {
            let id = &blob[1..9];
            for (key, current) in keys.clone() {
                let key_id = key.id();
                if key_id.0 == id
                    && let Some(pt) = key.decrypt_v1(blob, context)
                {
                    let used = KeyUse {
                        key_id,
                        current,
                        has_key_id: true,
                    };
                    return Ok((pt, used));
                }
            }
        }
        // The first format (its first byte is a random nonce byte, so it may also be 0x01).
        for (key, current) in keys {
            if let Ok(pt) = key.decrypt(blob, context) {
                let used = KeyUse {
                    key_id: key.id(),
                    current,
                    has_key_id: false,
                };
                return Ok((pt, used));
            }
        }
        Err(SecretError::Decrypt)
    }
}

/// The key id a ciphertext names, if it carries one.
pub fn stored_key_id(blob: &[u8]) -> Option<KeyId> {
    if blob.first() == Some(&FORMAT_V1) && blob.len() >= 9 + 12 + 16 {
        let mut id = [0u8; 8];
        id.copy_from_slice(&blob[1..9]);
        Some(KeyId(id))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 ASCII bytes

    #[test]
    fn round_trip_and_binding() {
        let key = MasterKey::parse(KEY).unwrap();
        let blob = key.encrypt("token-123", "AC1");
        assert!(
            !blob.windows(9).any(|w| w == b"token-123"),
            "ciphertext must not contain the token"
        );
        assert_eq!(
            key.decrypt(&blob, "AC1").unwrap().expose_secret(),
            "token-123"
        );
        assert!(
            key.decrypt(&blob, "AC2").is_err(),
            "bound to the account SID"
        );
        let mut tampered = blob.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(key.decrypt(&tampered, "AC1").is_err());
        let other = MasterKey::parse(&"ab".repeat(32)).unwrap();
        assert!(other.decrypt(&blob, "AC1").is_err());
    }

    #[test]
    fn a_missing_key_says_how_to_make_one() {
        for missing in [None, Some(""), Some("  ")] {
            let e = MasterKey::require(missing, "outbound run")
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("SWITCHBOARD_MASTER_KEY is not set: outbound run needs"),
                "{e}"
            );
            assert!(e.contains("`openssl rand -base64 32`"), "{e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
        assert!(MasterKey::require(Some(KEY), "x").is_ok());
        assert!(matches!(
            MasterKey::require(Some("short"), "x"),
            Err(SecretError::BadKey(_))
        ));
    }

    #[test]
    fn bad_keys_are_explained() {
        for bad in ["", "short", "Zm9v", &"zz".repeat(32)] {
            let e = MasterKey::parse(bad).unwrap_err().to_string();
            assert!(e.contains("SWITCHBOARD_MASTER_KEY"), "{e}");
        }
        assert_eq!(
            format!("{:?}", MasterKey::parse(KEY).unwrap()),
            "MasterKey([redacted])"
        );
    }

    #[test]
    fn rotation_reads_every_configured_key_and_the_first_format() {
        let a = MasterKey::parse(&"aa".repeat(32)).unwrap();
        let b = MasterKey::parse(&"bb".repeat(32)).unwrap();
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id(), MasterKey::parse(&"aa".repeat(32)).unwrap().id());
        let legacy = a.encrypt("tok", "AC1");
        let v1_a = a.encrypt_with_id("tok", "AC1");
        assert_eq!(stored_key_id(&v1_a), Some(a.id()));
        assert!(v1_a.len() == legacy.len() + 9);
        // A alone: both formats.
        let ring_a = Keyring::from(MasterKey::parse(&"aa".repeat(32)).unwrap());
        let (pt, used) = ring_a.decrypt(&legacy, "AC1").unwrap();
        assert_eq!(pt.expose_secret(), "tok");
        assert_eq!(
            (used.key_id, used.current, used.has_key_id),
            (a.id(), true, false)
        );
        assert!(used.needs_rekey());
        let (_, used) = ring_a.decrypt(&v1_a, "AC1").unwrap();
        assert!(!used.needs_rekey());
        assert!(ring_a.decrypt(&v1_a, "AC2").is_err(), "bound to the SID");
        // B current, A old: A's ciphertexts of both formats read, B's written.
        let ring_ba = Keyring {
            current: MasterKey::parse(&"bb".repeat(32)).unwrap(),
            old: vec![MasterKey::parse(&"aa".repeat(32)).unwrap()],
        };
        for blob in [&legacy, &v1_a] {
            let (pt, used) = ring_ba.decrypt(blob, "AC1").unwrap();
            assert_eq!(pt.expose_secret(), "tok");
            assert_eq!((used.key_id, used.current), (a.id(), false));
        }
        let v1_b = ring_ba.encrypt("tok", "AC1");
        assert_eq!(stored_key_id(&v1_b), Some(b.id()));
        // B alone reads B's, not A's; A alone not B's.
        let ring_b = Keyring::from(b);
        assert!(ring_b.decrypt(&v1_b, "AC1").is_ok());
        assert!(ring_b.decrypt(&v1_a, "AC1").is_err());
        assert!(ring_b.decrypt(&legacy, "AC1").is_err());
        assert!(ring_a.decrypt(&v1_b, "AC1").is_err());
        // A header with a tampered key id fails.
        let mut tampered = v1_a.clone();
        tampered[1] ^= 1;
        assert!(ring_a.decrypt(&tampered, "AC1").is_err());
    }

    #[test]
    fn the_test_key_is_refused_unless_allowed() {
        let ring = Keyring::from(MasterKey::parse(KEY).unwrap());
        let e = ring.refuse_test_key(false).unwrap_err().to_string();
        assert!(
            e.starts_with("SWITCHBOARD_MASTER_KEY is the public test key"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        assert!(ring.refuse_test_key(true).is_ok());
        let hex_form: String = TEST_KEY.iter().map(|b| format!("{b:02x}")).collect();
        assert!(MasterKey::parse(&hex_form).unwrap().is_test_key());
        let ring = Keyring {
            current: MasterKey::parse(&"bb".repeat(32)).unwrap(),
            old: vec![MasterKey::parse(KEY).unwrap()],
        };
        assert!(matches!(
            ring.refuse_test_key(false),
            Err(SecretError::TestKey("SWITCHBOARD_OLD_MASTER_KEYS"))
        ));
        assert!(ring.refuse_test_key(true).is_ok());
        let e = Keyring::with_old(MasterKey::parse(&"bb".repeat(32)).unwrap(), Some(" ,short"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("SWITCHBOARD_OLD_MASTER_KEYS: key 1 must be"),
            "{e}"
        );
    }
}

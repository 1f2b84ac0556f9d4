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
}

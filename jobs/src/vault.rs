//! The token vault: AES-256-SIV with associated data, and key ids for rotation.
//!
//! A sealed value is text, `"{key_id}.{base64url(nonce ‖ siv ‖ ciphertext)}"`:
//! - the key id (8 hex digits of SHA-256 of the key) says which key opens it, so
//!   `ENCRYPTION_KEY` can change while `ENCRYPTION_KEYS_PREVIOUS` still opens old values;
//! - the associated data ([`Aad`]) binds it to one account (or OAuth state) and one field, so a
//!   ciphertext copied into another row or column does not decrypt;
//! - a random 16-byte nonce is a SIV header too, so equal tokens never seal to equal text.
//!
//! SIV is misuse-resistant: a repeated nonce leaks only equality, never the key stream. That is
//! why the platform's old separate `ENCRYPTION_IV` setting is not needed.

use aes_siv::{KeyInit, siv::Aes256Siv};
use base64::{Engine, engine::general_purpose::STANDARD, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

use crate::{domain::Platform, secret::Secret};

const KEY_LEN: usize = 64;
const NONCE_LEN: usize = 16;

/// One AES-256-SIV key (512 bits) with its id.
#[derive(Clone)]
pub struct VaultKey {
    id: String,
    bytes: Secret<Vec<u8>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("expected 64 bytes in standard base64 (88 characters), got {0} bytes")]
    WrongLength(usize),
    #[error("not valid base64")]
    NotBase64,
}

impl VaultKey {
    /// Parses a key as written in `ENCRYPTION_KEY`: 64 bytes, standard base64.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| KeyError::NotBase64)?;
        if bytes.len() != KEY_LEN {
            return Err(KeyError::WrongLength(bytes.len()));
        }
        let digest = Sha256::digest(&bytes);
        let id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self { id, bytes: Secret::new(bytes) })
    }

    /// A fresh random key, base64-encoded, ready for `ENCRYPTION_KEY`.
    pub fn generate() -> Secret {
        Secret::new(STANDARD.encode(random_bytes::<KEY_LEN>()))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> Aes256Siv {
        Aes256Siv::new_from_slice(self.bytes.expose()).expect("key length checked in parse")
    }
}

impl std::fmt::Debug for VaultKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VaultKey({})", self.id)
    }
}

/// What a sealed value is bound to. Opening it under any other binding fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aad(String);

impl Aad {
    /// A token field of one account, named by what identifies it on the platform
    /// (known before the row exists, so tokens can be sealed before the upsert).
    pub fn account(platform: Platform, platform_user_id: &str, field: &str) -> Self {
        Self(format!("socialsync/account/{platform}/{platform_user_id}/{field}"))
    }

    /// A secret of one OAuth state (its PKCE verifier, its authorization code).
    pub fn oauth_state(state_hash: &str, field: &str) -> Self {
        Self(format!("socialsync/oauth_state/{state_hash}/{field}"))
    }
}

/// Encrypted text, as stored. Safe to log: it names only the key id.
#[derive(Clone, PartialEq, Eq, sqlx::Type)]
#[sqlx(transparent)]
pub struct Sealed(pub String);

impl Sealed {
    pub fn key_id(&self) -> &str {
        self.0.split_once('.').map_or("", |(id, _)| id)
    }
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealed(key {})", self.key_id())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VaultError {
    #[error("sealed with key {0}, which is neither ENCRYPTION_KEY nor in ENCRYPTION_KEYS_PREVIOUS")]
    UnknownKey(String),
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed value does not open: wrong account or field, or tampered with")]
    Tampered,
}

/// Seals and opens secrets. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Vault {
    current: VaultKey,
    previous: Vec<VaultKey>,
}

impl Vault {
    pub fn new(current: VaultKey, previous: Vec<VaultKey>) -> Self {
        Self { current, previous }
    }

    pub fn current_key_id(&self) -> &str {
        self.current.id()
    }

    pub fn seal(&self, aad: &Aad, plaintext: &Secret) -> Sealed {
        let nonce = random_bytes::<NONCE_LEN>();
        let ct = self
            .current
            .cipher()
            .encrypt([aad.0.as_bytes(), &nonce[..]], plaintext.expose().as_bytes())
            .expect("two headers are within the SIV limit");
        let mut body = Vec::with_capacity(NONCE_LEN + ct.len());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&ct);
        Sealed(format!("{}.{}", self.current.id(), URL_SAFE_NO_PAD.encode(body)))
    }

    pub fn open(&self, aad: &Aad, sealed: &Sealed) -> Result<Secret, VaultError> {
        let (id, body) = sealed.0.split_once('.').ok_or(VaultError::Malformed)?;
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id() == id)
            .ok_or_else(|| VaultError::UnknownKey(id.to_owned()))?;
        let body = URL_SAFE_NO_PAD.decode(body).map_err(|_| VaultError::Malformed)?;
        if body.len() < NONCE_LEN {
            return Err(VaultError::Malformed);
        }
        let (nonce, ct) = body.split_at(NONCE_LEN);
        let plain = key
            .cipher()
            .decrypt([aad.0.as_bytes(), nonce], ct)
            .map_err(|_| VaultError::Tampered)?;
        String::from_utf8(plain).map(Secret::new).map_err(|_| VaultError::Tampered)
    }

    /// Whether `sealed` is already under the current key (what `keys rotate` looks for).
    pub fn is_current(&self, sealed: &Sealed) -> bool {
        sealed.key_id() == self.current.id()
    }
}

/// Random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("the OS random source is available");
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> VaultKey {
        VaultKey::parse(VaultKey::generate().expose()).unwrap()
    }

    fn aad() -> Aad {
        Aad::account(Platform::Tiktok, "open-1", "refresh_token")
    }

    #[test]
    fn round_trip() {
        let v = Vault::new(key(), vec![]);
        let s = v.seal(&aad(), &Secret::from("rft.abc"));
        assert!(!s.0.contains("rft.abc"));
        assert_eq!(v.open(&aad(), &s).unwrap().expose(), "rft.abc");
        assert!(v.is_current(&s));
    }

    #[test]
    fn equal_plaintexts_seal_differently() {
        let v = Vault::new(key(), vec![]);
        let t = Secret::from("same");
        assert_ne!(v.seal(&aad(), &t), v.seal(&aad(), &t));
    }

    #[test]
    fn wrong_account_or_field_fails() {
        let v = Vault::new(key(), vec![]);
        let s = v.seal(&aad(), &Secret::from("rft.abc"));
        let other_account = Aad::account(Platform::Tiktok, "open-2", "refresh_token");
        let other_field = Aad::account(Platform::Tiktok, "open-1", "access_token");
        let other_platform = Aad::account(Platform::Instagram, "open-1", "refresh_token");
        for wrong in [other_account, other_field, other_platform] {
            assert_eq!(v.open(&wrong, &s).unwrap_err(), VaultError::Tampered);
        }
    }

    #[test]
    fn any_flipped_byte_fails() {
        let v = Vault::new(key(), vec![]);
        let s = v.seal(&aad(), &Secret::from("act.value"));
        let (id, body) = s.0.split_once('.').unwrap();
        let raw = URL_SAFE_NO_PAD.decode(body).unwrap();
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            let bad = Sealed(format!("{id}.{}", URL_SAFE_NO_PAD.encode(bad)));
            assert_eq!(v.open(&aad(), &bad).unwrap_err(), VaultError::Tampered, "byte {i}");
        }
    }

    #[test]
    fn previous_keys_open_but_do_not_seal() {
        let old = key();
        let sealed_by_old = Vault::new(old.clone(), vec![]).seal(&aad(), &Secret::from("t"));
        let rotated = Vault::new(key(), vec![old]);
        assert_eq!(rotated.open(&aad(), &sealed_by_old).unwrap().expose(), "t");
        assert!(!rotated.is_current(&sealed_by_old));
        assert!(rotated.is_current(&rotated.seal(&aad(), &Secret::from("t"))));
    }

    #[test]
    fn unknown_key_is_named() {
        let s = Vault::new(key(), vec![]).seal(&aad(), &Secret::from("t"));
        let err = Vault::new(key(), vec![]).open(&aad(), &s).unwrap_err();
        assert!(matches!(err, VaultError::UnknownKey(ref id) if id == s.key_id()));
    }

    #[test]
    fn malformed_keys_say_what_is_expected() {
        assert_eq!(VaultKey::parse("not base64!").unwrap_err(), KeyError::NotBase64);
        let short = STANDARD.encode([0u8; 32]);
        let err = VaultKey::parse(&short).unwrap_err();
        assert_eq!(err, KeyError::WrongLength(32));
        assert!(err.to_string().contains("64 bytes"));
    }

    #[test]
    fn debug_output_hides_the_key() {
        let text = VaultKey::generate();
        let k = VaultKey::parse(text.expose()).unwrap();
        let dbg = format!("{:?}", Vault::new(k, vec![]));
        assert!(!dbg.contains(text.expose().as_str()));
    }
}

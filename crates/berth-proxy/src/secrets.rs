//! Sealing upstream secrets at rest: ChaCha20-Poly1305 (ring) under a 256-bit key that is
//! configured (`[secrets] key`) or generated once and kept in the database. A sealed value
//! names its key, so a key configured later still opens what an older one sealed while
//! that one is kept. Secrets and keys are never logged.

use base64::Engine as _;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// The sealing keys: the newest seals, every one opens.
pub struct Keyring {
    /// (kid, key), the sealing key first.
    keys: Vec<(String, LessSafeKey)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|(kid, _)| kid.as_str()).collect();
        f.debug_struct("Keyring").field("kids", &kids).finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("a secret key must be 32 bytes, base64-encoded")]
    BadKey,
    #[error("the sealed secret is damaged or was sealed by a key this node does not have")]
    CannotOpen,
    #[error("no randomness available")]
    Random,
}

/// The kid of a configured key: derived from the key, so every node configured with it agrees.
fn configured_kid(key: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, key);
    format!("cfg-{}", &hex_prefix(digest.as_ref()))
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// A fresh random 256-bit key.
pub fn generate_key() -> Result<Vec<u8>, SecretError> {
    let mut key = vec![0u8; 32];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| SecretError::Random)?;
    Ok(key)
}

/// A configured key as typed: base64 of 32 bytes.
pub fn parse_configured_key(text: &str) -> Result<Vec<u8>, SecretError> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| SecretError::BadKey)?;
    if key.len() != 32 {
        return Err(SecretError::BadKey);
    }
    Ok(key)
}

impl Keyring {
    /// `configured` (if any) seals; `stored` keys (kid, key), newest last, open, and the
    /// newest of them seals when nothing is configured.
    pub fn new(
        configured: Option<&[u8]>,
        stored: &[(String, Vec<u8>)],
    ) -> Result<Keyring, SecretError> {
        let mut keys = Vec::new();
        let bind = |key: &[u8]| -> Result<LessSafeKey, SecretError> {
            Ok(LessSafeKey::new(
                UnboundKey::new(&CHACHA20_POLY1305, key).map_err(|_| SecretError::BadKey)?,
            ))
        };
        if let Some(key) = configured {
            keys.push((configured_kid(key), bind(key)?));
        }
        for (kid, key) in stored.iter().rev() {
            keys.push((kid.clone(), bind(key)?));
        }
        if keys.is_empty() {
            return Err(SecretError::BadKey);
        }
        Ok(Keyring { keys })
    }

    /// `kid length (1 byte) | kid | nonce (12 bytes) | ciphertext and tag`.
    pub fn seal(&self, secret: &str) -> Result<Vec<u8>, SecretError> {
        let (kid, key) = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SecretError::Random)?;
        let mut data = secret.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(kid.as_bytes()),
            &mut data,
        )
        .map_err(|_| SecretError::Random)?;
        let mut sealed = Vec::with_capacity(1 + kid.len() + NONCE_LEN + data.len());
        sealed.push(kid.len() as u8);
        sealed.extend_from_slice(kid.as_bytes());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&data);
        Ok(sealed)
    }

    pub fn open(&self, sealed: &[u8]) -> Result<String, SecretError> {
        let (&kid_len, rest) = sealed.split_first().ok_or(SecretError::CannotOpen)?;
        let kid_len = usize::from(kid_len);
        if rest.len() < kid_len + NONCE_LEN {
            return Err(SecretError::CannotOpen);
        }
        let (kid, rest) = rest.split_at(kid_len);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let (_, key) = self
            .keys
            .iter()
            .find(|(k, _)| k.as_bytes() == kid)
            .ok_or(SecretError::CannotOpen)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::CannotOpen)?;
        let mut data = ciphertext.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(kid), &mut data)
            .map_err(|_| SecretError::CannotOpen)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SecretError::CannotOpen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_with_its_key_and_never_shows_in_clear() {
        let key = generate_key().expect("key");
        let ring = Keyring::new(None, &[("k1".into(), key)]).expect("ring");
        let sealed = ring.seal("s3cret-token").expect("seal");
        assert!(!sealed.windows(6).any(|w| w == b"s3cret"));
        assert_eq!(ring.open(&sealed).expect("open"), "s3cret-token");
        // Two seals of one secret differ (fresh nonce).
        assert_ne!(ring.seal("s3cret-token").expect("seal"), sealed);
    }

    #[test]
    fn a_tampered_secret_or_an_unknown_key_does_not_open() {
        let old = generate_key().expect("key");
        let ring = Keyring::new(None, &[("k1".into(), old.clone())]).expect("ring");
        let mut sealed = ring.seal("pw").expect("seal");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(ring.open(&sealed), Err(SecretError::CannotOpen));
        let other =
            Keyring::new(None, &[("k2".into(), generate_key().expect("key"))]).expect("ring");
        let sealed = ring.seal("pw").expect("seal");
        assert_eq!(other.open(&sealed), Err(SecretError::CannotOpen));
        // A configured key seals from then on; the stored one still opens the old value.
        let configured = generate_key().expect("key");
        let both = Keyring::new(Some(&configured), &[("k1".into(), old)]).expect("ring");
        assert_eq!(both.open(&sealed).expect("open"), "pw");
        assert_eq!(
            both.open(&both.seal("new").expect("seal")).expect("open"),
            "new"
        );
        assert!(ring.open(&both.seal("new").expect("seal")).is_err());
    }

    #[test]
    fn a_configured_key_is_32_bytes_of_base64() {
        assert_eq!(parse_configured_key("c2hvcnQ="), Err(SecretError::BadKey));
        let text = base64::engine::general_purpose::STANDARD.encode([5u8; 32]);
        assert_eq!(parse_configured_key(&text).expect("key"), vec![5u8; 32]);
    }
}

//! Webhook secrets and signatures, the Standard Webhooks scheme: a secret
//! is `whsec_` + the base64 of its key; a signature is `v1,` + the base64
//! of HMAC-SHA256 over `{id}.{timestamp}.{body}` with that key.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const SECRET_PREFIX: &str = "whsec_";
/// The key length of a generated secret.
const GENERATED_KEY_BYTES: usize = 32;
/// What a given secret's key may be.
pub const KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// A new secret with a key of 32 random bytes.
pub fn generate_secret() -> String {
    let mut key = [0u8; GENERATED_KEY_BYTES];
    OsRng.fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// The key of a secret of the right form, else `None`.
pub fn key_of(secret: &str) -> Option<Vec<u8>> {
    let key = STANDARD.decode(secret.strip_prefix(SECRET_PREFIX)?).ok()?;
    KEY_BYTES.contains(&key.len()).then_some(key)
}

/// The `Webhook-Signature` header's value.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_have_the_standard_form() {
        let secret = generate_secret();
        assert!(secret.starts_with("whsec_"));
        assert_eq!(key_of(&secret).unwrap().len(), 32);
        assert_ne!(secret, generate_secret());
    }

    #[test]
    fn given_secrets_need_the_prefix_base64_and_24_to_64_bytes() {
        assert!(key_of(&format!("whsec_{}", STANDARD.encode([7u8; 24]))).is_some());
        assert!(key_of(&format!("whsec_{}", STANDARD.encode([7u8; 64]))).is_some());
        assert!(key_of(&format!("whsec_{}", STANDARD.encode([7u8; 23]))).is_none());
        assert!(key_of(&format!("whsec_{}", STANDARD.encode([7u8; 65]))).is_none());
        assert!(key_of(&STANDARD.encode([7u8; 32])).is_none());
        assert!(key_of("whsec_not base64!").is_none());
    }

    /// The Standard Webhooks specification's own example.
    #[test]
    fn signs_like_the_standard_webhooks_reference() {
        let key = key_of("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}

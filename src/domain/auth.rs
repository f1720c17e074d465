//! Password hashing (Argon2id, off the async executor) and bearer tokens
//! (JWT HS256 with expiry).

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::error::AppError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn from_column(role: &str) -> Self {
        if role == "admin" {
            Role::Admin
        } else {
            Role::User
        }
    }
}

/// The authenticated caller, as the bearer token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub user_id: i64,
    pub role: Role,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Owners act on their own resources; admins on anyone's.
    pub fn may_act_for(&self, owner_id: i64) -> bool {
        self.is_admin() || self.user_id == owner_id
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    iat: i64,
    exp: i64,
}

pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub ttl_seconds: u64,
}

impl Tokens {
    pub fn new(secret: &str, ttl_seconds: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // An expired token is expired: no grace period.
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            ttl_seconds,
        }
    }

    pub fn issue(&self, principal: Principal) -> Result<String, AppError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: principal.user_id.to_string(),
            role: principal.role,
            iat: now,
            exp: now + self.ttl_seconds as i64,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|err| AppError::Internal(anyhow::Error::new(err).context("signing a token")))
    }

    /// Any defect (bad signature, other algorithm, expired, malformed)
    /// is the same 401 to the client.
    pub fn verify(&self, token: &str) -> Result<Principal, AppError> {
        let invalid = || AppError::Unauthorized("Invalid or expired token".into());
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| invalid())?;
        let user_id = data.claims.sub.parse::<i64>().map_err(|_| invalid())?;
        Ok(Principal {
            user_id,
            role: data.claims.role,
        })
    }
}

/// Argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane: OWASP's
/// recommendation), run on the blocking pool.
pub async fn hash_password(password: String) -> Result<String, AppError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|err| anyhow::anyhow!("hashing a password: {err}"))
    })
    .await
    .map_err(|err| AppError::Internal(err.into()))?
    .map_err(AppError::Internal)
}

pub async fn verify_password(password: String, hash: String) -> Result<bool, AppError> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&hash).map_err(|err| anyhow::anyhow!("stored hash: {err}"))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|err| AppError::Internal(err.into()))?
    .map_err(AppError::Internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn tokens_round_trip_and_reject_other_secrets() {
        let tokens = Tokens::new(SECRET, 60);
        let me = Principal {
            user_id: 7,
            role: Role::Admin,
        };
        let token = tokens.issue(me).unwrap();
        assert_eq!(tokens.verify(&token).unwrap(), me);
        let other = Tokens::new("another-secret-another-secret-xx", 60);
        assert!(other.verify(&token).is_err());
        assert!(tokens.verify("not.a.token").is_err());
    }

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let hash = hash_password("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse".into(), hash.clone()).await.unwrap());
        assert!(!verify_password("wrong horse".into(), hash).await.unwrap());
    }
}

//! Password hashing (Argon2id, off the async executor) and bearer tokens
//! (JWT HS256 with expiry).

use std::cell::RefCell;

use anyhow::Context;
use argon2::password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::error::AppError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn column(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    pub fn from_column(role: &str) -> Self {
        if role == "admin" {
            Role::Admin
        } else {
            Role::User
        }
    }
}

/// What a machine token may do; a session may do everything its
/// user may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes {
    pub content_read: bool,
    pub content_write: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    ContentRead,
    ContentWrite,
}

impl Scope {
    pub const ALL: [Scope; 2] = [Scope::ContentRead, Scope::ContentWrite];

    pub fn name(self) -> &'static str {
        match self {
            Scope::ContentRead => "content:read",
            Scope::ContentWrite => "content:write",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.name() == name)
    }
}

impl Scopes {
    /// Names that are not scopes are ignored (the database allows none).
    pub fn from_names(names: &[String]) -> Self {
        names
            .iter()
            .filter_map(|name| Scope::from_name(name))
            .fold(Scopes::default(), |scopes, scope| scopes.with(scope))
    }

    pub fn with(mut self, scope: Scope) -> Self {
        match scope {
            Scope::ContentRead => self.content_read = true,
            Scope::ContentWrite => self.content_write = true,
        }
        self
    }

    pub fn allows(self, scope: Scope) -> bool {
        match scope {
            Scope::ContentRead => self.content_read,
            Scope::ContentWrite => self.content_write,
        }
    }

    pub fn names(self) -> Vec<String> {
        Scope::ALL
            .into_iter()
            .filter(|scope| self.allows(*scope))
            .map(|scope| scope.name().to_owned())
            .collect()
    }
}

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// An access token of a live login session.
    Session { session_id: i64 },
    /// A machine token (`cat_…`), limited to its scopes.
    Machine { token_id: i64, scopes: Scopes },
}

/// The authenticated caller: the user and role as PostgreSQL has them at
/// this request, and the credential used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub user_id: i64,
    pub role: Role,
    pub credential: Credential,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Owners act on their own resources; admins on anyone's.
    pub fn may_act_for(&self, owner_id: i64) -> bool {
        self.is_admin() || self.user_id == owner_id
    }

    pub fn session_id(&self) -> Option<i64> {
        match self.credential {
            Credential::Session { session_id } => Some(session_id),
            Credential::Machine { .. } => None,
        }
    }

    /// Account, session and token management, and administration, need a
    /// login session: a machine token is never enough (403). The session's id.
    pub fn require_session(&self) -> Result<i64, AppError> {
        match self.credential {
            Credential::Session { session_id } => Ok(session_id),
            Credential::Machine { .. } => Err(AppError::Forbidden(
                "A machine token cannot be used here; log in".into(),
            )),
        }
    }

    /// A machine token must carry `scope`; a session may do anything.
    pub fn require_scope(self, scope: Scope) -> Result<Self, AppError> {
        match self.credential {
            Credential::Machine { scopes, .. } if !scopes.allows(scope) => Err(
                AppError::Forbidden(format!("This token lacks the {} scope", scope.name())),
            ),
            _ => Ok(self),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    /// The session the token belongs to: it is valid only while that lives.
    sid: i64,
    /// Informational: the role is read from PostgreSQL on every request.
    role: Role,
    iat: i64,
    exp: i64,
}

/// What a verified access token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessClaims {
    pub user_id: i64,
    pub session_id: i64,
}

pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub ttl_seconds: u64,
}

impl Tokens {
    pub fn new(secret: &str, ttl_seconds: u64) -> Self {
        let mut validation = Validation::new(jsonwebtoken::Algorithm::HS256);
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

    pub fn issue(&self, user_id: i64, role: Role, session_id: i64) -> Result<String, AppError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id.to_string(),
            sid: session_id,
            role,
            iat: now,
            exp: now + self.ttl_seconds as i64,
        };
        jsonwebtoken::encode(
            &Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &self.encoding,
        )
        .map_err(|err| AppError::Internal(anyhow::Error::new(err).context("signing a token")))
    }

    /// Any defect (bad signature, other algorithm, expired, malformed, no
    /// session: a token from before sessions existed) is the same 401.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, AppError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| AppError::invalid_token())?;
        let user_id = data
            .claims
            .sub
            .parse::<i64>()
            .map_err(|_| AppError::invalid_token())?;
        Ok(AccessClaims {
            user_id,
            session_id: data.claims.sid,
        })
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane: OWASP's
/// recommendation) on a few dedicated threads at low CPU priority.
///
/// Why not the blocking pool: a signup storm there runs one 19 MiB hash per
/// request at once (memory grew to 2.7 GiB in the benchmark) and takes every
/// core from the HTTP workers (read p99 ×78). Here a fixed number of hashes
/// run (`PASSWORD_HASHING_THREADS`), `nice 19` lets reads pre-empt hashing (a
/// storm only queues signups and logins), and each thread hashes in one
/// buffer it keeps: a fresh 19 MiB allocation per hash made glibc's arenas
/// grow to 340 MiB.
pub struct Passwords {
    jobs: std::sync::mpsc::Sender<Job>,
}

/// Scheduling priority of the hashing threads (0 is normal, 19 lowest).
const HASHING_NICE: i32 = 19;

impl Passwords {
    pub fn new(threads: usize) -> Self {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
        for n in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || {
                    // On Linux, PRIO_PROCESS with 0 sets the calling thread only.
                    // SAFETY: a plain syscall on the current thread; no memory is shared.
                    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, HASHING_NICE) };
                    loop {
                        let job = queue.lock().expect("hashing queue").recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .expect("spawning a hashing thread");
        }
        Self { jobs }
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AppError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = reply.send(work());
            }))
            .map_err(|_| AppError::Internal(anyhow::anyhow!("the hashing threads are gone")))?;
        answer
            .await
            .map_err(|_| AppError::Internal(anyhow::anyhow!("a hashing job was dropped")))
    }

    /// A PHC string: `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`.
    pub async fn hash(&self, password: String) -> Result<String, AppError> {
        self.run(move || hash_in_place(&password))
            .await?
            .map_err(|err| AppError::Internal(anyhow::anyhow!("hashing a password: {err}")))
    }

    pub async fn verify(&self, password: String, hash: String) -> Result<bool, AppError> {
        self.run(move || verify_in_place(&password, &hash))
            .await?
            .map_err(|err| AppError::Internal(anyhow::anyhow!("verifying a password: {err}")))
    }
}

thread_local! {
    /// The hashing thread's Argon2 memory, allocated once.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Argon2 into `out`, in this thread's kept memory.
fn argon2_in_place(
    argon2: &Argon2<'_>,
    params: &Params,
    password: &str,
    salt: &[u8],
    out: &mut [u8],
) -> argon2::Result<()> {
    MEMORY.with(|memory| {
        let mut blocks = memory.borrow_mut();
        if blocks.len() < params.block_count() {
            blocks.resize(params.block_count(), Block::default());
        }
        argon2.hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            out,
            &mut blocks[..params.block_count()],
        )
    })
}

fn hash_in_place(password: &str) -> anyhow::Result<String> {
    let params = Params::default();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_buffer = [0u8; 64];
    let salt_bytes = salt
        .decode_b64(&mut salt_buffer)
        .map_err(anyhow::Error::msg)?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2_in_place(&argon2, &params, password, salt_bytes, &mut out)
        .map_err(anyhow::Error::msg)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(anyhow::Error::msg)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(anyhow::Error::msg)?),
    };
    Ok(phc.to_string())
}

/// Recomputes with the stored algorithm, version and parameters; the
/// comparison of `Output`s is constant-time.
fn verify_in_place(password: &str, stored: &str) -> anyhow::Result<bool> {
    let parsed = PasswordHash::new(stored).map_err(anyhow::Error::msg)?;
    let expected = parsed.hash.context("stored hash has no output")?;
    let params = Params::try_from(&parsed).map_err(anyhow::Error::msg)?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(anyhow::Error::msg)?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(anyhow::Error::msg)?
        .unwrap_or_default();
    let mut salt_buffer = [0u8; 64];
    let salt = parsed
        .salt
        .context("stored hash has no salt")?
        .decode_b64(&mut salt_buffer)
        .map_err(anyhow::Error::msg)?;
    let mut out = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params.clone());
    argon2_in_place(&argon2, &params, password, salt, &mut out).map_err(anyhow::Error::msg)?;
    Ok(Output::new(&out).map_err(anyhow::Error::msg)? == expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn tokens_round_trip_and_reject_other_secrets() {
        let tokens = Tokens::new(SECRET, 60);
        let token = tokens.issue(7, Role::Admin, 12).unwrap();
        let me = AccessClaims {
            user_id: 7,
            session_id: 12,
        };
        assert_eq!(tokens.verify(&token).unwrap(), me);
        let other = Tokens::new("another-secret-another-secret-xx", 60);
        assert!(other.verify(&token).is_err());
        assert!(tokens.verify("not.a.token").is_err());
    }

    #[test]
    fn scopes_limit_machine_tokens_only() {
        let read_only = Scopes::from_names(&["content:read".into(), "unknown".into()]);
        assert_eq!(read_only.names(), ["content:read"]);
        let machine = Principal {
            user_id: 1,
            role: Role::Admin,
            credential: Credential::Machine {
                token_id: 3,
                scopes: read_only,
            },
        };
        assert!(machine.require_scope(Scope::ContentRead).is_ok());
        assert!(machine.require_scope(Scope::ContentWrite).is_err());
        assert!(machine.require_session().is_err());
        let session = Principal {
            credential: Credential::Session { session_id: 9 },
            ..machine
        };
        assert!(session.require_scope(Scope::ContentWrite).is_ok());
        assert_eq!(session.require_session().unwrap(), 9);
        assert_eq!(session.session_id(), Some(9));
    }

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let passwords = Passwords::new(1);
        let hash = passwords.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(passwords
            .verify("correct horse".into(), hash.clone())
            .await
            .unwrap());
        assert!(!passwords.verify("wrong horse".into(), hash).await.unwrap());
    }

    #[test]
    fn hashes_are_interchangeable_with_the_standard_api() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let ours = hash_in_place("correct horse").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert!(verify_in_place("correct horse", &theirs).unwrap());
        assert!(!verify_in_place("wrong horse", &theirs).unwrap());
        assert!(ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    }

    #[tokio::test]
    async fn hashing_threads_run_at_low_priority() {
        let passwords = Passwords::new(1);
        let nice = passwords
            .run(|| {
                // SAFETY: reads the current thread's priority.
                unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
            })
            .await
            .unwrap();
        assert_eq!(nice, HASHING_NICE);
    }
}

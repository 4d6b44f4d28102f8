//! Who may do more than look. The admin password is kept only as an argon2 PHC
//! string in the configuration; a login exchanges it for a random session token,
//! which later requests carry as a cookie (the page and its `<video>`) or as
//! `Authorization: Bearer` (scripts). Sessions live in memory, bounded in number,
//! and expire. Sans-IO: time and randomness are passed in.

use std::time::{Duration, Instant};

use argon2::password_hash::{self, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The cookie that carries a session token.
pub const COOKIE: &str = "recbox_session";
/// How long a session lasts after its login.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; a login past that ends the oldest.
pub const MAX_SESSIONS: usize = 64;
/// Longest password taken (argon2 hashes anything, but a request should not make it
/// hash megabytes).
pub const MAX_PASSWORD: usize = 256;

#[derive(Debug, Error)]
pub enum AuthError {
    #[error("not an argon2 PHC string: {0}")]
    Hash(#[source] password_hash::Error),
    #[error("the hash is of {0}, not argon2")]
    Algorithm(String),
    #[error("the password is empty")]
    EmptyPassword,
    #[error("the password is longer than {MAX_PASSWORD} bytes")]
    LongPassword,
}

/// Checks that `hash` is an argon2 PHC string `verify` can use.
pub fn check_hash(hash: &str) -> Result<(), AuthError> {
    let parsed = PasswordHash::new(hash).map_err(AuthError::Hash)?;
    let algorithm = parsed.algorithm.as_str();
    if !algorithm.starts_with("argon2") {
        return Err(AuthError::Algorithm(algorithm.to_owned()));
    }
    // The parameters must be ones argon2 accepts.
    argon2::Params::try_from(&parsed).map_err(AuthError::Hash)?;
    Ok(())
}

/// The PHC string of `password` (argon2id, the crate's recommended parameters).
pub fn hash_password(password: &str, salt: [u8; 16]) -> Result<String, AuthError> {
    check_password(password)?;
    let salt = SaltString::encode_b64(&salt).map_err(AuthError::Hash)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(AuthError::Hash)
}

fn check_password(password: &str) -> Result<(), AuthError> {
    if password.is_empty() {
        Err(AuthError::EmptyPassword)
    } else if password.len() > MAX_PASSWORD {
        Err(AuthError::LongPassword)
    } else {
        Ok(())
    }
}

/// Whether `password` is the one `hash` (checked by [`check_hash`]) was made of.
/// Slow on purpose (argon2): run it off the async threads, one at a time.
pub fn verify(hash: &str, password: &str) -> bool {
    if check_password(password).is_err() {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// The sessions logged in. Tokens are kept as their SHA-256 only, so what a
/// comparison's timing could reveal is of a digest, not of a token.
#[derive(Debug)]
pub struct Sessions {
    /// Digest and expiry, oldest first.
    live: Vec<([u8; 32], Instant)>,
    ttl: Duration,
    max: usize,
}

impl Sessions {
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self {
            live: Vec::new(),
            ttl,
            max: max.max(1),
        }
    }

    /// Starts a session for a fresh random token; its text for the client.
    pub fn issue(&mut self, random: [u8; 32], now: Instant) -> String {
        self.expire(now);
        if self.live.len() >= self.max {
            self.live.remove(0);
        }
        let token = hex(&random);
        self.live.push((digest(&token), now + self.ttl));
        token
    }

    pub fn is_valid(&mut self, token: &str, now: Instant) -> bool {
        self.expire(now);
        let d = digest(token);
        self.live.iter().any(|(t, _)| *t == d)
    }

    pub fn revoke(&mut self, token: &str) {
        let d = digest(token);
        self.live.retain(|(t, _)| *t != d);
    }

    fn expire(&mut self, now: Instant) {
        self.live.retain(|(_, until)| *until > now);
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The session token a request carries: `Authorization: Bearer T`, else the
/// session cookie in a `Cookie` header.
pub fn token_of<'a>(
    authorization: Option<&'a str>,
    cookies: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    if let Some(token) = authorization.and_then(|a| a.strip_prefix("Bearer ")) {
        return Some(token.trim());
    }
    cookies
        .into_iter()
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_password("correct horse", [7; 16]).unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        check_hash(&hash).unwrap();
        assert!(verify(&hash, "correct horse"));
        assert!(!verify(&hash, "correct horsE"));
        assert!(!verify(&hash, ""));
        assert!(!verify(&hash, &"x".repeat(MAX_PASSWORD + 1)));
    }

    #[test]
    fn bad_hashes_and_passwords_are_refused() {
        assert!(matches!(check_hash("secret"), Err(AuthError::Hash(_))));
        assert!(matches!(
            check_hash("$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"),
            Err(AuthError::Algorithm(_))
        ));
        assert!(matches!(
            hash_password("", [0; 16]),
            Err(AuthError::EmptyPassword)
        ));
    }

    #[test]
    fn sessions_expire_are_bounded_and_revocable() {
        let t0 = Instant::now();
        let mut s = Sessions::new(Duration::from_secs(10), 2);
        let a = s.issue([1; 32], t0);
        assert_eq!(a.len(), 64);
        assert!(s.is_valid(&a, t0 + Duration::from_secs(9)));
        assert!(!s.is_valid(&a, t0 + Duration::from_secs(10)));
        let b = s.issue([2; 32], t0);
        let c = s.issue([3; 32], t0);
        let d = s.issue([4; 32], t0);
        assert!(!s.is_valid(&b, t0), "the oldest goes past the bound");
        assert!(s.is_valid(&c, t0) && s.is_valid(&d, t0));
        s.revoke(&c);
        assert!(!s.is_valid(&c, t0));
        assert!(!s.is_valid("", t0));
    }

    #[test]
    fn the_token_comes_from_the_bearer_header_or_the_cookie() {
        assert_eq!(token_of(Some("Bearer abc"), []), Some("abc"));
        assert_eq!(
            token_of(None, ["theme=dark; recbox_session=xyz", "a=b"]),
            Some("xyz")
        );
        assert_eq!(token_of(Some("Basic Zm9v"), ["x=1"]), None);
        assert_eq!(token_of(None, ["recbox_sessionx=1"]), None);
    }
}

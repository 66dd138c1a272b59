//! Password hashing with Argon2id (PHC strings). Hashing is deliberately slow, so it runs on the
//! blocking pool, never on a request thread.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use clawjobs_actors::EngineError;

pub async fn hash(password: String) -> Result<String, EngineError> {
    actix_web::web::block(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(EngineError::internal)
    })
    .await
    .map_err(EngineError::internal)?
}

pub async fn verify(password: String, stored: String) -> Result<bool, EngineError> {
    actix_web::web::block(move || {
        let parsed = PasswordHash::new(&stored).map_err(EngineError::internal)?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(EngineError::internal)?
}

/// A hash to verify against when the email is unknown, so that both paths take the same time.
pub const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2Fsk6uDMf6r1n1mE6Hkt5bD7tDzqkLqgP7yF3wVbqQY";

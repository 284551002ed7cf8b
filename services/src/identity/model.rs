//! Identity records and value objects.

use crate::platform::Rejection;
use crate::platform::http::Role;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    /// PHC string (argon2id).
    pub password_hash: String,
    pub roles: Vec<Role>,
    pub created_at_ms: i64,
}

/// A login: the refresh token's hash (the token itself is never stored) and whether it was
/// revoked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    pub refresh_hash: String,
    pub expires_at_ms: i64,
    pub revoked: bool,
}

/// A validated, lowercased email address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email(String);

impl Email {
    pub fn parse(text: &str) -> Result<Email, Rejection> {
        let text = text.trim().to_lowercase();
        let valid = text.len() <= 254
            && match text.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                        && !domain.contains('@')
                        && !text.chars().any(char::is_whitespace)
                }
                None => false,
            };
        if !valid {
            return Err(Rejection::invalid("email", "not a valid email address"));
        }
        Ok(Email(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub fn check_name(name: &str) -> Result<String, Rejection> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Rejection::invalid("name", "a name has 1 to 100 characters"));
    }
    Ok(name.to_string())
}

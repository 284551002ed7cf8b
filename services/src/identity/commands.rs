//! Identity commands. Everything random or slow (ids, password hashes, token secrets) is
//! computed by the route before the command is logged, so apply stays deterministic.

use super::signing_key::SigningKey;
use crate::platform::http::Role;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    Register {
        user_id: String,
        email: String,
        name: String,
        password_hash: String,
        roles: Vec<Role>,
        /// A self-service registration: an email that has an account already is answered
        /// like a new one (so the answer does not tell which emails have accounts) and the
        /// account's owner is told instead. Operators' registrations (the bootstrap admin,
        /// `commerce user create`) are told plainly.
        #[serde(default)]
        quiet_if_taken: bool,
    },
    StartSession {
        session_id: String,
        user_id: String,
        refresh_hash: String,
        expires_at_ms: i64,
    },
    RotateSession {
        session_id: String,
        presented_hash: String,
        new_hash: String,
        expires_at_ms: i64,
    },
    RevokeSession {
        session_id: String,
        user_id: String,
    },
    /// Also revokes the user's other sessions: a changed password logs out everywhere
    /// but here.
    ChangePassword {
        user_id: String,
        password_hash: String,
        keep_session: Option<String>,
    },
    SetRoles {
        user_id: String,
        roles: Vec<Role>,
    },
    /// A wrong password for this account: counts towards its sign-in lock
    /// (`login_throttle.rs`).
    RecordLoginFailure {
        user_id: String,
    },
    /// Installs the access-token signing key, generated before logging. Only the first one
    /// ever installed counts: a later one (another node's, racing at first start) changes
    /// nothing, so every replica signs with the same key.
    InstallSigningKey {
        key: SigningKey,
    },
}

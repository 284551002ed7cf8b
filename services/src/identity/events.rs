//! Events on `identity-events`, keyed by user id.

use crate::platform::http::Role;
use serde::Serialize;

pub const TOPIC: &str = "identity-events";

pub const USER_REGISTERED: &str = "UserRegistered";
pub const USER_LOGGED_IN: &str = "UserLoggedIn";
pub const PASSWORD_CHANGED: &str = "PasswordChanged";
pub const ROLES_CHANGED: &str = "UserRolesChanged";
pub const REGISTRATION_ATTEMPTED: &str = "RegistrationAttempted";
pub const REFRESH_TOKEN_REUSED: &str = "RefreshTokenReused";

#[derive(Serialize)]
pub struct UserRegistered<'a> {
    pub user_id: &'a str,
    pub email: &'a str,
    pub name: &'a str,
    pub roles: &'a [Role],
}

#[derive(Serialize)]
pub struct UserLoggedIn<'a> {
    pub user_id: &'a str,
    pub session_id: &'a str,
}

#[derive(Serialize)]
pub struct PasswordChanged<'a> {
    pub user_id: &'a str,
}

#[derive(Serialize)]
pub struct RolesChanged<'a> {
    pub user_id: &'a str,
    pub roles: &'a [Role],
}

/// Someone tried to register an account with the email of an existing one: its owner is
/// told (it may be them, having forgotten; or someone probing which emails have accounts).
#[derive(Serialize)]
pub struct RegistrationAttempted<'a> {
    pub user_id: &'a str,
    pub email: &'a str,
}

/// A refresh token already exchanged was presented again: it leaked, so the session (every
/// token descended from the same sign-in) was revoked.
#[derive(Serialize)]
pub struct RefreshTokenReused<'a> {
    pub user_id: &'a str,
    pub session_id: &'a str,
}

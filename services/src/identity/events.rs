//! Events on `identity-events`, keyed by user id.

use crate::platform::http::Role;
use serde::Serialize;

pub const TOPIC: &str = "identity-events";

pub const USER_REGISTERED: &str = "UserRegistered";
pub const USER_LOGGED_IN: &str = "UserLoggedIn";
pub const PASSWORD_CHANGED: &str = "PasswordChanged";
pub const ROLES_CHANGED: &str = "UserRolesChanged";

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

//! The identity state machine.

use super::commands::Command;
use super::events::{self, TOPIC};
use super::login_throttle::LoginFailures;
use super::model::{Session, User};
use super::signing_key::SigningKey;
use crate::platform::store::{Table, Transaction, UniqueIndex};
use crate::platform::{CommandMeta, Rejection, StateMachine, StoreError};

pub const USERS: Table<User> = Table::new("user");
pub const SESSIONS: Table<Session> = Table::new("session");
pub const EMAILS: UniqueIndex = UniqueIndex::new("email");
/// A user's sessions: id `<user id>/<session id>`, value the session id.
pub const USER_SESSIONS: Table<String> = Table::new("user_session");
/// The access-token signing key: one record, under [`SIGNING_KEY_ID`].
pub const SIGNING_KEY: Table<SigningKey> = Table::new("signing_key");
pub const SIGNING_KEY_ID: &str = "current";
/// Accounts' runs of failed sign-ins, by user id (none after a successful one).
pub const LOGIN_FAILURES: Table<LoginFailures> = Table::new("login_failures");

/// What a successful command answers.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum Output {
    User(User),
    Session(Session),
    /// A self-service registration for an email that has an account: nothing was created,
    /// the owner was told.
    EmailTaken,
    /// A refresh token presented again after it was exchanged: its session was revoked.
    SessionRevokedOnReuse,
    Done,
}

pub struct Identity;

type Applied = Result<Result<Output, Rejection>, StoreError>;

impl StateMachine for Identity {
    type Command = Command;
    type Output = Output;

    fn apply(&self, tx: &mut dyn Transaction, command: &Command, meta: &CommandMeta) -> Applied {
        match command {
            Command::Register {
                user_id,
                email,
                name,
                password_hash,
                roles,
                quiet_if_taken,
            } => {
                if let Some(owner) = EMAILS.get(tx, email)? {
                    if *quiet_if_taken {
                        let data = events::RegistrationAttempted {
                            user_id: &owner,
                            email,
                        };
                        tx.emit(
                            TOPIC,
                            meta.event(events::REGISTRATION_ATTEMPTED, &owner, 1, data)?,
                        );
                        return Ok(Ok(Output::EmailTaken));
                    }
                    return Ok(Err(Rejection::conflict(
                        "email_taken",
                        Some("email"),
                        "an account with this email exists",
                    )));
                }
                let user = User {
                    id: user_id.clone(),
                    email: email.clone(),
                    name: name.clone(),
                    password_hash: password_hash.clone(),
                    roles: roles.clone(),
                    created_at_ms: meta.at_ms,
                };
                USERS.put(tx, user_id, &user)?;
                EMAILS.put(tx, email, user_id);
                let data = events::UserRegistered {
                    user_id,
                    email,
                    name,
                    roles,
                };
                tx.emit(
                    TOPIC,
                    meta.event(events::USER_REGISTERED, user_id, 1, data)?,
                );
                Ok(Ok(Output::User(user)))
            }
            Command::StartSession {
                session_id,
                user_id,
                refresh_hash,
                expires_at_ms,
            } => {
                if USERS.get(tx, user_id)?.is_none() {
                    return Ok(Err(Rejection::not_found("user")));
                }
                let session = Session {
                    id: session_id.clone(),
                    user_id: user_id.clone(),
                    refresh_hash: refresh_hash.clone(),
                    expires_at_ms: *expires_at_ms,
                    revoked: false,
                };
                SESSIONS.put(tx, session_id, &session)?;
                USER_SESSIONS.put(tx, &format!("{user_id}/{session_id}"), session_id)?;
                LOGIN_FAILURES.delete(tx, user_id);
                let data = events::UserLoggedIn {
                    user_id,
                    session_id,
                };
                tx.emit(TOPIC, meta.event(events::USER_LOGGED_IN, user_id, 1, data)?);
                Ok(Ok(Output::Session(session)))
            }
            Command::RotateSession {
                session_id,
                presented_hash,
                new_hash,
                expires_at_ms,
            } => {
                let invalid = || {
                    Ok(Err(Rejection::unauthenticated(
                        "invalid_refresh_token",
                        "the refresh token is unknown, used, expired or revoked",
                    )))
                };
                let Some(mut session) = SESSIONS.get(tx, session_id)? else {
                    return invalid();
                };
                if session.revoked || session.expires_at_ms <= meta.at_ms {
                    return invalid();
                }
                if session.refresh_hash != *presented_hash {
                    // An earlier token of this session, exchanged already, came back: it
                    // leaked (or the thief used the latest first). Either way no token of
                    // the family can be trusted any more (OAuth 2.0 Security BCP, 4.14).
                    session.revoked = true;
                    SESSIONS.put(tx, session_id, &session)?;
                    let data = events::RefreshTokenReused {
                        user_id: &session.user_id,
                        session_id,
                    };
                    tx.emit(
                        TOPIC,
                        meta.event(events::REFRESH_TOKEN_REUSED, &session.user_id, 1, data)?,
                    );
                    return Ok(Ok(Output::SessionRevokedOnReuse));
                }
                session.refresh_hash = new_hash.clone();
                session.expires_at_ms = *expires_at_ms;
                SESSIONS.put(tx, session_id, &session)?;
                Ok(Ok(Output::Session(session)))
            }
            Command::RevokeSession {
                session_id,
                user_id,
            } => {
                if let Some(mut session) = SESSIONS.get(tx, session_id)?
                    && session.user_id == *user_id
                {
                    session.revoked = true;
                    SESSIONS.put(tx, session_id, &session)?;
                }
                Ok(Ok(Output::Done))
            }
            Command::ChangePassword {
                user_id,
                password_hash,
                keep_session,
            } => {
                let Some(mut user) = USERS.get(tx, user_id)? else {
                    return Ok(Err(Rejection::not_found("user")));
                };
                user.password_hash = password_hash.clone();
                USERS.put(tx, user_id, &user)?;
                for session_id in USER_SESSIONS.scan_prefix(tx, &format!("{user_id}/"))? {
                    if keep_session.as_ref() == Some(&session_id) {
                        continue;
                    }
                    if let Some(mut session) = SESSIONS.get(tx, &session_id)?
                        && !session.revoked
                    {
                        session.revoked = true;
                        SESSIONS.put(tx, &session_id, &session)?;
                    }
                }
                let data = events::PasswordChanged { user_id };
                tx.emit(
                    TOPIC,
                    meta.event(events::PASSWORD_CHANGED, user_id, 1, data)?,
                );
                Ok(Ok(Output::User(user)))
            }
            Command::SetRoles { user_id, roles } => {
                let Some(mut user) = USERS.get(tx, user_id)? else {
                    return Ok(Err(Rejection::not_found("user")));
                };
                user.roles = roles.clone();
                USERS.put(tx, user_id, &user)?;
                let data = events::RolesChanged { user_id, roles };
                tx.emit(TOPIC, meta.event(events::ROLES_CHANGED, user_id, 1, data)?);
                Ok(Ok(Output::User(user)))
            }
            Command::RecordLoginFailure { user_id } => {
                if USERS.get(tx, user_id)?.is_some() {
                    let mut failures = LOGIN_FAILURES.get(tx, user_id)?.unwrap_or_default();
                    failures.record(meta.at_ms);
                    LOGIN_FAILURES.put(tx, user_id, &failures)?;
                }
                Ok(Ok(Output::Done))
            }
            Command::InstallSigningKey { key } => {
                // No event: key material never goes to a topic.
                if SIGNING_KEY.get(tx, SIGNING_KEY_ID)?.is_none() {
                    SIGNING_KEY.put(tx, SIGNING_KEY_ID, key)?;
                }
                Ok(Ok(Output::Done))
            }
        }
    }
}

//! Identity: accounts, passwords (argon2id), sessions, access tokens (EdDSA JWT) and refresh
//! tokens (rotated on use, revoked on logout), roles. Events on `identity-events`.

pub mod apply;
pub mod commands;
pub mod events;
pub mod keys;
pub mod login_throttle;
pub mod model;
pub mod password_policy;
pub mod routes;
pub mod signing_key;
pub mod tokens;

use crate::platform::http::{ApiError, RequestContext, Role};
use crate::platform::{Engine, Store, StoreError, answer};
use apply::{EMAILS, Identity, Output};
use commands::Command;
use model::User;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The producer id identity's outbox relay publishes with (fixed, so a restarted relay's
/// re-sends are recognised as duplicates).
pub const PRODUCER_ID: i64 = 0x4000_0000_0000_0001;

pub struct IdentityService {
    pub engine: Arc<Engine<Identity>>,
    /// Signs and verifies access tokens with the key identity's state holds.
    pub keys: keys::KeyRing,
    /// Where this node keeps its copy of the signing key (`<services_dir>/identity-keys`).
    keys_dir: PathBuf,
    /// A password hash to verify against when the email is unknown (constant-time-ish login).
    dummy_hash: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] tokens::KeyError),
}

impl IdentityService {
    /// Opens identity's store under `<services_dir>/identity`. It signs no token until a
    /// signing key is installed: see [`IdentityService::ensure_signing_key`].
    pub fn open(services_dir: &Path) -> Result<Arc<IdentityService>, OpenError> {
        let store = Arc::new(Store::open(&services_dir.join("identity"))?);
        let engine = Engine::open(store, Identity)?;
        let keys = keys::KeyRing::new(engine.clone());
        let dummy_hash = argon2::password_hash::PasswordHasher::hash_password(
            &argon2::Argon2::default(),
            b"no such account",
        )
        .map(|hash| hash.to_string())
        .map_err(|error| StoreError::Task(error.to_string()))?;
        Ok(Arc::new(IdentityService {
            engine,
            keys,
            keys_dir: services_dir.join("identity-keys"),
            dummy_hash,
        }))
    }

    /// At start: installs a signing key unless identity's state holds one (the key file of
    /// an older data directory, else a fresh key; the first installed wins cluster-wide),
    /// and writes the installed key to `<services_dir>/identity-keys/`. It submits a command,
    /// so it runs once the engine takes commands (in a cluster, after it joined its group).
    /// Returns the installed key (the composition root derives the record signing key from
    /// it).
    pub fn ensure_signing_key(&self) -> Result<signing_key::SigningKey, OpenError> {
        Ok(keys::ensure_installed(&self.engine, &self.keys_dir)?)
    }

    /// Whether the session an access token names is still live (not logged out, not revoked
    /// by a password change), so logout takes effect before the token expires.
    /// Whether a token's session is live. A session unknown here may have been opened
    /// through another node a moment ago: then this replica first catches up with the
    /// group's leader (a read barrier) and looks again.
    pub async fn session_active(
        &self,
        session_id: &str,
        user_id: &str,
    ) -> Result<bool, StoreError> {
        if let Some(active) = self.session_state(session_id, user_id)? {
            return Ok(active);
        }
        self.engine.read_barrier().await?;
        Ok(self.session_state(session_id, user_id)?.unwrap_or(false))
    }

    fn session_state(&self, session_id: &str, user_id: &str) -> Result<Option<bool>, StoreError> {
        Ok(apply::SESSIONS
            .get(self.engine.store().as_ref(), session_id)?
            .map(|session| !session.revoked && session.user_id == user_id))
    }

    /// Identity's routes; each first catches this node up with the group's leader (a user
    /// registered through another node logs in here at once).
    pub fn router(self: &Arc<Self>) -> axum::Router {
        routes::router(self.clone()).layer(axum::middleware::from_fn_with_state(
            self.engine.clone(),
            crate::platform::http::read_barrier::<apply::Identity>,
        ))
    }

    /// Validates, hashes the password and registers; the path of the bootstrap admin and
    /// `commerce user create`, which are told plainly when the email is taken.
    pub async fn register(
        &self,
        email: &str,
        password: &str,
        name: &str,
        roles: Vec<Role>,
        context: &RequestContext,
    ) -> Result<User, ApiError> {
        match self
            .submit_registration(email, password, name, roles, false, context)
            .await?
        {
            (_, Output::User(user)) => Ok(user),
            _ => Err(ApiError::Store(StoreError::Task(
                "registration answered without a user".into(),
            ))),
        }
    }

    /// A customer registering: answered the same whether the email is new or has an
    /// account already (then nothing is created and its owner is told), so the answer does
    /// not tell which emails have accounts. The password is hashed either way, so neither
    /// does the time taken.
    pub async fn register_customer(
        &self,
        email: &str,
        password: &str,
        name: &str,
        context: &RequestContext,
    ) -> Result<routes::UserView, ApiError> {
        let roles = vec![Role::Customer];
        match self
            .submit_registration(email, password, name, roles.clone(), true, context)
            .await?
        {
            (_, Output::User(user)) => Ok(user.into()),
            (command, Output::EmailTaken) => match command {
                Command::Register {
                    user_id,
                    email,
                    name,
                    ..
                } => Ok(routes::UserView {
                    id: user_id,
                    email,
                    name,
                    roles,
                }),
                _ => Err(ApiError::Store(StoreError::Task(
                    "registration answered for another command".into(),
                ))),
            },
            _ => Err(ApiError::Store(StoreError::Task(
                "registration answered without a user".into(),
            ))),
        }
    }

    /// Validates, hashes the password and submits the registration; returns the command
    /// with the answer.
    async fn submit_registration(
        &self,
        email: &str,
        password: &str,
        name: &str,
        roles: Vec<Role>,
        quiet_if_taken: bool,
        context: &RequestContext,
    ) -> Result<(Command, Output), ApiError> {
        let (email, name) = routes::validate_registration(email, password, name)?;
        let password_hash = routes::hash_password(password.to_string()).await?;
        let command = Command::Register {
            user_id: uuid::Uuid::new_v4().to_string(),
            email: email.as_str().to_string(),
            name,
            password_hash,
            roles,
            quiet_if_taken,
        };
        let output = answer(self.engine.submit(command.clone(), context.command()).await)?;
        Ok((command, output))
    }

    /// Creates an admin with this email unless an account with it exists. Returns whether it
    /// created one.
    pub async fn ensure_admin(&self, email: &str, password: &str) -> Result<bool, ApiError> {
        self.engine.read_barrier().await?;
        if let Ok(parsed) = model::Email::parse(email)
            && EMAILS
                .get(self.engine.store().as_ref(), parsed.as_str())?
                .is_some()
        {
            return Ok(false);
        }
        let context = RequestContext {
            correlation_id: uuid::Uuid::new_v4().to_string(),
            traceparent: None,
        };
        match self
            .register(
                email,
                password,
                "Administrator",
                vec![Role::Admin],
                &context,
            )
            .await
        {
            Ok(_) => Ok(true),
            // Another node of the cluster created it first.
            Err(ApiError::Rejected(rejection)) if rejection.code == "email_taken" => Ok(false),
            Err(error) => Err(error),
        }
    }
}

//! Identity's HTTP routes, mounted by the gateway under `/api/identity`.

use super::IdentityService;
use super::apply::{EMAILS, LOGIN_FAILURES, Output, USERS};
use super::commands::Command;
use super::model::{Email, User, check_name};
use super::password_policy::check_password;
use super::tokens::{self, ACCESS_TTL_SECS, REFRESH_TTL_MS};
use crate::platform::http::{Admin, ApiError, Body, Caller, RequestContext, Role, answer};
use crate::platform::{Rejection, StoreError, time};
use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

pub fn router(service: Arc<IdentityService>) -> Router {
    Router::new()
        .route("/register", post(register))
        .route("/login", post(login))
        .route("/refresh", post(refresh))
        .route("/logout", post(logout))
        .route("/me", get(me))
        .route("/password", post(change_password))
        .route("/users", get(list_users))
        .route("/users/{id}/roles", put(set_roles))
        .with_state(service)
}

#[derive(Deserialize, ToSchema)]
pub struct RegisterRequest {
    pub email: String,
    pub password: String,
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub name: String,
    pub roles: Vec<Role>,
}

impl From<User> for UserView {
    fn from(user: User) -> UserView {
        UserView {
            id: user.id,
            email: user.email,
            name: user.name,
            roles: user.roles,
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
}

#[derive(Deserialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Deserialize, ToSchema)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    pub new_password: String,
}

#[derive(Deserialize, ToSchema)]
pub struct RolesRequest {
    pub roles: Vec<String>,
}

/// Register a customer account. An email that has an account already is answered the same
/// (nothing is created; the account's owner is told), so the answer does not reveal which
/// emails have accounts.
#[utoipa::path(post, path = "/api/identity/register", request_body = RegisterRequest,
    responses((status = 201, body = UserView), (status = 400)), tag = "identity")]
pub async fn register(
    State(service): State<Arc<IdentityService>>,
    context: RequestContext,
    Body(request): Body<RegisterRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let user = service
        .register_customer(&request.email, &request.password, &request.name, &context)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(user)))
}

/// Exchange email and password for an access token and a refresh token.
#[utoipa::path(post, path = "/api/identity/login", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse), (status = 401),
        (status = 429, description = "too many failed sign-ins for the account")), tag = "identity")]
pub async fn login(
    State(service): State<Arc<IdentityService>>,
    context: RequestContext,
    Body(request): Body<LoginRequest>,
) -> Result<axum::Json<TokenResponse>, ApiError> {
    let bad = || Rejection::unauthenticated("invalid_credentials", "wrong email or password");
    let email = Email::parse(&request.email).map_err(|_| bad())?;
    let store = service.engine.store();
    let user = match EMAILS.get(store.as_ref(), email.as_str())? {
        Some(id) => USERS.get(store.as_ref(), &id)?,
        None => None,
    };
    let Some(user) = user else {
        // Spend the same time as a wrong password, so the answer's timing does not tell
        // which emails have accounts.
        let _ = verify_password(&request.password, &service.dummy_hash).await;
        return Err(bad().into());
    };
    // A locked account refuses even the right password: otherwise the lock would only
    // slow guessing down, and the guess that unlocks would still be told it was right.
    let failures = LOGIN_FAILURES.get(store.as_ref(), &user.id)?;
    if let Some(seconds) = failures.and_then(|f| f.locked_for_secs(time::now_ms())) {
        return Err(ApiError::Throttled {
            code: "too_many_attempts",
            message: format!("too many failed sign-ins for this account; try again in {seconds} s"),
            retry_after_secs: seconds,
        });
    }
    if !verify_password(&request.password, &user.password_hash).await? {
        let command = Command::RecordLoginFailure {
            user_id: user.id.clone(),
        };
        answer(service.engine.submit(command, context.command()).await)?;
        return Err(bad().into());
    }
    // Before the session starts: without a key the login changes nothing.
    let signer = service.keys.signer()?;
    let session_id = uuid::Uuid::new_v4().to_string();
    let (refresh_token, refresh_hash) = tokens::new_refresh_token(&session_id).map_err(internal)?;
    let now = time::now_ms();
    let command = Command::StartSession {
        session_id: session_id.clone(),
        user_id: user.id.clone(),
        refresh_hash,
        expires_at_ms: now + REFRESH_TTL_MS,
    };
    answer(service.engine.submit(command, context.command()).await)?;
    token_response(&signer, &user, &session_id, refresh_token, now)
}

/// Exchange a refresh token for new tokens; the presented refresh token stops working.
#[utoipa::path(post, path = "/api/identity/refresh", request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse), (status = 401)), tag = "identity")]
pub async fn refresh(
    State(service): State<Arc<IdentityService>>,
    context: RequestContext,
    Body(request): Body<RefreshRequest>,
) -> Result<axum::Json<TokenResponse>, ApiError> {
    let Some((session_id, presented_hash)) = tokens::parse_refresh_token(&request.refresh_token)
    else {
        return Err(
            Rejection::unauthenticated("invalid_refresh_token", "malformed refresh token").into(),
        );
    };
    // Before the rotation: without a key the presented refresh token must stay usable.
    let signer = service.keys.signer()?;
    let (refresh_token, new_hash) = tokens::new_refresh_token(&session_id).map_err(internal)?;
    let now = time::now_ms();
    let command = Command::RotateSession {
        session_id: session_id.clone(),
        presented_hash,
        new_hash,
        expires_at_ms: now + REFRESH_TTL_MS,
    };
    let session = match answer(service.engine.submit(command, context.command()).await)? {
        Output::Session(session) => session,
        Output::SessionRevokedOnReuse => {
            return Err(Rejection::unauthenticated(
                "invalid_refresh_token",
                "this refresh token was used already; its session is revoked, sign in again",
            )
            .into());
        }
        _ => return Err(internal("rotation answered without a session")),
    };
    let Some(user) = USERS.get(service.engine.store().as_ref(), &session.user_id)? else {
        return Err(
            Rejection::unauthenticated("invalid_refresh_token", "the account is gone").into(),
        );
    };
    token_response(&signer, &user, &session_id, refresh_token, now)
}

/// Revoke the caller's session and its refresh token.
#[utoipa::path(post, path = "/api/identity/logout", responses((status = 204), (status = 401)),
    security(("bearer" = [])), tag = "identity")]
pub async fn logout(
    State(service): State<Arc<IdentityService>>,
    context: RequestContext,
    Caller(caller): Caller,
) -> Result<StatusCode, ApiError> {
    if let Some(session_id) = caller.session_id {
        let command = Command::RevokeSession {
            session_id,
            user_id: caller.user_id,
        };
        answer(service.engine.submit(command, context.command()).await)?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's account.
#[utoipa::path(get, path = "/api/identity/me", responses((status = 200, body = UserView), (status = 401)),
    security(("bearer" = [])), tag = "identity")]
pub async fn me(
    State(service): State<Arc<IdentityService>>,
    Caller(caller): Caller,
) -> Result<axum::Json<UserView>, ApiError> {
    match USERS.get(service.engine.store().as_ref(), &caller.user_id)? {
        Some(user) => Ok(axum::Json(user.into())),
        None => Err(Rejection::not_found("user").into()),
    }
}

/// Change the caller's password (the current one is required).
#[utoipa::path(post, path = "/api/identity/password", request_body = ChangePasswordRequest,
    responses((status = 204), (status = 400), (status = 401)), security(("bearer" = [])), tag = "identity")]
pub async fn change_password(
    State(service): State<Arc<IdentityService>>,
    context: RequestContext,
    Caller(caller): Caller,
    Body(request): Body<ChangePasswordRequest>,
) -> Result<StatusCode, ApiError> {
    check_password("new_password", &request.new_password)?;
    let Some(user) = USERS.get(service.engine.store().as_ref(), &caller.user_id)? else {
        return Err(Rejection::not_found("user").into());
    };
    if !verify_password(&request.current_password, &user.password_hash).await? {
        return Err(Rejection {
            field: Some("current_password".to_string()),
            ..Rejection::unauthenticated("invalid_credentials", "the current password is wrong")
        }
        .into());
    }
    let password_hash = hash_password(request.new_password).await?;
    let command = Command::ChangePassword {
        user_id: user.id,
        password_hash,
        keep_session: caller.session_id,
    };
    answer(service.engine.submit(command, context.command()).await)?;
    Ok(StatusCode::NO_CONTENT)
}

/// All accounts (admin).
#[utoipa::path(get, path = "/api/identity/users", responses((status = 200, body = [UserView]), (status = 403)),
    security(("bearer" = [])), tag = "identity")]
pub async fn list_users(
    State(service): State<Arc<IdentityService>>,
    _admin: Admin,
) -> Result<axum::Json<Vec<UserView>>, ApiError> {
    let users = USERS.scan(service.engine.store().as_ref())?;
    Ok(axum::Json(users.into_iter().map(UserView::from).collect()))
}

/// Replace a user's roles (admin).
#[utoipa::path(put, path = "/api/identity/users/{id}/roles", request_body = RolesRequest,
    responses((status = 200, body = UserView), (status = 400), (status = 403), (status = 404)),
    security(("bearer" = [])), tag = "identity")]
pub async fn set_roles(
    State(service): State<Arc<IdentityService>>,
    context: RequestContext,
    _admin: Admin,
    Path(user_id): Path<String>,
    Body(request): Body<RolesRequest>,
) -> Result<axum::Json<UserView>, ApiError> {
    let mut roles = Vec::new();
    for role in &request.roles {
        let role = Role::parse(role)
            .ok_or_else(|| Rejection::invalid("roles", format!("unknown role {role:?}")))?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    let command = Command::SetRoles { user_id, roles };
    match answer(service.engine.submit(command, context.command()).await)? {
        Output::User(user) => Ok(axum::Json(user.into())),
        _ => Err(internal("role change answered without a user")),
    }
}

pub(crate) async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|error| internal(error.to_string()))
    })
    .await
    .map_err(|error| internal(error.to_string()))?
}

async fn verify_password(password: &str, stored: &str) -> Result<bool, ApiError> {
    let (password, stored) = (password.to_string(), stored.to_string());
    tokio::task::spawn_blocking(move || match PasswordHash::new(&stored) {
        Ok(hash) => Ok(Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()),
        Err(error) => Err(internal(format!("stored password hash: {error}"))),
    })
    .await
    .map_err(|error| internal(error.to_string()))?
}

fn internal(error: impl ToString) -> ApiError {
    ApiError::Store(StoreError::Task(error.to_string()))
}

/// Validates a registration's fields; shared by the route, the bootstrap admin and the CLI.
pub(crate) fn validate_registration(
    email: &str,
    password: &str,
    name: &str,
) -> Result<(Email, String), Rejection> {
    let email = Email::parse(email)?;
    check_password("password", password)?;
    let name = check_name(name)?;
    Ok((email, name))
}

/// The login/refresh answer: a fresh access token for the session plus its refresh token.
fn token_response(
    signer: &tokens::Signer,
    user: &User,
    session_id: &str,
    refresh_token: String,
    now: i64,
) -> Result<axum::Json<TokenResponse>, ApiError> {
    let access_token = signer
        .issue(&user.id, session_id, &user.roles, now)
        .map_err(internal)?;
    Ok(axum::Json(TokenResponse {
        access_token,
        refresh_token,
        token_type: "Bearer",
        expires_in: ACCESS_TTL_SECS,
    }))
}

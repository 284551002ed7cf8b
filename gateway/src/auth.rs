//! Bearer-token authentication. A valid access token becomes a `Principal` in the request's
//! extensions; a request without a token goes on anonymous (the route decides whether that is
//! enough); a request with a bad token (malformed, expired, tampered, `alg: none`, signed by
//! another key) or one whose session was logged out is answered 401 and reaches no service.
//!
//! Deciding and answering are two layers with the rate limit between them ([`layer`] marks
//! the request with a [`TokenRefused`], [`refuse`] answers it), so that requests with a bad
//! token count against their IP's budget like anonymous ones: a client cannot escape the
//! limit, nor probe tokens without one, by sending garbage in `Authorization`.

use crate::error::error_response;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use commerce_services::identity::IdentityService;
use commerce_services::identity::tokens::Signer;
use commerce_services::platform::http::Principal;
use std::sync::Arc;

#[derive(Clone)]
pub struct Authenticator {
    /// Asked for the installed signing key (read at each request, so a key installed by
    /// another node's command is used without a restart) and whether a token's session is still live. A local read of the identity store: a
    /// signature proves who issued the token, only the store knows about a logout since.
    pub identity: Arc<IdentityService>,
}

/// Why a request's token was refused; answered by [`refuse`] once the rate limit counted it.
#[derive(Debug, Clone, Copy)]
pub struct TokenRefused {
    status: StatusCode,
    code: &'static str,
    message: &'static str,
}

impl TokenRefused {
    fn invalid(message: &'static str) -> TokenRefused {
        TokenRefused {
            status: StatusCode::UNAUTHORIZED,
            code: "invalid_token",
            message,
        }
    }

    fn unavailable(code: &'static str, message: &'static str) -> TokenRefused {
        TokenRefused {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code,
            message,
        }
    }
}

impl IntoResponse for TokenRefused {
    fn into_response(self) -> Response {
        let mut response = error_response(self.status, self.code, self.message, None);
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        response
    }
}

/// Authenticates the request: a `Principal` for a valid token, a [`TokenRefused`] for a bad
/// one, nothing without a token.
pub async fn layer(
    State(auth): State<Authenticator>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(header) = request.headers().get(AUTHORIZATION) {
        match authenticate(&auth, header).await {
            Ok(principal) => {
                request.extensions_mut().insert(principal);
            }
            Err(refused) => {
                request.extensions_mut().insert(refused);
            }
        }
    }
    next.run(request).await
}

/// Answers a request whose token was refused; lets the others through.
pub async fn refuse(request: Request, next: Next) -> Response {
    match request.extensions().get::<TokenRefused>() {
        Some(refused) => refused.into_response(),
        None => next.run(request).await,
    }
}

async fn authenticate(
    auth: &Authenticator,
    header: &axum::http::HeaderValue,
) -> Result<Principal, TokenRefused> {
    let token = header
        .to_str()
        .ok()
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or(TokenRefused::invalid(
            "the Authorization header must be `Bearer <access token>`",
        ))?;
    let signer = current_signer(&auth.identity)
        .map_err(|no_signer| TokenRefused::unavailable(no_signer.code, no_signer.message))?;
    let principal = signer.verifier().verify(token).map_err(|error| {
        tracing::info!(%error, "rejected an access token");
        TokenRefused::invalid("the access token is invalid or expired")
    })?;
    let live = match &principal.session_id {
        Some(session) => {
            auth.identity
                .session_active(session, &principal.user_id)
                .await
        }
        None => Ok(false),
    };
    match live {
        Ok(true) => Ok(principal),
        Ok(false) => Err(TokenRefused::invalid(
            "the session of this access token has ended; log in again",
        )),
        Err(error) => {
            tracing::error!(%error, "cannot check a session");
            Err(TokenRefused::unavailable(
                "store_unavailable",
                "cannot check the session",
            ))
        }
    }
}

/// The signer for the installed key; 503 while there is none (a token may come from a node
/// whose key installation has not reached this one yet) or the store cannot be read.
fn current_signer(identity: &IdentityService) -> Result<Arc<Signer>, NoSigner> {
    match identity.keys.current() {
        Ok(Some(signer)) => Ok(signer),
        Ok(None) => Err(NoSigner {
            code: "signing_key_unavailable",
            message: "no token signing key is installed yet; try again shortly",
        }),
        Err(error) => {
            tracing::error!(%error, "cannot read the signing key");
            Err(NoSigner {
                code: "store_unavailable",
                message: "cannot read the token signing key",
            })
        }
    }
}

/// Why there is no signer, answered 503.
struct NoSigner {
    code: &'static str,
    message: &'static str,
}

impl IntoResponse for NoSigner {
    fn into_response(self) -> Response {
        error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            self.code,
            self.message,
            None,
        )
    }
}

/// `GET /.well-known/jwks.json`: the public half of the installed signing key.
pub async fn jwks(State(identity): State<Arc<IdentityService>>) -> Response {
    match current_signer(&identity) {
        Ok(signer) => axum::Json(signer.jwks().clone()).into_response(),
        Err(no_signer) => no_signer.into_response(),
    }
}

//! Bearer-token authentication. A valid access token becomes a `Principal` in the request's
//! extensions; a request without a token goes on anonymous (the route decides whether that is
//! enough); a request with a bad token (malformed, expired, tampered, `alg: none`, signed by
//! another key) or one whose session was logged out is answered 401 here and reaches no
//! service.

use crate::error::error_response;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use commerce_services::identity::IdentityService;
use commerce_services::identity::tokens::Signer;
use std::sync::Arc;

#[derive(Clone)]
pub struct Authenticator {
    /// Asked for the installed signing key (read at each request, so a key installed by
    /// another node's command is used without a restart) and whether a token's session is still live. A local read of the identity store: a
    /// signature proves who issued the token, only the store knows about a logout since.
    pub identity: Arc<IdentityService>,
}

pub async fn layer(
    State(auth): State<Authenticator>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(header) = request.headers().get(AUTHORIZATION) {
        let token = header
            .to_str()
            .ok()
            .and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            })
            .map(str::trim);
        let Some(token) = token else {
            return unauthorized("the Authorization header must be `Bearer <access token>`");
        };
        let signer = match current_signer(&auth.identity) {
            Ok(signer) => signer,
            Err(no_signer) => return no_signer.into_response(),
        };
        match signer.verifier().verify(token) {
            Ok(principal) => {
                let live = match &principal.session_id {
                    Some(session) => {
                        auth.identity
                            .session_active(session, &principal.user_id)
                            .await
                    }
                    None => Ok(false),
                };
                match live {
                    Ok(true) => {}
                    Ok(false) => {
                        return unauthorized(
                            "the session of this access token has ended; log in again",
                        );
                    }
                    Err(error) => {
                        tracing::error!(%error, "cannot check a session");
                        return error_response(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "store_unavailable",
                            "cannot check the session",
                            None,
                        );
                    }
                }
                request.extensions_mut().insert(principal);
            }
            Err(error) => {
                tracing::info!(%error, "rejected an access token");
                return unauthorized("the access token is invalid or expired");
            }
        }
    }
    next.run(request).await
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

fn unauthorized(message: &str) -> Response {
    let mut response = error_response(StatusCode::UNAUTHORIZED, "invalid_token", message, None);
    response.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    response
}

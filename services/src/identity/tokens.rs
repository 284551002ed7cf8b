//! Access tokens (EdDSA-signed JWTs) and refresh tokens.
//!
//! The signing key is an Ed25519 key held in identity's replicated state (installed once by a
//! command, see [`super::keys`]), so every node signs and verifies with the same key and
//! tokens issued before a restart stay valid. The public half is published as JWKS, and the
//! gateway validates tokens with it (asymmetric, so anything holding JWKS can verify but not
//! sign).
//!
//! A refresh token is `<session id>.<random secret>`; only the secret's SHA-256 is stored.

use super::signing_key::{SigningKey, SigningKeyError};
use crate::platform::http::{Principal, Role};
use crate::platform::{Rejection, StoreError};
use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const ISSUER: &str = "commerce-identity";
/// Access tokens live briefly: logout revokes the refresh token, and a stolen access token is
/// only good until it expires.
pub const ACCESS_TTL_SECS: i64 = 15 * 60;
pub const REFRESH_TTL_MS: i64 = 30 * 24 * 3600 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    SigningKey(#[from] SigningKeyError),
    #[error("no randomness: {0}")]
    Random(String),
    #[error("signing key: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the signing key installation was refused: {0}")]
    Refused(Rejection),
    #[error("a signing key was submitted but none is installed")]
    NotInstalled,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub sid: String,
    pub roles: Vec<Role>,
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
}

/// Issues access tokens with one key, and verifies them (identity holds it, through
/// [`super::keys::KeyRing`]).
pub struct Signer {
    key: EncodingKey,
    kid: String,
    jwks: JwkSet,
    verifier: Verifier,
}

impl Signer {
    pub fn new(signing_key: &SigningKey) -> Result<Signer, KeyError> {
        let key = EncodingKey::from_ed_der(signing_key.der());
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA)?;
        // The key id is the public key's thumbprint: stable across restarts, new per key.
        let thumb = Sha256::digest(serde_json::to_vec(&jwk.algorithm).unwrap_or_default());
        let kid = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(thumb.get(..12).unwrap_or_default());
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(KeyAlgorithm::EdDSA);
        let jwks = JwkSet { keys: vec![jwk] };
        let verifier = Verifier::from_jwks(&jwks)?;
        Ok(Signer {
            key,
            kid,
            jwks,
            verifier,
        })
    }

    pub fn issue(
        &self,
        user_id: &str,
        session_id: &str,
        roles: &[Role],
        now_ms: i64,
    ) -> Result<String, KeyError> {
        let iat = now_ms / 1000;
        let claims = Claims {
            sub: user_id.to_string(),
            sid: session_id.to_string(),
            roles: roles.to_vec(),
            iss: ISSUER.to_string(),
            iat,
            exp: iat + ACCESS_TTL_SECS,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, &claims, &self.key)?)
    }

    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// The verifier for this key, from its public half only.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }
}

/// Validates access tokens: EdDSA only (so `alg: none` and HMAC tricks fail), signature by
/// one of the known keys, issuer, and expiry with no leeway.
#[derive(Clone)]
pub struct Verifier {
    keys: Vec<(Option<String>, DecodingKey)>,
    validation: Validation,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid access token: {0}")]
pub struct TokenError(pub String);

impl Verifier {
    pub fn from_jwks(jwks: &JwkSet) -> Result<Verifier, KeyError> {
        let keys = jwks
            .keys
            .iter()
            .map(|jwk| Ok((jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk)?)))
            .collect::<Result<Vec<_>, KeyError>>()?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = 0;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        Ok(Verifier { keys, validation })
    }

    pub fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|error| TokenError(error.to_string()))?;
        let mut last_error = TokenError("no signing key".to_string());
        for (kid, key) in &self.keys {
            if header.kid.is_some() && kid.is_some() && header.kid != *kid {
                continue;
            }
            match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
                Ok(data) => {
                    return Ok(Principal {
                        user_id: data.claims.sub,
                        session_id: Some(data.claims.sid),
                        roles: data.claims.roles,
                    });
                }
                Err(error) => last_error = TokenError(error.to_string()),
            }
        }
        Err(last_error)
    }
}

/// A fresh refresh token for `session_id`, and the hash to store.
pub fn new_refresh_token(session_id: &str) -> Result<(String, String), KeyError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|error| KeyError::Random(error.to_string()))?;
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let hash = hash_secret(&secret);
    Ok((format!("{session_id}.{secret}"), hash))
}

/// Splits a presented refresh token into (session id, hash of its secret).
pub fn parse_refresh_token(token: &str) -> Option<(String, String)> {
    let (session_id, secret) = token.split_once('.')?;
    if session_id.is_empty() || secret.is_empty() {
        return None;
    }
    Some((session_id.to_string(), hash_secret(secret)))
}

fn hash_secret(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

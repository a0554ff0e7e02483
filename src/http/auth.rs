//! [`Caller`]: the role a request runs as, from its `Authorization: Bearer <API key>` header.
//! The key's role has over HTTP exactly the privileges it has over the wire protocol.

use crate::http::Api;
use crate::http::error::ApiError;
use crate::roles::Actor;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

/// The role of an authenticated request.
#[derive(Debug, Clone)]
pub struct Caller(pub Actor);

impl FromRequestParts<Api> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthenticated(
                "an API key is required: send Authorization: Bearer <key> (CREATE API KEY makes one)",
            ));
        };
        let secret = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| ApiError::unauthenticated("Authorization must be Bearer <API key>"))?;
        let user = api.engine().users().authenticate_key(secret)?;
        Ok(Caller(Actor::Role(user)))
    }
}

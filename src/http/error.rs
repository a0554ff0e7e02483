//! [`ApiError`]: every failure of the HTTP API as JSON, `{"error": {"code", "message",
//! "status"}}`, with the PostgreSQL SQLSTATE the same failure has over the wire and an HTTP
//! status that fits it.

use crate::error::Error;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of an error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// One error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The PostgreSQL SQLSTATE (e.g. `42P01`, `28P01`).
    pub code: String,
    /// The message, as the wire protocol gives it.
    pub message: String,
    /// The HTTP status, repeated.
    pub status: u16,
}

/// A failed request.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// An error with an explicit status and SQLSTATE.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 with SQLSTATE 22023: a request parameter with a bad value.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "22023", message)
    }

    /// 413 with SQLSTATE 54000: a body over the server's limit.
    pub fn too_large(limit: u64) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "54000",
            format!("request body is larger than the limit of {limit} bytes"),
        )
    }

    /// 401 with SQLSTATE 28000: no credentials.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "28000", message)
    }

    /// 404 for a path the API does not have.
    pub fn no_route(path: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "42704",
            format!("no endpoint {path}; see /openapi.json"),
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let code = error.sqlstate();
        ApiError {
            status: status_of(code),
            code,
            message: error.to_string(),
        }
    }
}

/// The HTTP status of a SQLSTATE.
fn status_of(code: &str) -> StatusCode {
    match code {
        "28P01" => StatusCode::UNAUTHORIZED,
        "28000" | "42501" => StatusCode::FORBIDDEN,
        "42P01" | "42704" | "42883" => StatusCode::NOT_FOUND,
        "42710" | "42P07" | "23505" | "40001" | "40P01" | "55006" => StatusCode::CONFLICT,
        "57014" | "53100" | "53200" | "53300" | "57P01" => StatusCode::SERVICE_UNAVAILABLE,
        "0A000" => StatusCode::NOT_IMPLEMENTED,
        _ if code.starts_with("XX") || code.starts_with("58") => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                status: self.status.as_u16(),
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tastedb\""),
            );
        }
        response
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::JsonRejection) -> Self {
        use axum::extract::rejection::JsonRejection::*;
        let message = rejection.body_text();
        match rejection {
            JsonDataError(_) => ApiError::new(StatusCode::BAD_REQUEST, "42804", message),
            JsonSyntaxError(_) => ApiError::new(StatusCode::BAD_REQUEST, "22P02", message),
            MissingJsonContentType(_) => {
                ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "22023", message)
            }
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "54000", message)
            }
            other => ApiError::new(other.status(), "22023", message),
        }
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_sqlstates() {
        let status = |e: Error| ApiError::from(e).status();
        assert_eq!(
            status(Error::UndefinedTable("t".into())),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(Error::InsufficientPrivilege("for table t".into())),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            status(Error::InvalidPassword("x".into())),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(Error::QueryCanceled("statement timeout".into())),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status(Error::Syntax("x".into())), StatusCode::BAD_REQUEST);
        assert_eq!(
            status(Error::DuplicateObject("x".into())),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status(Error::Internal("x".into())),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}

//! The one error type of the request paths, rendered as RFC 9457 problem+json.
//!
//! Every failure a client can see carries a stable `code` from [`Code`]; the list below is the
//! single place where codes are defined, and the `/docs` page renders it. Internal causes are
//! logged once, here, and never sent to the client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

macro_rules! codes {
    ($($variant:ident => ($status:expr, $text:literal, $doc:literal)),* $(,)?) => {
        /// Stable machine-readable error codes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Code { $($variant),* }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $text),* }
            }

            pub fn status(self) -> StatusCode {
                match self { $(Code::$variant => $status),* }
            }

            /// What the code means, for the API reference.
            pub fn description(self) -> &'static str {
                match self { $(Code::$variant => $doc),* }
            }
        }
    };
}

codes! {
    BadRequest => (StatusCode::BAD_REQUEST, "bad_request", "The request is malformed (bad path or query parameter, bad header)."),
    MalformedJson => (StatusCode::BAD_REQUEST, "malformed_json", "The body is not syntactically valid JSON."),
    Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "No valid access token: missing, malformed, wrongly signed, or its session was revoked."),
    TokenExpired => (StatusCode::UNAUTHORIZED, "token_expired", "The access token has expired; refresh it and retry."),
    InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials", "Unknown email or wrong password (deliberately indistinguishable)."),
    InvalidCode => (StatusCode::UNAUTHORIZED, "invalid_code", "The one-time code is wrong, expired, already used or out of attempts."),
    InvalidRefreshToken => (StatusCode::UNAUTHORIZED, "invalid_refresh_token", "The refresh token is unknown, expired or already used (reuse revokes the whole session)."),
    InvalidResetToken => (StatusCode::UNAUTHORIZED, "invalid_reset_token", "The password-reset token is unknown, expired or already used."),
    InvalidVerificationToken => (StatusCode::UNAUTHORIZED, "invalid_verification_token", "The email-verification token is unknown, expired, already used, or for an address the account no longer has."),
    Forbidden => (StatusCode::FORBIDDEN, "forbidden", "Authenticated, but this action needs a role or right the caller lacks."),
    Blocked => (StatusCode::FORBIDDEN, "blocked", "A block between the users forbids this (messaging, adding to a group)."),
    RequestDeclined => (StatusCode::FORBIDDEN, "request_declined", "The recipient declined this message request; further messages are refused."),
    EditWindowClosed => (StatusCode::FORBIDDEN, "edit_window_closed", "Messages can be edited for 15 minutes after sending."),
    DeleteWindowClosed => (StatusCode::FORBIDDEN, "delete_window_closed", "Messages can be deleted for everyone for 48 hours after sending."),
    CallNotAllowed => (StatusCode::FORBIDDEN, "call_not_allowed", "This call may not be made: a pending or declined message request, a block, a group or channel conversation, or oneself."),
    SignupClosed => (StatusCode::FORBIDDEN, "signup_closed", "New accounts are not accepted (PALAVER_SIGNUP is `closed`, or `invite` and there is no invitation)."),
    NotFound => (StatusCode::NOT_FOUND, "not_found", "No such resource, or the caller may not see it."),
    MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "The path exists but not with this method."),
    EmailTaken => (StatusCode::CONFLICT, "email_taken", "Another account uses this email address."),
    SlugTaken => (StatusCode::CONFLICT, "slug_taken", "Another workspace uses this slug."),
    AlreadyMember => (StatusCode::CONFLICT, "already_member", "The user is already a member of the workspace."),
    ClientMsgIdConflict => (StatusCode::CONFLICT, "client_msg_id_conflict", "This clientMsgId was already used for a message in another conversation."),
    ChannelExists => (StatusCode::CONFLICT, "channel_exists", "A channel with this phone number id is connected already."),
    TemplateExists => (StatusCode::CONFLICT, "template_exists", "A template with this name and language exists in the workspace."),
    LeadExists => (StatusCode::CONFLICT, "lead_exists", "Another lead of the workspace has this phone number (or is this app user)."),
    LeadInUse => (StatusCode::CONFLICT, "lead_in_use", "The lead has conversations and is kept while they exist."),
    TagExists => (StatusCode::CONFLICT, "tag_exists", "The workspace has a tag of this name."),
    ShortCodeTaken => (StatusCode::CONFLICT, "short_code_taken", "The workspace has a canned response with this short code."),
    AiNotEnabled => (StatusCode::CONFLICT, "ai_not_enabled", "The workspace has not opted in to AI analysis (`settings.ai.enabled`)."),
    AiKeyNotActive => (StatusCode::CONFLICT, "ai_key_not_active", "Only an active AI key can be rotated (this one is retiring or revoked)."),
    CampaignState => (StatusCode::CONFLICT, "campaign_state", "The campaign's state does not allow this (e.g. pausing one that is not running, changing one that is no longer a draft)."),
    LastOwner => (StatusCode::CONFLICT, "last_owner", "The workspace would be left without an owner."),
    RangeNotSatisfiable => (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable", "The Range header asks for bytes past the end of the file (see Content-Range for its size)."),
    RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout", "The request took too long to arrive or to be processed."),
    PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "The request body exceeds the size limit."),
    UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "The body's Content-Type is not accepted here (JSON endpoints need application/json)."),
    OutsideCustomerServiceWindow => (StatusCode::UNPROCESSABLE_ENTITY, "outside_customer_service_window", "The customer's last message is more than 24 hours old: only a template may be sent."),
    ValidationFailed => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "One or more fields are missing, of the wrong type or invalid; see `errors`."),
    RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", "Too many requests; retry after the number of seconds in `Retry-After`."),
    OtpCooldown => (StatusCode::TOO_MANY_REQUESTS, "otp_cooldown", "A code was sent moments ago; a new one may be requested after `Retry-After` seconds."),
    SmsDeliveryFailed => (StatusCode::SERVICE_UNAVAILABLE, "sms_delivery_failed", "The SMS sender could not deliver the code; nothing was consumed, try again."),
    Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "A dependency (the database) is unavailable; the request changed nothing and may be retried."),
    Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "An unexpected server error; it was logged with the request id."),
}

/// One field's validation failure, as listed in a 422's `errors`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The error of every request path. Build it with the constructors; `?` converts database and
/// other internal errors.
#[derive(Debug)]
pub struct AppError {
    code: Code,
    detail: String,
    errors: Vec<FieldError>,
    retry_after: Option<u64>,
    source: Option<anyhow::Error>,
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
            source: None,
        }
    }

    pub fn not_found() -> Self {
        Self::new(Code::NotFound, "no such resource")
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(Code::Forbidden, detail)
    }

    pub fn unauthorized() -> Self {
        Self::new(Code::Unauthorized, "a valid access token is required")
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        debug_assert!(!errors.is_empty());
        let mut e = Self::new(Code::ValidationFailed, "the request has invalid fields");
        e.errors = errors;
        e
    }

    /// Names the field a 422 of another code is about (every 422 lists its fields).
    pub fn at_field(mut self, field: &str) -> Self {
        self.errors
            .push(FieldError::new(field, self.detail.clone()));
        self
    }

    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError::new(field, message)])
    }

    pub fn rate_limited(code: Code, retry_after_secs: u64) -> Self {
        let mut e = Self::new(code, "too many requests");
        e.retry_after = Some(retry_after_secs.max(1));
        e
    }

    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        let mut e = Self::new(Code::Internal, "internal server error");
        e.source = Some(source.into());
        e
    }

    pub fn unavailable(source: impl Into<anyhow::Error>) -> Self {
        let mut e = Self::new(
            Code::Unavailable,
            "a dependency is unavailable, try again shortly",
        );
        e.source = Some(source.into());
        e.retry_after = Some(1);
        e
    }

    pub fn code(&self) -> Code {
        self.code
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// The fields a 422 lists.
    pub fn field_errors(&self) -> &[FieldError] {
        &self.errors
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.detail)
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            // The pool could not hand out a connection, or the server went away: the request
            // did nothing, a retry may succeed.
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::WorkerCrashed => AppError::unavailable(e),
            sqlx::Error::Database(ref d)
                if d.code().is_some_and(|c| passing_database_error(&c)) =>
            {
                AppError::unavailable(e)
            }
            other => AppError::internal(other),
        }
    }
}

/// Database errors that say "not now" rather than "never": the transaction was rolled back,
/// and the same request may succeed later. SQLite gives its (extended) result code as a
/// number: busy (5), locked (6), I/O error (10), disk full (13), cannot open (14). PostgreSQL
/// gives an SQLSTATE: connection exceptions (08), insufficient resources such as a full disk
/// (53), operator intervention such as a shutdown (57P), serialization failures and deadlocks
/// (40001, 40P01) and lock timeouts (55P03).
fn passing_database_error(code: &str) -> bool {
    if let Ok(n) = code.parse::<i64>() {
        return matches!(n & 0xff, 5 | 6 | 10 | 13 | 14);
    }
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || matches!(code, "40001" | "40P01" | "55P03")
}

impl From<rusqlite::Error> for AppError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            // Another connection held the database past the busy timeout, or the disk is full
            // or failing: the transaction was rolled back, a retry may succeed.
            rusqlite::Error::SqliteFailure(ref f, _)
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy
                        | rusqlite::ErrorCode::DatabaseLocked
                        | rusqlite::ErrorCode::DiskFull
                        | rusqlite::ErrorCode::SystemIoFailure
                        | rusqlite::ErrorCode::CannotOpen
                ) =>
            {
                AppError::unavailable(e)
            }
            other => AppError::internal(other),
        }
    }
}

impl From<anyhow::Error> for AppError {
    fn from(e: anyhow::Error) -> Self {
        AppError::internal(e)
    }
}

/// The problem+json document.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI reference to this code's entry in the API reference.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code, e.g. `validation_failed`.
    pub code: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let Some(source) = &self.source {
            if status.is_server_error() {
                tracing::error!(
                    code = self.code.as_str(),
                    error = format!("{source:#}"),
                    "request failed"
                );
            }
        }
        let body = Problem {
            kind: format!("/docs#error-{}", self.code.as_str()),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: self.detail,
            code: self.code.as_str(),
            errors: self.errors,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut res = (status, bytes).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for c in Code::ALL {
            assert!(seen.insert(c.as_str()), "duplicate code {}", c.as_str());
            assert!(c
                .as_str()
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch == '_'));
        }
    }
}

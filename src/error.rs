//! The one error type of the API, REST and sockets alike, shaped as the contract says: the HTTP
//! answer is `{"error": {"code", "message", "fields"?}}` with its status, a socket ack is
//! `{"ok": false, "error": {…}}` with the same object. Every code a client can branch on is an
//! [`ErrorCode`]; anything unexpected is logged here and reaches the client only as a generic 500.

use std::collections::BTreeMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

/// Declares [`ErrorCode`] with each code's text, once.
macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $variant:ident = $code:literal,)*) => {
        /// Every stable snake_case code an error can carry (SPEC §2 and the sections it lists).
        /// Each variant is its code in CamelCase, so serde's `snake_case` (which the OpenAPI
        /// document follows) and [`ErrorCode::as_str`] agree; a test holds them to it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code.
            pub const ALL: &[Self] = &[$(Self::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)*
                }
            }
        }
    };
}

error_codes! {
    // Requests the server cannot read.
    ValidationFailed = "validation_failed",
    InvalidJson = "invalid_json",
    InvalidBody = "invalid_body",
    UnsupportedMediaType = "unsupported_media_type",
    PayloadTooLarge = "payload_too_large",
    NotFound = "not_found",
    MethodNotAllowed = "method_not_allowed",
    // Who is calling.
    Unauthenticated = "unauthenticated",
    InvalidToken = "invalid_token",
    TokenExpired = "token_expired",
    SessionRevoked = "session_revoked",
    AccountDisabled = "account_disabled",
    InvalidCredentials = "invalid_credentials",
    InvalidRefreshToken = "invalid_refresh_token",
    TooManyAttempts = "too_many_attempts",
    SignupDisabled = "signup_disabled",
    CsrfRejected = "csrf_rejected",
    Forbidden = "forbidden",
    // Sign-in with a provider.
    UnknownProvider = "unknown_provider",
    ProviderNotConfigured = "provider_not_configured",
    OauthStateMismatch = "oauth_state_mismatch",
    OauthDenied = "oauth_denied",
    OauthExchangeFailed = "oauth_exchange_failed",
    EmailNotVerified = "email_not_verified",
    // Accounts, sessions, messages, notifications.
    UserNotFound = "user_not_found",
    SessionNotFound = "session_not_found",
    NotificationNotFound = "notification_not_found",
    EmailTaken = "email_taken",
    LastAdmin = "last_admin",
    RecipientDisabled = "recipient_disabled",
    RateLimited = "rate_limited",
    // Conversations.
    ConversationNotFound = "conversation_not_found",
    InvalidMention = "invalid_mention",
    GroupFull = "group_full",
    OwnerMustTransfer = "owner_must_transfer",
    // Editing, deleting, reacting, replying.
    MessageNotFound = "message_not_found",
    EditWindowPassed = "edit_window_passed",
    InvalidEmoji = "invalid_emoji",
    TooManyReactions = "too_many_reactions",
    InvalidReply = "invalid_reply",
    // Attachments.
    UploadNotFound = "upload_not_found",
    AttachmentNotFound = "attachment_not_found",
    InvalidAttachment = "invalid_attachment",
    /// A tus PATCH at an offset the upload is not at.
    OffsetMismatch = "offset_mismatch",
    /// A tus request without `Tus-Resumable: 1.0.0`.
    UnsupportedTusVersion = "unsupported_tus_version",
    // Web Push.
    TooManySubscriptions = "too_many_subscriptions",
    // Calls.
    CallNotFound = "call_not_found",
    CallNotRinging = "call_not_ringing",
    UserBusy = "user_busy",
    // The self-test's actions.
    InvalidAction = "invalid_action",
    TargetRequired = "target_required",
    // Sockets.
    InvalidPayload = "invalid_payload",
    UnknownEvent = "unknown_event",
    TooManyConnections = "too_many_connections",
    OriginNotAllowed = "origin_not_allowed",
    AuthTimeout = "auth_timeout",
    /// A socket's authentication failed on our side (the database).
    ServerError = "server_error",
    /// A dependency (the database) does not answer; try again after `Retry-After`.
    Unavailable = "unavailable",
    InternalError = "internal_error",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed request or event, as the client will see it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable snake_case code clients branch on.
    pub code: ErrorCode,
    /// Human text; never contains internals.
    pub message: String,
    /// Per-field validation messages, for `validation_failed` and body type errors.
    pub fields: Option<BTreeMap<String, String>>,
    /// Seconds, sent as `Retry-After` with 429 answers.
    pub retry_after: Option<u64>,
}

/// Every error answer of the REST API.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: the object of a REST error and of a failed socket ack.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    /// Per-field messages, for validation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<BTreeMap<String, String>>,
}

/// The ack of a socket event that failed: `{ok: false, error}`.
#[derive(Debug, Serialize)]
pub struct FailedAck {
    pub ok: bool,
    pub error: ErrorDetail,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            fields: None,
            retry_after: None,
        }
    }

    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub fn forbidden(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn not_found(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn too_many(code: ErrorCode, retry_after_secs: u64) -> Self {
        let mut err = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            code,
            format!("too many attempts; try again in {retry_after_secs} s"),
        );
        err.retry_after = Some(retry_after_secs);
        err
    }

    /// 400 `validation_failed` naming each bad field.
    pub fn validation(fields: BTreeMap<String, String>) -> Self {
        let mut err = Self::bad_request(ErrorCode::ValidationFailed, "some fields are invalid");
        err.fields = Some(fields);
        err
    }

    /// 400 `validation_failed` for one field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::validation(BTreeMap::from([(field.to_owned(), message.into())]))
    }

    /// 404 `user_not_found`: no such user, or one the caller may not see.
    pub fn user_not_found() -> Self {
        Self::not_found(ErrorCode::UserNotFound, "no such user")
    }

    /// 409 `email_taken`.
    pub fn email_taken() -> Self {
        Self::conflict(ErrorCode::EmailTaken, "an account with this email exists")
    }

    /// 409 `last_admin`: the change would leave no active admin.
    pub fn last_admin() -> Self {
        Self::conflict(
            ErrorCode::LastAdmin,
            "this would leave no active admin; promote someone else first",
        )
    }

    /// 404 `conversation_not_found`: no such conversation, or one the caller is not a member of.
    pub fn conversation_not_found() -> Self {
        Self::not_found(ErrorCode::ConversationNotFound, "no such conversation")
    }

    /// 404 `message_not_found`: no such message, or one of a conversation the caller is not a
    /// member of.
    pub fn message_not_found() -> Self {
        Self::not_found(ErrorCode::MessageNotFound, "no such message")
    }

    /// 403 `recipient_disabled`.
    pub fn recipient_disabled() -> Self {
        Self::forbidden(
            ErrorCode::RecipientDisabled,
            "this user's account is disabled",
        )
    }

    /// 503 `unavailable` with `Retry-After`: the database does not answer right now. Logged as
    /// a warning with its cause (the outage itself is what `/readyz` reports).
    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::warn!(category = "error", error = %cause, "⚠️ the database does not answer");
        let mut err = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "the service cannot reach its database; try again shortly",
        );
        err.retry_after = Some(2);
        err
    }

    /// An unexpected failure: logged with its cause, answered as a bare 500.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(category = "error", error = %cause, "❌ request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InternalError,
            "something went wrong on our side",
        )
    }

    /// The `error` object of the answer.
    pub fn detail(&self) -> ErrorDetail {
        ErrorDetail {
            code: self.code,
            message: self.message.clone(),
            fields: self.fields.clone(),
        }
    }

    /// The ack of a socket event that failed with this error.
    pub fn ack(&self) -> FailedAck {
        FailedAck {
            ok: false,
            error: self.detail(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        if err.is_unavailable() {
            return Self::unavailable(err);
        }
        Self::internal(err)
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        Self::internal(format!("{err:#}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.detail(),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_serializes_as_its_text() {
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }
}

//! Ids in paths. Each extractor reads one path parameter as an id; anything that is not one names
//! nothing, so it answers that kind's 404 in our error format, as an unknown id does.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use uuid::Uuid;

use crate::domain::{Emoji, invalid_emoji};
use crate::error::{ApiError, ErrorCode};

/// Declares an extractor of one id path parameter that answers `$not_found` for a bad one.
macro_rules! id_in_path {
    ($(#[doc = $doc:literal])* $name:ident => $not_found:expr) => {
        $(#[doc = $doc])*
        pub struct $name(pub Uuid);

        impl<S: Send + Sync> FromRequestParts<S> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
                let raw = Path::<String>::from_request_parts(parts, state).await;
                raw.ok()
                    .and_then(|Path(raw)| raw.parse().ok())
                    .map(Self)
                    .ok_or_else(|| $not_found)
            }
        }
    };
}

id_in_path! {
    /// `{id}` or `{userId}` of a user: 404 `user_not_found`.
    UserPath => ApiError::user_not_found()
}

id_in_path! {
    /// `{id}` of a session: 404 `session_not_found`.
    SessionPath => ApiError::not_found(ErrorCode::SessionNotFound, "no such session")
}

id_in_path! {
    /// `{id}` of a notification: 404 `notification_not_found`.
    NotificationPath => ApiError::not_found(ErrorCode::NotificationNotFound, "no such notification")
}

id_in_path! {
    /// `{id}` of a message: 404 `message_not_found`.
    MessagePath => ApiError::message_not_found()
}

/// `{id}/reactions/{emoji}`: a message and one emoji. A bad id names no message (404
/// `message_not_found`); an emoji that is not one, or not UTF-8 once percent-decoded, is 400
/// `invalid_emoji`.
pub struct ReactionPath {
    pub message_id: Uuid,
    pub emoji: Emoji,
}

impl<S: Send + Sync> FromRequestParts<S> for ReactionPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Ok(Path((id, emoji))) =
            Path::<(String, String)>::from_request_parts(parts, state).await
        else {
            return Err(invalid_emoji());
        };
        let message_id = id.parse().map_err(|_| ApiError::message_not_found())?;
        let emoji = Emoji::parse(&emoji)?;
        Ok(Self { message_id, emoji })
    }
}

id_in_path! {
    /// `{id}` of an upload: 404 `upload_not_found`.
    UploadPath => crate::attachments::upload_not_found()
}

id_in_path! {
    /// `{id}` of an attachment: 404 `attachment_not_found`.
    AttachmentPath => crate::attachments::attachment_not_found()
}

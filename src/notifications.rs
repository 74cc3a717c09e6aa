//! Notifications: admins send them to one user or to everyone; they are stored, pushed live as
//! `notification`, listed with an unread count, and their read state follows the user across
//! devices (`notificationsRead`).

use std::collections::BTreeMap;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::domain::PageLimit;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::state::AppState;
use crate::store::{NewNotification, Notification};

pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_BODY_CHARS: usize = 4000;
pub const MAX_KIND_CHARS: usize = 50;
/// Largest `data` document, serialized.
pub const MAX_DATA_BYTES: usize = 8 * 1024;
pub const DEFAULT_KIND: &str = "general";

/// Who a notification goes to.
pub enum Audience {
    User(Uuid),
    Everyone,
}

/// Raw content of a notification, validated by [`send`].
pub struct Content {
    pub title: Option<String>,
    pub body: Option<String>,
    pub kind: Option<String>,
    pub data: Option<Value>,
}

/// Stores a notification for its audience and pushes it to those online. Answers how many
/// users it was stored for.
pub async fn send(state: &AppState, audience: Audience, content: Content) -> ApiResult<usize> {
    let mut fields = BTreeMap::new();
    let title = bounded(
        &mut fields,
        "title",
        content.title.as_deref(),
        MAX_TITLE_CHARS,
    );
    let body = bounded(&mut fields, "body", content.body.as_deref(), MAX_BODY_CHARS);
    let kind = content
        .kind
        .as_deref()
        .map(str::trim)
        .unwrap_or(DEFAULT_KIND);
    let kind_ok = !kind.is_empty()
        && kind.chars().count() <= MAX_KIND_CHARS
        && kind
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !kind_ok {
        fields.insert(
            "kind".into(),
            format!("must be 1 to {MAX_KIND_CHARS} letters, digits, '_', '.' or '-'"),
        );
    }
    let data = match content.data {
        None | Some(Value::Null) => None,
        Some(value @ Value::Object(_)) => {
            let text = value.to_string();
            if text.len() > MAX_DATA_BYTES {
                fields.insert(
                    "data".into(),
                    format!("must be at most {MAX_DATA_BYTES} bytes"),
                );
            }
            Some(text)
        }
        Some(_) => {
            fields.insert("data".into(), "must be an object".into());
            None
        }
    };
    let (Some(title), Some(body)) = (title, body) else {
        return Err(ApiError::validation(fields));
    };
    if !fields.is_empty() {
        return Err(ApiError::validation(fields));
    }

    let user_ids = match audience {
        Audience::User(id) => {
            let user = state
                .store
                .find_user(id)
                .await?
                .ok_or_else(ApiError::user_not_found)?;
            if !user.is_active {
                return Err(ApiError::recipient_disabled());
            }
            vec![user.id]
        }
        Audience::Everyone => state.store.active_user_ids().await?,
    };
    let new = NewNotification {
        kind,
        title: &title,
        body: &body,
        data: data.as_deref(),
    };
    let created = state.store.insert_notifications(&user_ids, &new).await?;
    let presence = state.realtime.presence();
    for notification in created.iter().filter(|n| presence.is_online(n.user_id)) {
        state
            .realtime
            .emit_to_user(
                notification.user_id,
                "notification",
                &json!({ "notification": notification }),
            )
            .await;
    }
    crate::push::notification(state, &created).await;
    tracing::info!(
        category = "message",
        count = created.len(),
        "📨 notification sent"
    );
    Ok(created.len())
}

fn bounded(
    fields: &mut BTreeMap<String, String>,
    name: &str,
    value: Option<&str>,
    max: usize,
) -> Option<String> {
    let value = value.map(str::trim);
    let problem = match value {
        None => Some("is required".to_owned()),
        Some("") => Some("must not be empty".to_owned()),
        Some(v) if v.chars().count() > max => Some(format!("must be at most {max} characters")),
        Some(v) if v.contains('\0') => Some("must not contain NUL characters".to_owned()),
        Some(_) => None,
    };
    match problem {
        Some(message) => {
            fields.insert(name.to_owned(), message);
            None
        }
        None => value.map(str::to_owned),
    }
}

/// A page of a user's notifications, newest first, and how many are unread.
pub async fn list(
    state: &AppState,
    user_id: Uuid,
    unread_only: bool,
    before: Option<Uuid>,
    limit: PageLimit,
) -> ApiResult<(Vec<Notification>, i64)> {
    let list = state
        .store
        .list_notifications(user_id, unread_only, before, limit.get())
        .await?;
    let unread = state.store.unread_notification_count(user_id).await?;
    Ok((list, unread))
}

/// Marks one notification read and tells the user's devices.
pub async fn mark_read(state: &AppState, user_id: Uuid, id: Uuid) -> ApiResult<()> {
    let changed = state
        .store
        .mark_notification_read(user_id, id)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(ErrorCode::NotificationNotFound, "no such notification")
        })?;
    if changed {
        state
            .realtime
            .emit_to_user(user_id, "notificationsRead", &json!({ "ids": [id] }))
            .await;
    }
    Ok(())
}

/// Marks every notification read and tells the user's devices; answers how many changed.
pub async fn mark_all_read(state: &AppState, user_id: Uuid) -> ApiResult<u64> {
    let changed = state.store.mark_all_notifications_read(user_id).await?;
    if changed > 0 {
        state
            .realtime
            .emit_to_user(user_id, "notificationsRead", &json!({ "all": true }))
            .await;
    }
    Ok(changed)
}

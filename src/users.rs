//! Account administration: listing, creating, changing and deleting users, and the effects a
//! change has on their live sessions (new tokens pushed, status events, forced logouts).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{AuthUser, accounts, password};
use crate::domain::{Email, Name, PageLimit, Password};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::state::AppState;
use crate::store::{NewUser, User, UserChanges, UserUpdate};

/// What other users see of someone.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryEntry {
    pub id: Uuid,
    pub name: String,
    pub avatar_url: Option<String>,
    pub online: bool,
}

impl DirectoryEntry {
    pub fn of(state: &AppState, user: &User) -> Self {
        Self {
            id: user.id,
            name: user.name.clone(),
            avatar_url: user.avatar_url.clone(),
            online: state.realtime.presence().is_online(user.id),
        }
    }
}

/// A user as admins see them: the public object plus live figures.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminUserView {
    #[serde(flatten)]
    pub user: User,
    pub online: bool,
    pub connections: usize,
    pub sessions: i64,
}

impl AdminUserView {
    fn of(state: &AppState, user: User, sessions: i64) -> Self {
        let presence = state.realtime.presence();
        Self {
            online: presence.is_online(user.id),
            connections: presence.user_connections(user.id),
            sessions,
            user,
        }
    }
}

/// A page of users for admins.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserPage {
    pub users: Vec<AdminUserView>,
    pub next_cursor: Option<Uuid>,
}

/// Every user matching `query`, with live figures, a page at a time (admins' list).
pub async fn list(
    state: &AppState,
    query: Option<&str>,
    cursor: Option<Uuid>,
    limit: PageLimit,
) -> ApiResult<UserPage> {
    let limit = limit.get();
    let mut rows = state.store.list_users(query, cursor, limit + 1).await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.user.id)
    } else {
        None
    };
    Ok(UserPage {
        users: rows
            .into_iter()
            .map(|r| AdminUserView::of(state, r.user, r.sessions))
            .collect(),
        next_cursor,
    })
}

/// Active users matching `query`, as everyone may see them.
pub async fn directory(
    state: &AppState,
    query: Option<&str>,
    limit: PageLimit,
) -> ApiResult<Vec<DirectoryEntry>> {
    let found = state.store.directory(query, limit.get()).await?;
    Ok(found.iter().map(|u| DirectoryEntry::of(state, u)).collect())
}

/// Raw input of an admin creating an account.
pub struct NewAccount {
    pub email: Option<String>,
    pub name: Option<String>,
    pub password: Option<String>,
    pub is_admin: bool,
    pub is_active: bool,
}

pub async fn create(state: &AppState, input: NewAccount) -> ApiResult<User> {
    let mut fields = BTreeMap::new();
    let email = accounts::required(&mut fields, "email", input.email.as_deref(), Email::parse);
    let name = accounts::required(&mut fields, "name", input.name.as_deref(), Name::parse);
    let password = match input.password.as_deref() {
        None => None,
        Some(raw) => match Password::parse(raw) {
            Ok(p) => Some(p),
            Err(message) => {
                fields.insert("password".into(), message.into());
                None
            }
        },
    };
    let (Some(email), Some(name)) = (email, name) else {
        return Err(ApiError::validation(fields));
    };
    if !fields.is_empty() {
        return Err(ApiError::validation(fields));
    }
    let hash = match password {
        Some(p) => Some(password::hash(p.expose().to_owned()).await?),
        None => None,
    };
    let user = state
        .store
        .insert_user(&NewUser {
            email: email.as_str(),
            name: name.as_str(),
            password_hash: hash.as_deref(),
            is_admin: input.is_admin,
            is_active: input.is_active,
        })
        .await?
        .ok_or_else(ApiError::email_taken)?;
    tracing::info!(category = "ok", user_id = %user.id, admin = user.is_admin, "✅ account created by an admin");
    Ok(user)
}

/// A user that `caller` may see: themselves, or anyone for an admin. Others are "not found".
pub async fn visible(state: &AppState, caller: &AuthUser, id: Uuid) -> ApiResult<User> {
    let not_found = || ApiError::user_not_found();
    if caller.user.id != id && !caller.user.is_admin {
        return Err(not_found());
    }
    state.store.find_user(id).await?.ok_or_else(not_found)
}

/// Raw input of a PATCH.
#[derive(Default)]
pub struct Patch {
    pub name: Option<String>,
    pub email: Option<String>,
    pub password: Option<String>,
    pub current_password: Option<String>,
    pub is_admin: Option<bool>,
    pub is_active: Option<bool>,
}

/// Changes an account within the caller's rights, then brings its live sessions in line.
pub async fn update(
    state: &AppState,
    caller: &AuthUser,
    id: Uuid,
    patch: Patch,
) -> ApiResult<User> {
    let target = visible(state, caller, id).await?;
    check_rights(caller, id, &patch)?;
    let changes = changes_of(state, &target, &patch).await?;
    let loses_admin = target.is_admin
        && target.is_active
        && (changes.is_admin == Some(false) || changes.is_active == Some(false));
    if loses_admin {
        keep_an_admin(state, id).await?;
    }
    let user = match state.store.update_user(id, &changes).await? {
        UserUpdate::Updated(user) => user,
        UserUpdate::NotFound => return Err(ApiError::user_not_found()),
        UserUpdate::EmailTaken => return Err(ApiError::email_taken()),
    };
    follow_change(state, caller, &user, &changes).await?;
    Ok(user)
}

/// Admins may change anything of anyone but another's password; users their own name and
/// password.
fn check_rights(caller: &AuthUser, id: Uuid, patch: &Patch) -> ApiResult<()> {
    let forbidden = |what: &str| {
        ApiError::forbidden(ErrorCode::Forbidden, format!("you may not change {what}"))
    };
    let admin_only = patch.is_admin.is_some() || patch.is_active.is_some() || patch.email.is_some();
    if !caller.user.is_admin && admin_only {
        return Err(forbidden("this field"));
    }
    if caller.user.id != id && patch.password.is_some() {
        return Err(forbidden("another user's password"));
    }
    Ok(())
}

/// The patch checked field by field into the changes to store (a new password only with the
/// right current one); every bad field is named in one `validation_failed`.
async fn changes_of(state: &AppState, target: &User, patch: &Patch) -> ApiResult<UserChanges> {
    let mut fields = BTreeMap::new();
    let mut changes = UserChanges {
        is_admin: patch.is_admin.filter(|v| *v != target.is_admin),
        is_active: patch.is_active.filter(|v| *v != target.is_active),
        ..UserChanges::default()
    };
    let mut check = |field: &str, result: Result<(), &'static str>| {
        if let Err(message) = result {
            fields.insert(field.to_owned(), message.to_owned());
        }
    };
    if let Some(raw) = patch.name.as_deref() {
        check(
            "name",
            Name::parse(raw).map(|name| changes.name = Some(name.into_string())),
        );
    }
    if let Some(raw) = patch.email.as_deref() {
        check(
            "email",
            Email::parse(raw).map(|email| changes.email = Some(email.into_string())),
        );
    }
    if let Some(raw) = patch.password.as_deref() {
        match Password::parse(raw) {
            Ok(new) => {
                let current = patch.current_password.clone().unwrap_or_default();
                let hash = state.store.password_hash(target.id).await?;
                if hash.is_some() && !password::verify(current, hash).await? {
                    check("currentPassword", Err("is incorrect"));
                } else {
                    changes.password_hash = Some(password::hash(new.expose().to_owned()).await?);
                }
            }
            Err(message) => check("password", Err(message)),
        }
    }
    if fields.is_empty() {
        Ok(changes)
    } else {
        Err(ApiError::validation(fields))
    }
}

/// 409 `last_admin` when no other active admin would remain without user `id`.
async fn keep_an_admin(state: &AppState, id: Uuid) -> ApiResult<()> {
    if state.store.count_other_active_admins(id).await? == 0 {
        return Err(ApiError::last_admin());
    }
    Ok(())
}

/// The live side of a stored change: a deactivation ends every session; new rights push a token
/// to each session and `userStatusChanged` to the user; a new password signs out the user's
/// other devices.
async fn follow_change(
    state: &AppState,
    caller: &AuthUser,
    user: &User,
    changes: &UserChanges,
) -> ApiResult<()> {
    if changes.is_active == Some(false) {
        accounts::end_all_sessions(state, user.id, "account_disabled").await?;
    } else if changes.is_admin.is_some() || changes.is_active.is_some() {
        for session in state.store.live_sessions(user.id).await? {
            state
                .realtime
                .push_session_token(&state.tokens, user, session.id)
                .await;
        }
        let status =
            json!({"userId": user.id, "isActive": user.is_active, "isAdmin": user.is_admin});
        state
            .realtime
            .emit_to_user(user.id, "userStatusChanged", &status)
            .await;
        tracing::info!(category = "ok", user_id = %user.id, admin = user.is_admin, "✅ rights changed; new tokens pushed");
    }
    if changes.password_hash.is_some() {
        for session in state.store.live_sessions(user.id).await? {
            if session.id != caller.session.id {
                state
                    .store
                    .revoke_session(session.id, "password_changed")
                    .await?;
                state
                    .realtime
                    .end_session(session.id, "session_revoked")
                    .await;
            }
        }
    }
    Ok(())
}

/// Deletes an account after ending its sessions; its messages stay with the other side.
pub async fn delete(state: &AppState, id: Uuid) -> ApiResult<()> {
    let target = state
        .store
        .find_user(id)
        .await?
        .ok_or_else(ApiError::user_not_found)?;
    if target.is_admin && target.is_active {
        keep_an_admin(state, id).await?;
    }
    accounts::end_all_sessions(state, id, "account_deleted").await?;
    // Their files go with them.
    state.store.drop_user_attachments(id).await?;
    state.store.delete_user(id).await?;
    crate::attachments::user_deleted(state, id).await;
    tracing::info!(category = "ok", user_id = %id, "✅ account deleted");
    Ok(())
}

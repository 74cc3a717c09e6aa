//! Conversations (SPEC §10): the list and the conversation object, groups with roles and their
//! membership changes, read pointers with unread and mention counts. Every change to a group is
//! stored with its system message in one transaction, then told to the members' sockets:
//! `conversationUpdated` to each member (their own counts), the system message as any message,
//! `conversationRemoved` to whoever lost access, after their sockets left the group's room.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{GroupTitle, PageLimit};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::messaging::{self, Destination, Place};
use crate::state::AppState;
use crate::store::{Added, ConversationRow, DIRECT, MemberRow, Message, SystemEvent, SystemType};
use crate::timestamp::Timestamp;
use crate::users::DirectoryEntry;

/// At most this many ids in one request that adds members.
pub const MAX_IDS_PER_REQUEST: usize = 100;
/// A conversation object carries `members` up to this many.
const MEMBERS_INLINE_MAX: usize = 100;

/// The conversation object (§2, §10), as one member sees it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    pub id: Uuid,
    /// `direct` or `group`.
    pub kind: String,
    /// A group's title; null for a direct conversation.
    pub title: Option<String>,
    /// The other side of a direct conversation; null in a group.
    pub user: Option<DirectoryEntry>,
    pub member_count: i64,
    /// Every member, when asked for one conversation (and it has at most 100).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<Member>>,
    pub last_message: Option<Message>,
    pub unread_count: i64,
    pub mention_count: i64,
    pub muted: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One member of a conversation.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub user_id: Uuid,
    pub name: String,
    pub avatar_url: Option<String>,
    /// `owner`, `admin` or `member`.
    pub role: String,
    pub joined_at: Timestamp,
    pub last_read_message_id: Option<Uuid>,
    pub last_read_at: Option<Timestamp>,
    pub online: bool,
}

/// A page of the caller's conversations.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConversationPage {
    pub conversations: Vec<Conversation>,
    /// `before` for the next page; null on the last one.
    pub next_cursor: Option<Uuid>,
}

/// A role in a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Owner,
    Admin,
    Member,
}

impl Role {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "owner" => Some(Self::Owner),
            "admin" => Some(Self::Admin),
            "member" => Some(Self::Member),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    fn manages(self) -> bool {
        matches!(self, Self::Owner | Self::Admin)
    }
}

/// The caller's conversations, most recently active first.
pub async fn list(
    state: &AppState,
    me: Uuid,
    before: Option<Uuid>,
    limit: PageLimit,
) -> ApiResult<ConversationPage> {
    let limit = limit.get();
    let mut rows = state
        .store
        .list_conversations(me, before, limit + 1)
        .await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().and_then(|r| r.last_message_id)
    } else {
        None
    };
    let conversations = objects(state, rows).await?;
    Ok(ConversationPage {
        conversations,
        next_cursor,
    })
}

/// One conversation of the caller's, with its members; 404 for anyone else.
pub async fn show(state: &AppState, me: Uuid, conversation_id: Uuid) -> ApiResult<Conversation> {
    let row = state
        .store
        .conversation_of(me, conversation_id)
        .await?
        .ok_or_else(ApiError::conversation_not_found)?;
    object(state, row, true).await
}

/// Conversation objects for list rows: their last messages and the other sides of direct ones
/// read in one query each.
async fn objects(state: &AppState, rows: Vec<ConversationRow>) -> ApiResult<Vec<Conversation>> {
    let message_ids: Vec<Uuid> = rows.iter().filter_map(|r| r.last_message_id).collect();
    let mut last: HashMap<Uuid, Message> = state
        .store
        .messages_by_id(&message_ids)
        .await?
        .into_iter()
        .map(|m| (m.id, m))
        .collect();
    let other_ids: Vec<Uuid> = rows.iter().filter_map(|r| r.other_id).collect();
    let others: HashMap<Uuid, DirectoryEntry> = state
        .store
        .users_by_id(&other_ids)
        .await?
        .iter()
        .map(|u| (u.id, DirectoryEntry::of(state, u)))
        .collect();
    let presence = state.realtime.presence();
    Ok(rows
        .into_iter()
        .map(|row| {
            let user = row.other_id.map(|id| {
                others.get(&id).cloned().unwrap_or_else(|| DirectoryEntry {
                    id,
                    name: "Deleted user".to_owned(),
                    avatar_url: None,
                    online: presence.is_online(id),
                })
            });
            let last_message = row.last_message_id.and_then(|id| last.remove(&id));
            conversation(row, user, last_message, None)
        })
        .collect())
}

async fn object(
    state: &AppState,
    row: ConversationRow,
    with_members: bool,
) -> ApiResult<Conversation> {
    let members = if with_members && row.member_count as usize <= MEMBERS_INLINE_MAX {
        Some(members(state, row.id).await?)
    } else {
        None
    };
    let mut list = objects(state, vec![row]).await?;
    let mut conversation = list.pop().ok_or_else(ApiError::conversation_not_found)?;
    conversation.members = members;
    Ok(conversation)
}

fn conversation(
    row: ConversationRow,
    user: Option<DirectoryEntry>,
    last_message: Option<Message>,
    members: Option<Vec<Member>>,
) -> Conversation {
    Conversation {
        id: row.id,
        kind: row.kind,
        title: row.title,
        user,
        member_count: row.member_count,
        members,
        last_message,
        unread_count: row.unread_count,
        mention_count: row.mention_count,
        muted: row.muted,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

async fn members(state: &AppState, conversation_id: Uuid) -> ApiResult<Vec<Member>> {
    let presence = state.realtime.presence();
    Ok(state
        .store
        .members(conversation_id)
        .await?
        .into_iter()
        .map(|m: MemberRow| Member {
            online: presence.is_online(m.user_id),
            user_id: m.user_id,
            name: m.name.unwrap_or_else(|| "Deleted user".to_owned()),
            avatar_url: m.avatar_url,
            role: m.role,
            joined_at: m.joined_at,
            last_read_message_id: m.last_read_message_id,
            last_read_at: m.last_read_at,
        })
        .collect())
}

/// The caller's role in a group; 404 when they are not a member, 403 `forbidden` when it is a
/// direct conversation (which has no members to manage).
async fn role_in_group(state: &AppState, me: Uuid, conversation_id: Uuid) -> ApiResult<Role> {
    let membership = state
        .store
        .membership(conversation_id, me)
        .await?
        .ok_or_else(ApiError::conversation_not_found)?;
    if membership.kind == DIRECT {
        return Err(forbidden("a direct conversation has no members to change"));
    }
    Ok(Role::parse(&membership.role).unwrap_or(Role::Member))
}

fn forbidden(message: &str) -> ApiError {
    ApiError::forbidden(ErrorCode::Forbidden, message)
}

/// Member ids as a request gives them: 1 to 100, each once (repeats are ignored), each an
/// active user other than the caller; 404 `user_not_found` or 403 `recipient_disabled` for the
/// first that is not, and then nobody is added.
async fn new_members(state: &AppState, me: Uuid, raw: &[String]) -> ApiResult<Vec<Uuid>> {
    if raw.is_empty() || raw.len() > MAX_IDS_PER_REQUEST {
        return Err(ApiError::validation(BTreeMap::from([(
            "userIds".to_owned(),
            format!("must list 1 to {MAX_IDS_PER_REQUEST} user ids"),
        )])));
    }
    let mut ids = Vec::with_capacity(raw.len());
    for id in raw {
        let id = crate::domain::user_id(id)?;
        if id != me && !ids.contains(&id) {
            ids.push(id);
        }
    }
    let users = state.store.users_by_id(&ids).await?;
    for id in &ids {
        match users.iter().find(|u| u.id == *id) {
            None => return Err(ApiError::user_not_found()),
            Some(user) if !user.is_active => return Err(ApiError::recipient_disabled()),
            Some(_) => {}
        }
    }
    Ok(ids)
}

/// Creates a group owned by `me` with `member_ids`; every member's sockets join its room and
/// get `conversationUpdated` and the `created` message.
pub async fn create(
    state: &AppState,
    me: Uuid,
    title: GroupTitle,
    member_ids: &[String],
) -> ApiResult<Conversation> {
    let members = new_members(state, me, member_ids).await?;
    if members.len() + 1 > state.config.group_max_members {
        return Err(group_full(state));
    }
    let event = SystemEvent {
        kind: SystemType::Created,
        by: me,
        user_ids: members.clone(),
        title: Some(title.as_str().to_owned()),
        call: None,
    };
    let (id, message) = state
        .store
        .create_group(title.as_str(), me, &members, &event)
        .await?;
    let everyone: Vec<Uuid> = std::iter::once(me).chain(members).collect();
    for user in &everyone {
        state.realtime.join_group(*user, id).await;
    }
    state.realtime.partners_met(&everyone, &everyone).await;
    tracing::info!(category = "message", conversation_id = %id, members = everyone.len(), "👥 group created");
    announce(state, id, &event, &everyone, Some(&message)).await?;
    show(state, me, id).await
}

fn group_full(state: &AppState) -> ApiError {
    ApiError::conflict(
        ErrorCode::GroupFull,
        format!(
            "a group has at most {} members",
            state.config.group_max_members
        ),
    )
}

/// What a PATCH of a conversation may change.
#[derive(Debug, Default)]
pub struct Changes {
    pub title: Option<GroupTitle>,
    pub muted: Option<bool>,
}

/// Renames a group (owner and admins) or mutes a conversation for the caller (any member).
pub async fn update(
    state: &AppState,
    me: Uuid,
    conversation_id: Uuid,
    changes: Changes,
) -> ApiResult<Conversation> {
    let membership = state
        .store
        .membership(conversation_id, me)
        .await?
        .ok_or_else(ApiError::conversation_not_found)?;
    if let Some(title) = &changes.title {
        let role = Role::parse(&membership.role).unwrap_or(Role::Member);
        if membership.kind == DIRECT {
            return Err(forbidden("a direct conversation has no title"));
        }
        if !role.manages() {
            return Err(forbidden("only the owner and admins rename a group"));
        }
        let event = SystemEvent {
            kind: SystemType::Renamed,
            by: me,
            user_ids: Vec::new(),
            title: Some(title.as_str().to_owned()),
            call: None,
        };
        let content = format!("renamed the group to {}", title.as_str());
        let message = state
            .store
            .rename_group(conversation_id, title.as_str(), &event, &content)
            .await?;
        let members = state.store.member_ids(conversation_id).await?;
        announce(state, conversation_id, &event, &members, Some(&message)).await?;
    }
    if let Some(muted) = changes.muted {
        state.store.set_muted(conversation_id, me, muted).await?;
    }
    show(state, me, conversation_id).await
}

/// Adds users to a group (owner and admins): their sockets join its room, then every member
/// gets `conversationUpdated` and the `membersAdded` message.
pub async fn add_members(
    state: &AppState,
    me: Uuid,
    conversation_id: Uuid,
    user_ids: &[String],
) -> ApiResult<Conversation> {
    let role = role_in_group(state, me, conversation_id).await?;
    if !role.manages() {
        return Err(forbidden("only the owner and admins add members"));
    }
    let users = new_members(state, me, user_ids).await?;
    let event = |added: Vec<Uuid>| SystemEvent {
        kind: SystemType::MembersAdded,
        by: me,
        user_ids: added,
        title: None,
        call: None,
    };
    let content = format!("added {} member(s)", users.len());
    let outcome = state
        .store
        .add_members(
            conversation_id,
            &users,
            state.config.group_max_members,
            event,
            &content,
        )
        .await?;
    match outcome {
        Added::Full => return Err(group_full(state)),
        Added::Added(added, Some(message)) => {
            for user in &added {
                state.realtime.join_group(*user, conversation_id).await;
            }
            let members = state.store.member_ids(conversation_id).await?;
            state.realtime.partners_met(&added, &members).await;
            let event = message.system.clone().unwrap_or_else(|| event(added));
            announce(state, conversation_id, &event, &members, Some(&message)).await?;
        }
        Added::Added(_, None) => {}
    }
    show(state, me, conversation_id).await
}

/// Removes a member (owner and admins; an admin cannot remove the owner or another admin), or
/// lets the caller leave (the owner only once they passed ownership on, unless they are the
/// last member, and then the group is deleted). The one who lost access gets
/// `conversationRemoved` once their sockets left the room; the others the change.
pub async fn remove_member(
    state: &AppState,
    me: Uuid,
    conversation_id: Uuid,
    user: Uuid,
) -> ApiResult<()> {
    let my_role = role_in_group(state, me, conversation_id).await?;
    let members = state.store.members(conversation_id).await?;
    let target = members
        .iter()
        .find(|m| m.user_id == user)
        .ok_or_else(ApiError::user_not_found)?;
    let target_role = Role::parse(&target.role).unwrap_or(Role::Member);
    let leaving = user == me;
    if leaving {
        if my_role == Role::Owner && members.len() > 1 {
            return Err(ApiError::conflict(
                ErrorCode::OwnerMustTransfer,
                "give the group another owner before leaving it",
            ));
        }
    } else {
        let allowed = match my_role {
            Role::Owner => true,
            Role::Admin => target_role == Role::Member,
            Role::Member => false,
        };
        if !allowed {
            return Err(forbidden("you may not remove this member"));
        }
    }
    let (kind, content, reason) = if leaving {
        (SystemType::MemberLeft, "left the group", "left")
    } else {
        (SystemType::MemberRemoved, "removed a member", "removed")
    };
    let event = SystemEvent {
        kind,
        by: me,
        user_ids: vec![user],
        title: None,
        call: None,
    };
    let Some(message) = state
        .store
        .remove_member(conversation_id, user, &event, content)
        .await?
    else {
        return Err(ApiError::user_not_found());
    };
    state.realtime.leave_group(user, conversation_id).await;
    let reason = if message.is_none() { "deleted" } else { reason };
    let removed = json!({"conversationId": conversation_id, "reason": reason});
    state
        .realtime
        .emit_to_user(user, "conversationRemoved", &removed)
        .await;
    if let Some(message) = &message {
        let remaining = state.store.member_ids(conversation_id).await?;
        announce(state, conversation_id, &event, &remaining, Some(message)).await?;
    } else {
        tracing::info!(category = "message", %conversation_id, "👥 group deleted: its last member left");
    }
    Ok(())
}

/// Gives a member a role (the owner only); `owner` passes ownership on and makes the old owner
/// an admin.
pub async fn set_role(
    state: &AppState,
    me: Uuid,
    conversation_id: Uuid,
    user: Uuid,
    role: Role,
) -> ApiResult<Conversation> {
    let my_role = role_in_group(state, me, conversation_id).await?;
    if my_role != Role::Owner {
        return Err(forbidden("only the owner changes roles"));
    }
    if user == me {
        return Err(forbidden(
            "give another member the role; the owner stays owner until then",
        ));
    }
    let event = SystemEvent {
        kind: SystemType::RoleChanged,
        by: me,
        user_ids: vec![user],
        title: Some(role.as_str().to_owned()),
        call: None,
    };
    let content = format!("made a member {}", role.as_str());
    let message = state
        .store
        .set_role(conversation_id, user, role.as_str(), &event, &content)
        .await?
        .ok_or_else(ApiError::user_not_found)?;
    let members = state.store.member_ids(conversation_id).await?;
    announce(state, conversation_id, &event, &members, Some(&message)).await?;
    show(state, me, conversation_id).await
}

/// Tells the members of a group about a change: the system message like any message, then
/// `conversationUpdated` to each member with their own view of the group, with its members when
/// it has at most 100 (SPEC §10).
async fn announce(
    state: &AppState,
    conversation_id: Uuid,
    event: &SystemEvent,
    members: &[Uuid],
    message: Option<&Message>,
) -> ApiResult<()> {
    if let Some(message) = message {
        state.metrics.message_stored();
        messaging::push_new_message(state, Place::Group { conversation_id }, message).await;
    }
    let change = json!({"type": event.kind, "by": event.by, "userIds": event.user_ids});
    // The member list is the same for everyone: read once (and only for up to 100 members).
    let list = if members.len() <= MEMBERS_INLINE_MAX {
        Some(self::members(state, conversation_id).await?)
    } else {
        None
    };
    for member in members {
        let Some(row) = state
            .store
            .conversation_of(*member, conversation_id)
            .await?
        else {
            continue;
        };
        let mut conversation = object(state, row, false).await?;
        conversation.members = list.clone();
        let payload = json!({"conversation": conversation, "change": change});
        state
            .realtime
            .emit_to_user(*member, "conversationUpdated", &payload)
            .await;
    }
    Ok(())
}

/// The caller's counts after reading.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadState {
    pub ok: bool,
    pub unread_count: i64,
    pub mention_count: i64,
}

/// Moves the caller's read pointer to `up_to` (forward only: an older message changes nothing
/// and is not an error); every member's sockets get `messagesRead`. In a direct conversation
/// the messages become read as by user id.
pub async fn mark_read(
    state: &AppState,
    me: Uuid,
    conversation_id: Uuid,
    up_to: Uuid,
) -> ApiResult<(u64, ReadState)> {
    let place = messaging::resolve(state, me, Destination::Conversation(conversation_id)).await?;
    if !state.store.message_in(conversation_id, up_to).await? {
        return Err(ApiError::validation(BTreeMap::from([(
            "upTo".to_owned(),
            "must be a message of this conversation".to_owned(),
        )])));
    }
    let count = match place {
        Place::Direct { to, .. } => messaging::mark_read(state, me, to, up_to).await?,
        Place::Group { conversation_id } => {
            let now = Timestamp::now();
            let moved = state
                .store
                .move_read_pointer(conversation_id, me, up_to, now)
                .await?;
            if moved {
                let payload = json!({
                    "conversationId": conversation_id,
                    "by": me,
                    "upTo": up_to,
                    "readAt": now,
                });
                state
                    .realtime
                    .emit_to_group(conversation_id, None, "messagesRead", &payload)
                    .await;
            }
            u64::from(moved)
        }
    };
    let row = state
        .store
        .conversation_of(me, conversation_id)
        .await?
        .ok_or_else(ApiError::conversation_not_found)?;
    Ok((
        count,
        ReadState {
            ok: true,
            unread_count: row.unread_count,
            mention_count: row.mention_count,
        },
    ))
}

/// One member who has read up to a message.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadBy {
    pub user_id: Uuid,
    pub read_at: Option<Timestamp>,
}

/// The members whose read pointer is at or past a message of the conversation.
pub async fn reads(
    state: &AppState,
    me: Uuid,
    conversation_id: Uuid,
    message_id: Uuid,
) -> ApiResult<Vec<ReadBy>> {
    state
        .store
        .membership(conversation_id, me)
        .await?
        .ok_or_else(ApiError::conversation_not_found)?;
    if !state.store.message_in(conversation_id, message_id).await? {
        return Err(ApiError::not_found(
            ErrorCode::NotFound,
            "no such message in this conversation",
        ));
    }
    Ok(state
        .store
        .reads(conversation_id, message_id)
        .await?
        .into_iter()
        .map(|(user_id, read_at)| ReadBy { user_id, read_at })
        .collect())
}

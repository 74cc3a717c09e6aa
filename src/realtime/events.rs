//! Client → server events of an authenticated socket: `sendMessage`, `typing`,
//! `getOnlineUsers`, `watchPresence`, `markRead`, `editMessage`, `deleteMessage`, `react`, the calls' `startCall`,
//! `acceptCall`, `declineCall`, `iceCandidate`, `endCall`, `sync`, `ping`. Every one goes through [`admit`] (authenticated,
//! within the per-socket event budget) and answers its ack as `{ok: true, …}` or
//! `{ok: false, error: {code, message}}`. A malformed payload gets `invalid_payload`.

use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use socketioxide::ParserError;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Data, Event, SocketRef, State, TryData};
use uuid::Uuid;

use super::TypingIn;
use super::carries;
use super::connection::{Identity, connection};
use crate::calls;
use crate::conversations;
use crate::domain::{
    self, ChangeCursor, Content, Emoji, Outgoing, PageLimit, attachment_ids, mention_ids,
};
use crate::editing;
use crate::error::{ApiError, ErrorCode};
use crate::messaging::{self, Destination, Place};
use crate::ratelimit::Spend;
use crate::state::AppState;
use crate::timestamp::Timestamp;

/// How long a socket may keep exceeding its event budget before it is disconnected.
const ABUSE_GRACE: Duration = Duration::from_secs(10);

/// Registers the client events of the socket's topic (all of them on the main server).
pub fn register<A: Adapter>(s: &SocketRef<A>) {
    if carries(s.ns(), "newMessage") {
        s.on("sendMessage", on_send_message::<A>);
        s.on("typing", on_typing::<A>);
        s.on("getOnlineUsers", on_get_online_users::<A>);
        s.on("watchPresence", on_watch_presence::<A>);
        s.on("markRead", on_mark_read::<A>);
        s.on("editMessage", on_edit_message::<A>);
        s.on("deleteMessage", on_delete_message::<A>);
        s.on("react", on_react::<A>);
    }
    if carries(s.ns(), "incomingCall") {
        s.on("startCall", on_start_call::<A>);
        s.on("acceptCall", on_accept_call::<A>);
        s.on("declineCall", on_decline_call::<A>);
        s.on("iceCandidate", on_ice_candidate::<A>);
        s.on("endCall", on_end_call::<A>);
    }
    s.on("sync", on_sync::<A>);
    s.on("ping", on_ping::<A>);
    s.on_fallback(on_unknown::<A>);
}

/// Answers an ack with the outcome of an event.
fn reply<A: Adapter>(ack: AckSender<A>, outcome: Result<Value, ApiError>) {
    let _ = match outcome {
        Ok(Value::Object(mut fields)) => {
            fields.insert("ok".into(), Value::Bool(true));
            ack.send(&Value::Object(fields))
        }
        Ok(_) => ack.send(&json!({"ok": true})),
        Err(e) => ack.send(&e.ack()),
    };
}

/// Lets an event through if its socket is authenticated and within its budget.
async fn admit<A: Adapter>(
    s: &SocketRef<A>,
    state: &AppState,
    event: &str,
) -> Result<Identity, ApiError> {
    state.metrics.event_in(event);
    let connection = connection(s);
    connection.connected().await;
    let spend = connection
        .budget
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .spend(ABUSE_GRACE);
    match spend {
        Spend::Allowed => {}
        Spend::Refused => {
            return Err(ApiError::too_many(ErrorCode::RateLimited, 1));
        }
        Spend::Abusive => {
            tracing::warn!(category = "warn", socket = %s.id, "⚠️ socket disconnected for flooding events");
            let _ = s.clone().disconnect();
            return Err(ApiError::too_many(ErrorCode::RateLimited, 1));
        }
    }
    connection.identity().ok_or_else(|| {
        let error = ApiError::unauthorized(
            ErrorCode::Unauthenticated,
            "send `authenticate` with your token first",
        );
        let _ = s.emit("authError", &error.detail());
        error
    })
}

fn parse<T: DeserializeOwned>(data: Result<Value, ParserError>) -> Result<T, ApiError> {
    data.ok()
        .and_then(|value| serde_json::from_value(value).ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::InvalidPayload,
                "the payload does not match this event",
            )
        })
}

fn parse_id(raw: &str, field: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::bad_request(
            ErrorCode::InvalidPayload,
            format!("`{field}` must be an id"),
        )
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendMessage {
    to: Option<String>,
    conversation_id: Option<String>,
    content: Option<String>,
    client_id: Option<String>,
    reply_to_id: Option<String>,
    mentions: Option<Vec<String>>,
    attachment_ids: Option<Vec<String>>,
}

/// The conversation an event names by `to`/`userId` (a user: their direct conversation) or by
/// `conversationId`; both given must name the same one (else `invalid_payload`).
async fn destination(
    state: &AppState,
    me: Uuid,
    user: Option<&str>,
    conversation: Option<&str>,
) -> Result<Destination, ApiError> {
    match (user, conversation) {
        (Some(user), None) => Ok(Destination::User(domain::user_id(user)?)),
        (None, Some(id)) => Ok(Destination::Conversation(conversation_id(id)?)),
        (Some(user), Some(id)) => {
            let (user, id) = (domain::user_id(user)?, conversation_id(id)?);
            match state.store.find_direct_conversation(me, user).await? {
                Some(direct) if direct == id => Ok(Destination::Conversation(id)),
                _ => Err(ApiError::bad_request(
                    ErrorCode::InvalidPayload,
                    "`to` and `conversationId` name different conversations",
                )),
            }
        }
        (None, None) => Err(ApiError::bad_request(
            ErrorCode::InvalidPayload,
            "name the conversation: `to` or `conversationId`",
        )),
    }
}

/// A conversation id from a payload: text that is not one names no conversation.
fn conversation_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::conversation_not_found())
}

async fn on_send_message<A: Adapter>(
    s: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(state): State<AppState>,
) {
    let outcome = async {
        let me = admit(&s, &state, "sendMessage").await?;
        let input: SendMessage = parse(data)?;
        let to = destination(
            &state,
            me.user.id,
            input.to.as_deref(),
            input.conversation_id.as_deref(),
        )
        .await?;
        if input.content.is_none() && input.attachment_ids.as_ref().is_none_or(Vec::is_empty) {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidPayload,
                "`content` is required (it may be empty only with `attachmentIds`)",
            ));
        }
        let outgoing = Outgoing::parse(
            input.content.as_deref(),
            input.client_id.as_deref(),
            attachment_ids(input.attachment_ids.as_deref())?,
        )?
        .replying_to(input.reply_to_id.as_deref())?;
        let mentions = mention_ids(input.mentions.as_deref())?;
        let sent = messaging::send(&state, &me.user, to, outgoing, &mentions).await?;
        Ok(json!({"message": sent.message, "delivered": sent.delivered}))
    }
    .await;
    reply(ack, outcome);
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Typing {
    to: Option<String>,
    conversation_id: Option<String>,
    is_typing: bool,
}

async fn on_typing<A: Adapter>(
    s: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(state): State<AppState>,
) {
    let outcome = async {
        let me = admit(&s, &state, "typing").await?;
        let input: Typing = parse(data)?;
        let place = match (input.to.as_deref(), input.conversation_id.as_deref()) {
            // Typing to someone not written to yet: there is no conversation to look up.
            (Some(to), None) => {
                let to = parse_id(to, "to")?;
                let conversation_id = state.store.find_direct_conversation(me.user.id, to).await?;
                TypingIn::Direct {
                    to,
                    conversation_id,
                }
            }
            (to, conversation) => {
                let to = destination(&state, me.user.id, to, conversation).await?;
                match messaging::resolve(&state, me.user.id, to).await? {
                    Place::Direct {
                        conversation_id,
                        to,
                    } => TypingIn::Direct {
                        to,
                        conversation_id: Some(conversation_id),
                    },
                    Place::Group { conversation_id } => TypingIn::Group(conversation_id),
                }
            }
        };
        state
            .realtime
            .typing(me.user.id, place, input.is_typing)
            .await;
        Ok(json!({}))
    }
    .await;
    reply(ack, outcome);
}

/// `getOnlineUsers {cursor?, limit?}`: one page of everyone online, by user id.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OnlinePageRequest {
    cursor: Option<String>,
    limit: Option<u64>,
}

/// The default and the largest page of `getOnlineUsers`.
const ONLINE_PAGE: u64 = 100;
const ONLINE_PAGE_MAX: u64 = 500;

async fn on_get_online_users<A: Adapter>(
    s: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    AckRequested(wants_ack): AckRequested,
    State(state): State<AppState>,
) {
    let outcome = async {
        admit(&s, &state, "getOnlineUsers").await?;
        let request: OnlinePageRequest = match data {
            Ok(Value::Null) | Err(_) => OnlinePageRequest::default(),
            data => parse(data)?,
        };
        let limit = request.limit.unwrap_or(ONLINE_PAGE);
        if !(1..=ONLINE_PAGE_MAX).contains(&limit) {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidPayload,
                format!("`limit` must be an integer from 1 to {ONLINE_PAGE_MAX}"),
            ));
        }
        let after = request
            .cursor
            .as_deref()
            .map(|c| parse_id(c, "cursor"))
            .transpose()?;
        let page = state.realtime.online_page(after, limit as usize);
        Ok(json!({"users": page.users, "total": page.total, "nextCursor": page.next}))
    }
    .await;
    match outcome {
        Ok(payload) if !wants_ack => {
            let _ = s.emit("getOnlineUsers", &payload);
        }
        outcome => reply(ack, outcome),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WatchPresence {
    user_ids: Vec<String>,
}

async fn on_watch_presence<A: Adapter>(
    s: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(state): State<AppState>,
) {
    let outcome = async {
        let me = admit(&s, &state, "watchPresence").await?;
        let input: WatchPresence = parse(data)?;
        let max = state.config.presence_watch_max;
        if input.user_ids.len() > max {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidPayload,
                format!("`userIds` lists at most {max} users"),
            ));
        }
        let mut ids = Vec::with_capacity(input.user_ids.len());
        for raw in &input.user_ids {
            let id = parse_id(raw, "userIds")?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        // Unknown ids are left out, of the answer and of the list.
        let known: std::collections::HashSet<Uuid> = state
            .store
            .users_by_id(&ids)
            .await?
            .into_iter()
            .map(|u| u.id)
            .collect();
        ids.retain(|id| known.contains(id));
        let (online, offline) = state.realtime.watch(s.id, me.user.id, ids);
        Ok(json!({"online": online, "offline": offline}))
    }
    .await;
    reply(ack, outcome);
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MarkRead {
    user_id: Option<String>,
    conversation_id: Option<String>,
    up_to: String,
}

async fn on_mark_read<A: Adapter>(
    s: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(state): State<AppState>,
) {
    let outcome = async {
        let me = admit(&s, &state, "markRead").await?;
        let input: MarkRead = parse(data)?;
        let up_to = parse_id(&input.up_to, "upTo")?;
        let user = input.user_id.as_deref();
        let count = match (user, input.conversation_id.as_deref()) {
            (Some(user), None) => {
                let other = parse_id(user, "userId")?;
                messaging::mark_read(&state, me.user.id, other, up_to).await?
            }
            (_, conversation) => {
                let named = destination(&state, me.user.id, user, conversation).await?;
                let Destination::Conversation(id) = named else {
                    return Err(ApiError::bad_request(
                        ErrorCode::InvalidPayload,
                        "name the conversation: `userId` or `conversationId`",
                    ));
                };
                conversations::mark_read(&state, me.user.id, id, up_to)
                    .await?
                    .0
            }
        };
        Ok(json!({"count": count}))
    }
    .await;
    reply(ack, outcome);
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Sync {
    since: Option<String>,
    changed_after: Option<String>,
    limit: Option<i64>,
}

async fn on_sync<A: Adapter>(
    s: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(state): State<AppState>,
) {
    let outcome = async {
        let me = admit(&s, &state, "sync").await?;
        let input: Sync = parse(data)?;
        let since = input
            .since
            .filter(|s| !s.is_empty())
            .map(|s| parse_id(&s, "since"))
            .transpose()?;
        let changed_after = input
            .changed_after
            .filter(|c| !c.is_empty())
            .map(|c| {
                ChangeCursor::parse(&c).map_err(|m| ApiError::invalid_field("changedAfter", m))
            })
            .transpose()?;
        let limit = PageLimit::from_payload(input.limit)?;
        let page = messaging::sync(&state, me.user.id, since, changed_after, limit).await?;
        Ok(json!(page))
    }
    .await;
    reply(ack, outcome);
}

/// A message named by a payload: text that is not an id names no message.
fn message_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::message_not_found())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EditMessage {
    message_id: String,
    content: String,
}

async fn on_edit_message<A: Adapter>(
    s: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(state): State<AppState>,
) {
    let outcome = async {
        let me = admit(&s, &state, "editMessage").await?;
        let input: EditMessage = parse(data)?;
        let id = message_id(&input.message_id)?;
        let content =
            Content::parse(&input.content).map_err(|m| ApiError::invalid_field("content", m))?;
        let message = editing::edit(&state, &me.user, id, &content).await?;
        Ok(json!({ "message": message }))
    }
    .await;
    reply(ack, outcome);
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteMessage {
    message_id: String,
}

async fn on_delete_message<A: Adapter>(
    s: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(state): State<AppState>,
) {
    let outcome = async {
        let me = admit(&s, &state, "deleteMessage").await?;
        let input: DeleteMessage = parse(data)?;
        editing::delete(&state, &me.user, message_id(&input.message_id)?).await?;
        Ok(json!({}))
    }
    .await;
    reply(ack, outcome);
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct React {
    message_id: String,
    emoji: String,
    add: bool,
}

async fn on_react<A: Adapter>(
    s: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(state): State<AppState>,
) {
    let outcome = async {
        let me = admit(&s, &state, "react").await?;
        let input: React = parse(data)?;
        let id = message_id(&input.message_id)?;
        let emoji = Emoji::parse(&input.emoji)?;
        let reactions = editing::react(&state, &me.user, id, &emoji, input.add).await?;
        Ok(json!(reactions))
    }
    .await;
    reply(ack, outcome);
}

#[derive(Deserialize)]
struct StartCall {
    to: String,
    media: String,
    offer: Value,
}

async fn on_start_call<A: Adapter>(
    s: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(state): State<AppState>,
) {
    let outcome = async {
        let me = admit(&s, &state, "startCall").await?;
        let input: StartCall = parse(data)?;
        let to = domain::user_id(&input.to)?;
        let media = calls::Media::parse(&input.media).ok_or_else(|| {
            ApiError::bad_request(ErrorCode::InvalidPayload, "`media` must be audio or video")
        })?;
        let call = calls::start(&state, &device(&s, &me), to, media, &input.offer).await?;
        Ok(json!({ "call": call }))
    }
    .await;
    reply(ack, outcome);
}

fn device<'a, A: Adapter>(s: &SocketRef<A>, me: &'a Identity) -> calls::Device<'a> {
    calls::Device {
        user: &me.user,
        session_id: me.session_id,
        socket: s.id.to_string(),
    }
}

/// A call named by an event: text that is not an id names no call.
fn call_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found(ErrorCode::CallNotFound, "no such call of yours"))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AcceptCall {
    call_id: String,
    answer: Value,
}

async fn on_accept_call<A: Adapter>(
    s: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(state): State<AppState>,
) {
    let outcome = async {
        let me = admit(&s, &state, "acceptCall").await?;
        let input: AcceptCall = parse(data)?;
        let id = call_id(&input.call_id)?;
        let call = calls::accept(&state, &device(&s, &me), id, &input.answer).await?;
        Ok(json!({ "call": call }))
    }
    .await;
    reply(ack, outcome);
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CallEvent {
    call_id: String,
}

async fn on_decline_call<A: Adapter>(
    s: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(state): State<AppState>,
) {
    let outcome = async {
        let me = admit(&s, &state, "declineCall").await?;
        let input: CallEvent = parse(data)?;
        calls::decline(&state, &device(&s, &me), call_id(&input.call_id)?).await?;
        Ok(json!({}))
    }
    .await;
    reply(ack, outcome);
}

async fn on_end_call<A: Adapter>(
    s: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(state): State<AppState>,
) {
    let outcome = async {
        let me = admit(&s, &state, "endCall").await?;
        let input: CallEvent = parse(data)?;
        calls::end(&state, &device(&s, &me), call_id(&input.call_id)?).await?;
        Ok(json!({}))
    }
    .await;
    reply(ack, outcome);
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IceCandidate {
    call_id: String,
    candidates: Vec<Value>,
}

async fn on_ice_candidate<A: Adapter>(
    s: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(state): State<AppState>,
) {
    let outcome = async {
        let me = admit(&s, &state, "iceCandidate").await?;
        let input: IceCandidate = parse(data)?;
        let id = call_id(&input.call_id)?;
        calls::candidates(&state, &device(&s, &me), id, &input.candidates).await?;
        Ok(json!({}))
    }
    .await;
    reply(ack, outcome);
}

async fn on_ping<A: Adapter>(
    s: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(state): State<AppState>,
) {
    let outcome = admit(&s, &state, "ping").await.map(|_| {
        let ts = data
            .ok()
            .and_then(|d| d.get("ts").cloned())
            .unwrap_or(Value::Null);
        json!({"ts": ts, "serverTime": Timestamp::now()})
    });
    if let Ok(pong) = &outcome {
        let _ = s.emit("pong", pong);
    }
    reply(ack, outcome);
}

async fn on_unknown<A: Adapter>(
    s: SocketRef<A>,
    Event(event): Event,
    ack: AckSender<A>,
    State(state): State<AppState>,
    _data: Data<Value>,
) {
    let outcome = admit(&s, &state, "unknown").await.and_then(|_| {
        Err(ApiError::bad_request(
            ErrorCode::UnknownEvent,
            format!(
                "there is no event named {:?}",
                event.chars().take(64).collect::<String>()
            ),
        ))
    });
    reply(ack, outcome);
}

/// Whether the client passed an ack callback with its event.
pub struct AckRequested(pub bool);

impl<A: socketioxide::adapter::Adapter> socketioxide::handler::FromMessageParts<A>
    for AckRequested
{
    type Error = std::convert::Infallible;

    fn from_message_parts(
        _: &std::sync::Arc<socketioxide::socket::Socket<A>>,
        _: &mut socketioxide_core::Value,
        ack_id: &Option<i64>,
    ) -> Result<Self, Self::Error> {
        Ok(Self(ack_id.is_some()))
    }
}

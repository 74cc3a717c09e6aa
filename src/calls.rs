//! Calls (SPEC §14): the server rings every device of the callee, lets the first accept win,
//! relays the WebRTC answer and ICE candidates between exactly the two devices, and keeps the
//! call's state in the database, so caller and callee may be on different nodes. Every node's
//! sweeper ends calls that rang too long (`missed`) or whose device is gone for more than 10 s
//! (`disconnected`: its socket closed and no socket of its session came back, or its node died).
//! Each ended call is stored in the direct conversation as a system message.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::messaging::{self, Destination, Place};
use crate::realtime::CallSide;
use crate::state::AppState;
use crate::store::{
    CallDevice, CallRecord, CallRow, MessageKind, NewCall, OutgoingMessage, Started, StoreError,
    SystemEvent, SystemType, User,
};
use crate::timestamp::Timestamp;

/// Longest SDP accepted in an offer or answer.
pub const MAX_SDP_BYTES: usize = 64 * 1024;
/// Candidates per `iceCandidate` event, and kept in all before the accept.
pub const MAX_CANDIDATES: usize = 50;
/// How long a device of a call may be gone before the call ends.
pub const DISCONNECT_GRACE: Duration = Duration::from_secs(10);
/// How often each node's sweeper looks at the live calls.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// `audio` or `video`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Media {
    Audio,
    Video,
}

impl Media {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "audio" => Some(Self::Audio),
            "video" => Some(Self::Video),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Audio => "audio",
            Self::Video => "video",
        }
    }
}

/// The call object of the contract.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    pub id: Uuid,
    pub from: Uuid,
    pub to: Uuid,
    pub media: String,
    pub state: String,
    pub created_at: Timestamp,
    pub answered_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub end_reason: Option<String>,
}

impl From<&CallRow> for Call {
    fn from(row: &CallRow) -> Self {
        Self {
            id: row.id,
            from: row.caller_id,
            to: row.callee_id,
            media: row.media.clone(),
            state: row.state.clone(),
            created_at: row.created_at,
            answered_at: row.answered_at,
            ended_at: row.ended_at,
            end_reason: row.end_reason.clone(),
        }
    }
}

/// The socket an event of a call came from.
pub struct Device<'a> {
    pub user: &'a User,
    pub session_id: Uuid,
    pub socket: String,
}

impl Device<'_> {
    fn stored(&self, state: &AppState) -> CallDevice {
        CallDevice {
            session_id: self.session_id,
            socket: self.socket.clone(),
            node: state.node_id.clone(),
        }
    }
}

/// What this node knows of calls without asking the database: which of its sockets are a
/// call's device, and whether any call is live anywhere (as of the last sweep).
#[derive(Default)]
pub struct Local {
    devices: Mutex<HashMap<String, Vec<Uuid>>>,
    any_live: AtomicBool,
}

impl Local {
    fn add(&self, socket: &str, call: Uuid) {
        let mut devices = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        devices.entry(socket.to_owned()).or_default().push(call);
        self.any_live.store(true, Ordering::Relaxed);
    }

    fn remove_call(&self, call: Uuid) {
        let mut devices = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        devices.retain(|_, calls| {
            calls.retain(|c| *c != call);
            !calls.is_empty()
        });
    }

    /// Whether no socket of this node is a call's device.
    fn is_empty(&self) -> bool {
        self.devices
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    fn take_socket(&self, socket: &str) -> Vec<Uuid> {
        let mut devices = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        devices.remove(socket).unwrap_or_default()
    }
}

/// An SDP object `{type, sdp}` of the given type, within [`MAX_SDP_BYTES`].
pub fn check_sdp(value: &Value, kind: &str, field: &str) -> ApiResult<()> {
    let ok_type = value.get("type").and_then(Value::as_str) == Some(kind);
    let sdp = value.get("sdp").and_then(Value::as_str);
    match sdp {
        Some(sdp) if ok_type && !sdp.is_empty() && sdp.len() <= MAX_SDP_BYTES => Ok(()),
        Some(sdp) if sdp.len() > MAX_SDP_BYTES => Err(invalid(format!(
            "`{field}.sdp` must be at most {MAX_SDP_BYTES} bytes"
        ))),
        _ => Err(invalid(format!(
            "`{field}` must be an SDP object {{type: \"{kind}\", sdp}}"
        ))),
    }
}

/// 1 to [`MAX_CANDIDATES`] `RTCIceCandidateInit` objects.
pub fn check_candidates(list: &[Value]) -> ApiResult<()> {
    if list.is_empty() || list.len() > MAX_CANDIDATES {
        return Err(invalid(format!(
            "`candidates` must hold 1 to {MAX_CANDIDATES} candidates"
        )));
    }
    let each_ok = list.iter().all(|c| {
        c.as_object()
            .is_some_and(|o| o.get("candidate").is_some_and(Value::is_string))
    });
    if !each_ok {
        return Err(invalid(
            "each candidate must be an RTCIceCandidateInit object with a `candidate` string",
        ));
    }
    Ok(())
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidPayload, message)
}

fn call_not_found() -> ApiError {
    ApiError::not_found(ErrorCode::CallNotFound, "no such call of yours")
}

fn call_not_ringing() -> ApiError {
    ApiError::conflict(ErrorCode::CallNotRinging, "this call no longer rings")
}

/// Rings `to`'s devices; the calling socket becomes the caller's device. Answers the call
/// (ended as `superseded` when `to` was calling `me` already: that call is the one).
pub async fn start(
    state: &AppState,
    me: &Device<'_>,
    to: Uuid,
    media: Media,
    offer: &Value,
) -> ApiResult<Call> {
    check_sdp(offer, "offer", "offer")?;
    if to == me.user.id {
        return Err(invalid("you cannot call yourself"));
    }
    state.call_limits.take(&me.user.id).await.map_err(|wait| {
        let mut err = ApiError::too_many(ErrorCode::RateLimited, wait.as_secs().max(1));
        err.message = "you are starting calls too fast".to_owned();
        err
    })?;
    let callee = state
        .store
        .find_user(to)
        .await?
        .ok_or_else(ApiError::user_not_found)?;
    if !callee.is_active {
        return Err(ApiError::recipient_disabled());
    }
    let conversation_id = messaging::resolve(state, me.user.id, Destination::User(to))
        .await?
        .conversation_id();
    let device = me.stored(state);
    let new = NewCall {
        conversation_id,
        caller_id: me.user.id,
        callee_id: to,
        media: media.as_str(),
        caller: &device,
    };
    let row = match state.store.start_call(&new).await? {
        Started::Ringing(row) => row,
        Started::Busy => {
            return Err(ApiError::conflict(
                ErrorCode::UserBusy,
                "you or they are in another call",
            ));
        }
        Started::Glare(existing) => {
            // Both called each other at once: the first call survives and rings `me` already.
            let now = Timestamp::now();
            tracing::info!(category = "call", call_id = %existing.id, "📞 glare: the other call survives");
            return Ok(Call {
                id: Uuid::now_v7(),
                from: me.user.id,
                to,
                media: media.as_str().to_owned(),
                state: "ended".to_owned(),
                created_at: now,
                answered_at: None,
                ended_at: Some(now),
                end_reason: Some("superseded".to_owned()),
            });
        }
    };
    state
        .realtime
        .join_call(&me.socket, row.id, CallSide::Caller);
    state.calls.add(&me.socket, row.id);
    let call = Call::from(&row);
    let payload = json!({ "call": call, "offer": offer });
    state
        .realtime
        .emit_to_user(to, "incomingCall", &payload)
        .await;
    crate::push::call(state, &row, &me.user.name).await;
    tracing::info!(category = "call", call_id = %row.id, "📞 call ringing");
    Ok(call)
}

/// The first accept of a ringing call wins: this socket becomes the callee's device, the
/// caller's device gets the answer, the callee's other sockets stop ringing, and the caller's
/// candidates trickled meanwhile follow.
pub async fn accept(
    state: &AppState,
    me: &Device<'_>,
    call_id: Uuid,
    answer: &Value,
) -> ApiResult<Call> {
    check_sdp(answer, "answer", "answer")?;
    let row = callee_call(state, me, call_id).await?;
    let row = state
        .store
        .accept_call(row.id, &me.stored(state))
        .await?
        .ok_or_else(call_not_ringing)?;
    state
        .realtime
        .join_call(&me.socket, row.id, CallSide::Callee);
    state.calls.add(&me.socket, row.id);
    let realtime = &state.realtime;
    realtime
        .emit_to_call(
            row.id,
            CallSide::Caller,
            "callAccepted",
            &json!({ "callId": row.id, "answer": answer }),
        )
        .await;
    let elsewhere = json!({ "callId": row.id, "reason": "answered_elsewhere" });
    realtime
        .emit_to_user_but_call(
            row.callee_id,
            row.id,
            CallSide::Callee,
            "callEnded",
            &elsewhere,
        )
        .await;
    let early: Vec<Value> = serde_json::from_str(&row.early_candidates).unwrap_or_default();
    if !early.is_empty() {
        let payload = json!({ "callId": row.id, "candidates": early });
        realtime
            .emit_to_call(row.id, CallSide::Callee, "iceCandidate", &payload)
            .await;
    }
    tracing::info!(category = "call", call_id = %row.id, "📞 call answered");
    Ok(Call::from(&row))
}

/// The callee declines a ringing call.
pub async fn decline(state: &AppState, me: &Device<'_>, call_id: Uuid) -> ApiResult<()> {
    let row = callee_call(state, me, call_id).await?;
    if row.state != "ringing" {
        return Err(call_not_ringing());
    }
    finish(state, row.id, "declined").await;
    Ok(())
}

/// Relays candidates to the other device of the call. The caller's, while the call rings, are
/// kept for the device that will answer.
pub async fn candidates(
    state: &AppState,
    me: &Device<'_>,
    call_id: Uuid,
    candidates: &[Value],
) -> ApiResult<()> {
    check_candidates(candidates)?;
    let row = live_call(state, call_id).await?;
    let side = device_side(state, &row, me)
        .await?
        .ok_or_else(call_not_found)?;
    if row.state == "ringing" {
        let kept = state
            .store
            .keep_early_candidates(row.id, candidates, MAX_CANDIDATES)
            .await?;
        if !kept {
            return Err(invalid(format!(
                "at most {MAX_CANDIDATES} candidates before the call is answered"
            )));
        }
        return Ok(());
    }
    let payload = json!({ "callId": row.id, "candidates": candidates });
    state
        .realtime
        .emit_to_call(row.id, side.other(), "iceCandidate", &payload)
        .await;
    Ok(())
}

/// Either side ends the call: `cancelled` before an answer, `ended` after. While it rings the
/// callee's sockets may end it too (as a decline).
pub async fn end(state: &AppState, me: &Device<'_>, call_id: Uuid) -> ApiResult<()> {
    let row = live_call(state, call_id).await?;
    let ringing = row.state == "ringing";
    let reason = match device_side(state, &row, me).await? {
        Some(_) if ringing => "cancelled",
        Some(_) => "ended",
        None if ringing && row.callee_id == me.user.id => "declined",
        None => return Err(call_not_found()),
    };
    finish(state, row.id, reason).await;
    Ok(())
}

/// A call that has not ended (`call_not_found` otherwise: an ended call has no devices).
async fn live_call(state: &AppState, call_id: Uuid) -> ApiResult<CallRow> {
    state
        .store
        .find_call(call_id)
        .await?
        .filter(|c| c.state != "ended")
        .ok_or_else(call_not_found)
}

/// A call that has not ended whose callee is `me`.
async fn callee_call(state: &AppState, me: &Device<'_>, call_id: Uuid) -> ApiResult<CallRow> {
    let row = live_call(state, call_id).await?;
    if row.callee_id == me.user.id {
        Ok(row)
    } else {
        Err(call_not_found())
    }
}

/// Which device of the call `me` is: the recorded socket, or a new socket of the session of a
/// device that went (the call goes on with it from now on).
async fn device_side(
    state: &AppState,
    row: &CallRow,
    me: &Device<'_>,
) -> Result<Option<CallSide>, StoreError> {
    if let Some(side) = side_of(row, me) {
        return Ok(Some(side));
    }
    let returning = (row.caller_id == me.user.id
        && row.caller_session == me.session_id
        && row.caller_gone_at.is_some())
        || (row.callee_id == me.user.id
            && row.callee_session == Some(me.session_id)
            && row.callee_gone_at.is_some());
    if !returning {
        return Ok(None);
    }
    for call in state.store.call_device_back(&me.stored(state)).await? {
        take_back(state, &call, me.session_id, &me.socket);
    }
    let fresh = state.store.find_call(row.id).await?;
    Ok(fresh.as_ref().and_then(|row| side_of(row, me)))
}

/// This node's socket is now the device of `call` for its session's side.
fn take_back(state: &AppState, call: &CallRow, session_id: Uuid, socket: &str) {
    let side = if call.caller_session == session_id {
        CallSide::Caller
    } else {
        CallSide::Callee
    };
    state.realtime.join_call(socket, call.id, side);
    state.calls.add(socket, call.id);
    tracing::info!(category = "call", call_id = %call.id, "📞 a call's device came back");
}

/// Which device of the call `me` is, if either.
fn side_of(row: &CallRow, me: &Device<'_>) -> Option<CallSide> {
    if row.caller_id == me.user.id && row.caller_socket == me.socket {
        Some(CallSide::Caller)
    } else if row.callee_id == me.user.id && row.callee_socket.as_deref() == Some(&me.socket) {
        Some(CallSide::Callee)
    } else {
        None
    }
}

/// Ends a call (once, whichever node gets here first): the conversation records it, then both
/// devices (or, while it rang, every socket of the callee) get `callEnded`.
async fn finish(state: &AppState, call_id: Uuid, reason: &str) {
    let ended = match state.store.end_call(call_id, reason).await {
        Ok(Some(ended)) => ended,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(category = "error", error = %e, "❌ ending a call failed");
            return;
        }
    };
    state.calls.remove_call(call_id);
    // Recorded first: a device told `callEnded` finds the call in the conversation already.
    if let Err(e) = record(state, &ended).await {
        tracing::error!(category = "error", error = %e, "❌ recording a call failed");
    }
    let payload = json!({ "callId": call_id, "reason": reason });
    let realtime = &state.realtime;
    realtime
        .emit_to_call(call_id, CallSide::Caller, "callEnded", &payload)
        .await;
    if ended.answered_at.is_some() {
        realtime
            .emit_to_call(call_id, CallSide::Callee, "callEnded", &payload)
            .await;
    } else {
        realtime
            .emit_to_user(ended.callee_id, "callEnded", &payload)
            .await;
    }
    realtime.leave_call(call_id).await;
    tracing::info!(category = "call", call_id = %call_id, reason, "📞 call ended");
}

/// The system message of an ended call: `call` with its duration when it was answered,
/// `missedCall` otherwise.
async fn record(state: &AppState, call: &CallRow) -> Result<(), StoreError> {
    let media = if call.media == "video" {
        "video"
    } else {
        "audio"
    };
    let duration = match (call.answered_at, call.ended_at) {
        (Some(from), Some(to)) => Some((to.as_millis() - from.as_millis()).max(0) / 1000),
        _ => None,
    };
    let (kind, content) = match duration {
        Some(secs) => (
            SystemType::Call,
            format!(
                "{} call, {}:{:02}",
                capitalized(media),
                secs / 60,
                secs % 60
            ),
        ),
        None => (SystemType::MissedCall, format!("Missed {media} call")),
    };
    let event = SystemEvent {
        kind,
        by: call.caller_id,
        user_ids: vec![call.callee_id],
        title: None,
        call: Some(CallRecord {
            id: call.id,
            media: media.to_owned(),
            duration_secs: duration,
        }),
    };
    let out = OutgoingMessage {
        conversation_id: call.conversation_id,
        kind: MessageKind::System,
        from: call.caller_id,
        to: Some(call.callee_id),
        content: &content,
        client_id: None,
        reply_to_id: None,
        mentions: &[],
        system: Some(&event),
    };
    if let Some(message) = state.store.insert_message(&out).await? {
        state.metrics.message_stored();
        let place = Place::Direct {
            conversation_id: call.conversation_id,
            to: call.callee_id,
        };
        messaging::push_new_message(state, place, &message).await;
    }
    Ok(())
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// A socket of this node closed: if it was a call's device, the grace starts. Costs nothing for
/// a socket in no call.
pub fn socket_gone(state: &AppState, socket: impl std::fmt::Display) {
    if state.calls.is_empty() {
        return;
    }
    let socket = socket.to_string();
    let calls = state.calls.take_socket(&socket);
    if calls.is_empty() {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        let now = Timestamp::now();
        for call in calls {
            if let Err(e) = state.store.call_device_gone(call, &socket, now).await {
                tracing::error!(category = "error", error = %e, "❌ noting a call's device gone failed");
            }
        }
    });
}

/// A socket authenticated: if its session is a call's device that went, the call goes on with
/// this socket. Costs nothing while no call is live anywhere.
pub fn socket_back(state: &AppState, session_id: Uuid, socket: impl std::fmt::Display) {
    if !state.calls.any_live.load(Ordering::Relaxed) {
        return;
    }
    let (state, socket) = (state.clone(), socket.to_string());
    tokio::spawn(async move { device_back(&state, session_id, &socket).await });
}

async fn device_back(state: &AppState, session_id: Uuid, socket: &str) {
    let device = CallDevice {
        session_id,
        socket: socket.to_owned(),
        node: state.node_id.clone(),
    };
    let calls = match state.store.call_device_back(&device).await {
        Ok(calls) => calls,
        Err(e) => {
            tracing::error!(category = "error", error = %e, "❌ taking a call's device back failed");
            return;
        }
    };
    for call in calls {
        take_back(state, &call, session_id, socket);
    }
}

/// Starts this node's sweeper; it ends when the server shuts down.
pub fn start_sweeper(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(SWEEP_EVERY).await;
            if state.realtime.is_stopping() || state.store.is_closed() {
                return;
            }
            if let Err(e) = sweep(&state).await {
                tracing::warn!(category = "warn", error = %e, "⚠️ the call sweeper failed; trying again");
            }
        }
    });
}

/// Ends what rang too long and what lost a device, and notes devices on nodes that are gone.
async fn sweep(state: &AppState) -> Result<(), StoreError> {
    let live = state.store.live_calls().await?;
    state
        .calls
        .any_live
        .store(!live.is_empty(), Ordering::Relaxed);
    if live.is_empty() {
        return Ok(());
    }
    let alive: Vec<String> = match &state.cluster {
        None => vec![state.node_id.clone()],
        Some(cluster) => match cluster.live_nodes().await {
            Ok(nodes) => nodes,
            // Without the registry no node is judged dead.
            Err(_) => live
                .iter()
                .flat_map(|c| [Some(c.caller_node.clone()), c.callee_node.clone()])
                .flatten()
                .collect(),
        },
    };
    let now = Timestamp::now();
    let ring_until = state.config.call_ring_timeout;
    for call in live {
        if call.state == "ringing" && now >= call.created_at.plus(ring_until) {
            finish(state, call.id, "missed").await;
            continue;
        }
        let gone_long =
            |at: Option<Timestamp>| at.is_some_and(|at| now >= at.plus(DISCONNECT_GRACE));
        if gone_long(call.caller_gone_at) || gone_long(call.callee_gone_at) {
            finish(state, call.id, "disconnected").await;
            continue;
        }
        let devices = [
            (
                Some(&call.caller_node),
                Some(&call.caller_socket),
                call.caller_gone_at,
            ),
            (
                call.callee_node.as_ref(),
                call.callee_socket.as_ref(),
                call.callee_gone_at,
            ),
        ];
        for (node, socket, gone) in devices {
            if let (Some(node), Some(socket), None) = (node, socket, gone)
                && !alive.contains(node)
            {
                state.store.call_device_gone(call.id, socket, now).await?;
            }
        }
    }
    Ok(())
}

/// `GET /api/calls/ice-servers`: the STUN servers, and the TURN servers with credentials that
/// expire after `TURN_TTL` (coturn's `use-auth-secret`: the username is `<expiry>:<userId>`,
/// the credential the base64 HMAC-SHA1 of it under `TURN_SECRET`).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IceServers {
    pub ice_servers: Vec<IceServer>,
    /// Seconds the TURN credentials last.
    pub ttl: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

pub fn ice_servers(state: &AppState, user_id: Uuid) -> IceServers {
    let config = &state.config;
    let mut servers = Vec::new();
    if !config.stun_urls.is_empty() {
        servers.push(IceServer {
            urls: config.stun_urls.clone(),
            username: None,
            credential: None,
        });
    }
    if let (false, Some(secret)) = (config.turn_urls.is_empty(), &config.turn_secret) {
        let expiry = Timestamp::now().as_millis() / 1000 + config.turn_ttl.as_secs() as i64;
        let username = format!("{expiry}:{user_id}");
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(username.as_bytes());
        let credential =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        servers.push(IceServer {
            urls: config.turn_urls.clone(),
            username: Some(username),
            credential: Some(credential),
        });
    }
    IceServers {
        ice_servers: servers,
        ttl: config.turn_ttl.as_secs(),
    }
}

//! The two loops every node runs for Web Push. The decision reads the messages `PUSH_DELAY` old
//! from a mark every node shares and queues a push for each subscription of a member who was
//! not reached (moving the mark and storing the pushes in one transaction, so one node decides
//! each message and a crash loses none). The sender claims due pushes (one sender each, on any
//! node; a claim runs out when its node dies), encrypts and sends them, and settles each by the
//! push service's answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode};
use futures_util::future::join_all;
use uuid::Uuid;
use web_push_native::{Auth, WebPushBuilder};

use super::{PREVIEW_CHARS, Payload, TITLE_CHARS, TTL_SECS, endpoint, shortened};
use crate::domain::uuid_v7_floor;
use crate::state::AppState;
use crate::store::{ClaimedPush, NewPush, PushCandidate};
use crate::timestamp::Timestamp;

/// The shared mark of the decision: the newest message id it has decided.
const MARK: &str = "push_decided_up_to";
/// Messages decided per step.
const DECIDE_BATCH: i64 = 500;
/// Pushes claimed per round.
const SEND_BATCH: i64 = 32;
/// Tries of one push before it is given up (SPEC §13).
const MAX_ATTEMPTS: i32 = 3;
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// How often each loop looks when nothing woke it.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// Sets the decision's mark to now when no node ever set it, before the node serves: every
/// message stored from then on is decided, none from before (history is not pushed).
pub async fn mark_start(store: &crate::store::Store) -> Result<(), crate::store::StoreError> {
    let now = uuid_v7_floor(Timestamp::now().as_millis()).to_string();
    store.setting_or_insert(MARK, &now).await.map(drop)
}

/// Starts both loops; they end when the server shuts down (`stopping`).
pub fn start(state: &AppState) {
    tokio::spawn(decide_loop(state.clone()));
    tokio::spawn(send_loop(state.clone()));
}

fn stopping(state: &AppState) -> bool {
    state.realtime.is_stopping() || state.store.is_closed()
}

async fn decide_loop(state: AppState) {
    let tick = (state.config.push_delay / 4).clamp(Duration::from_millis(50), IDLE_TICK);
    let failing = AtomicBool::new(false);
    loop {
        tokio::time::sleep(tick).await;
        if stopping(&state) {
            return;
        }
        // Steps until caught up; each full batch goes on at once.
        loop {
            match decide(&state).await {
                Ok(more) => {
                    if failing.swap(false, Ordering::Relaxed) {
                        tracing::info!(category = "ok", "✅ push decision works again");
                    }
                    if !more {
                        break;
                    }
                }
                Err(e) => {
                    if !failing.swap(true, Ordering::Relaxed) {
                        tracing::error!(category = "error", error = %e, "❌ push decision failed; trying again");
                    }
                    break;
                }
            }
        }
    }
}

/// One step of the decision; true when a full batch was decided (more may wait).
async fn decide(state: &AppState) -> Result<bool, crate::store::StoreError> {
    let now = Timestamp::now();
    let horizon = uuid_v7_floor(now.as_millis() - state.config.push_delay.as_millis() as i64);
    // Set before the node served (`mark_start`): read, never written, while nothing happens.
    let Some(mark) = state.store.setting(MARK).await? else {
        mark_start(&state.store).await?;
        return Ok(false);
    };
    let Ok(from) = mark.parse::<Uuid>() else {
        tracing::error!(
            category = "error",
            "❌ push decision: its mark is not an id; starting from now"
        );
        let fresh = uuid_v7_floor(now.as_millis()).to_string();
        state
            .store
            .advance_push_mark(MARK, &mark, &fresh, &[])
            .await?;
        return Ok(false);
    };
    if horizon <= from {
        return Ok(false);
    }
    let ids = state
        .store
        .message_ids_between(from, horizon, DECIDE_BATCH)
        .await?;
    if ids.is_empty() {
        // Nothing to decide: the mark stays (moving it would be a write every tick for nothing).
        return Ok(false);
    }
    let full = ids.len() as i64 == DECIDE_BATCH;
    let to = if full {
        *ids.last().expect("a full batch")
    } else {
        horizon
    };
    let candidates = state.store.push_candidates(from, to).await?;
    let pushes = decided(state, &candidates, now);
    let moved = state
        .store
        .advance_push_mark(MARK, &from.to_string(), &to.to_string(), &pushes)
        .await?;
    if moved && !pushes.is_empty() {
        state.push.wake.notify_one();
    }
    Ok(moved && full)
}

/// The pushes of `candidates`: a group member who is online now got the message live (or from
/// `sync` when they came back), so only those offline are pushed to; a direct message's
/// candidates were not acknowledged by any device already.
fn decided(state: &AppState, candidates: &[PushCandidate], now: Timestamp) -> Vec<NewPush> {
    let presence = state.realtime.presence();
    let mut pushes = Vec::with_capacity(candidates.len());
    for c in candidates {
        let direct = c.conversation_kind == "direct";
        if !direct && presence.is_online(c.user_id) {
            continue;
        }
        let name = &c.sender_name;
        let mentioned = serde_json::from_str::<Vec<Uuid>>(&c.mentions)
            .is_ok_and(|ids| ids.contains(&c.user_id));
        let title = match (&c.title, direct) {
            (Some(group), false) => format!("{name} in {group}"),
            _ => name.clone(),
        };
        let payload = Payload {
            kind: "message",
            conversation_id: Some(c.conversation_id),
            message_id: Some(c.message_id),
            call_id: None,
            from: Some(super::Sender {
                id: c.sender_id,
                name,
            }),
            title: shortened(&title, TITLE_CHARS),
            body: if state.config.push_preview {
                shortened(&c.content, PREVIEW_CHARS)
            } else {
                String::new()
            },
        };
        pushes.push(NewPush {
            subscription_id: c.subscription_id,
            event_id: c.message_id,
            payload: serde_json::to_string(&payload).expect("a payload serializes"),
            // One per conversation waits at the push service for a device that is offline.
            topic: Some(c.conversation_id.simple().to_string()),
            urgency: if direct || mentioned {
                "high"
            } else {
                "normal"
            },
            ttl_secs: TTL_SECS,
            due_at: now,
        });
    }
    pushes
}

async fn send_loop(state: AppState) {
    let claim_for = state.config.push_timeout * 2 + Duration::from_secs(5);
    let mut failing = false;
    loop {
        tokio::select! {
            () = state.push.wake.notified() => {}
            () = tokio::time::sleep(IDLE_TICK) => {}
        }
        if stopping(&state) {
            return;
        }
        loop {
            let now = Timestamp::now();
            let until = now.plus(claim_for);
            let claimed = match state.store.claim_pushes(now, until, SEND_BATCH).await {
                Ok(claimed) => {
                    if failing {
                        tracing::info!(category = "ok", "✅ push sender: the outbox answers again");
                    }
                    failing = false;
                    claimed
                }
                Err(e) => {
                    if !failing {
                        tracing::error!(category = "error", error = %e, "❌ push sender: claiming failed; trying again");
                    }
                    failing = true;
                    break;
                }
            };
            let full = claimed.len() as i64 == SEND_BATCH;
            join_all(claimed.into_iter().map(|push| settle(&state, push))).await;
            if !full || stopping(&state) {
                break;
            }
        }
    }
}

/// How a push service answered.
enum Answer {
    Sent,
    Gone,
    Retry(Option<Duration>, String),
    Refused(String),
}

/// Sends one push and settles it by the answer.
async fn settle(state: &AppState, push: ClaimedPush) {
    let answer = send(state, &push).await;
    let (outcome, result) = match answer {
        Answer::Sent => ("sent", state.store.finish_push(push.id).await),
        Answer::Gone => {
            tracing::info!(category = "push", subscription_id = %push.subscription_id, "🔕 push subscription gone; deleted");
            (
                "gone",
                state
                    .store
                    .delete_push_subscription(push.subscription_id)
                    .await,
            )
        }
        Answer::Retry(_, reason) if push.attempts >= MAX_ATTEMPTS => {
            state.push.record_error(reason.clone());
            tracing::warn!(
                category = "warn",
                reason,
                "⚠️ push given up after {MAX_ATTEMPTS} tries"
            );
            ("failed", state.store.finish_push(push.id).await)
        }
        Answer::Retry(after, reason) => {
            let backoff = Duration::from_secs(1 << (push.attempts.clamp(1, 6) - 1));
            let wait = after.unwrap_or(backoff).min(MAX_RETRY_AFTER);
            tracing::debug!(category = "push", reason, ?wait, "push to be tried again");
            (
                "retried",
                state
                    .store
                    .retry_push(push.id, Timestamp::now().plus(wait))
                    .await,
            )
        }
        Answer::Refused(reason) => {
            state.push.record_error(reason.clone());
            tracing::warn!(
                category = "warn",
                reason,
                "⚠️ push refused by the push service; dropped"
            );
            ("refused", state.store.finish_push(push.id).await)
        }
    };
    state.metrics.push(outcome);
    if let Err(e) = result {
        // The claim runs out and another round sends it again.
        tracing::error!(category = "error", error = %e, "❌ push sender: settling a push failed");
    }
}

async fn send(state: &AppState, push: &ClaimedPush) -> Answer {
    let request = match request(state, push) {
        Ok(request) => request,
        Err(reason) => return Answer::Refused(reason),
    };
    let answer = match state.push.client.execute(request).await {
        Ok(answer) => answer,
        // Timeouts, refused connections, names that resolve to no public address.
        Err(e) => return Answer::Retry(None, format!("push service unreachable: {e}")),
    };
    let status = answer.status();
    match status {
        StatusCode::OK | StatusCode::CREATED | StatusCode::ACCEPTED => Answer::Sent,
        StatusCode::NOT_FOUND | StatusCode::GONE => Answer::Gone,
        s if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => Answer::Retry(
            retry_after(answer.headers().get("retry-after")),
            format!("push service answered {status}"),
        ),
        _ => Answer::Refused(format!("push service answered {status}")),
    }
}

/// The encrypted request of a push (RFC 8291 `aes128gcm`, RFC 8292 VAPID, RFC 8030 headers).
fn request(state: &AppState, push: &ClaimedPush) -> Result<reqwest::Request, String> {
    let endpoint = url::Url::parse(&push.endpoint)
        .map_err(|_| "a stored endpoint does not parse".to_owned())?;
    if state.config.production && endpoint::names_private_address(&endpoint) {
        return Err("the endpoint points into a private network".to_owned());
    }
    let key = endpoint::public_key(&push.p256dh).ok_or("a stored key does not parse")?;
    let auth = endpoint::auth_secret(&push.auth).ok_or("a stored secret does not parse")?;
    let uri = push
        .endpoint
        .parse()
        .map_err(|_| "a stored endpoint does not parse".to_owned())?;
    let ttl = Duration::from_secs(push.ttl_secs.max(0) as u64);
    let mut request = WebPushBuilder::new(uri, key, Auth::from(auth))
        .with_valid_duration(ttl)
        .build(push.payload.clone().into_bytes())
        .map_err(|e| format!("encrypting a push failed: {e}"))?;
    let origin = endpoint.origin().ascii_serialization();
    let authorization = state
        .push
        .vapid
        .authorization(&origin)
        .map_err(|e| format!("signing a push failed: {e}"))?;
    let headers = request.headers_mut();
    headers.insert("authorization", header(&authorization)?);
    headers.insert("urgency", header(&push.urgency)?);
    if let Some(topic) = &push.topic {
        headers.insert("topic", header(topic)?);
    }
    reqwest::Request::try_from(request).map_err(|e| format!("a push request is invalid: {e}"))
}

fn header(value: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(value).map_err(|_| "a push header is invalid".to_owned())
}

/// `Retry-After` in seconds (an HTTP date is left to the backoff).
fn retry_after(value: Option<&HeaderValue>) -> Option<Duration> {
    let seconds: u64 = value?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

//! Web Push (SPEC §13): a user whose devices are all offline still hears of what they would
//! have been sent live. Browsers' subscriptions are stored per session; what is to be pushed is
//! decided into a stored outbox (a message after `PUSH_DELAY` when no device acknowledged or
//! read it, a notification at once to a user with no socket), and senders on every node claim
//! and send it encrypted (RFC 8291) with the cluster's VAPID key (RFC 8292).

pub mod endpoint;
mod outbox;
pub mod vapid;

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;
use uuid::Uuid;

use crate::config::Config;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::state::AppState;
use crate::store::{NewPush, Notification, Store, Subscription};
use crate::timestamp::Timestamp;

pub use outbox::start;
use vapid::{Vapid, VapidError};

/// Subscriptions one session may hold.
pub const MAX_PER_SESSION: i64 = 10;
/// Characters of a message's content a push shows.
const PREVIEW_CHARS: usize = 100;
/// Characters of a push's title.
const TITLE_CHARS: usize = 100;
/// Up to this many users, their subscriptions are read by id.
const NAMED_USERS: usize = 500;
/// How long a push service keeps a push for a device that is offline.
const TTL_SECS: i64 = 24 * 3600;

/// What every node needs to push: the VAPID key, the client that talks to push services, and
/// what the self-test reports.
pub struct Push {
    pub vapid: Vapid,
    client: reqwest::Client,
    /// Woken when pushes were queued, so the sender need not wait for its next tick.
    wake: tokio::sync::Notify,
    last_error: Mutex<Option<String>>,
}

impl Push {
    pub async fn load(config: &Config, store: &Store) -> Result<Self, VapidError> {
        let subject = config
            .vapid_subject
            .clone()
            .unwrap_or_else(|| config.base_url.as_str().trim_end_matches('/').to_owned());
        let vapid = Vapid::load(
            store,
            config.vapid_private_key.as_ref().map(|k| k.expose()),
            subject,
        )
        .await?;
        outbox::mark_start(store).await?;
        let mut client = reqwest::Client::builder()
            .timeout(config.push_timeout)
            .connect_timeout(config.push_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("craftcode/", env!("CARGO_PKG_VERSION")));
        if config.production {
            client = client.dns_resolver(endpoint::PublicOnly::shared());
        }
        Ok(Self {
            vapid,
            client: client
                .build()
                .expect("the push client's settings are valid"),
            wake: tokio::sync::Notify::new(),
            last_error: Mutex::new(None),
        })
    }

    /// The last push that failed, for the self-test.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("not poisoned").clone()
    }

    fn record_error(&self, error: String) {
        *self.last_error.lock().expect("not poisoned") = Some(error);
    }
}

/// A subscription as its owner lists it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Listed {
    pub endpoint: String,
    pub created_at: Timestamp,
}

impl From<Subscription> for Listed {
    fn from(s: Subscription) -> Self {
        Self {
            endpoint: s.endpoint,
            created_at: s.created_at,
        }
    }
}

/// Stores a browser's subscription for the caller's session (400 naming bad fields, 409
/// `too_many_subscriptions` past [`MAX_PER_SESSION`]).
pub async fn subscribe(
    state: &AppState,
    session_id: Uuid,
    user_id: Uuid,
    endpoint: &str,
    p256dh: &str,
    auth: &str,
) -> ApiResult<Listed> {
    let checked =
        endpoint::check(endpoint, p256dh, auth, state.config.production).map_err(|problems| {
            ApiError::validation(
                problems
                    .into_iter()
                    .map(|(field, problem)| (field.to_owned(), problem.to_owned()))
                    .collect(),
            )
        })?;
    if state.config.production && !endpoint::resolves_publicly(&checked.endpoint).await {
        return Err(ApiError::invalid_field(
            "endpoint",
            "must resolve to public addresses only (not loopback, private or link-local)",
        ));
    }
    let stored = state
        .store
        .subscribe_push(
            session_id,
            user_id,
            checked.endpoint.as_str(),
            &checked.p256dh,
            &checked.auth,
            MAX_PER_SESSION,
        )
        .await?
        .ok_or_else(|| {
            ApiError::conflict(
                ErrorCode::TooManySubscriptions,
                format!("a session may hold at most {MAX_PER_SESSION} push subscriptions"),
            )
        })?;
    tracing::info!(category = "push", user_id = %user_id, "🔔 push subscription stored");
    Ok(stored.into())
}

/// Deletes the caller's subscription of `endpoint` (404 when they have none: another user's is
/// as unknown).
pub async fn unsubscribe(state: &AppState, user_id: Uuid, endpoint: &str) -> ApiResult<()> {
    // Stored as parsed, so a subscription is found by the same spelling it was stored under.
    let endpoint = url::Url::parse(endpoint).map_or_else(|_| endpoint.to_owned(), String::from);
    if state.store.unsubscribe_push(user_id, &endpoint).await? {
        Ok(())
    } else {
        Err(ApiError::not_found(
            ErrorCode::NotFound,
            "no such push subscription",
        ))
    }
}

/// The caller's subscriptions, oldest first.
pub async fn list(state: &AppState, user_id: Uuid) -> ApiResult<Vec<Listed>> {
    let all = state.store.push_subscriptions(user_id).await?;
    Ok(all.into_iter().map(Listed::from).collect())
}

/// The JSON a device's service worker gets (SPEC §13).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    conversation_id: Option<Uuid>,
    message_id: Option<Uuid>,
    call_id: Option<Uuid>,
    from: Option<Sender<'a>>,
    title: String,
    body: String,
}

#[derive(Serialize)]
struct Sender<'a> {
    id: Uuid,
    name: &'a str,
}

fn shortened(text: &str, chars: usize) -> String {
    text.chars().take(chars).collect()
}

/// Queues a notification's push to every subscription of its users who have no socket
/// connected, due at once. Failures are logged: the notification itself is stored already.
pub async fn notification(state: &AppState, sent: &[Notification]) {
    let offline: HashMap<Uuid, &Notification> = {
        let presence = state.realtime.presence();
        sent.iter()
            .filter(|n| !presence.is_online(n.user_id))
            .map(|n| (n.user_id, n))
            .collect()
    };
    if offline.is_empty() {
        return;
    }
    // A few users by id; for many (a notification to everyone) every subscription is read.
    let ids: Vec<Uuid> = offline.keys().copied().collect();
    let which = (ids.len() <= NAMED_USERS).then_some(ids.as_slice());
    let subscriptions = match state.store.live_push_subscriptions(which).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(category = "error", error = %e, "❌ push: reading subscriptions failed");
            return;
        }
    };
    let now = Timestamp::now();
    let pushes: Vec<NewPush> = subscriptions
        .iter()
        .filter_map(|s| {
            let n = offline.get(&s.user_id)?;
            let payload = Payload {
                kind: "notification",
                conversation_id: None,
                message_id: None,
                call_id: None,
                from: None,
                title: shortened(&n.title, TITLE_CHARS),
                body: if state.config.push_preview {
                    shortened(&n.body, PREVIEW_CHARS)
                } else {
                    String::new()
                },
            };
            Some(NewPush {
                subscription_id: s.id,
                event_id: n.id,
                payload: serde_json::to_string(&payload).expect("a payload serializes"),
                topic: None,
                urgency: "normal",
                ttl_secs: TTL_SECS,
                due_at: now,
            })
        })
        .collect();
    queue(state, &pushes).await;
}

/// Rings the callee's devices that are offline (all of their subscriptions: a device with a
/// socket rings from `incomingCall` too, and its service worker may ignore the push), at once,
/// for as long as the call rings.
pub async fn call(state: &AppState, call: &crate::store::CallRow, caller_name: &str) {
    let subscriptions = match state
        .store
        .live_push_subscriptions(Some(&[call.callee_id]))
        .await
    {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(category = "error", error = %e, "❌ push: reading subscriptions failed");
            return;
        }
    };
    let media = if call.media == "video" {
        "video"
    } else {
        "audio"
    };
    let payload = Payload {
        kind: "call",
        conversation_id: Some(call.conversation_id),
        message_id: None,
        call_id: Some(call.id),
        from: Some(Sender {
            id: call.caller_id,
            name: caller_name,
        }),
        title: shortened(caller_name, TITLE_CHARS),
        body: format!("Incoming {media} call"),
    };
    let payload = serde_json::to_string(&payload).expect("a payload serializes");
    let now = Timestamp::now();
    let pushes: Vec<NewPush> = subscriptions
        .iter()
        .map(|s| NewPush {
            subscription_id: s.id,
            event_id: call.id,
            payload: payload.clone(),
            topic: Some(call.conversation_id.simple().to_string()),
            urgency: "high",
            ttl_secs: state.config.call_ring_timeout.as_secs() as i64,
            due_at: now,
        })
        .collect();
    queue(state, &pushes).await;
}

async fn queue(state: &AppState, pushes: &[NewPush]) {
    if pushes.is_empty() {
        return;
    }
    match state.store.queue_pushes(pushes).await {
        Ok(()) => state.push.wake.notify_one(),
        Err(e) => tracing::error!(category = "error", error = %e, "❌ push: queueing failed"),
    }
}

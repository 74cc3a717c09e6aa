//! What the socket tests share on top of `helpers`: an app tuned for short waits, and sockets
//! signed in as a test user.

use std::time::Duration;

pub use crate::client::{Handshake, SocketClient, WAIT};
pub use crate::helpers::*;
pub use serde_json::{Value, json};

/// Starts the app with presence batches every 100 ms (instead of 1 s), plus `extra` settings.
pub async fn spawn_realtime_app(db: Db, extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![("PRESENCE_INTERVAL", "100ms")];
    vars.extend_from_slice(extra);
    spawn_app_with(db, &vars).await
}

/// A handshake to this app's main socket server.
pub fn handshake(app: &TestApp) -> Handshake {
    Handshake::new(app.addr)
}

/// A socket signed in with `token` in the handshake. Returns once `authenticated` has arrived
/// (consumed), so the socket is in its rooms and counted online; the first `getOnlineUsers` is
/// left queued.
pub async fn connect(app: &TestApp, token: &str) -> SocketClient {
    let mut socket = handshake(app)
        .token(token)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("the handshake was refused: {e}"));
    socket.next_event("authenticated").await;
    socket
}

/// Connects without signing in. Once the connect packet has arrived, the server has the socket
/// counted and its handlers registered, so events sent at once are answered
/// (`authentication::an_event_sent_the_moment_the_connection_opens_is_answered`).
pub async fn connect_anonymous(handshake: Handshake) -> SocketClient {
    handshake
        .connect()
        .await
        .unwrap_or_else(|e| panic!("the handshake was refused: {e}"))
}

/// Waits for something only the server's state shows (e.g. that it has noticed a closed
/// connection), checking every 10 ms, for at most [`WAIT`]; fails naming `what`.
pub async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {WAIT:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Asserts an `{ok: false, error: {code, message}}` ack with this code.
pub fn assert_ack_error(ack: &Value, code: &str) {
    assert_eq!(
        ack["ok"], false,
        "expected a refusal with {code}, got {ack}"
    );
    assert_eq!(ack["error"]["code"], code, "unexpected ack: {ack}");
    assert!(
        ack["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "an error needs a human message: {ack}"
    );
    assert_no_internals(&ack.to_string());
}

/// Asserts an `{ok: true, …}` ack.
pub fn assert_ack_ok(ack: &Value) {
    assert_eq!(ack["ok"], true, "expected ok:true, got {ack}");
}

/// Sends a message over the socket and answers the ack, which must be ok.
pub async fn send_message(socket: &mut SocketClient, to: &TestUser, content: &str) -> Value {
    let ack = socket
        .emit_with_ack("sendMessage", json!({ "to": to.id, "content": content }))
        .await;
    assert_ack_ok(&ack);
    ack
}

/// Creates a group owned by `owner` with `members`; answers the conversation object.
pub async fn create_group(
    app: &TestApp,
    owner: &TestUser,
    title: &str,
    members: &[&TestUser],
) -> Value {
    let ids: Vec<uuid::Uuid> = members.iter().map(|m| m.id).collect();
    let body = json!({ "title": title, "memberIds": ids });
    let answer = app
        .post_json_with_token("/api/conversations", &owner.token, &body)
        .await;
    expect_json(answer, 201).await["conversation"].clone()
}

/// The `id` of a conversation (or message) object.
pub fn id_of(object: &Value) -> String {
    str_at(object, "/id").to_owned()
}

/// Sends to a conversation over the socket; answers the ack.
pub async fn send_to(socket: &mut SocketClient, conversation: &str, content: &str) -> Value {
    socket
        .emit_with_ack(
            "sendMessage",
            json!({ "conversationId": conversation, "content": content }),
        )
        .await
}

/// A direct message over REST; answers the stored message.
pub async fn send_over_rest(app: &TestApp, from: &TestUser, to: &TestUser, content: &str) -> Value {
    let path = format!("/api/messages/send/{}", to.id);
    let body = json!({ "content": content });
    let response = app.post_json_with_token(&path, &from.token, &body).await;
    expect_json(response, 201).await["message"].clone()
}

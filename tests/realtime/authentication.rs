//! A socket that connected without a token: what it may do before `authenticate`, the
//! `authenticate` event itself, the deadline for it, and re-authenticating.

use craftcode::timestamp::Timestamp;

use crate::support::*;

/// A connection with no token at all: accepted, not signed in.
async fn anonymous(app: &TestApp) -> SocketClient {
    connect_anonymous(handshake(app)).await
}

/// Sends `authenticate {token}` and answers its ack.
async fn authenticate(socket: &mut SocketClient, token: impl serde::Serialize) -> Value {
    socket
        .emit_with_ack("authenticate", json!({ "token": token }))
        .await
}

db_test! {
    async fn an_event_sent_the_moment_the_connection_opens_is_answered(db: Db) {
        // `socket.io-client` flushes what was emitted before `connect` as soon as the `40`
        // arrives; a client has nothing else to wait for. Many connections make a late handler
        // registration on the server show up as events that are never answered.
        let app = spawn_realtime_app(db, &[("MAX_CONNECTIONS_PER_USER", "100")]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let mut sockets = Vec::new();
        let mut pending = Vec::new();
        for _ in 0..40 {
            let mut socket = handshake(&app).connect().await.expect("accepted");
            let authenticate = json!({ "token": ada.token });
            pending.push((
                "authenticate",
                socket.emit_expecting_ack("authenticate", authenticate),
            ));
            sockets.push(socket);
            let mut socket = handshake(&app)
                .token(&bob.token)
                .connect()
                .await
                .expect("accepted");
            pending.push((
                "ping",
                socket.emit_expecting_ack("ping", json!({ "ts": 1 })),
            ));
            sockets.push(socket);
        }
        let total = pending.len();
        let mut unanswered = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        for (event, ack) in pending {
            match tokio::time::timeout_at(deadline, ack).await {
                Ok(Ok(ack)) => assert_ack_ok(&ack),
                _ => unanswered.push(event),
            }
        }
        assert!(
            unanswered.is_empty(),
            "{} of {total} events sent right after the connect packet were never answered: \
             {unanswered:?}",
            unanswered.len()
        );
    }

    async fn events_before_authenticate_are_refused_with_unauthenticated(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let bob = app.create_user("Bob").await;
        let mut socket = anonymous(&app).await;
        let attempts = [
            ("sendMessage", json!({ "to": bob.id, "content": "hello" })),
            ("getOnlineUsers", Value::Null),
            ("typing", json!({ "to": bob.id, "isTyping": true })),
            ("ping", json!({ "ts": 1 })),
            ("sync", json!({})),
        ];
        for (event, data) in attempts {
            let ack = socket.emit_with_ack(event, data).await;
            assert_ack_error(&ack, "unauthenticated");
            let auth_error = socket.next_event("authError").await;
            assert_eq!(auth_error["code"], "unauthenticated", "after {event}");
            assert!(
                auth_error["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
        }
        assert!(
            socket.is_connected(),
            "refused events do not end the connection"
        );
    }

    async fn authenticate_with_a_valid_token_signs_the_socket_in(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let mut socket = anonymous(&app).await;
        let ack = authenticate(&mut socket, &ada.token).await;
        assert_ack_ok(&ack);
        assert_eq!(ack["user"]["id"], ada.id.to_string());
        assert_eq!(ack["sessionId"], ada.session_id.to_string());
        let authenticated = socket.next_event("authenticated").await;
        assert_eq!(authenticated["user"]["id"], ada.id.to_string());
        assert_timestamp(&authenticated["expiresAt"]);
        let ack = socket.emit_with_ack("getOnlineUsers", Value::Null).await;
        assert_ack_ok(&ack);
        assert_eq!(ack["total"], 1);
    }

    async fn authenticate_with_a_bad_token_gets_auth_error_and_a_disconnect(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let now = Timestamp::now().as_millis();
        let expired = app.state.tokens.issue_at(
            &app.stored_user(ada.id).await,
            ada.session_id,
            Timestamp::from_millis(now - 7_200_000),
            Timestamp::from_millis(now - 3_600_000),
        );
        for (token, code) in [
            ("garbage", "invalid_token"),
            (expired.token.as_str(), "token_expired"),
        ] {
            let mut socket = anonymous(&app).await;
            let ack = authenticate(&mut socket, token).await;
            assert_ack_error(&ack, code);
            let auth_error = socket.next_event("authError").await;
            assert_eq!(auth_error["code"], code);
            assert!(
                auth_error["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
            socket.wait_disconnect().await;
        }
    }

    async fn authenticate_beyond_the_per_user_limit_gets_too_many_connections(db: Db) {
        let app = spawn_realtime_app(db, &[("MAX_CONNECTIONS_PER_USER", "2")]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let _first = connect(&app, &ada.token).await;
        let mut second = anonymous(&app).await;
        let ack = authenticate(&mut second, &ada.token).await;
        assert_ack_ok(&ack);

        let mut third = anonymous(&app).await;
        let ack = authenticate(&mut third, &ada.token).await;
        assert_ack_error(&ack, "too_many_connections");
        let auth_error = third.next_event("authError").await;
        assert_eq!(auth_error["code"], "too_many_connections");
        third.wait_disconnect().await;
        // Re-authenticating a socket already counted is no new connection, and the limit is
        // per user: Bob still signs in.
        let again = authenticate(&mut second, &ada.token).await;
        assert_ack_ok(&again);
        let mut bobs = anonymous(&app).await;
        let ack = authenticate(&mut bobs, &bob.token).await;
        assert_ack_ok(&ack);
    }

    async fn a_socket_that_never_authenticates_gets_auth_timeout_and_a_disconnect(db: Db) {
        let app = spawn_realtime_app(db, &[("AUTH_TIMEOUT", "1s")]).await;
        let mut socket = anonymous(&app).await;
        let auth_error = socket.next_event("authError").await;
        assert_eq!(auth_error["code"], "auth_timeout");
        socket.wait_disconnect().await;
    }

    async fn a_socket_that_authenticates_in_time_outlives_the_auth_timeout(db: Db) {
        let app = spawn_realtime_app(db, &[("AUTH_TIMEOUT", "1s")]).await;
        let ada = app.create_user("Ada").await;
        let mut socket = anonymous(&app).await;
        let ack = authenticate(&mut socket, &ada.token).await;
        assert_ack_ok(&ack);
        // Past the deadline, the socket must still be there and signed in.
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        socket.expect_no_event("authError").await;
        assert!(socket.is_connected());
    }

    async fn authenticating_again_as_another_user_is_forbidden_and_changes_nothing(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let mut socket = connect(&app, &ada.token).await;
        let ack = authenticate(&mut socket, &bob.token).await;
        assert_ack_error(&ack, "forbidden");
        // Still connected, and still Ada: what it sends comes from her.
        let sent = send_message(&mut socket, &bob, "still me").await;
        assert_eq!(sent["message"]["from"], ada.id.to_string());
        socket.expect_no_event("authenticated").await;
    }

    async fn authenticating_again_with_a_fresh_token_of_the_same_user_is_accepted(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let mut socket = connect(&app, &ada.token).await;
        let other_device = app.login(&ada.email, PASSWORD).await;
        let ack = authenticate(&mut socket, &other_device["token"]).await;
        assert_ack_ok(&ack);
        assert_eq!(ack["user"]["id"], ada.id.to_string());
        assert_eq!(ack["sessionId"], other_device["session"]["id"]);
        let authenticated = socket.next_event("authenticated").await;
        assert_eq!(authenticated["sessionId"], other_device["session"]["id"]);
    }
}

//! Opening a connection: the token in the handshake (or the cookie), the origin check, the
//! per-user limit, and the `connect_error` a refused client sees.

use std::time::Duration;

use craftcode::auth::TokenKeys;
use craftcode::timestamp::Timestamp;

use crate::support::*;

/// The `connect_error` message of a handshake that must be refused.
async fn refusal(handshake: Handshake) -> String {
    match handshake.connect().await {
        Ok(socket) => panic!("the handshake was accepted (socket {})", socket.sid),
        Err(message) => message,
    }
}

db_test! {
    async fn a_valid_token_is_greeted_with_authenticated_then_the_online_users(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let mut socket = handshake(&app)
            .token(&ada.token)
            .connect()
            .await
            .expect("accepted");
        assert!(
            !socket.sid.is_empty(),
            "the connect packet carries the socket id"
        );

        let (first, authenticated) = socket.next_any().await;
        assert_eq!(first, "authenticated");
        assert_eq!(authenticated["user"]["id"], ada.id.to_string());
        assert_eq!(authenticated["user"]["email"], ada.email);
        assert_eq!(authenticated["user"]["name"], "Ada");
        assert_eq!(authenticated["sessionId"], ada.session_id.to_string());
        assert_timestamp(&authenticated["expiresAt"]);
        assert!(
            !authenticated
                .to_string()
                .to_lowercase()
                .contains("password"),
            "the user object shows nothing about the password: {authenticated}"
        );

        let (second, online) = socket.next_any().await;
        assert_eq!(second, "getOnlineUsers");
        assert_eq!(
            online,
            json!({ "users": [{ "userId": ada.id, "name": "Ada" }], "total": 1, "scope": "all" })
        );
    }

    async fn a_garbage_token_is_refused_with_invalid_token(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        for token in ["not-a-jwt", "a.b.c", "Bearer x"] {
            assert_eq!(
                refusal(handshake(&app).token(token)).await,
                "invalid_token",
                "{token}"
            );
        }
    }

    async fn a_token_signed_with_another_secret_is_refused_with_invalid_token(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let forger = TokenKeys::new(
            b"someone else's secret, long enough for HS256",
            Duration::from_secs(3600),
        );
        let forged = forger.issue(&app.stored_user(ada.id).await, ada.session_id);
        assert_eq!(
            refusal(handshake(&app).token(&forged.token)).await,
            "invalid_token"
        );
    }

    async fn an_expired_token_is_refused_with_token_expired(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let now = Timestamp::now().as_millis();
        let expired = app.state.tokens.issue_at(
            &app.stored_user(ada.id).await,
            ada.session_id,
            Timestamp::from_millis(now - 2 * 3_600_000),
            Timestamp::from_millis(now - 3_600_000),
        );
        assert_eq!(
            refusal(handshake(&app).token(&expired.token)).await,
            "token_expired"
        );
    }

    async fn the_token_of_a_logged_out_session_is_refused_with_session_revoked(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let response = app
            .post_json_with_token("/api/auth/logout", &ada.token, &json!({}))
            .await;
        expect_json(response, 200).await;
        assert_eq!(
            refusal(handshake(&app).token(&ada.token)).await,
            "session_revoked"
        );
    }

    async fn a_handshake_from_a_foreign_origin_is_refused_with_origin_not_allowed(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let with_token = handshake(&app)
            .token(&ada.token)
            .header("origin", "http://evil.example");
        assert_eq!(refusal(with_token).await, "origin_not_allowed");
        // Cross-site WebSocket hijacking: the browser sends the victim's cookie along.
        let with_cookie = handshake(&app)
            .header("cookie", &format!("craftcode_token={}", ada.token))
            .header("origin", "http://evil.example");
        assert_eq!(refusal(with_cookie).await, "origin_not_allowed");
    }

    async fn a_connection_beyond_the_per_user_limit_is_refused_with_too_many_connections(db: Db) {
        let app = spawn_realtime_app(db, &[("MAX_CONNECTIONS_PER_USER", "2")]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let _first = connect(&app, &ada.token).await;
        let _second = connect(&app, &ada.token).await;
        assert_eq!(
            refusal(handshake(&app).token(&ada.token)).await,
            "too_many_connections"
        );
        // The limit is per user: someone else still gets in.
        connect(&app, &bob.token).await;
    }

    async fn connections_beyond_max_connections_are_refused_and_a_freed_place_is_taken(db: Db) {
        let app = spawn_realtime_app(db, &[("MAX_CONNECTIONS", "3")]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        // Refused handshakes give their place back.
        for _ in 0..5 {
            assert_eq!(refusal(handshake(&app).token("garbage")).await, "invalid_token");
        }
        // Ten at once, signed in or not: three get in.
        let attempts = (0..10).map(|i| match i % 3 {
            0 => handshake(&app).token(&ada.token).connect(),
            1 => handshake(&app).token(&bob.token).connect(),
            _ => handshake(&app).connect(),
        });
        let mut outcomes = futures_util::future::join_all(attempts).await;
        let refusals: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
        assert_eq!(outcomes.len() - refusals.len(), 3, "{refusals:?}");
        assert!(refusals.iter().all(|r| *r == "too_many_connections"), "{refusals:?}");
        assert_eq!(
            refusal(handshake(&app).token(&bob.token)).await,
            "too_many_connections"
        );
        // One leaves: its place is free again once the server has noticed.
        let open = outcomes.iter().position(Result::is_ok).expect("one got in");
        outcomes.swap_remove(open).expect("connected").disconnect().await;
        wait_until("the server counts two sockets", || {
            app.state.realtime.connections() == 2
        })
        .await;
        connect(&app, &bob.token).await;
    }

    async fn handshakes_at_the_same_moment_cannot_all_pass_the_per_user_limit(db: Db) {
        let app = spawn_realtime_app(db, &[("MAX_CONNECTIONS_PER_USER", "3")]).await;
        let ada = app.create_user("Ada").await;
        let attempts = (0..20).map(|_| handshake(&app).token(&ada.token).connect());
        let outcomes = futures_util::future::join_all(attempts).await;
        let refusals: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
        assert_eq!(outcomes.len() - refusals.len(), 3, "{refusals:?}");
        assert!(refusals.iter().all(|r| *r == "too_many_connections"), "{refusals:?}");
        wait_until("the three sockets are counted", || {
            app.state.realtime.presence().user_connections(ada.id) == 3
        })
        .await;
    }

    async fn a_token_in_the_query_string_is_never_read(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let query = format!("token={}", ada.token);
        let mut socket = connect_anonymous(handshake(&app).query(&query)).await;
        let ack = socket.emit_with_ack("getOnlineUsers", Value::Null).await;
        assert_ack_error(&ack, "unauthenticated");
        let auth_error = socket.next_event("authError").await;
        assert_eq!(auth_error["code"], "unauthenticated");
    }

    async fn the_token_cookie_from_an_allowed_origin_authenticates(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let mut socket = handshake(&app)
            .header("cookie", &format!("craftcode_token={}", ada.token))
            .header("origin", ALLOWED_ORIGIN)
            .connect()
            .await
            .expect("accepted");
        let authenticated = socket.next_event("authenticated").await;
        assert_eq!(authenticated["user"]["id"], ada.id.to_string());
        assert_eq!(authenticated["sessionId"], ada.session_id.to_string());
    }
}

db_test!(clients_that_leave_during_the_handshake_are_not_left_counted_or_online);
async fn clients_that_leave_during_the_handshake_are_not_left_counted_or_online(db: Db) {
    // A page reload, a tab closed while connecting: the client is gone while the server still
    // checks its token, or before it has set the socket up. Each must stop counting, or the
    // user stays online for good and runs into MAX_CONNECTIONS_PER_USER.
    let app = spawn_realtime_app(db, &[("MAX_CONNECTIONS_PER_USER", "1000")]).await;
    let ada = app.create_user("Ada").await;
    for _ in 0..200 {
        handshake(&app).token(&ada.token).connect_and_leave().await;
    }
    let realtime = &app.state.realtime;
    wait_until("no socket is counted", || realtime.connections() == 0).await;
    wait_until("Ada is offline", || {
        realtime.presence().user_connections(ada.id) == 0
    })
    .await;
    // And she can still connect.
    connect(&app, &ada.token).await;
}

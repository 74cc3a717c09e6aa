//! How a connected socket's session lives and ends: the token pushed before expiry, logout
//! (`force_logout` then a disconnect), and a graceful server shutdown.

use chrono::{DateTime, Utc};

use crate::support::*;

fn time_at(value: &Value, pointer: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(str_at(value, pointer))
        .unwrap_or_else(|e| panic!("{pointer} is not RFC 3339 ({e}) in {value}"))
        .to_utc()
}

db_test! {
    async fn a_connected_socket_gets_a_fresh_token_before_its_own_expires(db: Db) {
        let app = spawn_realtime_app(db, &[("JWT_TTL", "3s")]).await;
        let ada = app.create_user("Ada").await;
        let mut socket = handshake(&app)
            .token(&ada.token)
            .connect()
            .await
            .expect("accepted");
        let authenticated = socket.next_event("authenticated").await;
        let first_expiry = time_at(&authenticated, "/expiresAt");

        let updated = socket.next_event("tokenUpdated").await;
        assert!(
            Utc::now() < first_expiry,
            "tokenUpdated came after the old token expired at {first_expiry}"
        );
        let token = str_at(&updated, "/token").to_owned();
        assert_ne!(token, ada.token);
        assert!(time_at(&updated, "/expiresAt") > first_expiry, "{updated}");
        assert_eq!(updated["user"]["id"], ada.id.to_string());
        assert_eq!(
            jwt_claims(&token)["sid"],
            ada.session_id.to_string(),
            "same session"
        );

        // Once the first token's lifetime is over, the socket is still there and signed in.
        let past_expiry = (first_expiry - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(past_expiry + std::time::Duration::from_millis(100)).await;
        socket.barrier().await;
        socket.expect_no_event("force_logout").await;
        assert!(socket.is_connected());
        let me = expect_json(app.get_with_token("/api/auth/me", &token).await, 200).await;
        assert_eq!(me["user"]["id"], ada.id.to_string());
    }

    async fn logging_out_sends_force_logout_then_disconnects(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let mut socket = connect(&app, &ada.token).await;
        let response = app
            .post_json_with_token("/api/auth/logout", &ada.token, &json!({}))
            .await;
        let body = expect_json(response, 200).await;
        assert_eq!(body["sessionsEnded"], 1);
        assert_eq!(body["socketsDisconnected"], 1);
        let notice = socket.next_event("force_logout").await;
        assert_eq!(notice, json!({ "reason": "logout" }));
        socket.wait_disconnect().await;
    }

    async fn logging_out_one_session_leaves_the_other_devices_connected(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let laptop = app.login(&ada.email, PASSWORD).await;
        let mut phone_socket = connect(&app, &ada.token).await;
        let mut laptop_socket = connect(&app, str_at(&laptop, "/token")).await;
        let response = app
            .post_json_with_token("/api/auth/logout", &ada.token, &json!({}))
            .await;
        assert_eq!(expect_json(response, 200).await["socketsDisconnected"], 1);
        phone_socket.next_event("force_logout").await;
        phone_socket.wait_disconnect().await;
        laptop_socket.expect_no_event("force_logout").await;
        assert!(laptop_socket.is_connected());
    }

    async fn logging_out_everywhere_disconnects_the_sockets_of_every_session(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let laptop = app.login(&ada.email, PASSWORD).await;
        let mut sockets = vec![
            connect(&app, &ada.token).await,
            connect(&app, &ada.token).await,
            connect(&app, str_at(&laptop, "/token")).await,
        ];
        let mut bob_socket = connect(&app, &bob.token).await;

        let response = app
            .post_json_with_token("/api/auth/logout", &ada.token, &json!({ "all": true }))
            .await;
        let body = expect_json(response, 200).await;
        assert_eq!(body["sessionsEnded"], 2, "{body}");
        assert_eq!(body["socketsDisconnected"], 3, "{body}");
        for socket in &mut sockets {
            let notice = socket.next_event("force_logout").await;
            assert_eq!(notice, json!({ "reason": "logout" }));
            socket.wait_disconnect().await;
        }
        bob_socket.expect_no_event("force_logout").await;
        assert!(bob_socket.is_connected());
    }

    async fn a_graceful_shutdown_tells_every_socket_before_closing_it(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let mut sockets = vec![
            connect(&app, &ada.token).await,
            connect(&app, &ada.token).await,
            connect(&app, &bob.token).await,
        ];
        let stopping = tokio::spawn(app.stop());
        for socket in &mut sockets {
            let notice = socket.next_event("server_shutdown").await;
            assert!(
                notice["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "{notice}"
            );
            assert!(notice["reconnectAfterMs"].as_u64().is_some(), "{notice}");
            socket.wait_disconnect().await;
        }
        tokio::time::timeout(crate::client::WAIT, stopping)
            .await
            .expect("the server stops once its sockets are closed")
            .expect("the server stopped cleanly");
    }
}

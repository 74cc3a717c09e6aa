//! Calls (§14) over real sockets: ringing every device of the callee, the first accept winning,
//! relaying only between the call's two devices, every way a call ends and how it is recorded,
//! glare, busy users, bad and out-of-order input, the disconnect grace, and the ICE servers.

use std::time::Duration;

use uuid::Uuid;

use crate::namespaces::connect_to;
use crate::support::*;

fn offer() -> Value {
    json!({ "type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n" })
}

fn answer() -> Value {
    json!({ "type": "answer", "sdp": "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\ns=-\r\n" })
}

fn candidate(n: usize) -> Value {
    json!({ "candidate": format!("candidate:{n} 1 udp 2122260223 127.0.0.1 {} typ host", 50000 + n), "sdpMid": "0", "sdpMLineIndex": 0 })
}

/// `startCall` from `socket` to `to`: the ack, which must be ok; answers the call.
async fn start(socket: &mut SocketClient, to: &TestUser, media: &str) -> Value {
    let ack = socket
        .emit_with_ack(
            "startCall",
            json!({ "to": to.id, "media": media, "offer": offer() }),
        )
        .await;
    assert_ack_ok(&ack);
    ack["call"].clone()
}

/// The value `check` answers once it answers one (the server records some things just after it
/// answers the client); fails after 10 s.
async fn eventually_some<T, F, Fut>(check: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(std::time::Instant::now() < deadline, "not within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The system messages of the direct conversation of `a` with `b`, as `a` reads them.
async fn call_records(app: &TestApp, a: &TestUser, b: &TestUser) -> Vec<Value> {
    let path = format!("/api/messages/{}?limit=100", b.id);
    let page = expect_json(app.get_with_token(&path, &a.token).await, 200).await;
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "system")
        .cloned()
        .collect()
}

db_test! {
    async fn a_call_rings_every_device_the_first_accept_wins_and_only_the_two_devices_talk(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let bob_phone = app.login(&bob.email, &bob.password).await;
        let mut ada_laptop = connect(&app, &ada.token).await;
        let mut ada_tablet = connect(&app, &ada.token).await;
        let mut bob_laptop = connect(&app, &bob.token).await;
        let mut bob_phone = connect(&app, str_at(&bob_phone, "/token")).await;
        // Bob's older client on the namespace server rings too.
        let mut bob_messenger = connect_to(&app, "/messenger", &bob.token).await;

        let call = start(&mut ada_laptop, &bob, "video").await;
        assert_eq!((call["from"].as_str(), call["to"].as_str()), (Some(ada.id.to_string().as_str()), Some(bob.id.to_string().as_str())));
        assert_eq!((call["media"].as_str(), call["state"].as_str()), (Some("video"), Some("ringing")));
        assert_timestamp(&call["createdAt"]);
        assert_eq!(call["answeredAt"], Value::Null);
        let id = str_at(&call, "/id").to_owned();
        for device in [&mut bob_laptop, &mut bob_phone, &mut bob_messenger] {
            let ring = device.next_event("incomingCall").await;
            assert_eq!(ring["call"]["id"], id.as_str());
            assert_eq!(ring["offer"], offer());
        }
        ada_tablet.expect_no_event("incomingCall").await;

        // The caller trickles candidates before the answer: kept for the device that answers.
        let early = ada_laptop
            .emit_with_ack("iceCandidate", json!({ "callId": id, "candidates": [candidate(1), candidate(2)] }))
            .await;
        assert_ack_ok(&early);

        // Two of Bob's devices accept at once: one wins.
        let phone_ack = bob_phone.emit_expecting_ack("acceptCall", json!({ "callId": id, "answer": answer() }));
        let laptop_ack = bob_laptop.emit_expecting_ack("acceptCall", json!({ "callId": id, "answer": answer() }));
        let (phone_ack, laptop_ack) = (phone_ack.await.unwrap(), laptop_ack.await.unwrap());
        let (winner, loser, winner_ack, loser_ack) = if phone_ack["ok"] == true {
            (&mut bob_phone, &mut bob_laptop, phone_ack, laptop_ack)
        } else {
            (&mut bob_laptop, &mut bob_phone, laptop_ack, phone_ack)
        };
        assert_eq!(winner_ack["call"]["state"], "active");
        assert_ack_error(&loser_ack, "call_not_ringing");
        let accepted = ada_laptop.next_event("callAccepted").await;
        assert_eq!(accepted, json!({ "callId": id, "answer": answer() }));
        let elsewhere = loser.next_event("callEnded").await;
        assert_eq!(elsewhere, json!({ "callId": id, "reason": "answered_elsewhere" }));
        let messenger_end = bob_messenger.next_event("callEnded").await;
        assert_eq!(messenger_end["reason"], "answered_elsewhere");
        // The answering device gets the caller's early candidates.
        let relayed = winner.next_event("iceCandidate").await;
        assert_eq!(relayed, json!({ "callId": id, "candidates": [candidate(1), candidate(2)] }));

        // Candidates go between the two devices only, both ways.
        let ack = winner
            .emit_with_ack("iceCandidate", json!({ "callId": id, "candidates": [candidate(3)] }))
            .await;
        assert_ack_ok(&ack);
        assert_eq!(ada_laptop.next_event("iceCandidate").await["candidates"], json!([candidate(3)]));
        let ack = ada_laptop
            .emit_with_ack("iceCandidate", json!({ "callId": id, "candidates": [candidate(4)] }))
            .await;
        assert_ack_ok(&ack);
        assert_eq!(winner.next_event("iceCandidate").await["candidates"], json!([candidate(4)]));
        // Ada's other device and Bob's other device are not the call: nothing reaches them, and
        // they cannot send for it.
        for outsider in [&mut ada_tablet, &mut *loser] {
            let refused = outsider
                .emit_with_ack("iceCandidate", json!({ "callId": id, "candidates": [candidate(5)] }))
                .await;
            assert_ack_error(&refused, "call_not_found");
            let refused = outsider.emit_with_ack("endCall", json!({ "callId": id })).await;
            assert_ack_error(&refused, "call_not_found");
            outsider.barrier().await;
            outsider.expect_no_event("iceCandidate").await;
        }

        // Bob hangs up: both devices hear it; the conversation records the call with its length.
        let ended = winner.emit_with_ack("endCall", json!({ "callId": id })).await;
        assert_ack_ok(&ended);
        for device in [&mut ada_laptop, &mut *winner] {
            assert_eq!(device.next_event("callEnded").await, json!({ "callId": id, "reason": "ended" }));
        }
        // Told like any message: Ada's devices get it as hers (messageSent), Bob's as newMessage.
        let told = ada_laptop.next_event_where("messageSent", |p| p["message"]["kind"] == "system").await;
        assert_eq!(told["message"]["system"]["type"], "call");
        let again = ada_laptop.emit_with_ack("endCall", json!({ "callId": id })).await;
        assert_ack_error(&again, "call_not_found");
        let records = call_records(&app, &ada, &bob).await;
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0]["system"]["type"], "call");
        assert_eq!(records[0]["system"]["call"]["id"], id.as_str());
        assert_eq!(records[0]["system"]["call"]["media"], "video");
        assert!(records[0]["system"]["call"]["durationSecs"].is_i64());
        assert!(str_at(&records[0], "/content").starts_with("Video call, 0:0"));
        app.stop().await;
    }
}

db_test! {
    async fn declined_cancelled_and_unanswered_calls_end_for_everyone_and_are_recorded_as_missed(db: Db) {
        let app = spawn_realtime_app(db, &[("CALL_RING_TIMEOUT", "5s")]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let mut ada_socket = connect(&app, &ada.token).await;
        let mut bob_laptop = connect(&app, &bob.token).await;
        let mut bob_phone = connect(&app, &bob.token).await;

        // Declined: the caller hears it, and every device of the callee stops ringing.
        let call = start(&mut ada_socket, &bob, "audio").await;
        let id = str_at(&call, "/id").to_owned();
        bob_phone.next_event("incomingCall").await;
        let declined = bob_laptop.emit_with_ack("declineCall", json!({ "callId": id })).await;
        assert_ack_ok(&declined);
        let reason = json!({ "callId": id, "reason": "declined" });
        assert_eq!(ada_socket.next_event("callEnded").await, reason);
        assert_eq!(bob_phone.next_event("callEnded").await, reason);
        let again = bob_laptop.emit_with_ack("declineCall", json!({ "callId": id })).await;
        assert_ack_error(&again, "call_not_found");
        let late = bob_phone.emit_with_ack("acceptCall", json!({ "callId": id, "answer": answer() })).await;
        assert_ack_error(&late, "call_not_found");

        // Cancelled by the caller before an answer.
        let call = start(&mut ada_socket, &bob, "audio").await;
        let id = str_at(&call, "/id").to_owned();
        let cancelled = ada_socket.emit_with_ack("endCall", json!({ "callId": id })).await;
        assert_ack_ok(&cancelled);
        assert_eq!(bob_phone.next_event_where("callEnded", |p| p["callId"] == id.as_str()).await["reason"], "cancelled");

        // Unanswered: missed after CALL_RING_TIMEOUT, also when the callee's devices went away.
        let call = start(&mut ada_socket, &bob, "video").await;
        let id = str_at(&call, "/id").to_owned();
        bob_phone.disconnect().await;
        let missed = ada_socket.next_event_where("callEnded", |p| p["callId"] == id.as_str()).await;
        assert_eq!(missed["reason"], "missed");
        assert_eq!(bob_laptop.next_event_where("callEnded", |p| p["callId"] == id.as_str()).await["reason"], "missed");

        let records = call_records(&app, &bob, &ada).await;
        let kinds: Vec<&str> = records.iter().map(|m| m["system"]["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["missedCall", "missedCall", "missedCall"]);
        assert_eq!(str_at(&records[0], "/content"), "Missed video call");
        assert_eq!(records[0]["system"]["call"].get("durationSecs"), None);
        app.stop().await;
    }
}

db_test! {
    async fn busy_users_glare_and_bad_input_get_clear_answers(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let admin = app.create_user("Admin").await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let cy = app.create_user("Cy").await;
        let mut ada_socket = connect(&app, &ada.token).await;
        let mut bob_socket = connect(&app, &bob.token).await;
        let mut cy_socket = connect(&app, &cy.token).await;

        // Bad input, each with its own answer, and nothing rings.
        for (payload, code) in [
            (json!({ "to": ada.id, "media": "audio", "offer": offer() }), "invalid_payload"),
            (json!({ "to": Uuid::now_v7(), "media": "audio", "offer": offer() }), "user_not_found"),
            (json!({ "to": "nobody", "media": "audio", "offer": offer() }), "user_not_found"),
            (json!({ "to": bob.id, "media": "hologram", "offer": offer() }), "invalid_payload"),
            (json!({ "to": bob.id, "media": "audio", "offer": { "type": "offer", "sdp": "" } }), "invalid_payload"),
            (json!({ "to": bob.id, "media": "audio", "offer": { "type": "answer", "sdp": "v=0" } }), "invalid_payload"),
            (json!({ "to": bob.id, "media": "audio" }), "invalid_payload"),
            (json!("call me"), "invalid_payload"),
        ] {
            let ack = ada_socket.emit_with_ack("startCall", payload.clone()).await;
            assert_ack_error(&ack, code);
        }
        for (event, payload) in [
            ("acceptCall", json!({ "callId": Uuid::now_v7(), "answer": answer() })),
            ("declineCall", json!({ "callId": "not-an-id" })),
            ("iceCandidate", json!({ "callId": Uuid::now_v7(), "candidates": [candidate(1)] })),
            ("endCall", json!({ "callId": Uuid::now_v7() })),
        ] {
            let ack = ada_socket.emit_with_ack(event, payload).await;
            assert_ack_error(&ack, "call_not_found");
        }
        bob_socket.barrier().await;
        bob_socket.expect_no_event("incomingCall").await;

        // A deactivated user cannot be called.
        let off = app.patch_user(&admin.token, cy.id, &json!({ "isActive": false })).await;
        expect_json(off, 200).await;
        let ack = ada_socket
            .emit_with_ack("startCall", json!({ "to": cy.id, "media": "audio", "offer": offer() }))
            .await;
        assert_ack_error(&ack, "recipient_disabled");
        cy_socket.wait_disconnect().await;

        // Glare: Ada and Bob call each other; Ada's call (the first) survives and rings Bob.
        let first = start(&mut ada_socket, &bob, "audio").await;
        let second = start(&mut bob_socket, &ada, "audio").await;
        assert_eq!((second["state"].as_str(), second["endReason"].as_str()), (Some("ended"), Some("superseded")));
        let ring = bob_socket.next_event("incomingCall").await;
        assert_eq!(ring["call"]["id"], first["id"]);
        ada_socket.barrier().await;
        ada_socket.expect_no_event("incomingCall").await;

        // Candidates: too many at once, or too many before the answer.
        let id = str_at(&first, "/id").to_owned();
        let many: Vec<Value> = (0..51).map(candidate).collect();
        let ack = ada_socket.emit_with_ack("iceCandidate", json!({ "callId": id, "candidates": many })).await;
        assert_ack_error(&ack, "invalid_payload");
        let ack = ada_socket.emit_with_ack("iceCandidate", json!({ "callId": id, "candidates": [{ "sdpMid": "0" }] })).await;
        assert_ack_error(&ack, "invalid_payload");
        let fifty: Vec<Value> = (0..50).map(candidate).collect();
        assert_ack_ok(&ada_socket.emit_with_ack("iceCandidate", json!({ "callId": id, "candidates": fifty })).await);
        let over = ada_socket.emit_with_ack("iceCandidate", json!({ "callId": id, "candidates": [candidate(99)] })).await;
        assert_ack_error(&over, "invalid_payload");
        // The callee cannot trickle before answering.
        let early = bob_socket.emit_with_ack("iceCandidate", json!({ "callId": id, "candidates": [candidate(1)] })).await;
        assert_ack_error(&early, "call_not_found");

        // While in a call, neither can be called by someone else, nor call.
        let dee = app.create_user("Dee").await;
        let mut dee_socket = connect(&app, &dee.token).await;
        for to in [&ada, &bob] {
            let ack = dee_socket
                .emit_with_ack("startCall", json!({ "to": to.id, "media": "audio", "offer": offer() }))
                .await;
            assert_ack_error(&ack, "user_busy");
        }
        let ack = ada_socket
            .emit_with_ack("startCall", json!({ "to": dee.id, "media": "audio", "offer": offer() }))
            .await;
        assert_ack_error(&ack, "user_busy");

        // An SDP over 64 KiB makes a packet over the socket limit: refused (the connection may
        // be closed), and nothing rings.
        let too_big = json!({ "type": "offer", "sdp": "a".repeat(64 * 1024 + 1) });
        let ack = dee_socket.emit_expecting_ack("startCall", json!({ "to": cy.id, "media": "audio", "offer": too_big }));
        match tokio::time::timeout(crate::client::WAIT, ack).await {
            Ok(Ok(ack)) => assert_eq!(ack["ok"], false, "an oversized offer was accepted: {ack}"),
            Ok(Err(_)) => {} // the connection was closed instead, which is allowed
            Err(_) => panic!("an oversized offer got neither an answer nor a disconnect"),
        }
        app.stop().await;
    }
}

db_test! {
    async fn a_device_back_within_the_grace_keeps_the_call_and_one_gone_longer_ends_it(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let mut ada_socket = connect(&app, &ada.token).await;
        let mut bob_socket = connect(&app, &bob.token).await;
        let call = start(&mut ada_socket, &bob, "audio").await;
        let id = str_at(&call, "/id").to_owned();
        bob_socket.next_event("incomingCall").await;
        assert_ack_ok(&bob_socket.emit_with_ack("acceptCall", json!({ "callId": id, "answer": answer() })).await);
        ada_socket.next_event("callAccepted").await;

        // Bob's socket drops (the server notes when) and his session comes back with a new one.
        bob_socket.disconnect().await;
        let call_id: Uuid = id.parse().unwrap();
        let gone = eventually_some(|| async {
            let stored = app.state.store.find_call(call_id).await.unwrap().unwrap();
            stored.callee_gone_at
        })
        .await;
        let mut bob_again = connect(&app, &bob.token).await;
        // The call goes on with the new socket: what it sends reaches Ada, what Ada sends reaches it.
        let ack = bob_again
            .emit_with_ack("iceCandidate", json!({ "callId": id, "candidates": [candidate(7)] }))
            .await;
        assert_ack_ok(&ack);
        assert_eq!(ada_socket.next_event("iceCandidate").await["candidates"], json!([candidate(7)]));
        assert_ack_ok(&ada_socket.emit_with_ack("iceCandidate", json!({ "callId": id, "candidates": [candidate(8)] })).await);
        assert_eq!(bob_again.next_event("iceCandidate").await["candidates"], json!([candidate(8)]));
        let stored = app.state.store.find_call(call_id).await.unwrap().unwrap();
        assert_eq!((stored.state.as_str(), stored.callee_gone_at), ("active", None), "gone at {gone:?}");

        // Ada's socket drops for good: after the grace the call ends as disconnected.
        ada_socket.disconnect().await;
        let ended = bob_again
            .next_event_within("callEnded", |p| p["callId"] == id.as_str(), Duration::from_secs(15))
            .await;
        assert_eq!(ended["reason"], "disconnected");
        app.stop().await;
    }
}

db_test! {
    async fn ice_servers_carry_stun_and_turn_credentials_that_expire(db: Db) {
        let plain = spawn_realtime_app(db, &[]).await;
        let ada = plain.create_user("Ada").await;
        let none = expect_json(plain.get_with_token("/api/calls/ice-servers", &ada.token).await, 200).await;
        assert_eq!(none["iceServers"], json!([]));
        assert_eq!(plain.get("/api/calls/ice-servers").await.status(), 401);
        plain.stop().await;

        let app = spawn_realtime_app(
            db,
            &[
                ("STUN_URLS", "stun:stun.example.com:3478"),
                ("TURN_URLS", "turn:turn.example.com:3478?transport=udp,turns:turn.example.com:5349"),
                ("TURN_SECRET", "north-wind-secret"),
                ("TURN_TTL", "10m"),
            ],
        )
        .await;
        let bob = app.create_user("Bob").await;
        let answer = expect_json(app.get_with_token("/api/calls/ice-servers", &bob.token).await, 200).await;
        assert_eq!(answer["ttl"], 600);
        assert_eq!(answer["iceServers"][0], json!({ "urls": ["stun:stun.example.com:3478"] }));
        let turn = &answer["iceServers"][1];
        assert_eq!(turn["urls"], json!(["turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:5349"]));
        let username = str_at(turn, "/username");
        let (expiry, user) = username.split_once(':').unwrap();
        assert_eq!(user, bob.id.to_string());
        let now = chrono::Utc::now().timestamp();
        let expiry: i64 = expiry.parse().unwrap();
        assert!((now + 590..=now + 610).contains(&expiry), "{expiry} vs {now}");
        // coturn's check: base64(HMAC-SHA1(secret, username)).
        use base64::Engine;
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(b"north-wind-secret").unwrap();
        mac.update(username.as_bytes());
        let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(turn["credential"], expected.as_str());
        app.stop().await;
    }
}

db_test! {
    async fn starting_calls_is_limited_per_user(db: Db) {
        let app = spawn_realtime_app(db, &[]).await;
        let ada = app.create_user("Ada").await;
        let bob = app.create_user("Bob").await;
        let mut ada_socket = connect(&app, &ada.token).await;
        // Ten calls a minute: each placed and cancelled at once.
        for _ in 0..10 {
            let call = start(&mut ada_socket, &bob, "audio").await;
            let ended = ada_socket.emit_with_ack("endCall", json!({ "callId": call["id"] })).await;
            assert_ack_ok(&ended);
        }
        let eleventh = ada_socket
            .emit_with_ack("startCall", json!({ "to": bob.id, "media": "audio", "offer": offer() }))
            .await;
        assert_ack_error(&eleventh, "rate_limited");
        app.stop().await;
    }
}

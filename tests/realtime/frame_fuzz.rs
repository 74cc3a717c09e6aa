//! Fuzzing at the socket edge (issue 22): thousands of random and mutated Engine.IO/Socket.IO
//! frames from one signed-in client — every event with broken payloads, cut and spliced packets,
//! deep nesting, huge numbers, binary attachments that never come, random bytes — while two other
//! people keep messaging. The server may drop the attacker's connection (it reconnects and goes
//! on); it must never panic, and the others' messages must keep arriving.
//!
//! Reproducible: the seed is printed, and `FUZZ_SEED=<n>` replays a run. `FUZZ_FRAMES` sets how
//! many frames (default 2,000 per database).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

use serde_json::json;

use crate::support::*;

/// The event names a client may send, and a few it may not.
const EVENTS: &[&str] = &[
    "sendMessage",
    "typing",
    "getOnlineUsers",
    "watchPresence",
    "markRead",
    "editMessage",
    "deleteMessage",
    "react",
    "startCall",
    "acceptCall",
    "declineCall",
    "iceCandidate",
    "endCall",
    "sync",
    "ping",
    "authenticate",
    "emitOnlineUsers",
    "__proto__",
    "",
];

/// Pieces spliced into packets.
const PIECES: &[&str] = &[
    "\"",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "null",
    "true",
    "-1",
    "1e999",
    "99999999999999999999999",
    "\"to\"",
    "\"conversationId\"",
    "\"content\"",
    "\"attachmentIds\"",
    "\"userIds\"",
    "\\u0000",
    "\\ud800",
    "\u{0}",
    "\u{fffd}",
    "🙂",
    "{\"_placeholder\":true,\"num\":0}",
    "/messenger,",
    "/nowhere,",
    "\n",
    "\r\n",
    "%",
    "../../",
];

/// A frame: text (a whole Engine.IO packet) or binary.
enum Frame {
    Text(String),
    Binary(Vec<u8>),
}

/// A packet that is or nearly is a valid event of ours, about `target`.
fn plausible(rng: &mut StdRng, target: &str) -> String {
    let event = EVENTS[rng.random_range(0..EVENTS.len())];
    let payload = match rng.random_range(0..8) {
        0 => json!({"to": target, "content": "fuzz"}),
        1 => json!({"conversationId": target, "content": "x", "attachmentIds": [target]}),
        2 => json!({"userIds": [target, target, "not-an-id"]}),
        3 => json!({"messageId": target, "content": "edited", "emoji": "👍"}),
        4 => json!({"since": target, "limit": rng.random_range(-5i64..500)}),
        5 => json!({"callId": target, "media": "video", "sdp": "v=0", "candidate": {}}),
        6 => json!(null),
        _ => json!([[[[["deep"]]]]]),
    };
    let ack = if rng.random_bool(0.5) {
        rng.random_range(0u64..100_000).to_string()
    } else {
        String::new()
    };
    match rng.random_range(0..10) {
        0..=4 => format!("42{ack}{}", json!([event, payload])),
        5 => format!("42/messenger,{ack}{}", json!([event, payload])),
        6 => format!(
            "451-{ack}{}",
            json!([event, {"_placeholder": true, "num": 0}])
        ),
        7 => format!("43{ack}[{}]", payload),
        8 => ["2", "3", "40", "4", "44", "46", "5", "6", "1"][rng.random_range(0..9)].to_owned(),
        _ => format!(
            "42{}",
            json!([event, "x".repeat(rng.random_range(0..2000))])
        ),
    }
}

/// A packet changed at random: characters cut, doubled, replaced, pieces spliced in, or nested
/// deep.
fn mutated(rng: &mut StdRng, packet: String) -> String {
    let mut chars: Vec<char> = packet.chars().collect();
    for _ in 0..rng.random_range(1..6) {
        let at = if chars.is_empty() {
            0
        } else {
            rng.random_range(0..chars.len())
        };
        match rng.random_range(0..6) {
            0 if !chars.is_empty() => {
                chars.remove(at);
            }
            1 => chars.truncate(at),
            2 => {
                let piece = PIECES[rng.random_range(0..PIECES.len())];
                for (i, c) in piece.chars().enumerate() {
                    chars.insert(at + i, c);
                }
            }
            3 if !chars.is_empty() => chars[at] = char::from(rng.random_range(0u8..128)),
            4 => {
                let depth = rng.random_range(100..2000);
                let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
                for (i, c) in nested.chars().enumerate() {
                    chars.insert(at + i, c);
                }
            }
            _ => {
                let copy: Vec<char> = chars[at..].to_vec();
                chars.extend(copy);
            }
        }
    }
    chars.into_iter().collect()
}

fn frame(rng: &mut StdRng, target: &str) -> Frame {
    match rng.random_range(0..10) {
        0 => {
            let len = rng.random_range(0..512);
            Frame::Binary((0..len).map(|_| rng.random()).collect())
        }
        1 => {
            let len = rng.random_range(0..256);
            Frame::Text(
                (0..len)
                    .map(|_| char::from(rng.random_range(0u8..128)))
                    .collect(),
            )
        }
        2..=6 => Frame::Text(plausible(rng, target)),
        _ => {
            let base = plausible(rng, target);
            Frame::Text(mutated(rng, base))
        }
    }
}

db_test! {
    async fn thousands_of_random_and_mutated_frames_harm_no_one(db: Db) {
        // Every panic anywhere in this process (the server runs in it) is counted.
        let panics = Arc::new(AtomicUsize::new(0));
        let counted = panics.clone();
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            counted.fetch_add(1, Ordering::SeqCst);
            default_hook(info);
        }));

        let seed: u64 = std::env::var("FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(rand::random);
        let frames: usize = std::env::var("FUZZ_FRAMES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2000);
        eprintln!("frame fuzz: FUZZ_SEED={seed} FUZZ_FRAMES={frames}");
        let mut rng = StdRng::seed_from_u64(seed);

        let app = spawn_realtime_app(db, &[]).await;
        let attacker = app.create_user("Mallory").await;
        let target = app.create_user("Dave").await;
        let bob = app.create_user("Bob").await;
        let carol = app.create_user("Carol").await;
        let mut bob_socket = connect(&app, &bob.token).await;
        let mut carol_socket = connect(&app, &carol.token).await;
        let target_id = target.id.to_string();

        let mut socket = connect(&app, &attacker.token).await;
        let (mut landed, mut closed) = (0, 0);
        for sent in 0..frames {
            if !socket.is_connected() {
                socket = connect(&app, &attacker.token).await;
            }
            match frame(&mut rng, &target_id) {
                Frame::Text(text) => socket.send_raw(&text),
                Frame::Binary(bytes) => socket.send_binary(bytes),
            }
            // A ping behind it: its answer (ok, or rate_limited) says the frame was read on a
            // live session; the connection ending instead says the frame cost the attacker it.
            let answer = socket.emit_expecting_ack("ping", json!({}));
            match tokio::time::timeout(Duration::from_secs(10), answer).await {
                Ok(Ok(_)) => landed += 1,
                Ok(Err(_)) => closed += 1,
                Err(_) => panic!("neither an answer nor a close after frame {sent} (seed {seed})"),
            }
            // Now and then, the others must still reach each other, live.
            if sent % 500 == 499 {
                let ack = send_message(&mut bob_socket, &carol, &format!("after {sent} frames")).await;
                let received = carol_socket
                    .next_event_where("newMessage", |m| m["message"]["id"] == ack["message"]["id"])
                    .await;
                assert_eq!(received["message"]["content"], format!("after {sent} frames"));
            }
        }
        eprintln!("frame fuzz: {frames} frames, {landed} read on a live session, {closed} ended it");
        // Many frames must have been read (the fuzz reached the handlers, not a closed socket).
        assert!(landed > frames / 3, "only {landed} of {frames} frames were read (seed {seed})");
        let ack = send_message(&mut carol_socket, &bob, "the end").await;
        let received = bob_socket
            .next_event_where("newMessage", |m| m["message"]["id"] == ack["message"]["id"])
            .await;
        assert_eq!(received["message"]["content"], "the end");
        expect_json(app.get("/healthz").await, 200).await;
        // The attacker can still come back and be answered.
        let mut again = connect(&app, &attacker.token).await;
        assert_ack_ok(&again.emit_with_ack("ping", json!({})).await);
        assert_eq!(panics.load(Ordering::SeqCst), 0, "the server panicked (seed {seed})");
    }
}

//! `uploadProgress` (SPEC §12): while an upload's bytes arrive, the uploader's sockets and the
//! conversation's members hear how far it is, at most once a second, and once more at the end;
//! and socket sends carry attachments.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::helpers::{Db, TestApp, TestUser, db_test, str_at};
use crate::support::{
    assert_ack_error, assert_ack_ok, connect, create_group, id_of, send_over_rest,
    spawn_realtime_app,
};

const PIECE: usize = 100_000;

/// Starts an upload of `size` bytes to `conversation`; answers its path.
async fn start(app: &TestApp, user: &TestUser, conversation: &str, size: usize) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let response = app
        .client
        .post(app.url("/api/uploads"))
        .bearer_auth(&user.token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", size.to_string())
        .header(
            "Upload-Metadata",
            format!(
                "filename {},conversationId {}",
                b64("slow.bin"),
                b64(conversation)
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.headers()["location"].to_str().unwrap().to_owned()
}

/// A PATCH whose body arrives as the test feeds it, as a slow client's would.
fn slow_patch(
    app: &TestApp,
    user: &TestUser,
    path: &str,
) -> (
    mpsc::Sender<Vec<u8>>,
    tokio::task::JoinHandle<reqwest::Response>,
) {
    let (feed, pieces) = mpsc::channel::<Vec<u8>>(4);
    let body = futures_util::stream::unfold(pieces, |mut pieces| async move {
        pieces
            .recv()
            .await
            .map(|piece| (Ok::<_, std::io::Error>(piece), pieces))
    });
    let request = app
        .client
        .patch(app.url(path))
        .bearer_auth(&user.token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .body(reqwest::Body::wrap_stream(body));
    (
        feed,
        tokio::spawn(async move { request.send().await.unwrap() }),
    )
}

/// Sends three pieces: the second more than a second after the first (a progress is due again),
/// the third at once after it (none is), then ends the body (the final one).
async fn upload_slowly(app: &TestApp, user: &TestUser, path: &str) {
    let (feed, patch) = slow_patch(app, user, path);
    feed.send(vec![1; PIECE]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    feed.send(vec![2; PIECE]).await.unwrap();
    feed.send(vec![3; PIECE]).await.unwrap();
    drop(feed);
    let done = patch.await.unwrap();
    assert_eq!(done.status(), 204);
    assert_eq!(
        done.headers()["upload-offset"],
        (3 * PIECE).to_string().as_str()
    );
}

/// The progress a socket heard of one upload: a few, the last at the end, each naming it.
fn check_progress(events: &[Value], upload_id: &str, conversation: &str, from: &TestUser) {
    let size = 3 * PIECE as u64;
    assert!(
        events.len() >= 2,
        "a progress while it ran and one at the end: {events:?}"
    );
    // Told at the first bytes, when the second piece came more than a second later, and at the
    // end; the third piece came at once after the second, so nothing for it (a fourth only if
    // the machine stalled for a second between the two sends).
    assert!(
        events.len() <= 4,
        "at most one progress a second: {events:?}"
    );
    let mut last = 0;
    for event in events {
        assert_eq!(event["uploadId"], upload_id);
        assert_eq!(event["conversationId"], conversation);
        assert_eq!(event["from"], from.id.to_string());
        assert_eq!(event["filename"], "slow.bin");
        assert_eq!(event["size"], size);
        let offset = event["offset"].as_u64().unwrap();
        assert!(offset > last, "offsets only grow: {events:?}");
        last = offset;
    }
    let first = events[0]["offset"].as_u64().unwrap();
    assert!(first < size, "told while it ran: {events:?}");
    assert_eq!(last, size, "the last one tells the end");
}

db_test!(the_other_side_and_the_uploaders_devices_hear_its_progress);
async fn the_other_side_and_the_uploaders_devices_hear_its_progress(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let ada = app.create_user("Ada").await;
    let bob = app.create_user("Bob").await;
    let eve = app.create_user("Eve").await;
    let message = send_over_rest(&app, &ada, &bob, "a file follows").await;
    let conversation = str_at(&message, "/conversationId").to_owned();
    let mut ada_phone = connect(&app, &ada.token).await;
    let mut bob_socket = connect(&app, &bob.token).await;
    let mut eve_socket = connect(&app, &eve.token).await;

    let path = start(&app, &ada, &conversation, 3 * PIECE).await;
    let upload_id = path.rsplit('/').next().unwrap().to_owned();
    upload_slowly(&app, &ada, &path).await;

    let heard = bob_socket.take_events("uploadProgress").await;
    check_progress(&heard, &upload_id, &conversation, &ada);
    let own = ada_phone.take_events("uploadProgress").await;
    check_progress(&own, &upload_id, &conversation, &ada);
    eve_socket.expect_no_event("uploadProgress").await;

    // Attached over the socket, with no text.
    let ack = ada_phone
        .emit_with_ack(
            "sendMessage",
            json!({"conversationId": conversation, "attachmentIds": [upload_id]}),
        )
        .await;
    assert_ack_ok(&ack);
    assert_eq!(ack["message"]["content"], "");
    assert_eq!(ack["message"]["attachments"][0]["size"], 3 * PIECE);
    let arrived = bob_socket.next_event("newMessage").await;
    assert_eq!(
        arrived["message"]["attachments"][0]["id"],
        upload_id.as_str()
    );
    // Twice, or someone else's: invalid_attachment, over the socket too.
    let again = ada_phone
        .emit_with_ack(
            "sendMessage",
            json!({"to": bob.id, "content": "again", "attachmentIds": [upload_id]}),
        )
        .await;
    assert_ack_error(&again, "invalid_attachment");
    let stolen = bob_socket
        .emit_with_ack(
            "sendMessage",
            json!({"to": ada.id, "content": "mine now", "attachmentIds": [upload_id]}),
        )
        .await;
    assert_ack_error(&stolen, "invalid_attachment");
    let malformed = bob_socket
        .emit_with_ack(
            "sendMessage",
            json!({"to": ada.id, "content": "x", "attachmentIds": "nope"}),
        )
        .await;
    assert_ack_error(&malformed, "invalid_payload");
    app.stop().await;
}

db_test!(a_groups_members_hear_the_progress_and_strangers_do_not);
async fn a_groups_members_hear_the_progress_and_strangers_do_not(db: Db) {
    let app = spawn_realtime_app(db, &[]).await;
    let ada = app.create_user("Ada").await;
    let bob = app.create_user("Bob").await;
    let carol = app.create_user("Carol").await;
    let eve = app.create_user("Eve").await;
    let group = create_group(&app, &ada, "team", &[&bob, &carol]).await;
    let conversation = id_of(&group);
    let mut bob_socket = connect(&app, &bob.token).await;
    let mut carol_socket = connect(&app, &carol.token).await;
    let mut eve_socket = connect(&app, &eve.token).await;

    let path = start(&app, &carol, &conversation, 3 * PIECE).await;
    let upload_id = path.rsplit('/').next().unwrap().to_owned();
    upload_slowly(&app, &carol, &path).await;

    let heard = bob_socket.take_events("uploadProgress").await;
    check_progress(&heard, &upload_id, &conversation, &carol);
    let own = carol_socket.take_events("uploadProgress").await;
    check_progress(&own, &upload_id, &conversation, &carol);
    eve_socket.expect_no_event("uploadProgress").await;
    app.stop().await;
}

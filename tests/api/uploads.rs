//! Attachments (SPEC §12) over plain HTTP: the tus protocol as a client speaks it, sends with
//! attachments, downloads, and every bad input the issue lists. tus-js-client itself is driven
//! by the Node suites (tests/js).

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    Db, TestApp, TestUser, db_test, expect_error, expect_json, s3_settings, spawn_app,
    spawn_app_with,
};

fn b64(text: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn metadata(filename: &[u8], filetype: &str, conversation: Uuid) -> String {
    format!(
        "filename {},filetype {},conversationId {}",
        b64(filename),
        b64(filetype.as_bytes()),
        b64(conversation.to_string().as_bytes())
    )
}

/// A tus request with the protocol header and the user's token.
fn tus(app: &TestApp, method: Method, path: &str, user: &TestUser) -> reqwest::RequestBuilder {
    app.client
        .request(method, app.url(path))
        .bearer_auth(&user.token)
        .header("Tus-Resumable", "1.0.0")
}

async fn create(app: &TestApp, user: &TestUser, size: usize, meta: &str) -> Response {
    tus(app, Method::POST, "/api/uploads", user)
        .header("Upload-Length", size.to_string())
        .header("Upload-Metadata", meta)
        .send()
        .await
        .unwrap()
}

/// Starts an upload and answers its path.
async fn start(app: &TestApp, user: &TestUser, size: usize, meta: &str) -> String {
    let response = create(app, user, size, meta).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["tus-resumable"], "1.0.0");
    assert!(response.headers().contains_key("upload-expires"));
    response.headers()["location"].to_str().unwrap().to_owned()
}

async fn patch(
    app: &TestApp,
    user: &TestUser,
    path: &str,
    offset: usize,
    bytes: &[u8],
) -> Response {
    tus(app, Method::PATCH, path, user)
        .header("Upload-Offset", offset.to_string())
        .header("Content-Type", "application/offset+octet-stream")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
}

async fn offset_of(app: &TestApp, user: &TestUser, path: &str) -> u64 {
    let response = tus(app, Method::HEAD, path, user).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.headers()["upload-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Uploads `bytes` in chunks of `chunk` and answers the upload's id.
async fn upload(
    app: &TestApp,
    user: &TestUser,
    conversation: Uuid,
    filename: &str,
    filetype: &str,
    bytes: &[u8],
    chunk: usize,
) -> Uuid {
    let path = start(
        app,
        user,
        bytes.len(),
        &metadata(filename.as_bytes(), filetype, conversation),
    )
    .await;
    let mut offset = 0;
    for piece in bytes.chunks(chunk.max(1)) {
        let response = patch(app, user, &path, offset, piece).await;
        assert_eq!(
            response.status(),
            StatusCode::NO_CONTENT,
            "{:?}",
            response.text().await
        );
        offset += piece.len();
        assert_eq!(
            response.headers()["upload-offset"],
            offset.to_string().as_str()
        );
    }
    path.rsplit('/').next().unwrap().parse().unwrap()
}

/// Two users and their direct conversation (made by a first message).
async fn pair(app: &TestApp) -> (TestUser, TestUser, Uuid) {
    let ada = app.create_user("Ada").await;
    let bob = app.create_user("Bob").await;
    let sent = app
        .post_json_with_token(
            &format!("/api/messages/send/{}", bob.id),
            &ada.token,
            &json!({"content": "hi"}),
        )
        .await;
    let sent = expect_json(sent, 201).await;
    let conversation = sent["message"]["conversationId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    (ada, bob, conversation)
}

async fn send_with(app: &TestApp, from: &TestUser, to: &TestUser, body: Value) -> Response {
    app.post_json_with_token(&format!("/api/messages/send/{}", to.id), &from.token, &body)
        .await
}

async fn download(app: &TestApp, user: &TestUser, path: &str) -> Response {
    app.client
        .get(app.url(path))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap()
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Every file under the storage folder.
fn stored_files(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                stack.push(entry.path());
            } else {
                files.push(entry.path().display().to_string());
            }
        }
    }
    files
}

db_test!(a_file_uploaded_in_pieces_is_sent_and_downloaded_whole);
async fn a_file_uploaded_in_pieces_is_sent_and_downloaded_whole(db: Db) {
    let app = spawn_app(db).await;
    let (ada, bob, conversation) = pair(&app).await;
    let bytes: Vec<u8> = (0..700_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let id = upload(
        &app,
        &ada,
        conversation,
        "notes.txt",
        "text/plain",
        &bytes,
        300_000,
    )
    .await;
    assert_eq!(
        offset_of(&app, &ada, &format!("/api/uploads/{id}")).await,
        700_000
    );

    let sent = send_with(
        &app,
        &ada,
        &bob,
        json!({"content": "", "attachmentIds": [id], "clientId": "with-file"}),
    )
    .await;
    let sent = expect_json(sent, 201).await;
    let attachment = &sent["message"]["attachments"][0];
    assert_eq!(attachment["id"], id.to_string());
    assert_eq!(attachment["filename"], "notes.txt");
    assert_eq!(attachment["size"], 700_000);
    assert_eq!(attachment["contentType"], "text/plain");
    assert_eq!(attachment["width"], Value::Null);
    assert_eq!(attachment["thumbnailUrl"], Value::Null);
    assert_eq!(sent["message"]["content"], "");
    // A retry of the same send is the same message, not an error about attached uploads.
    let again = send_with(
        &app,
        &ada,
        &bob,
        json!({"content": "", "attachmentIds": [id], "clientId": "with-file"}),
    )
    .await;
    let again = expect_json(again, 200).await;
    assert_eq!(again["message"]["id"], sent["message"]["id"]);

    // History and sync carry it too.
    let history = download(&app, &bob, &format!("/api/messages/{}", ada.id)).await;
    let history = expect_json(history, 200).await;
    assert_eq!(
        history["messages"][0]["attachments"][0]["id"],
        id.to_string()
    );
    let sync = expect_json(download(&app, &bob, "/api/sync").await, 200).await;
    let synced = sync["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == sent["message"]["id"])
        .unwrap();
    assert_eq!(synced["attachments"][0]["size"], 700_000);

    let url = attachment["url"].as_str().unwrap();
    let whole = download(&app, &bob, url).await;
    assert_eq!(whole.status(), StatusCode::OK);
    let headers = whole.headers().clone();
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment;")
    );
    assert_eq!(headers["content-type"], "text/plain");
    assert_eq!(headers["accept-ranges"], "bytes");
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(whole.bytes().await.unwrap().as_ref(), &bytes[..]);

    let part = app
        .client
        .get(app.url(url))
        .bearer_auth(&bob.token)
        .header("Range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.headers()["content-range"], "bytes 100-199/700000");
    assert_eq!(part.bytes().await.unwrap().as_ref(), &bytes[100..200]);
    let tail = app
        .client
        .get(app.url(url))
        .bearer_auth(&bob.token)
        .header("Range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(
        tail.bytes().await.unwrap().as_ref(),
        &bytes[bytes.len() - 10..]
    );
    let outside = app
        .client
        .get(app.url(url))
        .bearer_auth(&bob.token)
        .header("Range", "bytes=900000-")
        .send()
        .await
        .unwrap();
    assert_eq!(outside.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(outside.headers()["content-range"], "bytes */700000");
    let cached = app
        .client
        .get(app.url(url))
        .bearer_auth(&bob.token)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    // Not attached twice.
    let twice = send_with(
        &app,
        &ada,
        &bob,
        json!({"content": "again", "attachmentIds": [id]}),
    )
    .await;
    expect_error(twice, 400, "invalid_attachment").await;
    app.stop().await;
}

db_test!(an_image_gets_its_size_and_a_thumbnail_and_shows_inline);
async fn an_image_gets_its_size_and_a_thumbnail_and_shows_inline(db: Db) {
    let app = spawn_app(db).await;
    let (ada, bob, conversation) = pair(&app).await;
    let bytes = png(1200, 800);
    // Claimed as something else: the bytes decide.
    let id = upload(
        &app,
        &ada,
        conversation,
        "photo",
        "application/octet-stream",
        &bytes,
        bytes.len(),
    )
    .await;
    let sent = expect_json(
        send_with(
            &app,
            &ada,
            &bob,
            json!({"content": "look", "attachmentIds": [id]}),
        )
        .await,
        201,
    )
    .await;
    let attachment = &sent["message"]["attachments"][0];
    assert_eq!(attachment["contentType"], "image/png");
    assert_eq!(
        (attachment["width"].as_u64(), attachment["height"].as_u64()),
        (Some(1200), Some(800))
    );
    let file = download(&app, &bob, attachment["url"].as_str().unwrap()).await;
    assert!(
        file.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("inline;")
    );
    let thumbnail = download(&app, &bob, attachment["thumbnailUrl"].as_str().unwrap()).await;
    assert_eq!(thumbnail.status(), StatusCode::OK);
    assert_eq!(thumbnail.headers()["x-content-type-options"], "nosniff");
    let small = image::load_from_memory(&thumbnail.bytes().await.unwrap()).unwrap();
    assert_eq!((small.width(), small.height()), (320, 213));
    app.stop().await;
}

db_test!(html_and_svg_are_named_for_what_they_are_and_never_shown_inline);
async fn html_and_svg_are_named_for_what_they_are_and_never_shown_inline(db: Db) {
    let app = spawn_app(db).await;
    let (ada, bob, conversation) = pair(&app).await;
    let html = b"<html><body><script>fetch('/api/users/me')</script></body></html>";
    let svg = b"<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>";
    let fake_png = upload(
        &app,
        &ada,
        conversation,
        "cat.png",
        "image/png",
        html,
        html.len(),
    )
    .await;
    let fake_svg = upload(
        &app,
        &ada,
        conversation,
        "logo.svg",
        "image/svg+xml",
        svg,
        svg.len(),
    )
    .await;
    let sent = expect_json(
        send_with(
            &app,
            &ada,
            &bob,
            json!({"attachmentIds": [fake_png, fake_svg]}),
        )
        .await,
        201,
    )
    .await;
    let attachments = sent["message"]["attachments"].as_array().unwrap();
    assert_eq!(attachments[0]["contentType"], "text/html");
    assert_eq!(attachments[1]["contentType"], "image/svg+xml");
    for attachment in attachments {
        assert_eq!(attachment["thumbnailUrl"], Value::Null);
        assert_eq!(attachment["width"], Value::Null);
        let response = download(&app, &bob, attachment["url"].as_str().unwrap()).await;
        let headers = response.headers();
        assert!(
            headers["content-disposition"]
                .to_str()
                .unwrap()
                .starts_with("attachment;")
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("sandbox")
        );
    }
    app.stop().await;
}

/// A PNG whose header claims 100,000 × 100,000 pixels (ten gigapixels) in a few hundred bytes.
fn decompression_bomb() -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc_input = kind.to_vec();
        crc_input.extend_from_slice(data);
        out.extend_from_slice(&crc_input);
        out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    }
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    // A zlib stream of zeros: the start of rows that would inflate to 10 GB.
    let zeros = [
        0x78, 0xDA, 0xED, 0xC1, 0x01, 0x0D, 0x00, 0x00, 0x00, 0xC2, 0xA0, 0xF7, 0x4F, 0x6D, 0x0E,
        0x37, 0xA0, 0x00, 0x00,
    ];
    chunk(&mut png, b"IDAT", &zeros);
    chunk(&mut png, b"IEND", &[]);
    png
}

db_test!(a_decompression_bomb_gets_no_thumbnail_and_harms_nothing);
async fn a_decompression_bomb_gets_no_thumbnail_and_harms_nothing(db: Db) {
    let app = spawn_app(db).await;
    let (ada, bob, conversation) = pair(&app).await;
    let bomb = decompression_bomb();
    let id = upload(
        &app,
        &ada,
        conversation,
        "bomb.png",
        "image/png",
        &bomb,
        bomb.len(),
    )
    .await;
    let sent = expect_json(
        send_with(&app, &ada, &bob, json!({"attachmentIds": [id]})).await,
        201,
    )
    .await;
    let attachment = &sent["message"]["attachments"][0];
    assert_eq!(attachment["contentType"], "image/png");
    assert_eq!(attachment["thumbnailUrl"], Value::Null);
    assert_eq!(attachment["width"], 100_000);
    let thumbnail = download(&app, &bob, &format!("/api/attachments/{id}/thumbnail")).await;
    expect_error(thumbnail, 404, "attachment_not_found").await;
    // The server is as it was.
    let ok = expect_json(
        send_with(&app, &ada, &bob, json!({"content": "still here"})).await,
        201,
    )
    .await;
    assert_eq!(ok["message"]["content"], "still here");
    app.stop().await;
}

db_test!(filenames_lose_their_paths_and_control_characters);
async fn filenames_lose_their_paths_and_control_characters(db: Db) {
    let app = spawn_app(db).await;
    let (ada, bob, conversation) = pair(&app).await;
    let long = "é".repeat(1000);
    for (raw, kept) in [
        (&b"../../etc/passwd"[..], "passwd".to_owned()),
        (b"..\\..\\boot.ini", "boot.ini".to_owned()),
        (b"evil\0name.txt", "evilname.txt".to_owned()),
        (b"line\r\nbreak.txt", "linebreak.txt".to_owned()),
        (b"..", "file".to_owned()),
        (long.as_bytes(), "é".repeat(255)),
    ] {
        let path = start(&app, &ada, 3, &metadata(raw, "text/plain", conversation)).await;
        assert_eq!(
            patch(&app, &ada, &path, 0, b"abc").await.status(),
            StatusCode::NO_CONTENT
        );
        let id = path.rsplit('/').next().unwrap();
        let sent = expect_json(
            send_with(&app, &ada, &bob, json!({"attachmentIds": [id]})).await,
            201,
        )
        .await;
        assert_eq!(sent["message"]["attachments"][0]["filename"], kept.as_str());
        let file = download(&app, &bob, &format!("/api/attachments/{id}")).await;
        assert_eq!(file.status(), StatusCode::OK);
        assert!(file.headers()["content-disposition"].to_str().is_ok());
    }
    // Nothing was written under a name of the client's: every key is made of ids.
    for file in stored_files(app.storage.path()) {
        let key = file
            .strip_prefix(&app.storage.path().display().to_string())
            .unwrap();
        let named = key.split('/').filter(|s| !s.is_empty()).collect::<Vec<_>>();
        assert_eq!(named.len(), 3, "{key}");
        assert_eq!(named[0], "uploads", "{key}");
        assert!(named[1].parse::<Uuid>().is_ok(), "{key}");
        assert!(
            named[2].bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'),
            "{key}"
        );
    }
    app.stop().await;
}

db_test!(bad_tus_requests_get_the_protocols_answers);
async fn bad_tus_requests_get_the_protocols_answers(db: Db) {
    let app = spawn_app_with(db, &[("UPLOAD_MAX_SIZE", "1MiB")]).await;
    let (ada, bob, conversation) = pair(&app).await;
    let carol = app.create_user("Carol").await;
    let meta = metadata(b"a.bin", "application/octet-stream", conversation);

    let options = app
        .client
        .request(Method::OPTIONS, app.url("/api/uploads"))
        .send()
        .await
        .unwrap();
    assert_eq!(options.status(), StatusCode::NO_CONTENT);
    assert_eq!(options.headers()["tus-max-size"], "1048576");
    assert_eq!(
        options.headers()["tus-extension"],
        "creation,termination,expiration"
    );

    // Not a member of the conversation (and one that does not exist): 404.
    expect_error(
        create(&app, &carol, 10, &meta).await,
        404,
        "conversation_not_found",
    )
    .await;
    let nowhere = metadata(b"a.bin", "text/plain", Uuid::now_v7());
    expect_error(
        create(&app, &ada, 10, &nowhere).await,
        404,
        "conversation_not_found",
    )
    .await;
    // Over the limit, also past 64 bits.
    expect_error(
        create(&app, &ada, 1_048_577, &meta).await,
        413,
        "payload_too_large",
    )
    .await;
    let huge = tus(&app, Method::POST, "/api/uploads", &ada)
        .header("Upload-Length", "999999999999999999999999")
        .header("Upload-Metadata", &meta)
        .send()
        .await
        .unwrap();
    expect_error(huge, 413, "payload_too_large").await;
    // Without the protocol header, or another version: 412, saying which version it speaks.
    for version in [None, Some("0.2.2")] {
        let mut request = app
            .client
            .post(app.url("/api/uploads"))
            .bearer_auth(&ada.token)
            .header("Upload-Length", "10")
            .header("Upload-Metadata", &meta);
        if let Some(v) = version {
            request = request.header("Tus-Resumable", v);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.headers()["tus-version"], "1.0.0");
        expect_error(response, 412, "unsupported_tus_version").await;
    }
    // Malformed metadata and lengths: 400.
    for bad in [
        "filename",
        "filename !!!",
        "filename YQ==,filename YQ==",
        "conversationId",
        "filename a b c",
    ] {
        let response = create(&app, &ada, 10, bad).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let no_length = tus(&app, Method::POST, "/api/uploads", &ada)
        .header("Upload-Metadata", &meta)
        .send()
        .await
        .unwrap();
    expect_error(no_length, 400, "validation_failed").await;
    let negative = tus(&app, Method::POST, "/api/uploads", &ada)
        .header("Upload-Length", "-5")
        .header("Upload-Metadata", &meta)
        .send()
        .await
        .unwrap();
    expect_error(negative, 400, "validation_failed").await;
    // Without signing in: 401.
    let anonymous = app
        .client
        .post(app.url("/api/uploads"))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", "10")
        .header("Upload-Metadata", &meta)
        .send()
        .await
        .unwrap();
    expect_error(anonymous, 401, "unauthenticated").await;

    let path = start(&app, &ada, 10, &meta).await;
    // Someone else's upload does not exist for them.
    expect_error(
        patch(&app, &bob, &path, 0, b"12345").await,
        404,
        "upload_not_found",
    )
    .await;
    let head = tus(&app, Method::HEAD, &path, &bob).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    expect_error(
        tus(&app, Method::DELETE, &path, &bob).send().await.unwrap(),
        404,
        "upload_not_found",
    )
    .await;
    expect_error(
        patch(&app, &ada, "/api/uploads/not-an-id", 0, b"1").await,
        404,
        "upload_not_found",
    )
    .await;
    // The wrong offset: 409, nothing stored.
    expect_error(
        patch(&app, &ada, &path, 3, b"12345").await,
        409,
        "offset_mismatch",
    )
    .await;
    assert_eq!(offset_of(&app, &ada, &path).await, 0);
    // Not offset+octet-stream: 415.
    let json_body = tus(&app, Method::PATCH, &path, &ada)
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    expect_error(json_body, 415, "unsupported_media_type").await;
    let no_offset = tus(&app, Method::PATCH, &path, &ada)
        .header("Content-Type", "application/offset+octet-stream")
        .body("1")
        .send()
        .await
        .unwrap();
    expect_error(no_offset, 400, "validation_failed").await;
    // Past Upload-Length: 413, with a declared length or streamed without one.
    expect_error(
        patch(&app, &ada, &path, 0, b"0123456789AB").await,
        413,
        "payload_too_large",
    )
    .await;
    let stream = futures_util::stream::iter((0..3).map(|_| Ok::<_, std::io::Error>(vec![7u8; 5])));
    let chunked = tus(&app, Method::PATCH, &path, &ada)
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    expect_error(chunked, 413, "payload_too_large").await;
    assert_eq!(offset_of(&app, &ada, &path).await, 0);
    // An incomplete upload cannot be attached, nor can someone else's.
    let half = patch(&app, &ada, &path, 0, b"01234").await;
    assert_eq!(half.status(), StatusCode::NO_CONTENT);
    let id = path.rsplit('/').next().unwrap();
    expect_error(
        send_with(&app, &ada, &bob, json!({"attachmentIds": [id]})).await,
        400,
        "invalid_attachment",
    )
    .await;
    assert_eq!(
        patch(&app, &ada, &path, 5, b"56789").await.status(),
        StatusCode::NO_CONTENT
    );
    expect_error(
        send_with(&app, &bob, &ada, json!({"attachmentIds": [id]})).await,
        400,
        "invalid_attachment",
    )
    .await;
    // Nor one of another conversation, nor an unknown id, nor eleven.
    let elsewhere = expect_json(
        send_with(&app, &ada, &carol, json!({"content": "hello"})).await,
        201,
    )
    .await;
    let other_conversation: Uuid = elsewhere["message"]["conversationId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let there = upload(
        &app,
        &ada,
        other_conversation,
        "x.txt",
        "text/plain",
        b"xyz",
        3,
    )
    .await;
    expect_error(
        send_with(&app, &ada, &bob, json!({"attachmentIds": [there]})).await,
        400,
        "invalid_attachment",
    )
    .await;
    expect_error(
        send_with(&app, &ada, &bob, json!({"attachmentIds": [Uuid::now_v7()]})).await,
        400,
        "invalid_attachment",
    )
    .await;
    let eleven: Vec<String> = (0..11).map(|_| Uuid::now_v7().to_string()).collect();
    expect_error(
        send_with(&app, &ada, &bob, json!({"attachmentIds": eleven})).await,
        400,
        "invalid_attachment",
    )
    .await;
    expect_error(
        send_with(&app, &ada, &bob, json!({"attachmentIds": "nope"})).await,
        400,
        "invalid_json",
    )
    .await;
    // The failed sends claimed nothing: the upload still attaches.
    expect_json(
        send_with(&app, &ada, &bob, json!({"attachmentIds": [id]})).await,
        201,
    )
    .await;
    // And once attached it cannot be abandoned.
    expect_error(
        tus(&app, Method::DELETE, &path, &ada).send().await.unwrap(),
        403,
        "forbidden",
    )
    .await;
    app.stop().await;
}

db_test!(cookie_uploads_need_an_allowed_origin);
async fn cookie_uploads_need_an_allowed_origin(db: Db) {
    let app = spawn_app(db).await;
    let (ada, _bob, conversation) = pair(&app).await;
    let cookie = format!("craftcode_token={}", ada.token);
    let meta = metadata(b"a.txt", "text/plain", conversation);
    let foreign = app
        .with_cookie(Method::POST, "/api/uploads", &cookie)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", "1")
        .header("Upload-Metadata", &meta)
        .header("Origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    expect_error(foreign, 403, "csrf_rejected").await;
    let allowed = app
        .with_cookie(Method::POST, "/api/uploads", &cookie)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", "1")
        .header("Upload-Metadata", &meta)
        .header("Origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), StatusCode::CREATED);
    app.stop().await;
}

db_test!(removed_members_and_strangers_cannot_download);
async fn removed_members_and_strangers_cannot_download(db: Db) {
    let app = spawn_app(db).await;
    let ada = app.create_user("Ada").await;
    let bob = app.create_user("Bob").await;
    let eve = app.create_user("Eve").await;
    let group = app
        .post_json_with_token(
            "/api/conversations",
            &ada.token,
            &json!({"title": "team", "memberIds": [bob.id]}),
        )
        .await;
    let group = expect_json(group, 201).await;
    let conversation: Uuid = group["conversation"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let id = upload(
        &app,
        &ada,
        conversation,
        "plan.pdf",
        "application/pdf",
        b"%PDF-1.4\n%%EOF\n",
        64,
    )
    .await;
    // Before it is attached only its uploader sees it.
    expect_error(
        download(&app, &bob, &format!("/api/attachments/{id}")).await,
        404,
        "attachment_not_found",
    )
    .await;
    assert_eq!(
        download(&app, &ada, &format!("/api/attachments/{id}"))
            .await
            .status(),
        StatusCode::OK
    );
    let sent = app
        .post_json_with_token(
            &format!("/api/conversations/{conversation}/messages"),
            &ada.token,
            &json!({"content": "the plan", "attachmentIds": [id]}),
        )
        .await;
    let sent = expect_json(sent, 201).await;
    assert_eq!(
        sent["message"]["attachments"][0]["contentType"],
        "application/pdf"
    );
    let url = format!("/api/attachments/{id}");
    assert_eq!(download(&app, &bob, &url).await.status(), StatusCode::OK);
    expect_error(
        download(&app, &eve, &url).await,
        404,
        "attachment_not_found",
    )
    .await;
    let removed = app
        .client
        .delete(app.url(&format!(
            "/api/conversations/{conversation}/members/{}",
            bob.id
        )))
        .bearer_auth(&ada.token)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    expect_error(
        download(&app, &bob, &url).await,
        404,
        "attachment_not_found",
    )
    .await;
    let anonymous = app.client.get(app.url(&url)).send().await.unwrap();
    expect_error(anonymous, 401, "unauthenticated").await;
    app.stop().await;
}

db_test!(deleting_a_message_removes_its_files);
async fn deleting_a_message_removes_its_files(db: Db) {
    let app = spawn_app(db).await;
    let (ada, bob, conversation) = pair(&app).await;
    let image = png(400, 400);
    let id = upload(
        &app,
        &ada,
        conversation,
        "pic.png",
        "image/png",
        &image,
        image.len(),
    )
    .await;
    let sent = expect_json(
        send_with(&app, &ada, &bob, json!({"attachmentIds": [id]})).await,
        201,
    )
    .await;
    assert_eq!(
        stored_files(app.storage.path()).len(),
        2,
        "the file and its thumbnail"
    );
    let message = sent["message"]["id"].as_str().unwrap();
    let deleted = app
        .client
        .delete(app.url(&format!("/api/messages/{message}")))
        .bearer_auth(&ada.token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(stored_files(app.storage.path()), Vec::<String>::new());
    expect_error(
        download(&app, &bob, &format!("/api/attachments/{id}")).await,
        404,
        "attachment_not_found",
    )
    .await;
    let history = expect_json(
        download(&app, &bob, &format!("/api/messages/{}", ada.id)).await,
        200,
    )
    .await;
    let tombstone = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == message)
        .unwrap();
    assert_eq!(tombstone["attachments"], json!([]));
    app.stop().await;
}

db_test!(abandoned_and_expired_uploads_lose_their_bytes);
async fn abandoned_and_expired_uploads_lose_their_bytes(db: Db) {
    let app = spawn_app_with(db, &[("UPLOAD_TTL", "2s")]).await;
    let (ada, _bob, conversation) = pair(&app).await;
    let meta = metadata(b"big.bin", "application/octet-stream", conversation);
    let abandoned = start(&app, &ada, 100, &meta).await;
    assert_eq!(
        patch(&app, &ada, &abandoned, 0, &[1; 40]).await.status(),
        StatusCode::NO_CONTENT
    );
    let gone = tus(&app, Method::DELETE, &abandoned, &ada)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        tus(&app, Method::HEAD, &abandoned, &ada)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(stored_files(app.storage.path()), Vec::<String>::new());

    let left = start(&app, &ada, 100, &meta).await;
    assert_eq!(
        patch(&app, &ada, &left, 0, &[1; 40]).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(stored_files(app.storage.path()).len(), 1);
    // Past UPLOAD_TTL it is gone for its owner at once, and its bytes with the next sweep.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !stored_files(app.storage.path()).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the expired upload's part is still stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        tus(&app, Method::HEAD, &left, &ada)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    expect_error(
        patch(&app, &ada, &left, 40, &[1; 60]).await,
        404,
        "upload_not_found",
    )
    .await;
    app.stop().await;
}

db_test!(a_deleted_users_files_are_removed);
async fn a_deleted_users_files_are_removed(db: Db) {
    let app = spawn_app(db).await;
    // The first account is the admin.
    let (ada, bob, conversation) = pair(&app).await;
    assert_eq!(ada.login["user"]["isAdmin"], true);
    let id = upload(&app, &bob, conversation, "b.txt", "text/plain", b"bob's", 5).await;
    expect_json(
        send_with(
            &app,
            &bob,
            &ada,
            json!({"content": "mine", "attachmentIds": [id]}),
        )
        .await,
        201,
    )
    .await;
    let unsent = upload(&app, &bob, conversation, "c.txt", "text/plain", b"draft", 5).await;
    assert_eq!(stored_files(app.storage.path()).len(), 2);
    let deleted = app
        .client
        .delete(app.url(&format!("/api/users/{}", bob.id)))
        .bearer_auth(&ada.token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(stored_files(app.storage.path()), Vec::<String>::new());
    expect_error(
        download(&app, &ada, &format!("/api/attachments/{id}")).await,
        404,
        "attachment_not_found",
    )
    .await;
    expect_error(
        download(&app, &ada, &format!("/api/attachments/{unsent}")).await,
        404,
        "attachment_not_found",
    )
    .await;
    let history = expect_json(
        download(
            &app,
            &ada,
            &format!("/api/conversations/{conversation}/messages"),
        )
        .await,
        200,
    )
    .await;
    let kept = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["content"] == "mine")
        .unwrap();
    assert_eq!(kept["attachments"], json!([]));
    app.stop().await;
}

async fn spawn_on_s3(db: Db) -> TestApp {
    let settings = s3_settings();
    let endpoint = &settings[1].1;
    let reachable = reqwest::Client::new()
        .get(endpoint.as_str())
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        reachable.is_ok(),
        "no S3 server answers at {endpoint}: run the test command, or `source scripts/test-env.sh && ensure_seaweedfs`"
    );
    let vars: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    spawn_app_with(db, &vars).await
}

db_test!(on_s3_parts_on_both_sides_of_the_5_mib_minimum_make_one_file);
async fn on_s3_parts_on_both_sides_of_the_5_mib_minimum_make_one_file(db: Db) {
    let app = spawn_on_s3(db).await;
    let (ada, bob, conversation) = pair(&app).await;
    // 12 MiB in PATCHes of 5, 5 and 2 MiB: each a multipart object of its own (the last under
    // S3's 5 MiB part minimum), read one after the other.
    let big: Vec<u8> = (0..12 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let big_id = upload(
        &app,
        &ada,
        conversation,
        "big.bin",
        "application/octet-stream",
        &big,
        5 * 1024 * 1024,
    )
    .await;
    // A small file in one PATCH: its one part is renamed (copied) into place.
    let image = png(640, 480);
    let image_id = upload(
        &app,
        &ada,
        conversation,
        "pic.png",
        "image/png",
        &image,
        image.len(),
    )
    .await;
    let sent = expect_json(
        send_with(
            &app,
            &ada,
            &bob,
            json!({"attachmentIds": [big_id, image_id]}),
        )
        .await,
        201,
    )
    .await;
    let attachments = &sent["message"]["attachments"];
    assert_eq!(attachments[0]["size"], big.len());
    assert_eq!(attachments[1]["width"], 640);

    let whole = download(&app, &bob, &format!("/api/attachments/{big_id}")).await;
    assert_eq!(whole.status(), StatusCode::OK);
    assert!(
        whole.bytes().await.unwrap().as_ref() == &big[..],
        "the parts read as one are the bytes sent"
    );
    let range = app
        .client
        .get(app.url(&format!("/api/attachments/{big_id}")))
        .bearer_auth(&bob.token)
        .header("Range", "bytes=5242870-5242889")
        .send()
        .await
        .unwrap();
    assert_eq!(range.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        range.bytes().await.unwrap().as_ref(),
        &big[5_242_870..5_242_890]
    );
    let thumbnail = download(&app, &bob, attachments[1]["thumbnailUrl"].as_str().unwrap()).await;
    assert_eq!(thumbnail.status(), StatusCode::OK);

    // The stored objects: the big file's three parts, the image's one and its thumbnail.
    let storage = &app.state.storage;
    let mut keys = Vec::new();
    for id in [big_id, image_id] {
        let stored = app.state.store.find_upload(id).await.unwrap().unwrap();
        keys.extend(stored.parts().into_iter().map(|part| part.key));
    }
    assert_eq!(keys.len(), 4);
    keys.push(craftcode::storage::thumbnail_key(image_id));
    let mut sizes = 0;
    for key in &keys {
        sizes += storage.size(key).await.unwrap();
    }
    assert!(sizes > (big.len() + image.len()) as u64);
    let message = sent["message"]["id"].as_str().unwrap();
    let deleted = app
        .client
        .delete(app.url(&format!("/api/messages/{message}")))
        .bearer_auth(&ada.token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    for key in keys {
        assert!(storage.size(&key).await.is_err(), "{key} is still stored");
    }
    app.stop().await;
}

db_test!(a_store_that_does_not_answer_is_named_and_answered_503);
async fn a_store_that_does_not_answer_is_named_and_answered_503(db: Db) {
    // Nothing listens on this port: the store "is down".
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let app = spawn_app_with(
        db,
        &[
            ("STORAGE_URL", "s3://craftcode-test/down"),
            ("S3_ENDPOINT", &endpoint),
            ("AWS_ACCESS_KEY_ID", "nobody"),
            ("AWS_SECRET_ACCESS_KEY", "nothing"),
        ],
    )
    .await;
    let ready = expect_json(app.get("/readyz").await, 503).await;
    assert_eq!(ready["failed"], json!(["storage"]));
    assert_eq!(ready["checks"]["database"], true);
    let (ada, bob, conversation) = pair(&app).await;
    // Creating needs only the database; the bytes need the store: 503 with Retry-After, and the
    // offset stays where it was.
    let path = start(
        &app,
        &ada,
        10,
        &metadata(b"a.txt", "text/plain", conversation),
    )
    .await;
    let refused = patch(&app, &ada, &path, 0, b"0123456789").await;
    assert_eq!(refused.headers()["retry-after"], "2");
    expect_error(refused, 503, "unavailable").await;
    assert_eq!(offset_of(&app, &ada, &path).await, 0);
    // Messages go on.
    expect_json(
        send_with(&app, &ada, &bob, json!({"content": "still here"})).await,
        201,
    )
    .await;
    app.stop().await;
}

db_test!(a_post_with_a_method_override_is_a_patch_or_a_delete);
async fn a_post_with_a_method_override_is_a_patch_or_a_delete(db: Db) {
    let app = spawn_app(db).await;
    let (ada, _bob, conversation) = pair(&app).await;
    let path = start(
        &app,
        &ada,
        6,
        &metadata(b"o.txt", "text/plain", conversation),
    )
    .await;
    let overridden = |method: &str| {
        tus(&app, Method::POST, &path, &ada).header("X-HTTP-Method-Override", method)
    };
    let patched = overridden("PATCH")
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::NO_CONTENT);
    assert_eq!(patched.headers()["upload-offset"], "3");
    let head = overridden("HEAD").send().await.unwrap();
    assert_eq!(head.headers()["upload-offset"], "3");
    let deleted = overridden("DELETE").send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        tus(&app, Method::HEAD, &path, &ada)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    // Nowhere else: a POST elsewhere stays a POST.
    let elsewhere = app
        .client
        .post(app.url("/api/auth/me"))
        .bearer_auth(&ada.token)
        .header("X-HTTP-Method-Override", "DELETE")
        .send()
        .await
        .unwrap();
    expect_error(elsewhere, 405, "method_not_allowed").await;
    app.stop().await;
}

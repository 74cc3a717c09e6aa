//! `/api/push/*` (SPEC §13) as the REST contract: production refuses endpoints into the server's
//! own network, ending a session or an account deletes its subscriptions, and a configured
//! `VAPID_PRIVATE_KEY` is the key announced. (Pushes themselves, against a push service that
//! verifies and decrypts them, are in tests/js/test/push.test.mjs.)

use serde_json::{Value, json};

use crate::helpers::*;

// The user agent's keys of RFC 8291's example (appendix A).
const P256DH: &str =
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

fn subscription(endpoint: &str) -> Value {
    json!({ "endpoint": endpoint, "expirationTime": null, "keys": { "p256dh": P256DH, "auth": AUTH } })
}

async fn endpoints(app: &TestApp, token: &str) -> Vec<String> {
    let body = expect_json(
        app.get_with_token("/api/push/subscriptions", token).await,
        200,
    )
    .await;
    body["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| str_at(s, "/endpoint").to_owned())
        .collect()
}

db_test!(in_production_no_endpoint_may_point_into_the_servers_network);
async fn in_production_no_endpoint_may_point_into_the_servers_network(db: Db) {
    let app = spawn_app_with(db, &[("APP_ENV", "production")]).await;
    let ada = app.create_user("Ada").await;
    for endpoint in [
        "http://127.0.0.1:9000/push/1",
        "https://127.0.0.1/push/1",
        "https://localhost/push/1",
        "https://10.1.2.3/push/1",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/push/1",
        "https://push.invalid/push/1",
    ] {
        let answer = app
            .post_json_with_token(
                "/api/push/subscriptions",
                &ada.token,
                &subscription(endpoint),
            )
            .await;
        let body = expect_error(answer, 400, "validation_failed").await;
        assert!(body["fields"]["endpoint"].is_string(), "{endpoint}: {body}");
    }
    assert!(endpoints(&app, &ada.token).await.is_empty());
    app.stop().await;
}

db_test!(ending_a_session_or_deactivating_an_account_deletes_its_subscriptions);
async fn ending_a_session_or_deactivating_an_account_deletes_its_subscriptions(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.create_user("Admin").await;
    let ada = app.create_user("Ada").await;
    let phone = app.login(&ada.email, &ada.password).await;
    let phone_token = str_at(&phone, "/token").to_owned();
    let phone_session = str_at(&phone, "/session/id").to_owned();
    let subscribe = |token: String, endpoint: &'static str| {
        let app = &app;
        async move {
            let answer = app
                .post_json_with_token("/api/push/subscriptions", &token, &subscription(endpoint))
                .await;
            expect_json(answer, 201).await
        }
    };
    subscribe(ada.token.clone(), "http://127.0.0.1:9000/laptop").await;
    subscribe(phone_token.clone(), "http://127.0.0.1:9000/phone").await;
    assert_eq!(endpoints(&app, &ada.token).await.len(), 2);

    // The phone's session is ended from the laptop: its subscription goes with it.
    let ended = app
        .delete_with_token(&format!("/api/sessions/{phone_session}"), &ada.token)
        .await;
    assert!(ended.status().is_success(), "{}", ended.status());
    assert_eq!(
        endpoints(&app, &ada.token).await,
        ["http://127.0.0.1:9000/laptop"]
    );

    // Deactivating the account ends every session, and every subscription.
    let off = app
        .patch_user(&admin.token, ada.id, &json!({ "isActive": false }))
        .await;
    expect_json(off, 200).await;
    let left = app.state.store.push_subscriptions(ada.id).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    app.stop().await;
}

db_test!(a_configured_vapid_key_is_the_one_announced);
async fn a_configured_vapid_key_is_the_one_announced(db: Db) {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use web_push_native::p256::{SecretKey, elliptic_curve::sec1::ToEncodedPoint};

    let private = [7u8; 32];
    let encoded = URL_SAFE_NO_PAD.encode(private);
    let app = spawn_app_with(db, &[("VAPID_PRIVATE_KEY", encoded.as_str())]).await;
    let ada = app.create_user("Ada").await;
    let config = expect_json(
        app.get_with_token("/api/push/config", &ada.token).await,
        200,
    )
    .await;
    // The public half, computed here from the private key.
    let public = SecretKey::from_slice(&private).unwrap().public_key();
    let expected = URL_SAFE_NO_PAD.encode(public.to_encoded_point(false).as_bytes());
    assert_eq!(config["vapidPublicKey"], expected.as_str());
    app.stop().await;
}

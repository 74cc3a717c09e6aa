//! The `state` of a sign-in: single-use, expiring, bound to the browser that started it and to
//! its provider. Anything else fails with `oauth_state_mismatch`, before the code is exchanged.

use sqlx::Connection;

use crate::support::*;

/// A callback URL with one query parameter replaced (or removed, with `None`).
fn with_param(url: &url::Url, name: &str, value: Option<&str>) -> url::Url {
    let mut changed = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .into_owned()
        .filter(|(k, _)| k != name)
        .collect();
    {
        let mut query = changed.query_pairs_mut();
        query.clear().extend_pairs(pairs);
        if let Some(value) = value {
            query.append_pair(name, value);
        }
    }
    changed
}

db_test!(a_callback_presented_twice_fails_the_second_time);
async fn a_callback_presented_twice_fails_the_second_time(db: Db) {
    let (app, provider) = spawn(db).await;
    provider.sign_in_google(GoogleAccount::new("1", "once@example.com", "Once"));
    let browser = Browser::new(&app);
    let consent = browser.start("google", None).await;
    let callback = browser.consent(&consent).await;

    let first = browser.finish(&callback).await;
    assert_signed_in(&first, &provider, "/?socket=connect");
    let replayed = browser.finish(&callback).await;

    replayed.assert_failed("oauth_state_mismatch");
    assert_eq!(
        provider.token_requests(),
        1,
        "a replay must not reach the provider"
    );
}

db_test!(a_callback_from_another_browser_fails_with_state_mismatch);
async fn a_callback_from_another_browser_fails_with_state_mismatch(db: Db) {
    let (app, provider) = spawn(db).await;
    // Login CSRF: the attacker starts a sign-in as themselves and gets the victim's browser to
    // open the callback.
    provider.sign_in_github(GithubAccount::new(666, "attacker", "attacker@example.com"));
    let attacker = Browser::new(&app);
    let consent = attacker.start("github", None).await;
    let callback = attacker.consent(&consent).await;

    let victim = Browser::new(&app);
    victim
        .finish(&callback)
        .await
        .assert_failed("oauth_state_mismatch");

    // Nor does it help that the victim has a binding cookie of their own.
    let consent = attacker.start("github", None).await;
    let callback = attacker.consent(&consent).await;
    let _ = victim.start("github", None).await;
    assert!(victim.cookies_for("/api/auth").contains("craftcode_oauth="));
    victim
        .finish(&callback)
        .await
        .assert_failed("oauth_state_mismatch");
    assert_eq!(provider.token_requests(), 0);
}

db_test!(a_forged_or_missing_state_fails_with_state_mismatch);
async fn a_forged_or_missing_state_fails_with_state_mismatch(db: Db) {
    let (app, provider) = spawn(db).await;
    provider.sign_in_google(GoogleAccount::new("1", "forge@example.com", "Forge"));
    let browser = Browser::new(&app);
    let consent = browser.start("google", None).await;
    let callback = browser.consent(&consent).await;

    for forged in [
        with_param(&callback, "state", Some("forged")),
        with_param(&callback, "state", Some("")),
        with_param(&callback, "state", None),
    ] {
        browser
            .finish(&forged)
            .await
            .assert_failed("oauth_state_mismatch");
    }
    assert_eq!(provider.token_requests(), 0);
    // The real state was never presented, so it still works.
    assert_signed_in(
        &browser.finish(&callback).await,
        &provider,
        "/?socket=connect",
    );
}

db_test!(a_state_started_for_one_provider_is_refused_by_the_other);
async fn a_state_started_for_one_provider_is_refused_by_the_other(db: Db) {
    let (app, provider) = spawn(db).await;
    provider.sign_in_google(GoogleAccount::new("1", "mix@example.com", "Mix"));
    let browser = Browser::new(&app);
    let consent = browser.start("google", None).await;
    let callback = browser.consent(&consent).await;
    let mut to_github = callback.clone();
    to_github.set_path("/api/auth/github/callback");

    browser
        .finish(&to_github)
        .await
        .assert_failed("oauth_state_mismatch");
    assert_eq!(provider.token_requests(), 0);
}

db_test!(a_state_older_than_ten_minutes_fails_with_state_mismatch);
async fn a_state_older_than_ten_minutes_fails_with_state_mismatch(db: Db) {
    let (app, provider) = spawn(db).await;
    provider.sign_in_google(GoogleAccount::new("1", "slow@example.com", "Slow"));
    let browser = Browser::new(&app);
    let consent = browser.start("google", None).await;
    let callback = browser.consent(&consent).await;

    // Ten minutes at the consent page, without waiting them: every pending authorization's
    // deadline moves to the past.
    let expire = "UPDATE oauth_states SET expires_at = expires_at - 600001";
    match db {
        Db::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&app.database.url)
                .await
                .unwrap();
            sqlx::query(expire).execute(&mut conn).await.unwrap();
        }
        Db::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&app.database.url)
                .await
                .unwrap();
            sqlx::query(expire).execute(&mut conn).await.unwrap();
        }
    }

    browser
        .finish(&callback)
        .await
        .assert_failed("oauth_state_mismatch");
    assert_eq!(provider.token_requests(), 0);
}

//! A provider that says no, fails, answers garbage or does not answer: the browser always lands
//! on the web app's login page with a code, never on an error page of ours, and nobody is signed
//! in.

use crate::support::*;

/// An app with both providers signed in as one person.
async fn spawn_signed_in(db: Db) -> (TestApp, StandIn) {
    let (app, provider) = spawn(db).await;
    provider.sign_in_google(GoogleAccount::new("1", "unlucky@example.com", "Unlucky"));
    provider.sign_in_github(GithubAccount::new(1, "unlucky", "unlucky@example.com"));
    (app, provider)
}

async fn assert_nobody_signed_up(app: &TestApp) {
    assert!(
        app.state.store.list_all_users().await.unwrap().is_empty(),
        "a failed sign-in made an account"
    );
}

db_test!(a_user_who_refuses_consent_lands_on_the_login_page_with_oauth_denied);
async fn a_user_who_refuses_consent_lands_on_the_login_page_with_oauth_denied(db: Db) {
    let (app, provider) = spawn_signed_in(db).await;
    provider.set(Endpoint::Consent, Behaviour::Refuses);
    for name in ["google", "github"] {
        let landing = Browser::new(&app).sign_in(name, Some("/chat")).await;
        landing.assert_failed("oauth_denied");
    }
    assert_eq!(provider.token_requests(), 0);
    assert_nobody_signed_up(&app).await;
}

db_test!(a_token_endpoint_that_refuses_or_fails_ends_in_oauth_exchange_failed);
async fn a_token_endpoint_that_refuses_or_fails_ends_in_oauth_exchange_failed(db: Db) {
    let (app, provider) = spawn_signed_in(db).await;
    // Refuses: Google's 400 `invalid_grant`, GitHub's 200 with `bad_verification_code`.
    for behaviour in [Behaviour::Refuses, Behaviour::Fails] {
        provider.set(Endpoint::Token, behaviour);
        for name in ["google", "github"] {
            let landing = Browser::new(&app).sign_in(name, None).await;
            assert_eq!(
                landing.error().as_deref(),
                Some("oauth_exchange_failed"),
                "{name} token endpoint {behaviour:?}"
            );
            landing.assert_failed("oauth_exchange_failed");
        }
    }
    assert_nobody_signed_up(&app).await;
}

db_test!(a_provider_answering_garbage_ends_in_oauth_exchange_failed);
async fn a_provider_answering_garbage_ends_in_oauth_exchange_failed(db: Db) {
    let (app, provider) = spawn_signed_in(db).await;
    let cases = [
        ("google", Endpoint::Token, Behaviour::Garbage),
        ("google", Endpoint::Token, Behaviour::Incomplete),
        ("google", Endpoint::UserInfo, Behaviour::Garbage),
        ("google", Endpoint::UserInfo, Behaviour::Incomplete),
        ("google", Endpoint::UserInfo, Behaviour::Refuses),
        ("google", Endpoint::UserInfo, Behaviour::Fails),
        ("github", Endpoint::Token, Behaviour::Garbage),
        ("github", Endpoint::Token, Behaviour::Incomplete),
        ("github", Endpoint::UserInfo, Behaviour::Garbage),
        ("github", Endpoint::UserInfo, Behaviour::Incomplete),
        ("github", Endpoint::Emails, Behaviour::Garbage),
        ("github", Endpoint::Emails, Behaviour::Incomplete),
        ("github", Endpoint::Emails, Behaviour::Refuses),
    ];
    for (name, endpoint, behaviour) in cases {
        provider.set(endpoint, behaviour);
        let landing = Browser::new(&app).sign_in(name, None).await;
        assert_eq!(
            landing.error().as_deref(),
            Some("oauth_exchange_failed"),
            "{name} {endpoint:?} {behaviour:?}"
        );
        landing.assert_failed("oauth_exchange_failed");
        provider.set(endpoint, Behaviour::Works);
    }
    assert_nobody_signed_up(&app).await;
    // And once the provider behaves again, signing in works.
    let landing = Browser::new(&app).sign_in("github", None).await;
    assert_signed_in(&landing, &provider, "/?socket=connect");
}

db_test!(a_provider_that_never_answers_ends_in_oauth_exchange_failed);
async fn a_provider_that_never_answers_ends_in_oauth_exchange_failed(db: Db) {
    let (app, provider) = spawn_signed_in(db).await;
    // The app gives a provider 10 s; the test browser waits up to 30 s.
    provider.set(Endpoint::Token, Behaviour::Hangs);
    let landing = Browser::new(&app).sign_in("google", None).await;
    landing.assert_failed("oauth_exchange_failed");
}

//! `GET /api/auth/{google,github}`: the redirect to the consent page, and what happens when a
//! provider is not set up.

use crate::provider::{GITHUB_CLIENT_ID, GOOGLE_CLIENT_ID};
use crate::support::*;

db_test!(signing_in_redirects_to_the_consent_page_with_state_pkce_and_a_browser_cookie);
async fn signing_in_redirects_to_the_consent_page_with_state_pkce_and_a_browser_cookie(db: Db) {
    let (app, provider) = spawn(db).await;
    for (name, client_id, scope) in [
        ("google", GOOGLE_CLIENT_ID, "openid email profile"),
        ("github", GITHUB_CLIENT_ID, "read:user user:email"),
    ] {
        let response = Browser::new(&app)
            .get(&format!("{BASE_URL}/api/auth/{name}?returnTo=/chat"))
            .await;
        assert_eq!(response.status(), 302, "{name}");
        let cookies = set_cookies(response.headers());
        let location = url::Url::parse(
            response.headers()["location"]
                .to_str()
                .expect("a readable Location"),
        )
        .expect("a URL");
        assert!(
            location
                .as_str()
                .starts_with(&format!("http://{}/", provider.addr)),
            "{location}"
        );
        let params: std::collections::HashMap<String, String> =
            location.query_pairs().into_owned().collect();
        assert_eq!(params["response_type"], "code");
        assert_eq!(params["client_id"], client_id);
        assert_eq!(
            params["redirect_uri"],
            format!("{BASE_URL}/api/auth/{name}/callback")
        );
        assert_eq!(params["scope"], scope);
        assert_eq!(params["code_challenge_method"], "S256");
        assert_eq!(params["code_challenge"].len(), 43);
        assert!(params["state"].len() >= 16, "a guessable state: {params:?}");
        assert!(
            !location.as_str().contains("chat"),
            "returnTo stays with the app, not the provider"
        );

        let binding = &cookies["craftcode_oauth"];
        assert!(binding.has("httponly"));
        assert_eq!(binding.attribute("samesite"), Some("Lax"));
        assert_eq!(binding.attribute("path"), Some("/api/auth"));
        assert_eq!(binding.attribute("max-age"), Some("600"));
        assert!(binding.value.len() >= 32);
    }
    // Another click gives another state and challenge.
    let first = Browser::new(&app).start("google", None).await;
    let second = Browser::new(&app).start("google", None).await;
    let param = |url: &url::Url, name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_ne!(param(&first, "state"), param(&second, "state"));
    assert_ne!(
        param(&first, "code_challenge"),
        param(&second, "code_challenge")
    );
}

db_test!(a_provider_without_both_client_id_and_secret_is_not_configured);
async fn a_provider_without_both_client_id_and_secret_is_not_configured(db: Db) {
    let (app, _provider) = spawn_with(
        db,
        &[
            ("GITHUB_CLIENT_SECRET", ""),
            ("GOOGLE_CLIENT_ID", ""),
            ("GOOGLE_CLIENT_SECRET", ""),
        ],
    )
    .await;
    for name in ["google", "github"] {
        let response = app.get(&format!("/api/auth/{name}?returnTo=/chat")).await;
        assert!(
            response.headers().get("set-cookie").is_none(),
            "{name}: nothing to bind"
        );
        expect_error(response, 404, "provider_not_configured").await;
    }
    expect_error(app.get("/api/auth/facebook").await, 404, "unknown_provider").await;
    expect_error(
        app.get("/api/auth/facebook/callback").await,
        404,
        "unknown_provider",
    )
    .await;
}

db_test!(two_sign_ins_started_in_two_tabs_of_one_browser_both_finish);
async fn two_sign_ins_started_in_two_tabs_of_one_browser_both_finish(db: Db) {
    let (app, provider) = spawn(db).await;
    provider.sign_in_google(GoogleAccount::new("7", "tabs@example.com", "Tab Person"));
    provider.sign_in_github(GithubAccount::new(7, "tabs", "tabs@example.com"));
    let browser = Browser::new(&app);

    let first = browser.start("google", Some("/one")).await;
    let second = browser.start("github", Some("/two")).await;
    let first = browser.consent(&first).await;
    let second = browser.consent(&second).await;

    let second = browser.finish(&second).await;
    let first = browser.finish(&first).await;
    assert_signed_in(&first, &provider, "/one?socket=connect");
    assert_signed_in(&second, &provider, "/two?socket=connect");
    assert_eq!(
        me(&app, &first).await["user"]["id"],
        me(&app, &second).await["user"]["id"]
    );
}

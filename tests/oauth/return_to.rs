//! `returnTo`: after signing in, the browser goes back to that page of the web app, and never to
//! another site, whatever the link it started from said.

use crate::support::*;

db_test!(a_return_to_outside_the_web_app_lands_on_its_home_page_instead);
async fn a_return_to_outside_the_web_app_lands_on_its_home_page_instead(db: Db) {
    let (app, provider) = spawn(db).await;
    provider.sign_in_github(GithubAccount::new(3, "wanderer", "wanderer@example.com"));
    let browser = Browser::new(&app);
    for hostile in [
        "//evil.example",
        "///evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "https://evil.example/steal",
        "http:evil.example",
        "javascript:alert(document.cookie)",
        "evil.example",
        "/\t/evil.example",
        "/%09/evil.example\n",
        "/ok\r\nSet-Cookie: craftcode_token=attacker",
        "",
    ] {
        let landing = browser.sign_in("github", Some(hostile)).await;
        assert_eq!(
            landing.location.as_str(),
            format!("{APP_URL}/?socket=connect"),
            "returnTo {hostile:?}; the stand-in refused: {:?}",
            provider.complaints()
        );
    }
}

db_test!(a_return_to_within_the_web_app_is_kept_with_its_query);
async fn a_return_to_within_the_web_app_is_kept_with_its_query(db: Db) {
    let (app, provider) = spawn(db).await;
    provider.sign_in_google(GoogleAccount::new("2", "homing@example.com", "Homing"));
    let browser = Browser::new(&app);
    for (return_to, landing_at) in [
        ("/chat/42?tab=unread", "/chat/42?tab=unread&socket=connect"),
        ("/@ada/profile", "/@ada/profile?socket=connect"),
        ("/%2F%2Fevil.example", "/%2F%2Fevil.example?socket=connect"),
    ] {
        let landing = browser.sign_in("google", Some(return_to)).await;
        assert_signed_in(&landing, &provider, landing_at);
    }
}

//! What the OAuth tests share: an app whose providers are the stand-in, and a few checks.

pub use crate::browser::{Browser, Landing};
pub use crate::helpers::*;
pub use crate::provider::{
    Behaviour, Endpoint, GithubAccount, GithubEmail, GoogleAccount, StandIn,
};
pub use serde_json::{Value, json};

/// The app's public URL in these tests; the test browser sends it to the real port.
pub const BASE_URL: &str = "http://api.craftcode.test";
/// The web app the callbacks redirect into.
pub const APP_URL: &str = "http://app.craftcode.test";

/// A stand-in provider, and an app using it for Google and GitHub.
pub async fn spawn(db: Db) -> (TestApp, StandIn) {
    spawn_with(db, &[]).await
}

/// As [`spawn`], with more settings (or, with an empty value, fewer: `("GITHUB_CLIENT_SECRET", "")`).
pub async fn spawn_with(db: Db, extra: &[(&str, &str)]) -> (TestApp, StandIn) {
    let provider = StandIn::start(BASE_URL).await;
    let provider_vars = provider.config_vars();
    let mut vars: Vec<(&str, &str)> = vec![("BASE_URL", BASE_URL), ("APP_URL", APP_URL)];
    vars.extend(provider_vars.iter().map(|(k, v)| (*k, v.as_str())));
    vars.extend_from_slice(extra);
    let app = spawn_app_with(db, &vars).await;
    (app, provider)
}

/// Asserts a sign-in went through to `{APP_URL}{path}?…socket=connect`, saying what the stand-in
/// refused when it did not.
pub fn assert_signed_in(landing: &Landing, provider: &StandIn, path_and_query: &str) {
    assert_eq!(
        landing.location.as_str(),
        format!("{APP_URL}{path_and_query}"),
        "the sign-in did not land where expected; the stand-in refused: {:?}",
        provider.complaints()
    );
    assert!(landing.cookies.contains_key("craftcode_token"));
    assert!(landing.cookies.contains_key("craftcode_refresh"));
}

/// `GET /api/auth/me` with the access-token cookie of a sign-in, answering `{user, session}`.
pub async fn me(app: &TestApp, landing: &Landing) -> Value {
    let cookie = format!("craftcode_token={}", landing.access_token());
    let response = app
        .with_cookie(reqwest::Method::GET, "/api/auth/me", &cookie)
        .send()
        .await
        .expect("request sent");
    expect_json(response, 200).await
}

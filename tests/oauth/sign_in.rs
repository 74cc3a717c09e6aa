//! The happy paths: a new person signs in with Google or GitHub and lands in the web app signed
//! in, with cookies that work for REST and for the socket.

use crate::client::Handshake;
use crate::support::*;

db_test!(a_new_google_user_gets_an_account_with_their_google_name_and_picture);
async fn a_new_google_user_gets_an_account_with_their_google_name_and_picture(db: Db) {
    let (app, provider) = spawn(db).await;
    let account = GoogleAccount::new("108234", "Ada@Example.com", "Ada Lovelace");
    provider.sign_in_google(account.clone());
    let browser = Browser::new(&app);

    let landing = browser.sign_in("google", Some("/chat")).await;

    assert_signed_in(&landing, &provider, "/chat?socket=connect");
    let me = me(&app, &landing).await;
    assert_eq!(me["user"]["email"], "ada@example.com");
    assert_eq!(me["user"]["name"], "Ada Lovelace");
    assert_eq!(me["user"]["avatarUrl"], account.picture.unwrap().as_str());
    assert_eq!(me["user"]["isActive"], true);
    let user_id = uuid_at(&me, "/user/id");
    assert_eq!(
        app.state.store.password_hash(user_id).await.unwrap(),
        None,
        "an OAuth account has no password"
    );
    let refused = app
        .post_json(
            "/api/auth/login",
            &json!({"email": "ada@example.com", "password": PASSWORD}),
        )
        .await;
    expect_error(refused, 401, "invalid_credentials").await;
}

db_test!(a_new_github_user_signs_in_with_their_primary_verified_email);
async fn a_new_github_user_signs_in_with_their_primary_verified_email(db: Db) {
    let (app, provider) = spawn(db).await;
    let mut account = GithubAccount::new(583231, "octocat", "octo.cat@example.com");
    account.emails.insert(
        0,
        GithubEmail {
            email: "octocat@users.noreply.github.com".into(),
            primary: false,
            verified: true,
        },
    );
    provider.sign_in_github(account.clone());
    let browser = Browser::new(&app);

    let landing = browser.sign_in("github", None).await;

    assert_signed_in(&landing, &provider, "/?socket=connect");
    let me = me(&app, &landing).await;
    assert_eq!(me["user"]["email"], "octo.cat@example.com");
    assert_eq!(
        me["user"]["name"], "octo.cat",
        "without a GitHub name, the email's local part"
    );
    assert_eq!(
        me["user"]["avatarUrl"],
        account.avatar_url.unwrap().as_str()
    );
}

db_test!(the_login_cookies_of_a_provider_sign_in_are_the_usual_ones);
async fn the_login_cookies_of_a_provider_sign_in_are_the_usual_ones(db: Db) {
    let (app, provider) = spawn(db).await;
    provider.sign_in_google(GoogleAccount::new("1", "grace@example.com", "Grace Hopper"));

    let landing = Browser::new(&app).sign_in("google", None).await;

    let access = &landing.cookies["craftcode_token"];
    assert_eq!(access.attribute("path"), Some("/"));
    let refresh = &landing.cookies["craftcode_refresh"];
    assert_eq!(refresh.attribute("path"), Some("/api/auth"));
    for cookie in [access, refresh] {
        assert!(cookie.has("httponly"), "{cookie:?}");
        assert_eq!(cookie.attribute("samesite"), Some("Lax"), "{cookie:?}");
        assert!(!cookie.has("secure"), "BASE_URL is http here: {cookie:?}");
    }
    let claims = jwt_claims(landing.access_token());
    assert_eq!(claims["email"], "grace@example.com");
    // The refresh cookie works like one from a password login.
    let refreshed = app
        .client
        .post(app.url("/api/auth/refresh"))
        .header("Cookie", format!("craftcode_refresh={}", refresh.value))
        .header("Origin", APP_URL)
        .send()
        .await
        .unwrap();
    expect_json(refreshed, 200).await;
}

db_test!(the_cookie_from_a_provider_sign_in_connects_a_socket);
async fn the_cookie_from_a_provider_sign_in_connects_a_socket(db: Db) {
    let (app, provider) = spawn(db).await;
    provider.sign_in_github(GithubAccount::new(9, "linus", "linus@example.com"));
    let landing = Browser::new(&app)
        .sign_in("github", Some("/messages"))
        .await;
    assert_signed_in(&landing, &provider, "/messages?socket=connect");
    let user_id = uuid_at(&me(&app, &landing).await, "/user/id");

    // What the web app does on `?socket=connect`: io(BASE_URL, {path: "/api/socket",
    // withCredentials: true}) from its own origin, with no token of its own.
    let mut socket = Handshake::new(app.addr)
        .header("Origin", APP_URL)
        .header(
            "Cookie",
            &format!("craftcode_token={}", landing.access_token()),
        )
        .connect()
        .await
        .unwrap_or_else(|e| panic!("the handshake with the cookie was refused: {e}"));
    let authenticated = socket.next_event("authenticated").await;
    assert_eq!(authenticated["user"]["id"], user_id.to_string());
    socket.disconnect().await;
}

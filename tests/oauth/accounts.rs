//! Which account a provider sign-in lands in: linking by verified email, finding people again
//! after their email changes at the provider, and the accounts that must not get in.

use craftcode::store::{NewUser, UserFlags};

use crate::support::*;

db_test!(signing_in_with_the_verified_email_of_a_password_account_links_to_it);
async fn signing_in_with_the_verified_email_of_a_password_account_links_to_it(db: Db) {
    let (app, provider) = spawn(db).await;
    let ada = app.create_user("Ada").await;
    provider.sign_in_google(GoogleAccount::new(
        "g-ada",
        &ada.email.to_uppercase(),
        "Lady Ada",
    ));
    provider.sign_in_github(GithubAccount::new(1815, "ada", &ada.email));

    for name in ["google", "github"] {
        let landing = Browser::new(&app).sign_in(name, None).await;
        assert_signed_in(&landing, &provider, "/?socket=connect");
        let me = me(&app, &landing).await;
        assert_eq!(
            me["user"]["id"],
            ada.id.to_string(),
            "{name} made another account"
        );
        assert_eq!(
            me["user"]["name"], "Ada",
            "linking keeps the account's own name"
        );
    }
    // The password still works, and there is still one account.
    app.login(&ada.email, &ada.password).await;
    assert_eq!(app.state.store.list_all_users().await.unwrap().len(), 1);
}

db_test!(a_later_email_change_at_the_provider_still_finds_the_user);
async fn a_later_email_change_at_the_provider_still_finds_the_user(db: Db) {
    let (app, provider) = spawn(db).await;
    let mut account = GithubAccount::new(42, "hedy", "hedy@old.example.com");
    provider.sign_in_github(account.clone());
    let first = Browser::new(&app).sign_in("github", None).await;
    let user_id = me(&app, &first).await["user"]["id"].clone();

    account.emails = vec![GithubEmail {
        email: "hedy@new.example.com".into(),
        primary: true,
        verified: true,
    }];
    provider.sign_in_github(account);
    let again = Browser::new(&app).sign_in("github", None).await;

    assert_signed_in(&again, &provider, "/?socket=connect");
    let me = me(&app, &again).await;
    assert_eq!(me["user"]["id"], user_id);
    assert_eq!(me["user"]["email"], "hedy@old.example.com");
    assert_eq!(app.state.store.list_all_users().await.unwrap().len(), 1);
}

db_test!(a_google_email_that_is_not_verified_is_refused_and_makes_no_account);
async fn a_google_email_that_is_not_verified_is_refused_and_makes_no_account(db: Db) {
    let (app, provider) = spawn(db).await;
    let victim = app.create_user("Victim").await;
    for email in ["new.person@example.com", victim.email.as_str()] {
        provider.sign_in_google(GoogleAccount {
            email_verified: false,
            ..GoogleAccount::new("g-unverified", email, "Mallory")
        });
        let landing = Browser::new(&app).sign_in("google", None).await;
        landing.assert_failed("email_not_verified");
    }
    assert!(
        app.state
            .store
            .find_user_by_email("new.person@example.com")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        app.state
            .store
            .live_sessions(victim.id)
            .await
            .unwrap()
            .len(),
        1,
        "only the victim's own session"
    );
}

db_test!(a_github_account_whose_primary_email_is_unverified_is_refused);
async fn a_github_account_whose_primary_email_is_unverified_is_refused(db: Db) {
    let (app, provider) = spawn(db).await;
    let mut account = GithubAccount::new(77, "mallory", "mallory@example.com");
    account.emails = vec![
        GithubEmail {
            email: "someone.else@example.com".into(),
            primary: true,
            verified: false,
        },
        GithubEmail {
            email: "mallory@example.com".into(),
            primary: false,
            verified: true,
        },
    ];
    provider.sign_in_github(account);

    let landing = Browser::new(&app).sign_in("github", None).await;

    landing.assert_failed("email_not_verified");
    assert!(app.state.store.list_all_users().await.unwrap().is_empty());
}

db_test!(a_deactivated_account_cannot_sign_in_with_a_provider);
async fn a_deactivated_account_cannot_sign_in_with_a_provider(db: Db) {
    let (app, provider) = spawn(db).await;
    let _admin = app.create_user("Admin").await;
    let linked = app.create_user("Linked").await;
    let unlinked = app.create_user("Unlinked").await;
    provider.sign_in_google(GoogleAccount::new("g-linked", &linked.email, "Linked"));
    let landing = Browser::new(&app).sign_in("google", None).await;
    assert_signed_in(&landing, &provider, "/?socket=connect");

    for user in [&linked, &unlinked] {
        let flags = UserFlags {
            is_active: Some(false),
            ..UserFlags::default()
        };
        app.state
            .store
            .set_user_flags(user.id, flags)
            .await
            .unwrap();
        app.state
            .store
            .revoke_user_sessions(user.id, "account_disabled")
            .await
            .unwrap();
    }
    // Found by its provider identity, and found by its email: both refused.
    provider.sign_in_google(GoogleAccount::new("g-linked", &linked.email, "Linked"));
    Browser::new(&app)
        .sign_in("google", None)
        .await
        .assert_failed("account_disabled");
    provider.sign_in_github(GithubAccount::new(5, "unlinked", &unlinked.email));
    Browser::new(&app)
        .sign_in("github", None)
        .await
        .assert_failed("account_disabled");
    for user in [&linked, &unlinked] {
        assert!(
            app.state
                .store
                .live_sessions(user.id)
                .await
                .unwrap()
                .is_empty(),
            "a deactivated account got a session"
        );
    }
}

db_test!(with_signup_closed_a_provider_signs_in_existing_accounts_but_creates_none);
async fn with_signup_closed_a_provider_signs_in_existing_accounts_but_creates_none(db: Db) {
    let (app, provider) = spawn_with(db, &[("ALLOW_SIGNUP", "false")]).await;
    // An account an operator made (`craftcode user create`), without a password.
    let existing = app
        .state
        .store
        .insert_user(&NewUser {
            email: "invited@example.com",
            name: "Invited",
            password_hash: None,
            is_admin: false,
            is_active: true,
        })
        .await
        .unwrap()
        .unwrap();

    provider.sign_in_google(GoogleAccount::new(
        "g-stranger",
        "stranger@example.com",
        "Stranger",
    ));
    Browser::new(&app)
        .sign_in("google", None)
        .await
        .assert_failed("signup_disabled");

    provider.sign_in_google(GoogleAccount::new(
        "g-invited",
        "invited@example.com",
        "Invited",
    ));
    let landing = Browser::new(&app).sign_in("google", None).await;
    assert_signed_in(&landing, &provider, "/?socket=connect");
    assert_eq!(
        me(&app, &landing).await["user"]["id"],
        existing.id.to_string()
    );
    assert_eq!(app.state.store.list_all_users().await.unwrap().len(), 1);
}

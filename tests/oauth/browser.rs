//! A browser as far as sign-in goes: its own cookie jar, no automatic redirects (each hop is a
//! step a test can look at or tamper with), and the app reachable at its `BASE_URL` (the test app
//! listens on a free port, so URLs for `BASE_URL` are sent there, as a hosts entry would).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::cookie::{CookieStore, Jar};
use url::Url;

use crate::helpers::{SetCookie, TestApp, set_cookies};
use crate::support::{APP_URL, BASE_URL};

pub struct Browser {
    client: reqwest::Client,
    jar: Arc<Jar>,
    /// `http://127.0.0.1:<port>`, where `BASE_URL` really is.
    app_root: String,
}

/// Where the app's callback sent the browser in the end.
#[derive(Debug)]
pub struct Landing {
    /// The callback's `Location`: somewhere in the web app (`APP_URL`).
    pub location: Url,
    /// The cookies the callback set.
    pub cookies: HashMap<String, SetCookie>,
}

impl Landing {
    /// The `error` code on the login page, when the sign-in failed.
    pub fn error(&self) -> Option<String> {
        self.location
            .query_pairs()
            .find(|(k, _)| k == "error")
            .map(|(_, v)| v.into_owned())
    }

    /// The access token the callback set as `craftcode_token`; panics when there is none.
    pub fn access_token(&self) -> &str {
        &self
            .cookies
            .get("craftcode_token")
            .unwrap_or_else(|| panic!("no craftcode_token cookie; landed at {}", self.location))
            .value
    }

    /// Asserts the sign-in failed with `code`: the web app's login page, and no login cookies.
    pub fn assert_failed(&self, code: &str) {
        assert_eq!(
            self.location.as_str(),
            format!("{APP_URL}/login?error={code}"),
            "unexpected landing"
        );
        for cookie in ["craftcode_token", "craftcode_refresh"] {
            assert!(
                !self.cookies.contains_key(cookie),
                "a failed sign-in set {cookie}"
            );
        }
    }
}

impl Browser {
    pub fn new(app: &TestApp) -> Self {
        let jar = Arc::new(Jar::default());
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_provider(jar.clone())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        Self {
            client,
            jar,
            app_root: app.url(""),
        }
    }

    /// A GET as a browser sends it, to the app when `url` is under `BASE_URL`.
    pub async fn get(&self, url: &str) -> reqwest::Response {
        let url = match url.strip_prefix(BASE_URL) {
            Some(path) => format!("{}{path}", self.app_root),
            None => url.to_owned(),
        };
        self.client
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url} failed: {e}"))
    }

    /// The cookies this browser would send to the app at `path`.
    pub fn cookies_for(&self, path: &str) -> String {
        let url = Url::parse(&format!("{}{path}", self.app_root)).expect("a URL");
        self.jar
            .cookies(&url)
            .map(|v| v.to_str().expect("readable cookies").to_owned())
            .unwrap_or_default()
    }

    /// Clicks "Sign in with …": the app's 302 to the consent page, which this answers.
    pub async fn start(&self, provider: &str, return_to: Option<&str>) -> Url {
        let mut url = Url::parse(&format!("{BASE_URL}/api/auth/{provider}")).expect("a URL");
        if let Some(return_to) = return_to {
            url.query_pairs_mut().append_pair("returnTo", return_to);
        }
        let response = self.get(url.as_str()).await;
        location_of(response, "the authorize endpoint").await
    }

    /// Goes through the provider's consent page; answers where the provider sends the browser
    /// back (the app's callback, with `code` or `error`, and `state`).
    pub async fn consent(&self, consent_url: &Url) -> Url {
        let response = self.get(consent_url.as_str()).await;
        location_of(response, "the consent page").await
    }

    /// Follows the provider's redirect back to the app's callback.
    pub async fn finish(&self, callback: &Url) -> Landing {
        assert!(
            callback.as_str().starts_with(BASE_URL),
            "the provider sent the browser to {callback}, not to the app"
        );
        let response = self.get(callback.as_str()).await;
        let cookies = set_cookies(response.headers());
        let location = location_of(response, "the callback").await;
        Landing { location, cookies }
    }

    /// The whole sign-in: start, consent, callback.
    pub async fn sign_in(&self, provider: &str, return_to: Option<&str>) -> Landing {
        let consent_url = self.start(provider, return_to).await;
        let callback = self.consent(&consent_url).await;
        self.finish(&callback).await
    }
}

/// The `Location` of a 302; panics with the body when the answer is anything else.
async fn location_of(response: reqwest::Response, what: &str) -> Url {
    let status = response.status();
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .map(|v| v.to_str().expect("a readable Location").to_owned());
    match location {
        Some(location) if status == reqwest::StatusCode::FOUND => Url::parse(&location)
            .unwrap_or_else(|e| panic!("{what} redirected to {location:?}, not a URL: {e}")),
        _ => {
            let body = response.text().await.unwrap_or_default();
            panic!("{what} answered {status} instead of a 302: {body}")
        }
    }
}

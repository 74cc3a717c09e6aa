//! Sign in with Google and GitHub: the OAuth 2 authorization code flow with PKCE (S256), through
//! the `oauth2` crate.
//!
//! [`authorize`] stores a pending authorization — a random `state`, bound to this browser by the
//! nonce in the `craftcode_oauth` cookie, with the PKCE verifier and where to land afterwards —
//! and answers the provider's consent URL. [`callback`] takes that state back exactly once,
//! exchanges the code (with the verifier), reads the provider's verified email, finds the account
//! (by provider identity, else by verified email, which links it) or creates one, and opens a
//! session. Every way a sign-in can fail is one [`Failure`], whose code the web app's login page
//! is given; codes, tokens and secrets never reach a log line.

use std::sync::LazyLock;
use std::time::Duration;

use axum_extra::extract::cookie::{Cookie, SameSite};
use base64::Engine;
use oauth2::basic::{BasicClient, BasicRequestTokenError};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, HttpClientError, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use url::Url;

use super::accounts::{LoginResponse, start_session};
use super::extract::ClientInfo;
use crate::config::{Config, OAuthSettings};
use crate::domain::{Email, Name};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::state::AppState;
use crate::store::{NewOAuthState, NewUser, OAuthIdentity, StoreError, User};
use crate::timestamp::Timestamp;

/// The cookie holding this browser's nonce, which pending authorizations are bound to.
pub const BROWSER_COOKIE: &str = "craftcode_oauth";
/// Only the authorize and callback endpoints need to see it.
const BROWSER_COOKIE_PATH: &str = "/api/auth";
/// How long a pending authorization (a trip to the consent page) stays valid.
pub const STATE_TTL: Duration = Duration::from_secs(10 * 60);
/// A provider that does not answer within this is treated as failed.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// User-info answers are a few hundred bytes; anything near this is not one.
const MAX_USERINFO_BYTES: usize = 1024 * 1024;
/// A `returnTo` path or an avatar URL longer than this is dropped.
const MAX_URL_LEN: usize = 2048;

/// A sign-in provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    Google,
    Github,
}

impl Provider {
    /// The provider named by a path segment (`google`, `github`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "google" => Some(Self::Google),
            "github" => Some(Self::Github),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Google => "google",
            Self::Github => "github",
        }
    }

    fn settings(self, config: &Config) -> &OAuthSettings {
        match self {
            Self::Google => &config.google,
            Self::Github => &config.github,
        }
    }

    /// What the consent page asks for: the email and the profile (name, picture), no more.
    fn scopes(self) -> &'static [&'static str] {
        match self {
            Self::Google => &["openid", "email", "profile"],
            Self::Github => &["read:user", "user:email"],
        }
    }
}

/// Why a sign-in failed; its code is what the login page gets as `?error=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The `state` is missing, unknown, already used, expired, for another provider, or was
    /// started in another browser.
    StateMismatch,
    /// The user refused consent at the provider.
    Denied,
    /// The provider failed to give a token or a usable identity (errors, garbage, timeouts).
    ExchangeFailed,
    /// The provider has no verified email for this account.
    EmailNotVerified,
    AccountDisabled,
    /// A new account would be needed, and public registration is closed (`ALLOW_SIGNUP=false`).
    SignupDisabled,
    /// The provider's client id or secret was removed while the user was at the consent page.
    NotConfigured,
    /// Our side failed (the database); already logged.
    Internal,
}

impl Failure {
    pub fn code(self) -> ErrorCode {
        match self {
            Self::StateMismatch => ErrorCode::OauthStateMismatch,
            Self::Denied => ErrorCode::OauthDenied,
            Self::ExchangeFailed => ErrorCode::OauthExchangeFailed,
            Self::EmailNotVerified => ErrorCode::EmailNotVerified,
            Self::AccountDisabled => ErrorCode::AccountDisabled,
            Self::SignupDisabled => ErrorCode::SignupDisabled,
            Self::NotConfigured => ErrorCode::ProviderNotConfigured,
            Self::Internal => ErrorCode::InternalError,
        }
    }
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        tracing::error!(category = "error", error = %err, "❌ OAuth sign-in failed on our side");
        Self::Internal
    }
}

/// The start of a sign-in: where to send the browser, and the cookie that binds it.
pub struct Authorization {
    /// The provider's consent page, carrying `state`, the PKCE challenge and the redirect URI.
    pub consent_url: Url,
    pub cookie: Cookie<'static>,
}

/// What the provider's redirect back to the callback carries.
#[derive(Clone, Debug, Default)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    /// Set instead of `code` when the user (or the provider) refused: `access_denied`, …
    pub error: Option<String>,
}

/// A finished sign-in: the session, and where in the web app to land.
pub struct SignedIn {
    pub login: LoginResponse,
    pub redirect_to: Url,
}

/// Starts a sign-in: stores a pending authorization and answers the consent URL. 404
/// `provider_not_configured` unless the provider's client id and secret are both set.
/// `browser_nonce` is the `craftcode_oauth` cookie, when the browser has one: keeping it lets
/// two sign-ins started in two tabs both finish.
pub async fn authorize(
    state: &AppState,
    provider: Provider,
    return_to: Option<&str>,
    browser_nonce: Option<&str>,
) -> ApiResult<Authorization> {
    let client = oauth_client(&state.config, provider).ok_or_else(|| {
        ApiError::not_found(
            ErrorCode::ProviderNotConfigured,
            format!(
                "sign-in with {} is not configured on this server",
                provider.as_str()
            ),
        )
    })?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (consent_url, csrf) = client
        .authorize_url(CsrfToken::new_random)
        .add_scopes(
            provider
                .scopes()
                .iter()
                .map(|s| Scope::new((*s).to_owned())),
        )
        .set_pkce_challenge(challenge)
        .url();
    let nonce = browser_nonce
        .filter(|n| is_nonce(n))
        .map_or_else(new_nonce, str::to_owned);
    let return_to = same_app_path(return_to);
    state
        .store
        .insert_oauth_state(&NewOAuthState {
            state_hash: &sha256(csrf.secret()),
            provider: provider.as_str(),
            browser_hash: &sha256(&nonce),
            pkce_verifier: verifier.secret(),
            return_to: &return_to,
            expires_at: Timestamp::now().plus(STATE_TTL),
        })
        .await?;
    Ok(Authorization {
        consent_url,
        cookie: browser_cookie(&state.config, nonce),
    })
}

/// Finishes a sign-in from the provider's redirect back. `browser_nonce` is the
/// `craftcode_oauth` cookie of the browser presenting it.
pub async fn callback(
    state: &AppState,
    provider: Provider,
    params: &CallbackParams,
    browser_nonce: Option<&str>,
    client: &ClientInfo,
) -> Result<SignedIn, Failure> {
    let result = sign_in(state, provider, params, browser_nonce, client).await;
    match &result {
        Ok(signed_in) => tracing::info!(
            category = "ok",
            provider = provider.as_str(),
            user_id = %signed_in.login.user.id,
            "✅ signed in with an OAuth provider"
        ),
        Err(Failure::Internal) => {}
        Err(failure) => {
            state.metrics.auth_failure(failure.code());
            tracing::info!(
                category = "warn",
                provider = provider.as_str(),
                reason = failure.code().as_str(),
                "⚠️ OAuth sign-in refused"
            );
        }
    }
    result
}

async fn sign_in(
    state: &AppState,
    provider: Provider,
    params: &CallbackParams,
    browser_nonce: Option<&str>,
    client: &ClientInfo,
) -> Result<SignedIn, Failure> {
    let oauth = oauth_client(&state.config, provider).ok_or(Failure::NotConfigured)?;
    let presented = params.state.as_deref().ok_or(Failure::StateMismatch)?;
    // Taken (deleted) before any check: whatever happens next, this state cannot be used again.
    let pending = state
        .store
        .take_oauth_state(&sha256(presented))
        .await?
        .ok_or(Failure::StateMismatch)?;
    let same_browser = browser_nonce.is_some_and(|n| sha256(n) == pending.browser_hash);
    if pending.provider != provider.as_str()
        || pending.expires_at <= Timestamp::now()
        || !same_browser
    {
        return Err(Failure::StateMismatch);
    }
    if let Some(error) = &params.error {
        return Err(if error == "access_denied" {
            Failure::Denied
        } else {
            // The code is the provider's word, but it reached us through the browser: keep it to a
            // short token before it goes into a log line.
            let error: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            tracing::warn!(category = "warn", provider = provider.as_str(), %error, "⚠️ the provider refused the authorization");
            Failure::ExchangeFailed
        });
    }
    let code = params.code.clone().ok_or(Failure::ExchangeFailed)?;
    let http = http_client()?;
    let token = oauth
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier))
        .request_async(http)
        .await
        .map_err(|e| {
            tracing::warn!(category = "warn", provider = provider.as_str(), error = %describe_token_error(&e), "⚠️ OAuth code exchange failed");
            Failure::ExchangeFailed
        })?;
    let person = match provider {
        Provider::Google => google_person(http, &state.config, token.access_token().secret()).await,
        Provider::Github => github_person(http, &state.config, token.access_token().secret()).await,
    }?;
    let user = account_for(state, provider, &person).await?;
    let login = start_session(state, user, client)
        .await
        .map_err(|_| Failure::Internal)?;
    Ok(SignedIn {
        login,
        redirect_to: landing_url(&state.config, &pending.return_to),
    })
}

/// The account a verified person signs in as: the one their provider identity is linked to,
/// else the one with their verified email (which links it), else a new one.
async fn account_for(
    state: &AppState,
    provider: Provider,
    person: &Person,
) -> Result<User, Failure> {
    let store = &state.store;
    let identity = OAuthIdentity {
        provider: provider.as_str(),
        subject: &person.subject,
        email: person.email.as_str(),
    };
    let existing = match store
        .find_user_by_identity(identity.provider, identity.subject)
        .await?
    {
        Some(user) => Some(user),
        None => store.find_user_by_email(person.email.as_str()).await?,
    };
    let user = match existing {
        Some(user) => user,
        None => {
            if !state.config.allow_signup {
                return Err(Failure::SignupDisabled);
            }
            let new = NewUser {
                email: person.email.as_str(),
                name: person.name.as_str(),
                password_hash: None,
                is_admin: false,
                is_active: true,
            };
            let created = store
                .create_user_with_identity(&new, person.avatar_url.as_deref(), &identity)
                .await?;
            if let Some(user) = created {
                tracing::info!(category = "ok", user_id = %user.id, provider = provider.as_str(), admin = user.is_admin, "✅ account created by OAuth sign-in");
                return Ok(user);
            }
            // Another sign-in (or a registration) created this email a moment ago: link to it.
            store
                .find_user_by_email(person.email.as_str())
                .await?
                .ok_or(Failure::Internal)?
        }
    };
    if !user.is_active {
        return Err(Failure::AccountDisabled);
    }
    store.link_identity(user.id, &identity).await?;
    Ok(user)
}

/// Someone the provider vouches for: a stable subject and a verified email.
struct Person {
    subject: String,
    email: Email,
    /// The provider's display name, else the email's local part.
    name: Name,
    avatar_url: Option<String>,
}

impl Person {
    fn new(
        subject: String,
        email: Option<&str>,
        verified: bool,
        name: Option<&str>,
        avatar_url: Option<&str>,
    ) -> Result<Self, Failure> {
        if subject.is_empty() {
            return Err(Failure::ExchangeFailed);
        }
        let email = match email {
            Some(email) if verified => Email::parse(email).map_err(|_| Failure::ExchangeFailed)?,
            _ => return Err(Failure::EmailNotVerified),
        };
        let local_part = email.as_str().split('@').next().unwrap_or_default();
        let name = name
            .and_then(|n| Name::parse(n).ok())
            .or_else(|| Name::parse(local_part).ok())
            .ok_or(Failure::ExchangeFailed)?;
        let avatar_url = avatar_url
            .filter(|a| a.len() <= MAX_URL_LEN)
            .and_then(|a| Url::parse(a).ok())
            .filter(|a| matches!(a.scheme(), "https" | "http"))
            .map(String::from);
        Ok(Self {
            subject,
            email,
            name,
            avatar_url,
        })
    }
}

/// Google's OpenID Connect user-info.
#[derive(Deserialize)]
struct GoogleUserInfo {
    sub: String,
    email: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    email_verified: bool,
    name: Option<String>,
    picture: Option<String>,
}

async fn google_person(
    http: &reqwest::Client,
    config: &Config,
    access_token: &str,
) -> Result<Person, Failure> {
    let info: GoogleUserInfo = get_json(
        http,
        Provider::Google,
        config.google.api_url.clone(),
        access_token,
    )
    .await?;
    Person::new(
        info.sub,
        info.email.as_deref(),
        info.email_verified,
        info.name.as_deref(),
        info.picture.as_deref(),
    )
}

/// GitHub's `GET /user`.
#[derive(Deserialize)]
struct GithubUser {
    id: u64,
    name: Option<String>,
    avatar_url: Option<String>,
}

/// One entry of GitHub's `GET /user/emails`.
#[derive(Deserialize)]
struct GithubEmail {
    email: String,
    primary: bool,
    verified: bool,
}

async fn github_person(
    http: &reqwest::Client,
    config: &Config,
    access_token: &str,
) -> Result<Person, Failure> {
    let api = config.github.api_url.as_str().trim_end_matches('/');
    let endpoint =
        |path: &str| Url::parse(&format!("{api}{path}")).map_err(|_| Failure::ExchangeFailed);
    let user: GithubUser =
        get_json(http, Provider::Github, endpoint("/user")?, access_token).await?;
    let emails: Vec<GithubEmail> = get_json(
        http,
        Provider::Github,
        endpoint("/user/emails")?,
        access_token,
    )
    .await?;
    // The primary address, and only if GitHub has verified it: a verified secondary address
    // is not what the person signs in with elsewhere.
    let primary = emails.iter().find(|e| e.primary);
    Person::new(
        user.id.to_string(),
        primary.map(|e| e.email.as_str()),
        primary.is_some_and(|e| e.verified),
        user.name.as_deref(),
        user.avatar_url.as_deref(),
    )
}

/// A GET with the access token, answered as JSON; anything else is `ExchangeFailed`.
async fn get_json<T: DeserializeOwned>(
    http: &reqwest::Client,
    provider: Provider,
    url: Url,
    access_token: &str,
) -> Result<T, Failure> {
    let failed = |what: &str, detail: &dyn std::fmt::Display| {
        tracing::warn!(category = "warn", provider = provider.as_str(), error = %detail, "⚠️ OAuth user-info {what}");
        Failure::ExchangeFailed
    };
    let mut request = http.get(url).bearer_auth(access_token);
    request = match provider {
        Provider::Google => request.header(reqwest::header::ACCEPT, "application/json"),
        Provider::Github => request
            .header(reqwest::header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28"),
    };
    let mut response = request
        .send()
        .await
        .map_err(|e| failed("request failed", &e.without_url()))?;
    if !response.status().is_success() {
        return Err(failed("answered an error", &response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| failed("answer was cut", &e.without_url()))?
    {
        if body.len() + chunk.len() > MAX_USERINFO_BYTES {
            return Err(failed("answer is too large", &body.len()));
        }
        body.extend_from_slice(&chunk);
    }
    // Only where the answer went wrong is logged, never its values.
    let mut deserializer = serde_json::Deserializer::from_slice(&body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        failed(
            "answer is not what was expected",
            &format!("at `{}`", e.path()),
        )
    })
}

/// What went wrong with a code exchange, without anything secret.
fn describe_token_error(err: &BasicRequestTokenError<HttpClientError<reqwest::Error>>) -> String {
    match err {
        RequestTokenError::ServerResponse(response) => {
            format!("the provider answered `{}`", response.error())
        }
        RequestTokenError::Request(HttpClientError::Reqwest(e)) if e.is_timeout() => {
            "no answer in time".to_owned()
        }
        RequestTokenError::Request(e) => match std::error::Error::source(e) {
            Some(source) => format!("request failed: {source}"),
            None => format!("request failed: {e}"),
        },
        RequestTokenError::Parse(e, _) => format!("unexpected answer at `{}`", e.path()),
        RequestTokenError::Other(message) => message.clone(),
    }
}

/// Google has sent `email_verified` both as a boolean and as the string `"true"`.
fn lenient_bool<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Text(String),
    }
    Ok(match Flag::deserialize(deserializer)? {
        Flag::Bool(b) => b,
        Flag::Text(t) => t.eq_ignore_ascii_case("true"),
    })
}

type ProviderClient =
    BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// The provider's OAuth client, when its client id and secret are both set.
fn oauth_client(config: &Config, provider: Provider) -> Option<ProviderClient> {
    let settings = provider.settings(config);
    let (id, secret) = settings.credentials()?;
    let redirect = Url::parse(&format!(
        "{}/api/auth/{}/callback",
        config.base_url.as_str().trim_end_matches('/'),
        provider.as_str()
    ))
    .ok()?;
    Some(
        BasicClient::new(ClientId::new(id.to_owned()))
            .set_client_secret(ClientSecret::new(secret.expose().to_owned()))
            .set_auth_uri(AuthUrl::from_url(settings.auth_url.clone()))
            .set_token_uri(TokenUrl::from_url(settings.token_url.clone()))
            .set_redirect_uri(RedirectUrl::from_url(redirect))
            // Both providers take the secret in the form body; GitHub takes it nowhere else.
            .set_auth_type(AuthType::RequestBody),
    )
}

/// One HTTP client for every provider call: bounded in time, and never following redirects
/// (which would let a token endpoint send the code, or the access token, elsewhere).
fn http_client() -> Result<&'static reqwest::Client, Failure> {
    static CLIENT: LazyLock<Result<reqwest::Client, String>> = LazyLock::new(|| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            // GitHub's API refuses requests without a User-Agent.
            .user_agent(concat!("craftcode/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())
    });
    CLIENT.as_ref().map_err(|e| {
        tracing::error!(category = "error", error = %e, "❌ cannot build the HTTP client for OAuth providers");
        Failure::Internal
    })
}

/// The browser-binding cookie: `HttpOnly`, `SameSite=Lax` (sent on the provider's top-level
/// redirect back), `Path=/api/auth`, `Secure` on https, gone after [`STATE_TTL`].
fn browser_cookie(config: &Config, nonce: String) -> Cookie<'static> {
    Cookie::build((BROWSER_COOKIE, nonce))
        .path(BROWSER_COOKIE_PATH)
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(config.secure_cookies())
        .max_age(time::Duration::seconds(STATE_TTL.as_secs() as i64))
        .build()
}

fn new_nonce() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What [`new_nonce`] makes: 43 URL-safe base64 characters.
fn is_nonce(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn sha256(value: &str) -> Vec<u8> {
    Sha256::digest(value.as_bytes()).to_vec()
}

/// `returnTo` if it is a path of this app — one leading `/`, no backslash, no control
/// character — else `/`. Everything else (`//evil.com`, `/\evil.com`, `https://…`) could send
/// the browser to another site.
pub fn same_app_path(return_to: Option<&str>) -> String {
    match return_to {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && path.len() <= MAX_URL_LEN
                && !path.chars().any(|c| c == '\\' || c.is_control()) =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// `{APP_URL}{path}`, checked to be on the web app's origin (else `{APP_URL}/`).
fn app_url(config: &Config, path: &str) -> Url {
    let mut base = config.app_url.clone();
    base.set_query(None);
    base.set_fragment(None);
    let base = base.as_str().trim_end_matches('/').to_owned();
    let root = || Url::parse(&format!("{base}/")).unwrap_or_else(|_| config.app_url.clone());
    match Url::parse(&format!("{base}{}", same_app_path(Some(path)))) {
        Ok(url) if url.origin() == config.app_url.origin() => url,
        _ => root(),
    }
}

/// Where a signed-in browser lands: `{APP_URL}{returnTo}` with `socket=connect` added to its
/// query, telling the web app to open its socket now.
fn landing_url(config: &Config, return_to: &str) -> Url {
    let mut url = app_url(config, return_to);
    url.query_pairs_mut().append_pair("socket", "connect");
    url
}

/// Where a failed sign-in lands: `{APP_URL}/login?error=<code>`.
pub fn failure_url(config: &Config, failure: Failure) -> Url {
    let mut url = app_url(config, "/login");
    url.query_pairs_mut()
        .append_pair("error", failure.code().as_str());
    url
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(app_url: &str) -> Config {
        let vars = HashMap::from([
            ("JWT_SECRET", "x".repeat(32)),
            ("APP_URL", app_url.to_owned()),
        ]);
        Config::from_map(&vars).unwrap()
    }

    #[test]
    fn return_to_keeps_only_paths_of_this_app() {
        for good in ["/", "/chat", "/chat/42?tab=unread#last", "/@ada", "/a b"] {
            assert_eq!(same_app_path(Some(good)), good);
        }
        for bad in [
            "",
            "chat",
            "//evil.com",
            "///evil.com",
            "/\\evil.com",
            "/\\/evil.com",
            "\\\\evil.com",
            "https://evil.com",
            "javascript:alert(1)",
            "/\t/evil.com",
            "/\n/evil.com",
            "/ok\r\nSet-Cookie: x=1",
            "/nul\0",
        ] {
            assert_eq!(same_app_path(Some(bad)), "/", "{bad:?} was kept");
        }
        assert_eq!(same_app_path(None), "/");
        assert_eq!(same_app_path(Some(&format!("/{}", "a".repeat(3000)))), "/");
    }

    #[test]
    fn landing_stays_on_the_web_app_and_asks_for_the_socket() {
        let config = config("https://app.example.com/web");
        assert_eq!(
            landing_url(&config, "/chat?tab=unread#last").as_str(),
            "https://app.example.com/web/chat?tab=unread&socket=connect#last"
        );
        assert_eq!(
            landing_url(&config, "//evil.com").as_str(),
            "https://app.example.com/web/?socket=connect"
        );
        let config = self::config("http://localhost:5173");
        assert_eq!(
            landing_url(&config, "/").as_str(),
            "http://localhost:5173/?socket=connect"
        );
        assert_eq!(
            failure_url(&config, Failure::StateMismatch).as_str(),
            "http://localhost:5173/login?error=oauth_state_mismatch"
        );
    }

    #[test]
    fn a_person_needs_a_verified_email_and_gets_a_name() {
        let person = |email, verified, name| {
            Person::new(
                "42".into(),
                email,
                verified,
                name,
                Some("https://img/a.png"),
            )
        };
        assert_eq!(
            person(Some("ada@example.com"), false, None).err(),
            Some(Failure::EmailNotVerified)
        );
        assert_eq!(
            person(None, true, None).err(),
            Some(Failure::EmailNotVerified)
        );
        let ada = person(Some("Ada@Example.com"), true, Some("  ")).unwrap();
        assert_eq!(ada.email.as_str(), "ada@example.com");
        assert_eq!(ada.name.as_str(), "ada");
        assert_eq!(ada.avatar_url.as_deref(), Some("https://img/a.png"));
        let named = person(Some("ada@example.com"), true, Some("Ada Lovelace")).unwrap();
        assert_eq!(named.name.as_str(), "Ada Lovelace");
        let bad_avatar = Person::new(
            "42".into(),
            Some("a@b.co"),
            true,
            None,
            Some("javascript:x"),
        )
        .unwrap();
        assert_eq!(bad_avatar.avatar_url, None);
    }
}

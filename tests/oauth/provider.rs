//! A stand-in for Google and GitHub as the app sees them over HTTP: a real axum server on a
//! loopback port speaking the providers' shapes.
//!
//! - The consent page (`/google/authorize`, `/github/login/oauth/authorize`) checks what a real
//!   provider checks (client id, exact redirect URI, `response_type=code`, an S256 PKCE challenge,
//!   a `state`, the scopes), then "consents" as the account the test signed in there, or refuses
//!   as a user clicking Cancel does (`error=access_denied`).
//! - The token endpoint checks the client id and secret, the grant type, that the code is one it
//!   issued and not used yet, the redirect URI, and the PKCE verifier against the challenge;
//!   refusals have each provider's shape (Google: 400/401 JSON; GitHub: 200 with an `error`).
//!   GitHub answers form-encoded unless asked for JSON, as the real one does.
//! - Google's OpenID user-info; GitHub's `/user` and `/user/emails` (which, like GitHub, refuse a
//!   request without a `User-Agent`).
//!
//! Tests make any endpoint misbehave the ways real providers do with [`StandIn::set`]. Anything the
//! stand-in refused is kept in [`StandIn::complaints`], so a failing test can say why.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

pub const GOOGLE_CLIENT_ID: &str = "google-client-id.apps.googleusercontent.com";
pub const GOOGLE_CLIENT_SECRET: &str = "google-client-secret";
pub const GITHUB_CLIENT_ID: &str = "Iv1.github-client-id";
pub const GITHUB_CLIENT_SECRET: &str = "github-client-secret";

/// Someone signed in at Google.
#[derive(Clone, Debug)]
pub struct GoogleAccount {
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
    pub name: Option<String>,
    pub picture: Option<String>,
}

impl GoogleAccount {
    /// A verified account with a name and a picture.
    pub fn new(sub: &str, email: &str, name: &str) -> Self {
        Self {
            sub: sub.to_owned(),
            email: email.to_owned(),
            email_verified: true,
            name: Some(name.to_owned()),
            picture: Some(format!("https://lh3.googleusercontent.com/a/{sub}=s96-c")),
        }
    }
}

/// Someone signed in at GitHub.
#[derive(Clone, Debug)]
pub struct GithubAccount {
    pub id: u64,
    pub login: String,
    pub name: Option<String>,
    pub avatar_url: Option<String>,
    pub emails: Vec<GithubEmail>,
}

/// One address of a GitHub account, as `/user/emails` lists it.
#[derive(Clone, Debug)]
pub struct GithubEmail {
    pub email: String,
    pub primary: bool,
    pub verified: bool,
}

impl GithubAccount {
    /// An account without a display name whose only address is primary and verified.
    pub fn new(id: u64, login: &str, email: &str) -> Self {
        Self {
            id,
            login: login.to_owned(),
            name: None,
            avatar_url: Some(format!("https://avatars.githubusercontent.com/u/{id}?v=4")),
            emails: vec![GithubEmail {
                email: email.to_owned(),
                primary: true,
                verified: true,
            }],
        }
    }
}

#[derive(Clone, Debug)]
enum Account {
    Google(GoogleAccount),
    Github(GithubAccount),
}

/// Which endpoint [`StandIn::set`] changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// The consent page: approve (any behaviour but `Refuses`) or deny.
    Consent,
    /// Both providers' token endpoints.
    Token,
    /// Google's user-info and GitHub's `/user`.
    UserInfo,
    /// GitHub's `/user/emails`.
    Emails,
}

/// How an endpoint answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// As the real provider does when all is well (and checks everything it checks).
    Works,
    /// The provider's own refusal: consent denied, `invalid_grant` / `bad_verification_code`,
    /// an invalid token.
    Refuses,
    /// A 5xx with an HTML error page.
    Fails,
    /// A 200 whose body is not what the endpoint answers (not JSON).
    Garbage,
    /// A 200 JSON answer missing what matters (no `access_token`, no `sub`, no `id`, …).
    Incomplete,
    /// Never answers.
    Hangs,
}

/// A code the consent page gave out, waiting for the token endpoint.
struct Grant {
    provider: &'static str,
    redirect_uri: String,
    challenge: String,
    account: Account,
}

struct Shared {
    /// Where the app under test says it lives (its `BASE_URL`): the registered redirect URIs.
    app_base_url: String,
    google: Mutex<Option<GoogleAccount>>,
    github: Mutex<Option<GithubAccount>>,
    behaviour: Mutex<HashMap<Endpoint, Behaviour>>,
    grants: Mutex<HashMap<String, Grant>>,
    tokens: Mutex<HashMap<String, Account>>,
    token_requests: Mutex<usize>,
    complaints: Mutex<Vec<String>>,
}

impl Shared {
    fn behaviour(&self, endpoint: Endpoint) -> Behaviour {
        lock(&self.behaviour)
            .get(&endpoint)
            .copied()
            .unwrap_or(Behaviour::Works)
    }

    /// Records why a request was refused and answers it as `response`.
    fn complain(&self, why: String, response: Response) -> Response {
        lock(&self.complaints).push(why);
        response
    }
}

/// The running stand-in; stops when dropped.
pub struct StandIn {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl StandIn {
    /// Starts the stand-in on 127.0.0.1 and a free port, with the app's redirect URIs
    /// (`{app_base_url}/api/auth/{provider}/callback`) registered.
    pub async fn start(app_base_url: &str) -> Self {
        let shared = Arc::new(Shared {
            app_base_url: app_base_url.trim_end_matches('/').to_owned(),
            google: Mutex::default(),
            github: Mutex::default(),
            behaviour: Mutex::default(),
            grants: Mutex::default(),
            tokens: Mutex::default(),
            token_requests: Mutex::default(),
            complaints: Mutex::default(),
        });
        let router = Router::new()
            .route("/google/authorize", get(google_authorize))
            .route("/google/token", post(google_token))
            .route("/google/userinfo", get(google_userinfo))
            .route("/github/login/oauth/authorize", get(github_authorize))
            .route("/github/login/oauth/access_token", post(github_token))
            .route("/github/api/user", get(github_user))
            .route("/github/api/user/emails", get(github_emails))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the stand-in provider");
        let addr = listener.local_addr().expect("a bound address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            addr,
            shared,
            server,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The app's settings that point both providers here, with their client ids and secrets.
    pub fn config_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GOOGLE_CLIENT_ID", GOOGLE_CLIENT_ID.to_owned()),
            ("GOOGLE_CLIENT_SECRET", GOOGLE_CLIENT_SECRET.to_owned()),
            ("GOOGLE_AUTH_URL", self.url("/google/authorize")),
            ("GOOGLE_TOKEN_URL", self.url("/google/token")),
            ("GOOGLE_USERINFO_URL", self.url("/google/userinfo")),
            ("GITHUB_CLIENT_ID", GITHUB_CLIENT_ID.to_owned()),
            ("GITHUB_CLIENT_SECRET", GITHUB_CLIENT_SECRET.to_owned()),
            ("GITHUB_AUTH_URL", self.url("/github/login/oauth/authorize")),
            (
                "GITHUB_TOKEN_URL",
                self.url("/github/login/oauth/access_token"),
            ),
            // An API base with a path, as GitHub Enterprise has (`https://ghe.example/api/v3`).
            ("GITHUB_API_URL", self.url("/github/api")),
        ]
    }

    /// From now on, whoever goes through Google's consent page is this account.
    pub fn sign_in_google(&self, account: GoogleAccount) {
        *lock(&self.shared.google) = Some(account);
    }

    /// From now on, whoever goes through GitHub's consent page is this account.
    pub fn sign_in_github(&self, account: GithubAccount) {
        *lock(&self.shared.github) = Some(account);
    }

    /// Makes an endpoint answer this way from now on.
    pub fn set(&self, endpoint: Endpoint, behaviour: Behaviour) {
        lock(&self.shared.behaviour).insert(endpoint, behaviour);
    }

    /// How many requests reached a token endpoint.
    pub fn token_requests(&self) -> usize {
        *lock(&self.shared.token_requests)
    }

    /// Every request the stand-in refused while it was meant to work, and why.
    pub fn complaints(&self) -> Vec<String> {
        lock(&self.shared.complaints).clone()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn random_string(prefix: &str) -> String {
    let bytes: [u8; 20] = rand::random();
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn pkce_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The answer for a behaviour other than `Works` and `Refuses`, or `None` for those two.
async fn misbehave(behaviour: Behaviour, incomplete: Value) -> Option<Response> {
    match behaviour {
        Behaviour::Works | Behaviour::Refuses => None,
        Behaviour::Fails => Some(
            (
                StatusCode::BAD_GATEWAY,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body>502. That’s an error.</body></html>",
            )
                .into_response(),
        ),
        Behaviour::Garbage => Some(
            (
                [(header::CONTENT_TYPE, "application/json")],
                "<!DOCTYPE html><html>not json at all",
            )
                .into_response(),
        ),
        Behaviour::Incomplete => Some(Json(incomplete).into_response()),
        Behaviour::Hangs => std::future::pending().await,
    }
}

// ---- The consent page ----

async fn google_authorize(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let account = lock(&shared.google).clone().map(Account::Google);
    consent(
        &shared,
        "google",
        GOOGLE_CLIENT_ID,
        &["openid", "email"],
        account,
        query,
    )
}

async fn github_authorize(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let account = lock(&shared.github).clone().map(Account::Github);
    consent(
        &shared,
        "github",
        GITHUB_CLIENT_ID,
        &["user:email"],
        account,
        query,
    )
}

/// Checks an authorization request as the provider's consent page does, then redirects back
/// with a code (or with `error=access_denied` when the user refuses).
fn consent(
    shared: &Shared,
    provider: &'static str,
    client_id: &str,
    needed_scopes: &[&str],
    account: Option<Account>,
    query: HashMap<String, String>,
) -> Response {
    let param = |name: &str| query.get(name).map(String::as_str).unwrap_or_default();
    let registered = format!("{}/api/auth/{provider}/callback", shared.app_base_url);
    let scopes: Vec<&str> = param("scope").split(' ').collect();
    let problem = if param("client_id") != client_id {
        Some("unknown client_id")
    } else if param("redirect_uri") != registered {
        Some("redirect_uri does not match the registered one")
    } else if param("response_type") != "code" {
        Some("response_type must be code")
    } else if param("code_challenge_method") != "S256" {
        Some("code_challenge_method must be S256")
    } else if param("code_challenge").len() != 43 {
        Some("code_challenge must be a base64url SHA-256")
    } else if param("state").is_empty() {
        Some("no state")
    } else if !needed_scopes.iter().all(|s| scopes.contains(s)) {
        Some("a needed scope is missing")
    } else {
        None
    };
    if let Some(problem) = problem {
        return shared.complain(
            format!("{provider} authorize: {problem}: {query:?}"),
            (StatusCode::BAD_REQUEST, format!("Error 400: {problem}")).into_response(),
        );
    }
    let mut back = url::Url::parse(&registered).expect("a registered URL");
    if shared.behaviour(Endpoint::Consent) == Behaviour::Refuses {
        back.query_pairs_mut().append_pair("error", "access_denied");
        if provider == "github" {
            back.query_pairs_mut()
                .append_pair(
                    "error_description",
                    "The user has denied your application access.",
                )
                .append_pair(
                    "error_uri",
                    "https://docs.github.com/apps/troubleshooting-authorization-request-errors/#access-denied",
                );
        }
    } else {
        let Some(account) = account else {
            let problem = format!("nobody is signed in at the {provider} stand-in");
            return shared.complain(
                problem.clone(),
                (StatusCode::INTERNAL_SERVER_ERROR, problem).into_response(),
            );
        };
        let code = random_string("");
        lock(&shared.grants).insert(
            code.clone(),
            Grant {
                provider,
                redirect_uri: registered.clone(),
                challenge: param("code_challenge").to_owned(),
                account,
            },
        );
        back.query_pairs_mut().append_pair("code", &code);
    }
    back.query_pairs_mut().append_pair("state", param("state"));
    (StatusCode::FOUND, [(header::LOCATION, back.to_string())]).into_response()
}

// ---- The token endpoint ----

/// Why a token request is refused, in RFC 6749 terms.
enum Refusal {
    /// `invalid_client`
    Client,
    /// `invalid_grant`
    Grant(&'static str),
    /// `invalid_request`
    Request(&'static str),
}

/// Checks a code exchange; answers the account the code was given for.
fn exchange(
    shared: &Shared,
    provider: &'static str,
    client: (&str, &str),
    form: &HashMap<String, String>,
    basic_auth: Option<(String, String)>,
) -> Result<Account, Refusal> {
    let param = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    let (id, secret) = basic_auth.unwrap_or_else(|| {
        (
            param("client_id").to_owned(),
            param("client_secret").to_owned(),
        )
    });
    if (id.as_str(), secret.as_str()) != client {
        return Err(Refusal::Client);
    }
    if param("grant_type") != "authorization_code" {
        return Err(Refusal::Request("grant_type must be authorization_code"));
    }
    // A code is good for one exchange, even a failed one.
    let grant = lock(&shared.grants)
        .remove(param("code"))
        .ok_or(Refusal::Grant("unknown or used code"))?;
    if grant.provider != provider {
        return Err(Refusal::Grant("code of another provider"));
    }
    if param("redirect_uri") != grant.redirect_uri {
        return Err(Refusal::Grant(
            "redirect_uri differs from the authorization's",
        ));
    }
    let verifier = param("code_verifier");
    if !(43..=128).contains(&verifier.len()) || pkce_challenge(verifier) != grant.challenge {
        return Err(Refusal::Grant(
            "the PKCE verifier does not match the challenge",
        ));
    }
    Ok(grant.account)
}

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let (id, secret) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((decode(id), decode(secret)))
}

fn issue_token(shared: &Shared, prefix: &str, account: Account) -> String {
    let token = random_string(prefix);
    lock(&shared.tokens).insert(token.clone(), account);
    token
}

async fn google_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    *lock(&shared.token_requests) += 1;
    let behaviour = shared.behaviour(Endpoint::Token);
    if let Some(response) = misbehave(
        behaviour,
        json!({"token_type": "Bearer", "expires_in": 3599}),
    )
    .await
    {
        return response;
    }
    if behaviour == Behaviour::Refuses {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": "Bad Request"})),
        )
            .into_response();
    }
    let client = (GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET);
    match exchange(&shared, "google", client, &form, basic_auth(&headers)) {
        Ok(account) => {
            let token = issue_token(&shared, "ya29.", account);
            Json(json!({
                "access_token": token,
                "expires_in": 3599,
                "scope": "openid https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile",
                "token_type": "Bearer",
                "id_token": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzdGFuZC1pbiJ9.c2lnbmF0dXJl",
            }))
            .into_response()
        }
        Err(refusal) => {
            let (status, error, description) = match refusal {
                Refusal::Client => (StatusCode::UNAUTHORIZED, "invalid_client", "Unauthorized"),
                Refusal::Grant(why) => (StatusCode::BAD_REQUEST, "invalid_grant", why),
                Refusal::Request(why) => (StatusCode::BAD_REQUEST, "invalid_request", why),
            };
            shared.complain(
                format!("google token: {error}: {description}"),
                (
                    status,
                    Json(json!({"error": error, "error_description": description})),
                )
                    .into_response(),
            )
        }
    }
}

async fn github_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    *lock(&shared.token_requests) += 1;
    let behaviour = shared.behaviour(Endpoint::Token);
    if let Some(response) = misbehave(behaviour, json!({"scope": "", "token_type": "bearer"})).await
    {
        return response;
    }
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    // GitHub answers 200 even when it refuses, with the error in the body.
    let answer = |pairs: Vec<(&str, String)>| {
        if wants_json {
            let object: serde_json::Map<String, Value> = pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Value::String(v)))
                .collect();
            Json(Value::Object(object)).into_response()
        } else {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish();
            (
                [(header::CONTENT_TYPE, "application/x-www-form-urlencoded")],
                body,
            )
                .into_response()
        }
    };
    if behaviour == Behaviour::Refuses {
        return answer(vec![
            ("error", "bad_verification_code".to_owned()),
            (
                "error_description",
                "The code passed is incorrect or expired.".to_owned(),
            ),
        ]);
    }
    let client = (GITHUB_CLIENT_ID, GITHUB_CLIENT_SECRET);
    // GitHub takes the client credentials in the body only.
    match exchange(&shared, "github", client, &form, None) {
        Ok(account) => {
            let token = issue_token(&shared, "gho_", account);
            answer(vec![
                ("access_token", token),
                ("scope", "read:user,user:email".to_owned()),
                ("token_type", "bearer".to_owned()),
            ])
        }
        Err(refusal) => {
            let (error, description) = match refusal {
                Refusal::Client => (
                    "incorrect_client_credentials",
                    "The client_id and/or client_secret passed are incorrect.",
                ),
                Refusal::Grant(why) => ("bad_verification_code", why),
                Refusal::Request(why) => ("unsupported_grant_type", why),
            };
            shared.complain(
                format!("github token: {error}: {description}"),
                answer(vec![
                    ("error", error.to_owned()),
                    ("error_description", description.to_owned()),
                ]),
            )
        }
    }
}

// ---- User info ----

/// The account behind the request's bearer token (GitHub also takes `token <…>`).
fn account_of(shared: &Shared, headers: &HeaderMap) -> Option<Account> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("token "))?;
    lock(&shared.tokens).get(token).cloned()
}

async fn google_userinfo(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let behaviour = shared.behaviour(Endpoint::UserInfo);
    if let Some(response) = misbehave(
        behaviour,
        json!({"email": "someone@example.com", "email_verified": true}),
    )
    .await
    {
        return response;
    }
    let refused = || {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
            Json(json!({"error": "invalid_request", "error_description": "Invalid Credentials"})),
        )
            .into_response()
    };
    if behaviour == Behaviour::Refuses {
        return refused();
    }
    let Some(Account::Google(account)) = account_of(&shared, &headers) else {
        return shared.complain("google userinfo: unknown token".to_owned(), refused());
    };
    let mut info = json!({
        "sub": account.sub,
        "email": account.email,
        "email_verified": account.email_verified,
    });
    if let Some(name) = account.name {
        info["name"] = json!(name);
    }
    if let Some(picture) = account.picture {
        info["picture"] = json!(picture);
    }
    Json(info).into_response()
}

/// What GitHub's API checks before anything else: a User-Agent and a valid token.
fn github_account(
    shared: &Shared,
    headers: &HeaderMap,
    endpoint: Endpoint,
) -> Result<GithubAccount, Box<Response>> {
    if !headers.contains_key(header::USER_AGENT) {
        return Err(Box::new(shared.complain(
            "github api: no User-Agent".to_owned(),
            (
                StatusCode::FORBIDDEN,
                "Request forbidden by administrative rules. Please make sure your request has a User-Agent header",
            )
                .into_response(),
        )));
    }
    let bad_credentials = || {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"})),
        )
            .into_response()
    };
    if shared.behaviour(endpoint) == Behaviour::Refuses {
        return Err(Box::new(bad_credentials()));
    }
    match account_of(shared, headers) {
        Some(Account::Github(account)) => Ok(account),
        _ => Err(Box::new(shared.complain(
            "github api: unknown token".to_owned(),
            bad_credentials(),
        ))),
    }
}

async fn github_user(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let behaviour = shared.behaviour(Endpoint::UserInfo);
    if let Some(response) = misbehave(behaviour, json!({"login": "octocat", "name": null})).await {
        return response;
    }
    let account = match github_account(&shared, &headers, Endpoint::UserInfo) {
        Ok(account) => account,
        Err(response) => return *response,
    };
    Json(json!({
        "login": account.login,
        "id": account.id,
        "node_id": format!("MDQ6VXNlcj{}", account.id),
        "avatar_url": account.avatar_url,
        "type": "User",
        "site_admin": false,
        "name": account.name,
        // The public email, often null; sign-in must use /user/emails.
        "email": null,
    }))
    .into_response()
}

async fn github_emails(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let behaviour = shared.behaviour(Endpoint::Emails);
    if let Some(response) = misbehave(behaviour, json!([{"visibility": "private"}])).await {
        return response;
    }
    let account = match github_account(&shared, &headers, Endpoint::Emails) {
        Ok(account) => account,
        Err(response) => return *response,
    };
    let emails: Vec<Value> = account
        .emails
        .iter()
        .map(|e| {
            json!({
                "email": e.email,
                "primary": e.primary,
                "verified": e.verified,
                "visibility": if e.primary { Value::from("private") } else { Value::Null },
            })
        })
        .collect();
    Json(Value::Array(emails)).into_response()
}

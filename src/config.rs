//! Configuration: every variable of the contract's §7, read from `serve` flags, then the
//! environment (a `.env` file is loaded into it first), then the defaults. A bad value stops
//! start-up with one line naming the variable.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use url::Url;

/// A value that must never reach a log line or a `Debug` print.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// One OAuth provider (`GOOGLE_*` or `GITHUB_*`): this app's registration there and the
/// provider's endpoints, which default to the real ones and can point at GitHub Enterprise or a
/// test stand-in.
#[derive(Clone, Debug)]
pub struct OAuthSettings {
    /// The client id the provider gave this app.
    pub client_id: Option<String>,
    /// The client secret that goes with it.
    pub client_secret: Option<Secret>,
    /// The consent page browsers are sent to.
    pub auth_url: Url,
    /// Where an authorization code is exchanged for an access token.
    pub token_url: Url,
    /// Google: the OpenID user-info endpoint. GitHub: the API base of `/user` and `/user/emails`.
    pub api_url: Url,
}

impl OAuthSettings {
    /// The client id and secret, when both are set: only then is the provider enabled.
    pub fn credentials(&self) -> Option<(&str, &Secret)> {
        Some((self.client_id.as_deref()?, self.client_secret.as_ref()?))
    }
}

/// Where a problem with the configuration is, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

impl ConfigError {
    fn new(var: &'static str, message: impl Into<String>) -> Self {
        Self {
            var,
            message: message.into(),
        }
    }
}

/// The server's settings, resolved and validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// Listen address (`HOST`).
    pub host: IpAddr,
    /// Listen port (`PORT`); 0 picks a free one, which tests use.
    pub port: u16,
    /// `sqlite://…` (default, embedded) or `postgres://…`.
    pub database_url: Secret,
    /// Set in a cluster; unset means a single node.
    pub redis_url: Option<Secret>,
    /// Prefix of every Redis key and channel.
    pub redis_prefix: String,
    /// HS256 key of access tokens; at least 32 bytes.
    pub jwt_secret: Secret,
    /// Lifetime of an access token.
    pub jwt_ttl: Duration,
    /// Lifetime of a session, sliding with use.
    pub session_ttl: Duration,
    /// How long an unauthenticated socket may wait before `authenticate`.
    pub auth_timeout: Duration,
    /// Public URL of this server.
    pub base_url: Url,
    /// The web app, target of OAuth redirects.
    pub app_url: Url,
    /// Allowed origins (`scheme://host[:port]`) for CORS, cookie-authenticated writes and sockets.
    pub cors_origins: Vec<String>,
    /// Whether `POST /api/auth/register` is open to the public.
    pub allow_signup: bool,
    /// Sign in with Google.
    pub google: OAuthSettings,
    /// Sign in with GitHub.
    pub github: OAuthSettings,
    /// Socket connections accepted by this node.
    pub max_connections: usize,
    /// Socket connections one user may hold across the cluster.
    pub max_connections_per_user: usize,
    /// The most members a group conversation may have (`GROUP_MAX_MEMBERS`, default 256).
    pub group_max_members: usize,
    /// How long after sending its author may edit a message (`MESSAGE_EDIT_WINDOW`, default 24 h).
    pub message_edit_window: Duration,
    /// At most one `presenceChanged` batch per interval.
    pub presence_interval: Duration,
    /// How soon a dead node's sockets stop counting.
    pub presence_ttl: Duration,
    /// A socket that authenticates while at most this many users are online watches everyone
    /// (`PRESENCE_BROADCAST_MAX`, default 100); later ones watch their partners and their list.
    pub presence_broadcast_max: usize,
    /// The longest `watchPresence` list (`PRESENCE_WATCH_MAX`, default 500).
    pub presence_watch_max: usize,
    /// When set, `/metrics` needs it as a bearer token.
    pub metrics_token: Option<Secret>,
    pub log_format: LogFormat,
    /// `APP_ENV=production`: no localhost origins are allowed by default.
    pub production: bool,
    /// How long after a message is stored its push is decided (`PUSH_DELAY`, default 10 s).
    pub push_delay: Duration,
    /// Whether pushes show the first characters of a message (`PUSH_PREVIEW`, default true).
    pub push_preview: bool,
    /// How long one push service may take to answer (`PUSH_TIMEOUT`, default 10 s).
    pub push_timeout: Duration,
    /// `VAPID_PRIVATE_KEY`: the P-256 private key (32 bytes, base64url); made once and kept in
    /// the database when unset.
    pub vapid_private_key: Option<Secret>,
    /// `VAPID_SUBJECT`: the contact in each push's token (`mailto:` or a URL); `BASE_URL` when unset.
    pub vapid_subject: Option<String>,
    /// How long a call rings before it is missed (`CALL_RING_TIMEOUT`, default 45 s, 5–180 s).
    pub call_ring_timeout: Duration,
    /// `STUN_URLS`: STUN servers handed to clients as they are.
    pub stun_urls: Vec<String>,
    /// `TURN_URLS`: TURN servers, handed out with time-limited credentials.
    pub turn_urls: Vec<String>,
    /// `TURN_SECRET`: the TURN server's `static-auth-secret` (coturn `use-auth-secret`).
    pub turn_secret: Option<Secret>,
    /// How long issued TURN credentials last (`TURN_TTL`, default 1 h).
    pub turn_ttl: Duration,
    /// Where attachments live (`STORAGE_URL` and the S3 settings, SPEC §12).
    pub storage: StorageSettings,
    /// The largest upload in bytes (`UPLOAD_MAX_SIZE`, default 100 MiB).
    pub upload_max_size: u64,
    /// How long an unfinished or never attached upload is kept (`UPLOAD_TTL`, default 24 h).
    pub upload_ttl: Duration,
}

/// Where attachments live: `STORAGE_URL` (`file://<folder>` or `s3://<bucket>[/<prefix>]`) and,
/// for S3, the endpoint, region and keys.
#[derive(Clone, Debug)]
pub struct StorageSettings {
    pub location: StorageLocation,
    /// `S3_ENDPOINT`: an S3-compatible server (SeaweedFS, MinIO, R2…); AWS itself when unset.
    pub s3_endpoint: Option<Url>,
    /// `S3_REGION`, default `us-east-1`.
    pub s3_region: String,
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    pub s3_credentials: Option<(String, Secret)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageLocation {
    /// A local folder (one node only).
    Folder(PathBuf),
    /// A bucket of an S3-compatible store, and a key prefix inside it (possibly empty).
    S3 { bucket: String, prefix: String },
}

impl Config {
    /// How old a node's last heartbeat may be before its sockets stop counting: `PRESENCE_TTL`
    /// less the two intervals it takes the others to read that and announce it.
    pub fn node_timeout(&self) -> Duration {
        self.presence_ttl - self.presence_interval * 2
    }
}

const DATA_DIR: &str = "data";
const DEFAULT_DATABASE_URL: &str = "sqlite://data/craftcode.db";

impl Config {
    /// Resolves every setting through `lookup` (flags, then environment). Generates and keeps a
    /// JWT secret under `data/` when none is given.
    pub fn load(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let host = parse_host(get("HOST"))?;
        let port = parse_number("PORT", get("PORT"), 3000u16)?;
        let database_url = parse_database_url(get("DATABASE_URL"))?;
        let redis_url = parse_redis_url(get("REDIS_URL"))?;
        let redis_prefix = get("REDIS_PREFIX").unwrap_or_else(|| "craftcode".into());
        let jwt_secret = jwt_secret(get("JWT_SECRET"))?;

        let jwt_ttl = parse_duration("JWT_TTL", get("JWT_TTL"), Duration::from_secs(3600))?;
        let session_ttl = parse_duration(
            "SESSION_TTL",
            get("SESSION_TTL"),
            Duration::from_secs(30 * 86400),
        )?;
        let auth_timeout =
            parse_duration("AUTH_TIMEOUT", get("AUTH_TIMEOUT"), Duration::from_secs(10))?;
        let presence_interval = parse_duration(
            "PRESENCE_INTERVAL",
            get("PRESENCE_INTERVAL"),
            Duration::from_secs(1),
        )?;
        let presence_ttl =
            parse_duration("PRESENCE_TTL", get("PRESENCE_TTL"), Duration::from_secs(15))?;
        if presence_ttl < presence_interval * 5 {
            return Err(ConfigError::new(
                "PRESENCE_TTL",
                "must be at least 5 times PRESENCE_INTERVAL (nodes beat once per interval)",
            ));
        }

        let base_url = parse_url(
            "BASE_URL",
            get("BASE_URL").or_else(|| get("NEXT_PUBLIC_BASE_URL")),
        )?
        .unwrap_or_else(|| Url::parse("http://localhost:3000").expect("a valid default URL"));
        let app_url = parse_url(
            "APP_URL",
            get("APP_URL").or_else(|| get("NEXT_PUBLIC_APP_URL")),
        )?
        .unwrap_or_else(|| base_url.clone());

        let production = get("APP_ENV").is_some_and(|v| v.eq_ignore_ascii_case("production"));
        let cors_origins = match get("CORS_ORIGINS") {
            Some(list) => parse_origins(&list)?,
            None => default_origins(&app_url, &base_url, production),
        };

        let allow_signup = parse_bool("ALLOW_SIGNUP", get("ALLOW_SIGNUP"), true)?;
        let google = OAuthSettings::load(
            &get,
            "GOOGLE",
            [
                (
                    "GOOGLE_AUTH_URL",
                    "https://accounts.google.com/o/oauth2/v2/auth",
                ),
                ("GOOGLE_TOKEN_URL", "https://oauth2.googleapis.com/token"),
                (
                    "GOOGLE_USERINFO_URL",
                    "https://openidconnect.googleapis.com/v1/userinfo",
                ),
            ],
        )?;
        let github = OAuthSettings::load(
            &get,
            "GITHUB",
            [
                (
                    "GITHUB_AUTH_URL",
                    "https://github.com/login/oauth/authorize",
                ),
                (
                    "GITHUB_TOKEN_URL",
                    "https://github.com/login/oauth/access_token",
                ),
                ("GITHUB_API_URL", "https://api.github.com"),
            ],
        )?;
        let max_connections = parse_number("MAX_CONNECTIONS", get("MAX_CONNECTIONS"), 100_000)?;
        let max_connections_per_user = parse_number(
            "MAX_CONNECTIONS_PER_USER",
            get("MAX_CONNECTIONS_PER_USER"),
            20,
        )?;
        let presence_broadcast_max = parse_number(
            "PRESENCE_BROADCAST_MAX",
            get("PRESENCE_BROADCAST_MAX"),
            100usize,
        )?;
        let presence_watch_max =
            parse_number("PRESENCE_WATCH_MAX", get("PRESENCE_WATCH_MAX"), 500usize)?;
        if presence_watch_max > 10_000 {
            return Err(ConfigError::new(
                "PRESENCE_WATCH_MAX",
                "must be at most 10000 (a watch list travels in one packet)",
            ));
        }
        let group_max_members = parse_number("GROUP_MAX_MEMBERS", get("GROUP_MAX_MEMBERS"), 256)?;
        if group_max_members < 2 {
            return Err(ConfigError::new(
                "GROUP_MAX_MEMBERS",
                "must be at least 2 (the owner and one member)",
            ));
        }
        let message_edit_window = parse_duration(
            "MESSAGE_EDIT_WINDOW",
            get("MESSAGE_EDIT_WINDOW"),
            Duration::from_secs(24 * 3600),
        )?;
        let metrics_token = get("METRICS_TOKEN").map(Secret::new);
        let push_delay = parse_duration("PUSH_DELAY", get("PUSH_DELAY"), Duration::from_secs(10))?;
        let push_preview = parse_bool("PUSH_PREVIEW", get("PUSH_PREVIEW"), true)?;
        let push_timeout =
            parse_duration("PUSH_TIMEOUT", get("PUSH_TIMEOUT"), Duration::from_secs(10))?;
        if push_timeout.is_zero() {
            return Err(ConfigError::new("PUSH_TIMEOUT", "must be more than 0"));
        }
        let vapid_private_key = get("VAPID_PRIVATE_KEY").map(Secret::new);
        let vapid_subject = get("VAPID_SUBJECT");
        let call_ring_timeout = parse_duration(
            "CALL_RING_TIMEOUT",
            get("CALL_RING_TIMEOUT"),
            Duration::from_secs(45),
        )?;
        if !(Duration::from_secs(5)..=Duration::from_secs(180)).contains(&call_ring_timeout) {
            return Err(ConfigError::new(
                "CALL_RING_TIMEOUT",
                "must be between 5 s and 180 s",
            ));
        }
        let stun_urls = parse_ice_urls("STUN_URLS", get("STUN_URLS"), &["stun:", "stuns:"])?;
        let turn_urls = parse_ice_urls("TURN_URLS", get("TURN_URLS"), &["turn:", "turns:"])?;
        let turn_secret = get("TURN_SECRET")
            .filter(|s| !s.is_empty())
            .map(Secret::new);
        if !turn_urls.is_empty() && turn_secret.is_none() {
            return Err(ConfigError::new(
                "TURN_SECRET",
                "is required with TURN_URLS (the TURN server's static-auth-secret)",
            ));
        }
        let turn_ttl = parse_duration("TURN_TTL", get("TURN_TTL"), Duration::from_secs(3600))?;
        if turn_ttl < Duration::from_secs(60) {
            return Err(ConfigError::new("TURN_TTL", "must be at least 60 s"));
        }
        let log_format = parse_log_format(get("LOG_FORMAT"))?;
        let storage = StorageSettings::load(&get)?;
        let upload_max_size =
            parse_size("UPLOAD_MAX_SIZE", get("UPLOAD_MAX_SIZE"), 100 * 1024 * 1024)?;
        let upload_ttl =
            parse_duration("UPLOAD_TTL", get("UPLOAD_TTL"), Duration::from_secs(86400))?;

        Ok(Self {
            host,
            port,
            database_url: Secret::new(database_url),
            redis_url: redis_url.map(Secret::new),
            redis_prefix,
            jwt_secret: Secret::new(jwt_secret),
            jwt_ttl,
            session_ttl,
            auth_timeout,
            base_url,
            app_url,
            cors_origins,
            allow_signup,
            google,
            github,
            max_connections,
            max_connections_per_user,
            group_max_members,
            message_edit_window,
            presence_interval,
            presence_ttl,
            presence_broadcast_max,
            presence_watch_max,
            metrics_token,
            log_format,
            production,
            push_delay,
            push_preview,
            push_timeout,
            vapid_private_key,
            vapid_subject,
            call_ring_timeout,
            stun_urls,
            turn_urls,
            turn_secret,
            turn_ttl,
            storage,
            upload_max_size,
            upload_ttl,
        })
    }

    /// Settings from a fixed map (tests and tools), with nothing read from the environment.
    pub fn from_map(vars: &HashMap<&str, String>) -> Result<Self, ConfigError> {
        Self::load(|name| vars.get(name).cloned())
    }

    /// Whether cookies should carry `Secure`.
    pub fn secure_cookies(&self) -> bool {
        self.base_url.scheme() == "https"
    }

    /// Whether an `Origin` header value (or a `Referer` URL) names an allowed origin.
    pub fn is_allowed_origin(&self, origin_or_url: &str) -> bool {
        origin_of(origin_or_url).is_some_and(|o| self.cors_origins.contains(&o))
    }
}

impl StorageSettings {
    fn load(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let url = get("STORAGE_URL").unwrap_or_else(|| "file://data/uploads".to_owned());
        let location = parse_storage_url(url.trim())?;
        let s3_endpoint = parse_url("S3_ENDPOINT", get("S3_ENDPOINT"))?;
        let s3_region = get("S3_REGION").unwrap_or_else(|| "us-east-1".to_owned());
        let s3_credentials = match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => Some((id, Secret::new(secret))),
            (None, None) => None,
            _ => {
                return Err(ConfigError::new(
                    "AWS_SECRET_ACCESS_KEY",
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together",
                ));
            }
        };
        Ok(Self {
            location,
            s3_endpoint,
            s3_region,
            s3_credentials,
        })
    }
}

/// `file://<folder>` (relative to the working folder unless it starts with `/`) or
/// `s3://<bucket>[/<prefix>]`.
fn parse_storage_url(url: &str) -> Result<StorageLocation, ConfigError> {
    let bad = |why: &str| ConfigError::new("STORAGE_URL", format!("{url:?} {why}"));
    if let Some(folder) = url.strip_prefix("file://") {
        if folder.is_empty() {
            return Err(bad("names no folder"));
        }
        return Ok(StorageLocation::Folder(PathBuf::from(folder)));
    }
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(bad("has no valid bucket name (3-63 of a-z, 0-9, '-', '.')"));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|part| part == ".." || part == ".") {
            return Err(bad("has '.' or '..' in its prefix"));
        }
        return Ok(StorageLocation::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        });
    }
    Err(bad(
        "is neither file://<folder> nor s3://<bucket>[/<prefix>]",
    ))
}

/// A size in bytes: a bare number, or one with a unit (`KB`, `MB`, `GB` in powers of 1000;
/// `KiB`, `MiB`, `GiB` in powers of 1024).
fn parse_size(var: &'static str, value: Option<String>, default: u64) -> Result<u64, ConfigError> {
    let Some(v) = value else { return Ok(default) };
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let multiplier: Option<u64> = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => Some(1),
        "kb" => Some(1_000),
        "mb" => Some(1_000_000),
        "gb" => Some(1_000_000_000),
        "kib" => Some(1 << 10),
        "mib" => Some(1 << 20),
        "gib" => Some(1 << 30),
        _ => None,
    };
    match (number.parse::<u64>().ok(), multiplier) {
        (Some(n), Some(m)) if n > 0 => n
            .checked_mul(m)
            .ok_or_else(|| ConfigError::new(var, format!("{v:?} is too large"))),
        _ => Err(ConfigError::new(
            var,
            format!("{v:?} is not a size such as 100MiB, 1GB or 52428800"),
        )),
    }
}

/// `scheme://host[:port]` of a URL; a path is ignored. `None` for opaque origins.
pub fn origin_of(value: &str) -> Option<String> {
    let url = Url::parse(value).ok()?;
    let origin = url.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// Reads `data/jwt_secret`, creating it (mode 0600) with a fresh random secret the first time.
fn kept_jwt_secret(dir: &Path) -> Result<String, String> {
    let path: PathBuf = dir.join("jwt_secret");
    match std::fs::read_to_string(&path) {
        Ok(secret) => return Ok(secret.trim().to_owned()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(format!("cannot read {}: {e}", path.display()));
        }
        Err(_) => {}
    }
    let mut bytes = [0u8; 48];
    rand::fill(&mut bytes);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    write_private(&path, &secret).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    tracing::warn!(category = "warn",
        path = %path.display(),
        "⚠️ JWT_SECRET is not set: generated one and kept it in this file; set JWT_SECRET to share it between nodes"
    );
    Ok(secret)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

/// `HOST`: an IP address (`localhost` is 127.0.0.1); 127.0.0.1 when unset.
fn parse_host(raw: Option<String>) -> Result<IpAddr, ConfigError> {
    match raw.as_deref() {
        None | Some("localhost") => Ok(IpAddr::from([127, 0, 0, 1])),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| ConfigError::new("HOST", format!("{v:?} is not an IP address"))),
    }
}

/// `DATABASE_URL`: SQLite or PostgreSQL; the embedded SQLite file when unset.
fn parse_database_url(raw: Option<String>) -> Result<String, ConfigError> {
    let url = raw.unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
    let known = ["sqlite:", "postgres://", "postgresql://"];
    if known.iter().any(|scheme| url.starts_with(scheme)) {
        Ok(url)
    } else {
        Err(ConfigError::new(
            "DATABASE_URL",
            "must start with sqlite:, postgres:// or postgresql://",
        ))
    }
}

/// `REDIS_URL`: a `redis://` or `rediss://` URL when set.
fn parse_redis_url(raw: Option<String>) -> Result<Option<String>, ConfigError> {
    match raw {
        Some(url) if !(url.starts_with("redis://") || url.starts_with("rediss://")) => Err(
            ConfigError::new("REDIS_URL", "must start with redis:// or rediss://"),
        ),
        url => Ok(url),
    }
}

/// `JWT_SECRET`, or the one generated once and kept under `data/`; at least 32 bytes.
fn jwt_secret(raw: Option<String>) -> Result<String, ConfigError> {
    let secret = match raw {
        Some(secret) => secret,
        None => {
            kept_jwt_secret(Path::new(DATA_DIR)).map_err(|e| ConfigError::new("JWT_SECRET", e))?
        }
    };
    if secret.len() < 32 {
        return Err(ConfigError::new(
            "JWT_SECRET",
            format!("must be at least 32 bytes (got {})", secret.len()),
        ));
    }
    Ok(secret)
}

/// A comma-separated list of ICE server URLs, each with one of `schemes` (`stun:host:port`).
fn parse_ice_urls(
    name: &'static str,
    raw: Option<String>,
    schemes: &[&str],
) -> Result<Vec<String>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let urls: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    for url in &urls {
        let rest = schemes.iter().find_map(|s| url.strip_prefix(s));
        if rest.is_none_or(|r| r.is_empty() || r.chars().any(char::is_whitespace)) {
            return Err(ConfigError::new(
                name,
                format!("{url:?} is not a {} URL", schemes.join(" or ")),
            ));
        }
    }
    Ok(urls)
}

/// `CORS_ORIGINS`: a comma-separated list of origins, sorted and without repeats.
fn parse_origins(list: &str) -> Result<Vec<String>, ConfigError> {
    let mut origins = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            origin_of(s).ok_or_else(|| {
                ConfigError::new(
                    "CORS_ORIGINS",
                    format!("{s:?} is not an origin like https://app.example.com"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    origins.sort();
    origins.dedup();
    Ok(origins)
}

/// The origins allowed when `CORS_ORIGINS` is unset: the web app's and the server's, and the
/// local development ones outside production.
fn default_origins(app_url: &Url, base_url: &Url, production: bool) -> Vec<String> {
    let mut origins = vec![
        app_url.origin().ascii_serialization(),
        base_url.origin().ascii_serialization(),
    ];
    if !production {
        origins.push("http://localhost:3000".into());
        origins.push("http://127.0.0.1:3000".into());
    }
    origins.sort();
    origins.dedup();
    origins
}

/// `LOG_FORMAT`: `pretty` (the default) or `json`.
fn parse_log_format(raw: Option<String>) -> Result<LogFormat, ConfigError> {
    match raw.as_deref() {
        None | Some("pretty") => Ok(LogFormat::Pretty),
        Some("json") => Ok(LogFormat::Json),
        Some(other) => Err(ConfigError::new(
            "LOG_FORMAT",
            format!("{other:?} is neither pretty nor json"),
        )),
    }
}

impl OAuthSettings {
    /// `{PROVIDER}_CLIENT_ID`, `{PROVIDER}_CLIENT_SECRET` and the provider's three URLs, each
    /// named with its default.
    fn load(
        get: &impl Fn(&str) -> Option<String>,
        provider: &str,
        [auth, token, api]: [(&'static str, &'static str); 3],
    ) -> Result<Self, ConfigError> {
        let url = |(name, default)| parse_url_or(name, get(name), default);
        Ok(Self {
            client_id: get(&format!("{provider}_CLIENT_ID")),
            client_secret: get(&format!("{provider}_CLIENT_SECRET")).map(Secret::new),
            auth_url: url(auth)?,
            token_url: url(token)?,
            api_url: url(api)?,
        })
    }
}

fn parse_number<T: std::str::FromStr>(
    var: &'static str,
    value: Option<String>,
    default: T,
) -> Result<T, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| ConfigError::new(var, format!("{v:?} is not a valid number"))),
    }
}

fn parse_bool(
    var: &'static str,
    value: Option<String>,
    default: bool,
) -> Result<bool, ConfigError> {
    match value.as_deref().map(str::trim) {
        None => Ok(default),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(v) => Err(ConfigError::new(
            var,
            format!("{v:?} is not a boolean (true or false)"),
        )),
    }
}

/// `1h`, `30d`, `10s`, `500ms`, or a bare number of seconds.
fn parse_duration(
    var: &'static str,
    value: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(v) = value else { return Ok(default) };
    let v = v.trim();
    let parsed = match v.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(v),
    };
    match parsed {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(ConfigError::new(
            var,
            format!("{v:?} is not a positive duration such as 10s, 1h or 30d"),
        )),
    }
}

fn parse_url(var: &'static str, value: Option<String>) -> Result<Option<Url>, ConfigError> {
    let Some(v) = value else { return Ok(None) };
    match Url::parse(v.trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(Some(url)),
        _ => Err(ConfigError::new(
            var,
            format!("{v:?} is not an http(s) URL"),
        )),
    }
}

/// A URL setting with a default that is known to be valid.
fn parse_url_or(
    var: &'static str,
    value: Option<String>,
    default: &'static str,
) -> Result<Url, ConfigError> {
    Ok(parse_url(var, value)?.unwrap_or_else(|| Url::parse(default).expect("a valid default URL")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&'static str, &str)]) -> HashMap<&'static str, String> {
        let mut map: HashMap<&str, String> =
            pairs.iter().map(|(k, v)| (*k, v.to_string())).collect();
        map.entry("JWT_SECRET").or_insert_with(|| "x".repeat(32));
        map
    }

    #[test]
    fn defaults_follow_the_contract() {
        let config = Config::from_map(&vars(&[])).unwrap();
        assert_eq!(config.port, 3000);
        assert_eq!(config.host.to_string(), "127.0.0.1");
        assert_eq!(config.database_url.expose(), "sqlite://data/craftcode.db");
        assert_eq!(config.jwt_ttl, Duration::from_secs(3600));
        assert_eq!(config.session_ttl, Duration::from_secs(30 * 86400));
        assert_eq!(config.auth_timeout, Duration::from_secs(10));
        assert_eq!(config.app_url.as_str(), "http://localhost:3000/");
        assert!(config.allow_signup);
        assert_eq!(config.max_connections_per_user, 20);
        assert_eq!(config.group_max_members, 256);
        assert_eq!(config.presence_broadcast_max, 100);
        assert_eq!(config.presence_watch_max, 500);
        assert_eq!(config.message_edit_window, Duration::from_secs(24 * 3600));
        assert!(config.is_allowed_origin("http://127.0.0.1:3000"));
        assert!(!config.is_allowed_origin("http://evil.example"));
        assert_eq!(
            config.storage.location,
            StorageLocation::Folder(PathBuf::from("data/uploads"))
        );
        assert_eq!(config.upload_max_size, 100 * 1024 * 1024);
        assert_eq!(config.upload_ttl, Duration::from_secs(24 * 3600));
    }

    #[test]
    fn storage_urls_and_sizes_are_checked() {
        let config = Config::from_map(&vars(&[
            ("STORAGE_URL", "s3://chat-files/prod/uploads/"),
            ("UPLOAD_MAX_SIZE", "1GiB"),
        ]))
        .unwrap();
        assert_eq!(
            config.storage.location,
            StorageLocation::S3 {
                bucket: "chat-files".into(),
                prefix: "prod/uploads".into()
            }
        );
        assert_eq!(config.upload_max_size, 1 << 30);
        for (var, bad) in [
            ("STORAGE_URL", "ftp://files"),
            ("STORAGE_URL", "s3://A"),
            ("STORAGE_URL", "s3://bucket/../etc"),
            ("STORAGE_URL", "file://"),
            ("UPLOAD_MAX_SIZE", "lots"),
            ("UPLOAD_MAX_SIZE", "0"),
            ("UPLOAD_MAX_SIZE", "99999999999999999999GiB"),
            ("AWS_ACCESS_KEY_ID", "only-the-id"),
        ] {
            let err = Config::from_map(&vars(&[(var, bad)])).unwrap_err();
            assert!(err.to_string().contains(if var == "AWS_ACCESS_KEY_ID" {
                "AWS_SECRET_ACCESS_KEY"
            } else {
                var
            }));
        }
    }

    #[test]
    fn next_public_aliases_are_read() {
        let config = Config::from_map(&vars(&[
            ("NEXT_PUBLIC_BASE_URL", "https://api.example.com"),
            ("NEXT_PUBLIC_APP_URL", "https://app.example.com/chat"),
        ]))
        .unwrap();
        assert_eq!(config.base_url.as_str(), "https://api.example.com/");
        assert!(config.secure_cookies());
        assert!(config.is_allowed_origin("https://app.example.com"));
        assert!(config.is_allowed_origin("https://app.example.com/some/page?x=1"));
    }

    #[test]
    fn production_drops_the_localhost_origins() {
        let config = Config::from_map(&vars(&[
            ("APP_ENV", "production"),
            ("BASE_URL", "https://api.example.com"),
        ]))
        .unwrap();
        assert!(!config.is_allowed_origin("http://localhost:3000"));
        assert!(config.is_allowed_origin("https://api.example.com"));
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (var, value) in [
            ("PORT", "eighty"),
            ("JWT_TTL", "soon"),
            ("JWT_SECRET", "short"),
            ("ALLOW_SIGNUP", "maybe"),
            ("BASE_URL", "ftp://x"),
            ("CORS_ORIGINS", "not a url"),
            ("DATABASE_URL", "mysql://x"),
            ("LOG_FORMAT", "xml"),
            ("HOST", "example.com"),
            ("GOOGLE_TOKEN_URL", "not a url"),
            ("GITHUB_API_URL", "file:///etc/passwd"),
        ] {
            let err = Config::from_map(&vars(&[(var, value)])).unwrap_err();
            assert_eq!(err.var, var, "{err}");
            assert!(err.to_string().starts_with(var));
        }
    }

    #[test]
    fn oauth_providers_default_to_the_real_endpoints_and_stay_off_without_credentials() {
        let config = Config::from_map(&vars(&[])).unwrap();
        assert_eq!(
            config.google.token_url.as_str(),
            "https://oauth2.googleapis.com/token"
        );
        assert_eq!(
            config.google.api_url.as_str(),
            "https://openidconnect.googleapis.com/v1/userinfo"
        );
        assert_eq!(
            config.github.auth_url.as_str(),
            "https://github.com/login/oauth/authorize"
        );
        assert_eq!(config.github.api_url.as_str(), "https://api.github.com/");
        assert!(config.google.credentials().is_none());
        assert!(config.github.credentials().is_none());
    }

    #[test]
    fn an_oauth_provider_needs_both_its_client_id_and_secret() {
        let config = Config::from_map(&vars(&[
            ("GOOGLE_CLIENT_ID", "google-id"),
            ("GITHUB_CLIENT_ID", "github-id"),
            ("GITHUB_CLIENT_SECRET", "github-secret-value"),
            ("GITHUB_API_URL", "https://ghe.example.com/api/v3"),
        ]))
        .unwrap();
        assert!(config.google.credentials().is_none());
        let (id, secret) = config.github.credentials().unwrap();
        assert_eq!((id, secret.expose()), ("github-id", "github-secret-value"));
        assert_eq!(
            config.github.api_url.as_str(),
            "https://ghe.example.com/api/v3"
        );
        assert!(!format!("{config:?}").contains("github-secret-value"));
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let config = Config::from_map(&vars(&[(
            "JWT_SECRET",
            "super-secret-value-of-32-bytes-at-least",
        )]))
        .unwrap();
        assert!(!format!("{config:?}").contains("super-secret"));
    }
}

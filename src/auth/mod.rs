//! Who is calling: access tokens (JWT), passwords (argon2id), refresh secrets, the request
//! extractor that checks all of them, cookies, and the account flows (register, login, refresh,
//! logout, sign-in with Google and GitHub) that REST handlers call.

pub mod access;
pub mod accounts;
pub mod cookies;
pub mod extract;
pub mod oauth;
pub mod password;
pub mod refresh;
pub mod token;

pub use extract::{AdminUser, AuthUser};
pub use token::{Claims, TokenError, TokenKeys};

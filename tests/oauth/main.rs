//! The sign-in tests: "Sign in with Google" and "Sign in with GitHub" end to end, a test browser
//! going app → stand-in provider → app, each test on SQLite and on PostgreSQL. The stand-in
//! (`provider`) is a real HTTP server on a loopback port speaking the providers' shapes and
//! checking what they check, PKCE included.

// The API tests' set-up (a real server on its own database) and the socket tests' protocol
// client. Not every helper there is used here.
#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

#[allow(dead_code)]
#[path = "../realtime/client.rs"]
mod client;

mod browser;
mod provider;
mod support;

mod accounts;
mod authorize;
mod failures;
mod return_to;
mod sign_in;
mod state;

//! CraftCode Realtime: a self-hosted real-time backend for web apps.
//!
//! Accounts and sessions, direct messages, notifications, presence and typing, served over REST
//! and Socket.IO from one binary. The contract every client is written against lives in the
//! project's SPEC. Dependencies point one way: the edges (`http`, and the socket handlers in
//! `realtime`) parse input into `domain` types and call the feature modules (`messaging`,
//! `users`, `notifications`), which reach the database through `store` and sockets through the
//! `realtime::Realtime` façade held in `state::AppState`; `store` knows nothing of HTTP or
//! sockets. The README's "How the code is laid out" draws the whole map.

pub mod app;
pub mod attachments;
pub mod auth;
pub mod calls;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod conversations;
pub mod domain;
pub mod editing;
pub mod error;
pub mod http;
pub mod messaging;
pub mod metrics;
pub mod notifications;
pub mod ops;
pub mod push;
pub mod ratelimit;
pub mod realtime;
pub mod state;
pub mod storage;
pub mod store;
pub mod telemetry;
pub mod timestamp;
pub mod users;

pub use app::Application;
pub use config::Config;
pub use state::AppState;

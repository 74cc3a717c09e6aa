//! CraftCode Realtime: a self-hosted real-time backend for web apps.
//!
//! Accounts and sessions, direct messages, notifications, presence and typing, served over REST
//! and Socket.IO from one binary. The contract every client is written against lives in the
//! project's SPEC; this crate is organised so the architecture is visible from the module list:
//! `http` and `realtime` call `auth` and `store`; `store` knows nothing of HTTP or sockets.

pub mod app;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod messaging;
pub mod notifications;
pub mod ops;
pub mod ratelimit;
pub mod realtime;
pub mod store;
pub mod telemetry;
pub mod timestamp;
pub mod users;

pub use app::{AppState, Application};
pub use config::Config;

//! The socket tests: the main Socket.IO server (`/api/socket`) driven over real WebSockets by a
//! small protocol-level client, each test on SQLite and on PostgreSQL. One file per area of the
//! contract (§5, §9), all built into one test binary.

// The API tests' set-up (a real server on its own database, users signed up through REST).
// Not every helper there is used here.
#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

mod client;
mod support;

mod admin;
mod attachments;
mod authentication;
mod calls;
mod cluster;
mod conversations;
mod durability;
mod editing;
mod frame_fuzz;
mod handshake;
mod hostile_input;
mod messaging;
mod namespaces;
mod notifications;
mod outage;
mod presence;
mod session_lifecycle;

//! Operations endpoints: liveness and readiness, metrics, and the socket self-test.

pub mod health;
pub mod loopback;
pub mod metrics;
pub mod monitor;
pub mod selftest;

//! Operations endpoints: liveness and readiness (later: metrics, self-test, the monitor).

pub mod health;
